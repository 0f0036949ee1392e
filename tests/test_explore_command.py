"""`recmodels explore` and the package's optional MovieLens: bad arguments end in one sentence before anything heavy
loads, and ml-100k without RecBole says how to get it."""

from __future__ import annotations

import sys

import pytest

from recmodels.cli.parser import main
from recmodels.data import RecData
from recmodels.errors import UnknownDatasetError


def test_explore_without_a_checkpoints_folder_or_with_a_bad_root_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECMODELS_CHECKPOINT_ROOTS", raising=False)
    with pytest.raises(SystemExit, match=r"There is no checkpoints/ folder in .*; pass --checkpoint-root DIR"):
        main(["explore"])
    with pytest.raises(SystemExit, match="--checkpoint-root .*nowhere: not a folder"):
        main(["explore", "--checkpoint-root", str(tmp_path / "nowhere")])


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_explore_refuses_a_port_that_is_not_one(port, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["explore", "--port", port])
    assert stopped.value.code == 2 and "--port" in capsys.readouterr().err


def test_ml100k_without_recbole_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "recbole", None)  # as if the movielens extra were not installed
    with pytest.raises(UnknownDatasetError, match=r"pip install recmodels\[movielens\].*or pass --data-dir"):
        RecData.load("ml-100k")
