"""The process-wide thread policy: bounded compute slots, re-entrant within a thread, and the concurrency bench."""

from __future__ import annotations

import threading
import time

import pytest

from recmodels import settings
from recmodels.bench.concurrency import client_counts, run_clients
from recmodels.errors import InvalidArgumentError
from recmodels.models import model_class
from recmodels.serving import concurrency
from recmodels.serving.service import RecService


@pytest.fixture
def bounded():
    before = concurrency.policy()
    yield
    concurrency.set_policy(before["workers"], before["torch_threads"])


def test_no_more_requests_compute_at_once_than_workers(bounded):
    concurrency.set_policy(workers=2)
    running, peak, lock = [0], [0], threading.Lock()

    @concurrency.computes
    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2


def test_a_call_inside_a_call_keeps_its_slot(bounded):
    concurrency.set_policy(workers=1)

    @concurrency.computes
    def inner():
        return "done"

    @concurrency.computes
    def outer():
        return inner()  # would wait forever for its own slot without re-entry

    finished = []
    thread = threading.Thread(target=lambda: finished.append(outer()), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert finished == ["done"]


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, 5000])
def test_policy_values_are_checked(bad, bounded):
    with pytest.raises(InvalidArgumentError, match="must be a whole number from 0 to 1024"):
        concurrency.set_policy(workers=bad)


def test_bad_environment_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv("RECMODELS_WORKERS", "many")
    with pytest.warns(UserWarning, match="RECMODELS_WORKERS must be a whole number"):
        assert settings.whole_number("RECMODELS_WORKERS", 0, 0, 1024) == 0


@pytest.mark.parametrize("text", ["", "0", "1,x", "300", "4;8"])
def test_client_counts_are_checked(text):
    with pytest.raises(InvalidArgumentError, match="--concurrency must be client counts"):
        client_counts(text)


def test_concurrent_clients_share_one_service(tiny_data, bounded):
    concurrency.set_policy(workers=1)
    model = model_class("din").from_data(tiny_data).eval()
    service = RecService(model, tiny_data, device="cpu")
    row = run_clients(service, clients=3, seconds=0.5)
    assert row["clients"] == 3 and row["requests"] >= 3 and row["p95_ms"] >= row["p50_ms"] > 0
    assert row["workers"] == 1
