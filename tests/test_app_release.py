"""A checkpoint that no session has open any more is released: its service, model and data are freed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from recmodels_explorer.open_checkpoints import OpenCheckpoints

pytestmark = pytest.mark.slow  # AppTest pages

REPO = Path(__file__).resolve().parents[1]
DIN, NRMS = str(REPO / "checkpoints" / "din-ml100k"), str(REPO / "checkpoints" / "nrms-ml100k")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_checkpoint_is_released_one_run_after_its_last_session_opened_something_else():
    record = OpenCheckpoints()
    assert record.begin_run("s") == []
    record.hold("s", "a", "fa")
    assert record.begin_run("s") == []  # the run before still held it
    record.hold("s", "b", "fb")
    assert record.begin_run("s") == [("a", "fa")]
    assert record.begin_run("s") == []  # returned once; b stays: an empty run keeps what the session held
    assert record.held() == {"b"}


def test_a_checkpoint_two_sessions_hold_stays_until_both_let_go():
    record = OpenCheckpoints()
    for session in ("s", "t"):
        record.begin_run(session)
        record.hold(session, "a", "fa")
    for _ in range(2):
        record.begin_run("s")
        record.hold("s", "b", "fb")
    assert record.begin_run("s") == [] and record.held() == {"a", "b"}  # t still has a open
    record.begin_run("t")
    record.hold("t", "b", "fb")
    assert record.begin_run("t") == [("a", "fa")]


def test_closed_and_idle_sessions_hold_nothing():
    clock, live = Clock(), {"s", "t"}
    record = OpenCheckpoints(is_live=lambda session: session in live, clock=clock, idle_seconds=60)
    record.begin_run("s")
    record.hold("s", "a", "fa")
    record.begin_run("t")
    record.hold("t", "b", "fb")
    live.discard("s")  # its tab was closed
    assert record.begin_run("t") == [("a", "fa")]
    clock.now = 61.0  # t left its tab open and went away
    assert record.begin_run("u") == [("b", "fb")]


def test_switching_checkpoint_in_the_app_frees_the_one_left():
    from recmodels_explorer.services import OPEN, load_service

    at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=180).run()
    assert not at.exception and DIN in OPEN.held()
    din = weakref.ref(load_service(DIN))
    at.sidebar.selectbox(key="checkpoint_explore").set_value(NRMS).run()
    assert not at.exception
    at.run()  # the next run, in any session, releases it
    gc.collect()
    assert din() is None and DIN not in OPEN.held() and NRMS in OPEN.held()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(DIN).run()  # and it opens again when picked
    assert not at.exception and not at.error and DIN in OPEN.held()
