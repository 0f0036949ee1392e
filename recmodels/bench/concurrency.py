"""Concurrent clients against one shared service: what a Streamlit server with several sessions does.

Each client is a thread that, over and over, takes a user, asks for their recommendations and explains the first
one (attention maps, no attributions), as a person clicking through the Explorer does. Every request's latency is
recorded; the table gives, per number of clients, the median and 95th percentile latency and the throughput.

    python -m recmodels bench --concurrency 1,4,20 [--checkpoints DIR]
"""

from __future__ import annotations

import threading
import time

import numpy as np

from recmodels.errors import InvalidArgumentError, quote
from recmodels.serving.concurrency import policy
from recmodels.serving.service import RecService


def client_counts(text: str) -> list[int]:
    """ "1,4,20" -> [1, 4, 20]; anything else is one sentence."""
    try:
        counts = [int(part) for part in str(text).split(",")]
    except ValueError:
        counts = []
    if not counts or not all(1 <= n <= 256 for n in counts):
        raise InvalidArgumentError(
            f"--concurrency must be client counts from 1 to 256 separated by commas, such as 1,4,20; got {quote(text)}."
        )
    return counts


def client_requests(service: RecService, users: list[str], stop_at: float, latencies: list[float]) -> None:
    """One client: recommend then explain, user after user, until ``stop_at`` (perf_counter seconds)."""
    index = 0
    while time.perf_counter() < stop_at:
        user = users[index % len(users)]
        started = time.perf_counter()
        top = service.recommend(user, k=10)
        service.explain(user, top["item"].iloc[0], attributions=False, perturbations=False, head_importance=False)
        latencies.append(time.perf_counter() - started)
        index += 1


def run_clients(service: RecService, clients: int, seconds: float, seed: int = 0) -> dict:
    """``clients`` threads for ``seconds``: latency percentiles (ms) and requests per second."""
    all_users = service.users()["user"].astype(str).tolist()
    rng = np.random.default_rng(seed)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    service.recommend(all_users[0], k=10)  # warm-up outside the clock
    stop_at = time.perf_counter() + seconds
    threads = [
        threading.Thread(
            target=client_requests,
            daemon=True,
            args=(service, list(rng.permutation(all_users)[:200]), stop_at, latencies[i]),
        )
        for i in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    done = np.array([x for per_client in latencies for x in per_client]) * 1000
    return {
        "clients": clients,
        "requests": int(done.size),
        "p50_ms": float(np.percentile(done, 50)),
        "p95_ms": float(np.percentile(done, 95)),
        "throughput": done.size / elapsed,
        **policy(),
    }


def run_concurrency(path, counts: list[int], seconds: float = 10.0, device: str = "cpu") -> list[dict]:
    service = RecService.from_checkpoint(path, device=device)
    rows = []
    for clients in counts:
        row = {"checkpoint": str(path), **run_clients(service, clients, seconds)}
        rows.append(row)
        print(
            f"{clients:>3} clients: p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
            f"{row['throughput']:7.1f} requests/s  ({row['requests']} requests)",
            flush=True,
        )
    return rows
