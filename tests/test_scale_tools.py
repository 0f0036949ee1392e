"""tools/scale_train.py, tools/scale_service.py and the bench's ml-20m scale (issue 13), on a tiny custom size.

No timings are asserted: the tools print them. Each tool runs end to end (its measured processes included) and
writes its marked block into a copy of its docs page; a bad input ends in one sentence before any work.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from recmodels.bench import latency as bench
from recmodels.checkpoint.io import read_config
from recmodels.cli.parser import build_parser
from recmodels.errors import InvalidArgumentError
from tools import scale_service, scale_train

REPO = Path(__file__).resolve().parents[1]
TINY = ["--users", "200", "--items", "300", "--interactions", "20000", "--threads", "1"]
SCALE = "synth-200x300x20000"


def readme_with(tmp_path: Path, markers: tuple[str, str]) -> Path:
    path = tmp_path / "README.md"
    path.write_text(f"# before\n{markers[0]}\nold table\n{markers[1]}\nafter\n")
    return path


def block(path: Path, markers: tuple[str, str]) -> str:
    text = path.read_text()
    assert text.startswith("# before\n") and text.endswith("\nafter\n")  # only the block changed
    return text.split(markers[0])[1].split(markers[1])[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One scale_train run (DIN, 2 steps, one process): its root, README and printed output."""
    root = tmp_path_factory.mktemp("scale")
    readme = readme_with(root, scale_train.MARKERS)
    with contextlib.redirect_stdout(io.StringIO()) as out:  # capsys is per test
        code = scale_train.main(
            [
                *TINY,
                "--root",
                str(root),
                "--models",
                "din",
                "--max-steps",
                "2",
                "--nproc",
                "1",
                "--valid-users",
                "20",
                "--no-cuda",
                "--write-docs",
                str(readme),
            ]
        )
    return code, root, readme, out.getvalue()


@pytest.mark.slow
def test_scale_train_measures_a_run_and_writes_its_block(trained):
    code, root, readme, out = trained
    assert code == 0
    assert json.loads((root / SCALE / scale_train.STAMP).read_text())["interactions"] == 20_000  # reusable stamp
    table = block(readme, scale_train.MARKERS)
    assert "old table" not in table and "| din | cpu, 1 process | 1 | 1024 | 2 |" in table
    assert "extrapolated from 2 steps" in table and "--users 200 --items 300 --interactions 20000" in table
    assert "CUDA: skipped (--no-cuda)" in out
    config = read_config(root / f"{SCALE}-checkpoints" / "din-cpu")
    assert config.training["max_steps"] == 2 and config.training["valid_users"] == 20
    assert config.history[-1]["rows"] == 2 * 1024 and config.history[-1]["train_seconds"] > 0
    assert config.evaluated_users == 20  # the bounded final metrics are labelled as such


