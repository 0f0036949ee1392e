"""A warm start (``train --init-from CHECKPOINT``): VECF begins from BPR-MF's user and item embeddings and item bias,
the source is recorded and not needed to load the result, and every bad source (missing, not a checkpoint, other
data, other shapes, nothing shared, any text as the path) ends in one typed sentence before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_training import assert_left_nothing, assert_one_sentence, run_train, train_args
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.io import load_checkpoint
from recmodels.checkpoint.warm_start import WarmStart
from recmodels.cli.parser import one_line
from recmodels.data import RecData
from recmodels.errors import CheckpointError, FingerprintMismatchError, InvalidArgumentError, RecModelsError
from recmodels.models.vecf import VECF

SHARED = ["user_embedding.weight", "item_embedding.weight", "item_bias.weight"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_atomic(make_tiny_dataset(n_users=12, n_items=20, per_user=16), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def bpr(folder, tmp_path_factory) -> Path:
    """A BPR-MF checkpoint of dim 8 on the tiny data."""
    out = tmp_path_factory.mktemp("sources") / "bpr"
    assert run_train(train_args(folder, out, "--model", "bpr", "--set", "dim=8")) is None
    return out


def tiny(folder: Path) -> RecData:
    return RecData.load("tiny", folder, max_history=8)


def test_a_warm_start_copies_the_shared_parameters_and_keeps_the_rest(folder, bpr):
    data = tiny(folder)
    source, _ = load_checkpoint(bpr, data=data)
    torch.manual_seed(0)
    model = VECF.from_data(data, dim=8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    warm = WarmStart.open(bpr, data)
    assert warm.apply(model) == SHARED
    for name, parameter in model.named_parameters():
        expected = dict(source.named_parameters())[name] if name in SHARED else before[name]
        assert torch.equal(parameter, expected), name
    record = warm.record(SHARED)
    assert record == {"path": str(bpr), "model": "bpr", "fingerprint": data.fingerprint, "parameters": SHARED}


def test_the_result_records_its_source_and_loads_without_it(folder, bpr, tmp_path):
    source = shutil.copytree(bpr, tmp_path / "source")
    out = tmp_path / "vecf"
    extra = ("--model", "vecf", "--init-from", str(source), "--set", "dim=8", "--set", "image_from_zero=true")
    assert run_train(train_args(folder, out, *extra)) is None
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["init_from"] == {
        "path": str(source),
        "model": "bpr",
        "fingerprint": tiny(folder).fingerprint,
        "parameters": SHARED,
    }
    shutil.rmtree(source)
    model, config = load_checkpoint(out, data=tiny(folder))
    assert config.hparams["image_from_zero"] is True and model.config.dim == 8


def bad_sources(folder: Path, bpr: Path, tmp_path: Path) -> dict[str, tuple[str, type, str]]:
    """{case: (the --init-from path, the error class, what its sentence says)}."""
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"\x00" * 16)
    other_data = tmp_path / "other-split"
    assert (
        run_train(train_args(folder, other_data, "--model", "bpr", "--set", "dim=8", "--valid-fraction", "0.2")) is None
    )
    wider = tmp_path / "wider"
    assert run_train(train_args(folder, wider, "--model", "bpr", "--set", "dim=16")) is None
    popular = tmp_path / "mostpop"
    assert run_train(train_args(folder, popular, "--model", "mostpop")) is None
    no_weights = shutil.copytree(bpr, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    return {
        "missing": (str(tmp_path / "nowhere"), CheckpointError, "is not a checkpoint folder"),
        "a file": (str(a_file), CheckpointError, "is not a checkpoint folder"),
        "no config": (str(empty), CheckpointError, "has no config.json"),
        "other data": (str(other_data), FingerprintMismatchError, "fingerprint"),
        "other shapes": (str(wider), CheckpointError, "user_embedding.weight of shape 13x16, but VECF needs 13x8"),
        "nothing shared": (str(popular), CheckpointError, "shares no parameter with VECF"),
        "no weights": (str(no_weights), CheckpointError, "has no model.safetensors"),
    }


def test_every_bad_source_is_one_typed_sentence_and_leaves_nothing(folder, bpr, tmp_path):
    for case, (source, error, says) in bad_sources(folder, bpr, tmp_path).items():
        out, logs = tmp_path / "out", tmp_path / "logs"
        extra = ("--model", "vecf", "--init-from", source, "--set", "dim=8", "--log-dir", str(logs))
        err = run_train(train_args(folder, out, *extra))
        assert isinstance(err, error), (case, err)
        assert says in str(err), (case, str(err))
        assert_one_sentence(one_line(err))
        assert_left_nothing(out, logs)


def test_every_model_at_once_cannot_start_from_one_checkpoint(folder, bpr, tmp_path):
    err = run_train(
        ["train", "--model", "all", "--dataset", "tiny", "--data-dir", str(folder), "--init-from", str(bpr)]
    )
    assert isinstance(err, InvalidArgumentError) and "name that model with --model" in str(err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="/.~\x00ab", max_size=30),
        st.sampled_from(["", ".", "..", "/", "/dev/null", "/proc/self", "checkpoints", "~", "a\x00b", "a" * 5000]),
    )
)
def test_any_text_as_the_source_is_a_typed_sentence_before_the_data_loads(folder, tmp_path, path, monkeypatch):
    from recmodels.data import RecData as loaded

    def no_loading(*args, **kwargs):
        raise AssertionError("the data loaded before the source was checked")

    monkeypatch.setattr(loaded, "load", no_loading)
    out = tmp_path / "out"
    err = run_train(train_args(folder, out, "--model", "vecf", "--init-from", path))
    assert isinstance(err, RecModelsError), err
    assert_one_sentence(one_line(err))
    assert not out.exists()


def test_the_shipped_vecf_records_its_bpr_source_and_its_image_pathway_settings():
    """The shipped vecf-fashion was warm-started from bpr-fashion on the same data; config.json says so."""
    from recmodels.checkpoint.io import read_config

    repo = Path(__file__).resolve().parents[1]
    config, source = (
        read_config(repo / "checkpoints" / "vecf-fashion"),
        read_config(repo / "checkpoints" / "bpr-fashion"),
    )
    init = config.training["init_from"]
    assert init == {
        "path": "checkpoints/bpr-fashion",
        "model": "bpr",
        "fingerprint": config.dataset.fingerprint,
        "parameters": SHARED,
    }
    assert source.dataset.fingerprint == init["fingerprint"] and source.hparams["dim"] == config.hparams["dim"]
    assert config.training["image_lr"] > config.training["lr"] and config.training["aux_loss"] == "image"
    assert config.hparams["image_from_zero"] is True
