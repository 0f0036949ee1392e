"""``recmodels bench``'s arguments: every bad value is refused in one line before any checkpoint loads or any clock
starts (``--seconds inf`` used to run forever, ``--seconds 0`` to end in an IndexError, ``--concurrency ""`` to run
the other benchmark, and a folder without checkpoints/ in a FileNotFoundError)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.cli.parser import main

REPO = Path(__file__).resolve().parents[1]
SMALL = str(REPO / "checkpoints" / "mostpop-ml100k")


def refused(argv: list[str], capsys) -> str:
    """Runs the command; it must exit 2 with one line on stderr and nothing else, and returns that line."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's refusal
        code = stop.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert "Traceback" not in "\n".join(err)
    assert err, argv
    return err[-1]


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--seconds", "0"], "must be from 0.1 to 3600"),
        (["--seconds", "-1"], "must be from 0.1 to 3600"),
        (["--seconds", "nan"], "must be from 0.1 to 3600"),
        (["--seconds", "inf"], "must be from 0.1 to 3600"),
        (["--seconds", "ten"], "expected a number of seconds"),
        (["--concurrency", ""], "--concurrency must be client counts"),
        (["--concurrency", "0"], "--concurrency must be client counts"),
        (["--concurrency", "1,x"], "--concurrency must be client counts"),
        (["--repeats", "0"], "must be from 1 to 10000"),
        (["--workers", "0"], "must be from 1 to 256"),
        (["--torch-threads", "-2"], "must be from 1 to 1024"),
        (["--device", "bogus"], "device must be 'auto', 'cpu' or 'cuda[:N]'"),
        (["--device", "tpu"], "device must be 'auto', 'cpu' or 'cuda[:N]'"),
        (["--scales", ""], "Unknown scale"),
        (["--checkpoints", "/nonexistent-folder"], "is not a checkpoint folder"),
    ],
)
def test_bad_bench_arguments_are_one_line(flags, said, capsys):
    assert said in refused(["bench", "--checkpoints", SMALL, "--repeats", "1", *flags], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_one_line(capsys):
    assert "no CUDA GPU is available" in refused(["bench", "--checkpoints", SMALL, "--device", "cuda"], capsys)


def test_a_folder_without_checkpoints_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    said = refused(["bench", "--concurrency", "1"], capsys)
    assert "there is no checkpoints folder" in said and str(tmp_path) in said


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)))
def test_any_seconds_value_is_taken_only_inside_its_bounds(value):
    from recmodels.cli.parser import build_parser

    text = repr(value) if isinstance(value, float) else value
    try:
        args = build_parser().parse_args(["bench", "--seconds", text])
    except SystemExit as stop:
        assert stop.code == 2
        return
    assert math.isfinite(args.seconds) and 0.1 <= args.seconds <= 3600