@pytest.mark.slow
def test_scale_service_reuses_the_trained_checkpoint_trains_the_missing_ones_and_writes_its_block(
    trained, tmp_path, capsys
):
    _, root, _, _ = trained
    readme = readme_with(tmp_path, scale_service.MARKERS)
    assert (
        scale_service.main(
            [
                *TINY,
                "--root",
                str(root),
                "--models",
                "din,bpr,ease",
                "--train-steps",
                "1",
                "--repeats",
                "1",
                "--write-docs",
                str(readme),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "training din" not in out and "training bpr for 1 steps" in out  # scale_train's DIN was reused
    table = block(readme, scale_service.MARKERS)
    assert "from_checkpoint s (target 30)" in table and "recommend ms/user (target 50)" in table
    assert "IG top-10 ms (target 1,000)" in table and f"| {SCALE} | din | 300 | 2 steps |" in table
    assert f"| {SCALE} | bpr | 300 | 1 step |" in table
    assert f"| {SCALE} | ease | 300 | closed form |" in table  # solved from the data: no epochs, no steps


@pytest.mark.slow
def test_scale_train_under_torchrun_reports_the_speed_up(tmp_path, capsys):
    assert (
        scale_train.main(
            [
                *TINY,
                "--root",
                str(tmp_path),
                "--models",
                "din",
                "--max-steps",
                "2",
                "--nproc",
                "2",
                "--threads",
                "2",
                "--valid-users",
                "20",
                "--no-cuda",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cpu, torchrun x2" in out and "2x1" in out and " x" in out.split("torchrun x2")[1]
    assert read_config(tmp_path / f"{SCALE}-checkpoints" / "din-cpu-ddp2").training["world_size"] == 2


@pytest.mark.parametrize(
    "tool,argv,message",
    [
        (scale_train, ["--max-steps", "0"], "--max-steps must be at least 1, got 0."),
        (scale_train, ["--models", "nosuch"], "nosuch"),
        (scale_train, ["--models", ","], "--models names no model"),
        (scale_train, ["--write-docs", "{readme}"], "is not a file with the lines <!-- scale-train:start -->"),
        (scale_service, ["--checkpoints", "{root}/none"], "is not a checkpoint folder (it has no config.json)"),
        (scale_service, ["--repeats", "0"], "--repeats must be at least 1, got 0."),
        (scale_service, ["--write-docs", "{readme}"], "is not a file with the lines <!-- scale-service:start -->"),
    ],
)
def test_bad_input_is_one_sentence_before_any_work(tool, argv, message, tmp_path, capsys):
    (tmp_path / "README.md").write_text("no markers\n")
    argv = [arg.format(readme=tmp_path / "README.md", root=tmp_path) for arg in argv]
    assert tool.main([*TINY, "--root", str(tmp_path / "root"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "root").exists()  # nothing was generated


# ------------------------------------------------------------------ the bench's ml-20m scale
def test_bench_ml20m_scale_builds_the_architecture_at_ml20m_size():
    config = read_config(REPO / "checkpoints" / "din-ml100k")
    model, user, history, n_items = bench._synthetic(config.model, config, torch.device("cpu"), "ml-20m")
    assert n_items == model.n_items == 26_744 and model.n_users == 138_493
    assert history.shape == (1, 50) and int(history.max()) <= n_items and int(history.min()) >= 1
    with torch.no_grad():
        scores = model.score_items(torch.tensor([user]), history, torch.tensor([1, n_items]))
    assert scores.shape == (1, 2) and torch.isfinite(scores).all()
    assert bench.SYNTHETIC_SCALES["ml-1m"] == bench.ML1M_SCALE == {"n_users": 6040, "n_items": 3706, "history": 50}


def test_bench_naive_path_is_extrapolated_beyond_its_sample_and_labelled(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "NAIVE_CANDIDATES", 5)
    monkeypatch.setattr(bench, "_naive_rank", lambda model, user, history, n, device: calls.append(n))
    monkeypatch.setattr(bench, "timed", lambda fn, device, repeats, warmup=2: (fn(), 10.0)[1])
    assert bench.naive_ms(None, None, None, 20, torch.device("cpu")) == (40.0, 5) and calls == [5]
    assert bench.naive_ms(None, None, None, 4, torch.device("cpu")) == (10.0, 4)  # small catalogue: all, exact
    row = {"items": 20, "naive_ms": 40.0, "naive_candidates": 5}
    assert bench.shown(row)["naive_ms"] == "40.0*" and bench.shown({**row, "naive_candidates": 20}) == {
        **row,
        "naive_candidates": 20,
    }


def test_bench_scales_parse_and_refuse_in_one_sentence():
    assert bench.parse_scales("ml-100k, ml-1m,ml-20m,ml-1m") == ["ml-100k", "ml-1m", "ml-20m"]
    assert build_parser().parse_args(["bench", "--scale", "ml-20m"]).scales == "ml-20m"  # --scale works too
    for text in ("ml-2m", ",", ""):
        with pytest.raises(
            InvalidArgumentError,
            match=r"--scales takes a comma-separated list of ml-100k, ml-1m, "
            r"ml-20m\.$",
        ):
            bench.parse_scales(text)
