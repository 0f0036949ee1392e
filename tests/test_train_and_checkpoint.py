"""Trainer, losses, checkpoints (round trip, fingerprint, corrupt files), the CLI and a 2-process DDP run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_dataset

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config, save_checkpoint
from recmodels.cli.parser import main as cli_main
from recmodels.cli.results import results_markdown
from recmodels.data import TEST, RecData
from recmodels.errors import CheckpointError, FingerprintMismatchError, InvalidArgumentError, UnknownModelError
from recmodels.eval import evaluate_topk
from recmodels.models import Batch, build_model, model_info, registered_models
from recmodels.models.baselines import BPRMF
from recmodels.models.losses import bpr, training_loss, warp
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig, seed_everything, train_model
from recmodels.train.batches import training_rows

REPO = Path(__file__).resolve().parents[1]


def write_atomic(data, folder: Path) -> Path:
    """Dump a dataset as RecBole atomic files, the format users bring."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = data.interactions
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [
        f"{data.user_ids[u]}\t{data.item_ids[i]}\t{r}\t{t}"
        for u, i, r, t in zip(frame["user"], frame["item"], frame["rating"], frame["timestamp"])
    ]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token"]
    users += [
        f"{data.user_ids[i]}\t" + "\t".join(row)
        for i, row in zip(data.user_features.index, data.user_features[["age", "gender", "occupation"]].to_numpy())
    ]
    (folder / "tiny.user").write_text("\n".join(users) + "\n")
    items = ["item_id:token\ttitle:token_seq\trelease_year:token\tclass:token_seq"]
    items += [
        f"{data.item_ids[i]}\t{row.title}\t{int(row.year)}\t{' '.join(row.genres)}"
        for i, row in zip(data.item_features.index, data.item_features.itertuples())
    ]
    (folder / "tiny.item").write_text("\n".join(items) + "\n")
    return folder


def _train_bpr(data, seed=0, epochs=3):
    seed_everything(seed)  # before construction: the initial weights come from the seeded generator too
    model = BPRMF.from_data(data, dim=8)
    config = TrainConfig.for_model(BPRMF, epochs=epochs, seed=seed, batch_size=64, patience=10)
    return train_model(model, data, config, device="cpu", progress=False)


@pytest.mark.slow
def test_training_reduces_the_loss_and_records_history(tiny_data):
    result = _train_bpr(tiny_data, epochs=4)
    losses = [entry["train_loss"] for entry in result.history[1:]]
    assert losses[-1] < losses[0]
    assert result.history[0]["epoch"] == 0 and "ndcg@10" in result.history[1]["valid"]
    assert 1 <= result.best_epoch <= 4


@pytest.mark.slow
def test_max_steps_cuts_each_epoch_and_the_history_records_throughput(tiny_data):
    seed_everything(0)
    model = BPRMF.from_data(tiny_data, dim=8)
    config = TrainConfig.for_model(BPRMF, epochs=2, batch_size=16, max_steps=3, patience=10)
    result = train_model(model, tiny_data, config, device="cpu", progress=False)
    for entry in result.history[1:]:
        assert entry["rows"] == 3 * 16 < len(tiny_data.interaction_rows(0))
        assert 0 < entry["train_seconds"] <= entry["seconds"]
    long = train_model(
        BPRMF.from_data(tiny_data, dim=8),
        tiny_data,
        TrainConfig.for_model(BPRMF, epochs=1, batch_size=16, max_steps=10_000),
        device="cpu",
        progress=False,
    )
    assert long.history[1]["rows"] == len(training_rows(tiny_data, config)), "a cap past the epoch's end: the epoch"
    with pytest.raises(
        InvalidArgumentError, match=r"max_steps of training must be a whole number from 1 to \d+ \(or null\), got 0"
    ):
        TrainConfig.for_model(BPRMF, max_steps=0)


