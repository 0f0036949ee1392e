"""tools/sequential_synth.py (issue 25): the planted-structure figures by hand, the table and its verdict, and one
end-to-end run (EASE only, on the tiny preset) that writes the JSON and the docs block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tools import sequential_synth as tool


def test_planted_structure_by_hand():
    # user 1: genres 0 0 1 1 (two stays of three pairs; halves {0, 0} and {1, 1}: total variation 1);
    # user 2: genres 2 2 2 (two stays of two; halves {2} and {2, 2}: 0)
    users = np.array([1, 1, 1, 1, 2, 2, 2])
    genres = np.array([0, 0, 1, 1, 2, 2, 2])
    facts = tool.planted_structure(users, genres)
    assert facts["stay_rate"] == pytest.approx(4 / 5)
    assert facts["drift_tv"] == pytest.approx((1.0 + 0.0) / 2)
    assert facts["stay_rate_shuffled"] <= facts["stay_rate"]  # user 2's stays survive any shuffle
    assert facts["planted_stay"] == 0.65


def _run(model, valid, test):
    hparams = {
        "ease": {"l2": 500.0},
        "bpr": {"dim": 64},
        "sasrec": {"max_length": 50, "hidden_dropout": 0.2},
        "bert4rec": {"max_length": 51, "mask_prob": 0.2, "last_only": 0.5},
    }[model]
    metrics = lambda v: {"hr@10": v, "ndcg@10": v, "mrr@10": v}  # noqa: E731
    return {
        "model": model,
        "flags": "--epochs 2",
        "valid_by_epoch": [valid / 2, valid],
        "hparams": hparams,
        "training": {"lr": 1e-3},
        "grid": [{"settings": {"l2": 500.0}}] if model == "ease" else None,
        "best_epoch": 1,
        "epochs_run": 2,
        "train_seconds": 60.0,
        "valid": metrics(valid),
        "test": metrics(test),
    }


def _results(**runs):
    data = {"stay_rate": 0.65, "stay_rate_shuffled": 0.2, "planted_stay": 0.65}
    data |= {"drift_tv": 0.46, "drift_tv_shuffled": 0.19}
    summary = {"users": 6040, "items": 3706, "interactions": 1000209}
    return {"preset": "ml-1m", "seed": 0, "summary": summary, "data": data, "runs": runs}


def test_the_verdict_compares_test_against_the_non_sequential_model_chosen_on_valid():
    # BPR-MF leads on valid, so its test figure is the bar, though EASE's test figure is higher
    runs = {
        "ease": _run("ease", 0.05, 0.30),
        "bpr": _run("bpr", 0.06, 0.10),
        "sasrec": _run("sasrec", 0.1, 0.2),
        "bert4rec-first": _run("bert4rec", 0.03, 0.05),
        "bert4rec": _run("bert4rec", 0.1, 0.2),
    }
    table = tool.markdown(_results(**runs))
    assert "BPR-MF by valid NDCG@10, on test NDCG@10 0.1000): **met**" in table
    assert table.splitlines()[2].startswith("| SASRec | sequential |")
    row = "| BERT4Rec | sequential | windows of 50 + [mask], mask 0.2, 50% last-item windows, CE, lr 0.001 | 1 of 2 |"
    assert f"{row} 0.1000 |" in table
    assert "`bert4rec-first` (BERT4Rec: `--epochs 2`): 0.0150, 0.0300;" in table  # every run, the chosen marked
    assert "`bert4rec` (BERT4Rec, chosen: `--epochs 2`): 0.0500, 0.1000." in table
    runs["bert4rec"] = _run("bert4rec", 0.1, 0.09)  # chosen on valid, whatever its test figure
    assert "**missed** (SASRec above it)" in tool.markdown(_results(**runs))
    del runs["bert4rec"], runs["bert4rec-first"]
    assert "Target" not in tool.markdown(_results(**runs))  # no verdict until both transformers ran


def test_an_unknown_model_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--runs", "sasrec,gru4rec"])
    assert exit_info.value.code == 2
    assert "unknown run(s) gru4rec" in capsys.readouterr().err


def test_end_to_end_on_the_tiny_preset_writes_the_json_and_the_block(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(tool.RUNS, "ease", ("ease", "--grid l2=100,500"))
    page = tmp_path / "page.md"
    page.write_text(f"# before\n{tool.START}\nold\n{tool.END}\nafter\n")
    out = tmp_path / "results.json"
    args = ["--preset", "tiny", "--runs", "ease", "--root", str(tmp_path / "root"), "--json", str(out)]
    assert tool.main([*args, "--write-docs", str(page)]) == 0
    results = json.loads(out.read_text())
    assert results["summary"]["users"] == 1000 and results["runs"]["ease"]["split"] == {"mode": "next_item"}
    assert abs(results["data"]["stay_rate"] - 0.65) < 0.01
    facts = results["data"]
    assert facts["stay_rate_shuffled"] < 0.4 and facts["drift_tv"] > facts["drift_tv_shuffled"]
    assert [p["settings"]["l2"] for p in results["runs"]["ease"]["grid"]] == [100, 500]
    block = page.read_text().split(tool.START)[1].split(tool.END)[0]
    assert "| EASE | non-sequential | lambda" in block and page.read_text().endswith(f"{tool.END}\nafter\n")
    assert "| reference | knows the generator |" in block and 0 < results["reference"]["test"]["ndcg@10"] < 1
    # the table again from the JSON alone, and the checkpoint is read rather than retrained
    assert tool.main(["--from-json", "--json", str(out)]) == 0
    assert tool.markdown(results) in capsys.readouterr().out
    before = (tmp_path / "root" / "checkpoints" / "ease" / "config.json").stat().st_mtime_ns
    assert tool.main(args) == 0
    assert (tmp_path / "root" / "checkpoints" / "ease" / "config.json").stat().st_mtime_ns == before
    assert Path(tool.data_folder(tmp_path / "root", "tiny", 0)).name == "data-tiny-seed0"
