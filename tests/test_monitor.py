"""AttentionMonitor: the collapse statistics of any training loop, in memory, in a run folder and in TensorBoard, with
one warning per collapsed unit; the trainer records through it."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recmodels.errors import InvalidArgumentError
from recmodels.models.sasrec import SASRec
from recmodels.train import TrainConfig, seed_everything, train_model
from recmodels.train.monitor import HISTORY_FILE, RUN_FILE, AttentionMonitor, CollapseWarning, probe_batch


def _plugin_model():
    """The plugin example (a model outside the package), loaded from its file without registering it."""
    spec = importlib.util.spec_from_file_location("monitor_tiny_attention", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module.TinyAttention


REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugin_models" / "tiny_attention.py"
TinyAttention = _plugin_model()


def _sasrec(data):
    seed_everything(0)
    return SASRec.from_data(data, dim=8, heads=2, layers=2, inner=16, max_length=12)


def test_every_statistic_goes_to_the_history_the_run_folder_and_tensorboard(tiny_data, tmp_path):
    model = _sasrec(tiny_data)
    with AttentionMonitor(model, tiny_data, log_dir=tmp_path / "run", warn=False) as monitor:
        monitor.record(step=10, train_loss=1.5)
        entry = monitor.record(step=20, train_loss=1.25, valid={"ndcg@10": 0.2})
    stats = entry["attention"]["self_attention"]
    for key in (
        "normalised_entropy",
        "max_weight",
        "share_near_uniform",
        "share_near_one_hot",
        "head_similarity",
        "normalised_entropy/layer 2/head 2",
        "share_near_one_hot/layer 1/head 1",
        "head_similarity/layer 2",
    ):
        assert stats[key] is not None and 0 <= stats[key] <= 1, key
    assert set(entry["effective_rank"]) == {"embeddings", "layer 1", "layer 2"}
    assert (entry["epoch"], entry["step"], entry["train_loss"], entry["valid"]) == (1, 20, 1.25, {"ndcg@10": 0.2})

    folder = tmp_path / "run"
    lines = (folder / HISTORY_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == json.loads(json.dumps(monitor.history))
    run = json.loads((folder / RUN_FILE).read_text())
    assert run["model"] == "sasrec" and run["probe_rows"] == len(probe_batch(tiny_data))
    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {
        "loss/train",
        "valid/ndcg@10",
        "attention/self_attention/max_weight/layer 1/head 2",
        "effective_rank/layer 2/median",
    } <= set(scalars)
    entropy = events.Scalars("attention/self_attention/normalised_entropy")
    assert [(e.step, round(e.value, 5)) for e in entropy] == [
        (record["step"], round(record["attention"]["self_attention"]["normalised_entropy"], 5))
        for record in monitor.history
    ]


def test_a_collapse_warns_once_naming_the_map_and_the_step(tiny_data):
    model = TinyAttention(tiny_data.tables.spec(), dim=8)
    monitor = AttentionMonitor(model, tiny_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)  # healthy at initialisation: nothing to say
        monitor.record(step=0)
    with torch.no_grad():  # blow the logits up: every row's softmax puts all its weight on one item
        model.user_embedding.weight.mul_(300)
        model.item_embedding.weight.mul_(300)
    with pytest.warns(
        CollapseWarning, match=r"^AttentionMonitor: history collapsed to one-hot at step 100: the median"
    ):
        monitor.record(step=100)
    assert monitor.history[-1]["attention"]["history"]["share_near_one_hot"] > 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        monitor.record(step=200)  # the same unit and kind: said once


def test_uniform_attention_at_initialisation_is_no_collapse_but_becoming_uniform_is(tiny_data):
    model = TinyAttention(tiny_data.tables.spec(), dim=8)
    with torch.no_grad():
        model.item_embedding.weight.mul_(20)  # a peaked start
    monitor = AttentionMonitor(model, tiny_data)
    monitor.record(step=0)
    with torch.no_grad():
        model.user_embedding.weight.zero_()  # every score 0: the softmax is uniform
    with pytest.warns(CollapseWarning, match="history collapsed to near uniform at step 5"):
        monitor.record(step=5)


def test_bad_probes_and_run_folders_are_one_sentence(tiny_data, tmp_path):
    model = TinyAttention(tiny_data.tables.spec(), dim=8)
    with pytest.raises(InvalidArgumentError, match="probe must be a non-empty Batch or a RecData, got str"):
        AttentionMonitor(model, "users")
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgumentError, match="cannot be written"):
        AttentionMonitor(model, tiny_data, log_dir=tmp_path / "file" / "run")


def test_the_trainer_records_through_the_monitor_into_its_run_folder(tiny_data, tmp_path):
    model = _sasrec(tiny_data)
    config = TrainConfig.for_model(SASRec, epochs=2, max_steps=2, batch_size=64, valid_users=10, attention_sample=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        result = train_model(model, tiny_data, config, device="cpu", progress=False, log_dir=tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / HISTORY_FILE).read_text().splitlines()]
    assert [entry["epoch"] for entry in lines] == [entry["epoch"] for entry in result.history] == [0, 1, 2]
    assert lines == json.loads(json.dumps(result.history))
    assert {"rows", "train_seconds", "valid", "train_loss"} <= set(result.history[1])
    assert "share_near_one_hot/layer 2/head 1" in result.history[2]["attention"]["self_attention"]


@pytest.mark.slow
def test_the_collapse_page_follows_a_run_as_its_records_arrive(tiny_data, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "root"
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(root))
    monitor = AttentionMonitor(_sasrec(tiny_data), tiny_data, log_dir=root / "live", tensorboard=False, warn=False)
    monitor.record(step=0)
    at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=180).run()
    at.switch_page("pages/collapse.py").run()
    folder = str((root / "live").resolve())
    assert len(at.selectbox(key="run_choice").options) == 1  # the one run folder in the roots
    at.selectbox(key="run_choice").set_value(folder).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Training run: SASRec" in [h.value for h in at.subheader]
    assert any("1 record; the last at step 0 · refreshing while it trains" in c.value for c in at.caption)
    charts = len(at.get("plotly_chart"))
    for step in (50, 100):  # the run writes on while the page is open
        monitor.record(step=step, train_loss=1.0)
    at.run()
    assert any("3 records; the last at step 100" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == charts  # the same curves, with the new points
    (root / "live" / "history.jsonl").open("a").write('{"epoch": "NaN"}\n{"epoch": 3, "train_loss": "x"}\n{"epo')
    at.run()
    assert any(
        "3 records; the last at step 100" in c.value and "2 malformed lines left out" in c.value for c in at.caption
    )
    at.text_input(key="run_path").set_value("/etc").run()
    assert "That is not a training run inside the checkpoint roots" in at.error[0].value