def test_training_is_seeded_and_reproducible(tiny_data):
    a = _train_bpr(tiny_data, seed=3).model.state_dict()
    b = _train_bpr(tiny_data, seed=3).model.state_dict()
    c = _train_bpr(tiny_data, seed=4).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_round_trip_gives_identical_scores(tiny_data, tmp_path):
    model = _train_bpr(tiny_data).model
    save_checkpoint(tmp_path / "ck", model, tiny_data, metrics={"test": {"ndcg@10": 0.5}})
    loaded, config = load_checkpoint(tmp_path / "ck", data=tiny_data)
    rows = tiny_data.ctr_rows(TEST)
    batch = Batch.from_numpy(rows.users, rows.items, rows.history)
    assert torch.equal(model.eval()(batch).scores, loaded(batch).scores)
    assert config.model == "bpr" and config.dataset.fingerprint == tiny_data.fingerprint
    assert config.metrics["test"]["ndcg@10"] == 0.5
    assert torch.equal(loaded.item_genres, torch.as_tensor(tiny_data.tables.item_genres))


def test_fingerprint_mismatch_is_refused(tiny_data, tmp_path):
    model = _train_bpr(tiny_data, epochs=1).model
    save_checkpoint(tmp_path / "ck", model, tiny_data)
    other = RecData(make_tiny_dataset(seed=7), max_history=12)
    with pytest.raises(FingerprintMismatchError, match="fingerprint"):
        load_checkpoint(tmp_path / "ck", data=other)


def test_corrupt_and_missing_checkpoint_files_give_clear_errors(tiny_data, tmp_path):
    model = _train_bpr(tiny_data, epochs=1).model
    folder = save_checkpoint(tmp_path / "ck", model, tiny_data)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)
    weights.write_bytes(b"not a tensor file at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)
    (folder / "config.json").write_text('{"model": "bpr", "hparams": {')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(folder)
    (folder / "config.json").write_text('{"model": "bpr"}')
    with pytest.raises(CheckpointError, match="lacks"):
        read_config(folder)
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        read_config(tmp_path / "missing")


def test_the_fingerprint_covers_the_history_window():
    dataset = make_tiny_dataset()
    assert RecData(dataset, max_history=12).fingerprint != RecData(dataset, max_history=13).fingerprint
    assert RecData(dataset, max_history=12).fingerprint == RecData(dataset, max_history=12).fingerprint


def test_data_paths_are_stored_absolute_and_read_relative_to_the_checkpoint(tiny_data, tmp_path, monkeypatch):
    write_atomic(tiny_data.dataset, tmp_path / "work" / "data")
    monkeypatch.chdir(tmp_path / "work")
    data = RecData.load("tiny", "data", max_history=12)  # relative, as typed after --data-dir
    folder = save_checkpoint("ck", BPRMF.from_data(data, dim=4), data)
    config = read_config(folder)
    assert config.dataset.data_dir == str((tmp_path / "work" / "data").resolve())
    assert config.dataset.image_dir is None

    # moved by hand to another place, side by side, with the config pointing at its sibling
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "work" / "data", moved / "data")
    shutil.move(tmp_path / "work" / "ck", moved / "ck")
    config = config.replace(dataset=dataclasses.replace(config.dataset, data_dir="../data"))
    (moved / "ck" / "config.json").write_text(json.dumps(config.to_json()))
    monkeypatch.chdir(tmp_path)
    assert dataset_location(config, moved / "ck") == ((moved / "data").resolve(), None)
    service = RecService.from_checkpoint(moved / "ck", device="cpu")
    assert service.data.fingerprint == config.dataset.fingerprint
    assert service.data.dataset.extras["data_dir"] == str((moved / "data").resolve())


def test_an_explicit_image_folder_is_stored_absolute_and_a_default_one_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = make_tiny_dataset()
    dataset.image_dir = Path("posters")
    data = RecData(dataset, max_history=12)
    config = read_config(save_checkpoint(tmp_path / "ck", BPRMF.from_data(data, dim=4), data))
    assert config.dataset.image_dir == str(tmp_path.resolve() / "posters")
    write_atomic(dataset, tmp_path / "data")
    (tmp_path / "data" / "images").mkdir()
    data = RecData.load("tiny", tmp_path / "data", max_history=12)  # the loader finds data/images by itself
    assert data.dataset.image_dir is not None
    config = read_config(save_checkpoint(tmp_path / "ck2", BPRMF.from_data(data, dim=4), data))
    assert config.dataset.image_dir is None


