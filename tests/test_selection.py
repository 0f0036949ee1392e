"""``train --grid``: every combination is trained, the best on valid is saved, every point is recorded."""

from __future__ import annotations

import re

import pytest

from recmodels.checkpoint.io import read_config
from recmodels.cli.parser import main as cli_main
from recmodels.train.selection import better, grid_points, parse_grid
from tests.test_train_and_checkpoint import write_atomic


def test_grid_points_are_every_combination_in_order():
    grid = parse_grid(["lr=0.001,0.01", "loss=bpr,warp", "dim=8"], int_or_text)
    assert grid == {"lr": ["0.001", "0.01"], "loss": ["bpr", "warp"], "dim": [8]}
    assert grid_points(grid) == [
        {"lr": "0.001", "loss": "bpr", "dim": 8},
        {"lr": "0.001", "loss": "warp", "dim": 8},
        {"lr": "0.01", "loss": "bpr", "dim": 8},
        {"lr": "0.01", "loss": "warp", "dim": 8},
    ]
    assert grid_points({}) == [{}]
    assert better(0.2, 0.1, False) and not better(0.1, 0.1, False) and better(0.1, 0.2, True)
    assert better(0.1, float("nan"), False) and not better(float("nan"), 0.1, False)


def int_or_text(text):
    return int(text) if text.isdigit() else text


def _train(folder, out, *extra):
    return cli_main(
        [
            "train",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--out",
            str(out),
            "--quiet",
            "--max-history",
            "12",
            *extra,
        ]
    )


def test_the_grid_keeps_the_best_point_on_valid_and_records_every_point(tiny_data, tmp_path, capsys):
    folder = write_atomic(tiny_data.dataset, tmp_path / "data")
    assert (
        _train(
            folder,
            tmp_path / "bpr",
            "--model",
            "bpr",
            "--epochs",
            "2",
            "--set",
            "dim=8",
            "--grid",
            "lr=0.0001,0.02",
            "--grid",
            "weight_decay=0,1e-4",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "grid point 4/4" in out and "chosen on valid ndcg@10" in out
    config = read_config(tmp_path / "bpr")
    selection = config.selection
    assert selection["monitor"] == "ndcg@10" and selection["part"] == "valid"
    assert [p["settings"] for p in selection["grid"]] == [
        {"lr": 0.0001, "weight_decay": 0},
        {"lr": 0.0001, "weight_decay": 1e-4},
        {"lr": 0.02, "weight_decay": 0},
        {"lr": 0.02, "weight_decay": 1e-4},
    ]
    values = [p["valid"]["ndcg@10"] for p in selection["grid"]]
    assert len(set(values)) > 1  # the points differ, so the choice means something
    best = values.index(max(values))  # the first of equals
    assert selection["chosen"] == selection["grid"][best]["settings"]
    assert {k: config.training[k] for k in ("lr", "weight_decay")} == selection["chosen"]
    assert config.metrics["valid"] == selection["grid"][best]["valid"]  # test metrics of the winner only
    assert all(p["epochs_run"] == 2 and "test" not in p for p in selection["grid"])


def test_a_closed_form_model_is_selected_by_its_hyperparameter(tiny_data, tmp_path, capsys):
    folder = write_atomic(tiny_data.dataset, tmp_path / "data")
    assert _train(folder, tmp_path / "ease", "--model", "ease", "--grid", "l2=1,30,1000") == 0
    config = read_config(tmp_path / "ease")
    values = [p["valid"]["ndcg@10"] for p in config.selection["grid"]]
    assert len(set(values)) > 1
    assert config.hparams["l2"] == [1.0, 30.0, 1000.0][values.index(max(values))]
    assert config.selection["chosen"] == {"l2": config.hparams["l2"]}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--grid", "lr"], "--grid takes KEY=VALUE1,VALUE2,... with no empty value, got 'lr'"),
        (["--grid", "lr=0.1,"], "with no empty value"),
        (["--grid", "lr=0.1", "--grid", "lr=0.2"], "--grid names 'lr' twice"),
        (["--set", "lr=0.1", "--grid", "lr=0.2"], "'lr' cannot be in --grid"),
        (["--grid", "monitor=auc,ndcg@10"], "'monitor' cannot be in --grid"),
        (["--grid", "depth=1,2"], "--grid 'depth' is neither a training setting"),
        (["--grid", "lr=1e-3,fast"], "lr of training must be a number, got str 'fast'"),
    ],
)
def test_a_bad_grid_costs_one_sentence_before_any_data_is_read(tmp_path, capsys, args, message):
    assert cli_main(["train", "--model", "bpr", "--data-dir", str(tmp_path / "nowhere"), *args]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""
    assert re.search(re.escape(message), err), err


def test_eval_users_caps_the_final_metrics_and_says_so(tiny_data, tmp_path, capsys):
    from recmodels.checkpoint.io import load_checkpoint
    from recmodels.data import TEST, RecData
    from recmodels.eval import evaluate

    folder = write_atomic(tiny_data.dataset, tmp_path / "data")
    assert (
        _train(folder, tmp_path / "bpr", "--model", "bpr", "--epochs", "1", "--set", "dim=8", "--eval-users", "5") == 0
    )
    config = read_config(tmp_path / "bpr")
    assert config.evaluated_users == 5
    data = RecData.load("tiny", folder, max_history=12)
    model, _ = load_checkpoint(tmp_path / "bpr", data=data)
    capped, full = evaluate(model, data, TEST, max_users=5), evaluate(model, data, TEST)
    assert config.metrics["test"]["ndcg@10"] == pytest.approx(capped["ndcg@10"], abs=1e-6)
    assert config.metrics["test"]["auc"] == pytest.approx(capped["auc"], abs=1e-6)
    assert capped != full, "five users' metrics are not everyone's"
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        _train(folder, tmp_path / "x", "--model", "bpr", "--eval-users", "0")
    assert stopped.value.code == 2 and "must be at least 1" in capsys.readouterr().err