def test_weights_of_another_model_are_refused(tiny_data, tmp_path):
    model = _train_bpr(tiny_data, epochs=1).model
    folder = save_checkpoint(tmp_path / "ck", model, tiny_data)
    config = json.loads((folder / "config.json").read_text())
    config["hparams"]["dim"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match model 'bpr'"):
        load_checkpoint(folder)
    with pytest.raises(UnknownModelError, match="Unknown model"):
        build_model("gpt", tiny_data.tables.spec())


def test_full_ranking_never_ranks_seen_items(tiny_data):
    class SeenFirst(BPRMF):
        """Scores the user's train items highest: if they were not excluded, every metric would drop."""

        def score_items(self, users, history, items, chunk_rows=0):
            seen_indptr, seen_items = tiny_data.seen_matrix_rows((0, 1))
            scores = torch.zeros(len(users), len(items))
            for row, user in enumerate(users.tolist()):
                scores[row, torch.as_tensor(seen_items[seen_indptr[user] : seen_indptr[user + 1]]) - 1] = 10.0
            cases = tiny_data.topk_cases(TEST)
            lookup = {u: k for k, u in enumerate(cases.users)}
            for row, user in enumerate(users.tolist()):
                k = lookup[user]
                pos = cases.positive_items[cases.positive_indptr[k] : cases.positive_indptr[k + 1]]
                scores[row, torch.as_tensor(pos) - 1] = 5.0
            return scores

    model = SeenFirst.from_data(tiny_data, dim=4)
    metrics = evaluate_topk(model, tiny_data, TEST)
    assert metrics["hr@10"] == 1.0 and metrics["mrr@10"] == 1.0 and metrics["ndcg@10"] == pytest.approx(1.0)


def test_pairwise_losses():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    expected = -torch.nn.functional.logsigmoid(pos[:, None] - neg).mean()
    assert torch.allclose(bpr(pos, neg), expected)
    # row 1: no violation of margin 1 for neg 0.0 (2 - 0 = 2 >= 1) but neg 1.0 is at margin -> hinge 0
    # row 2: the first negative violates (hinge 1), found at trial 1 -> rank (10 - 1) / 1 = 9 -> L = H_9
    harmonic_9 = sum(1 / j for j in range(1, 10))
    assert warp(pos, neg, n_items=10).item() == pytest.approx(harmonic_9 * 1.0 / 2)


@pytest.mark.slow
def test_cli_train_and_evaluate(tiny_data, tmp_path):
    folder = write_atomic(tiny_data.dataset, tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "ck"
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "recmodels",
            "train",
            "--model",
            "bpr",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--quiet",
            "--max-history",
            "12",
            "--set",
            "dim=8",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert train.returncode == 0, train.stderr
    assert "NDCG@10" in train.stdout and (out / "model.safetensors").is_file()
    evaluate = subprocess.run(
        [sys.executable, "-m", "recmodels", "evaluate", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    measured = next(line for line in evaluate.stdout.splitlines() if line.startswith("measured"))
    recorded = next(line for line in evaluate.stdout.splitlines() if line.startswith("recorded"))
    assert measured.split()[1:] == recorded.split()[1:]  # the checkpoint reproduces its own metrics
    bad = subprocess.run(
        [sys.executable, "-m", "recmodels", "evaluate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert bad.returncode == 2 and "not a checkpoint folder" in bad.stderr and "Traceback" not in bad.stderr


def test_training_losses_read_the_trainers_layout():
    scores = torch.tensor([2.0, -1.0, 0.5, 1.5, -0.5, 0.0])  # two observed rows, then two negatives for each
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    negative = torch.tensor([[0.5, 1.5], [-0.5, 0.0]])
    assert torch.equal(training_loss("bpr", scores, labels, 2, 10), bpr(scores[:2], negative))
    assert torch.equal(training_loss("warp", scores, labels, 2, 10), warp(scores[:2], negative, n_items=10))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels)
    assert torch.equal(training_loss("bce", scores, labels, 2, 10), expected)


def test_the_registry_keeps_the_training_order_and_titles():
    assert registered_models()[:7] == ["mostpop", "bpr", "din", "nrms", "two_tower", "inttower", "acf"]
    assert [model_info(name).title for name in ("mostpop", "bpr", "two_tower")] == [
        "MostPopular",
        "BPR-MF",
        "Two-tower (MHA)",
    ]
    assert (model_info("din").task, model_info("din").loss, model_info("acf").loss) == ("ctr", "bce", "warp")
    assert model_info("acf").uses_images and not model_info("bpr").needs_item_features
    table = results_markdown(REPO / "checkpoints")  # titles and order come from the registry
    rows = [line.split("|")[1].strip() for line in table.splitlines() if "`" in line]
    assert rows[:3] == ["MostPopular", "BPR-MF", "DIN"] and "Two-tower (MHA)" in rows


@pytest.mark.parametrize(
    "setting,message",
    [
        ("depth=3", "--set 'depth' is neither a training setting .* nor a hyperparameter of bpr; bpr takes dim"),
        ("dim=abc", "dim of model 'bpr' must be a whole number, got str 'abc' \\(it takes dim\\)"),
        ("lr=fast", "lr of training must be a number, got str 'fast' \\(it takes epochs, batch_size, lr"),
    ],
)
def test_cli_set_refuses_unknown_keys_and_wrong_types_before_reading_data(tmp_path, capsys, setting, message):
    assert cli_main(["train", "--model", "bpr", "--data-dir", str(tmp_path / "nowhere"), "--set", setting]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""  # no data was read
    assert re.search(message, err), err


@pytest.mark.slow
def test_two_process_ddp_training_writes_one_loadable_checkpoint(tiny_data, tmp_path):
    folder = write_atomic(tiny_data.dataset, tmp_path / "data")
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(29500 + os.getpid() % 1000),
            "-m",
            "recmodels",
            "train",
            "--model",
            "bpr",
            "--dataset",
            "tiny",
            "--data-dir",
            str(folder),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
            "--max-history",
            "12",
            "--set",
            "dim=8",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("saved ") == 1  # only rank 0 writes
    config = read_config(out)
    assert config.training["world_size"] == 2
    data = RecData.load("tiny", folder, max_history=12)
    model, _ = load_checkpoint(out, data=data)
    assert np.isfinite(evaluate_topk(model, data, TEST)["ndcg@10"])
    assert len(config.history) == 3  # the epoch-0 record and two trained epochs


def test_torchrun_processes_take_one_gpu_each_or_the_cpu(monkeypatch):
    from recmodels.train.trainer import distributed_device

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed_device("auto") == torch.device("cpu")  # fewer GPUs than processes: gloo on the CPU
    assert distributed_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidArgumentError, match="2 processes but this machine has 1 CUDA device"):
        distributed_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed_device("auto") == torch.device("cuda", 1)  # each process its own GPU


def test_closed_forms_take_no_epochs_and_a_model_without_parameters_says_so(tiny_data, tmp_path, capsys):
    folder = write_atomic(tiny_data.dataset, tmp_path / "atomic")
    out = tmp_path / "ease"
    assert (
        cli_main(
            [
                "train",
                "--model",
                "ease",
                "--dataset",
                "tiny",
                "--data-dir",
                str(folder),
                "--epochs",
                "2",
                "--max-steps",
                "5",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )  # the closed form, as with no --epochs
    assert read_config(out).training["epochs"] == 0
    ease = model_info("ease").cls.from_data(tiny_data)
    with pytest.raises(InvalidArgumentError, match="EASE has no parameters to learn by gradient.*--epochs 0"):
        train_model(ease, tiny_data, TrainConfig.for_model(type(ease), epochs=1), device="cpu", progress=False)
