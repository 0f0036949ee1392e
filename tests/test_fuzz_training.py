"""Fuzzing training: ``train --set`` values of every type, drawn across each setting's bounds and beyond, on tiny
data. A run either trains to finite metrics and a checkpoint that loads, or ends in one typed sentence and leaves
nothing behind (no checkpoint, no run records). Beside the fuzzer, one test per hardening case of issue 26: a
diverged run, a split with an empty part, settings out of range, and output folders that cannot be written.

Each case is drawn from a seeded ``random.Random``, so the budget is fixed and every failure replays by its seed.
"""

from __future__ import annotations

import json
import math
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_dataset
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import load_checkpoint
from recmodels.cli.parser import build_parser, one_line
from recmodels.cli.parser import main as cli_main
from recmodels.data import TEST, VALID, RecData, SplitConfig
from recmodels.errors import (
    DataFormatError,
    InvalidArgumentError,
    NotFiniteError,
    RecModelsError,
    TrainingDivergedError,
)
from recmodels.eval.evaluate import evaluate_ctr, evaluate_topk
from recmodels.eval.metrics import auc, logloss, top_k
from recmodels.models import RecModel, bounded, field_bounds, model_info
from recmodels.models.baselines import BPRMF
from recmodels.models.config import check_values, field_kinds
from recmodels.models.din import DINConfig
from recmodels.train import TrainConfig, train_model

MODELS = ["bpr", "din", "two_tower", "nrms", "inttower", "acf", "vecf", "sasrec", "bert4rec", "ease", "mostpop"]
# in-bounds draws of sizes stay small, so that a case trains in a fraction of a second; the range above them is
# what the bounds tests below cover, and out-of-bounds draws use the real bounds
CHEAP = {
    "epochs": 2,
    "patience": 2,
    "batch_size": 256,
    "negatives": 4,
    "attention_sample": 64,
    "valid_users": 50,
    "max_steps": 3,
    "dim": 16,
    "hidden": 16,
    "attention_hidden": 16,
    "attention_dim": 16,
    "pool_dim": 16,
    "head_dim": 8,
    "heads": 4,
    "user_heads": 4,
    "item_heads": 4,
    "inner": 32,
    "layers": 2,
    "max_length": 20,
    "window_stride": 20,
    "profile_size": 20,
    "profile_dim": 8,
    "max_components": 8,
}
IMAGE_PATHWAY = {"image_lr", "image_weight_decay"}  # settings of a model's image pathway (VECF's)
REGION_ONLY = {"component_dim", "grid"}  # read only with image regions, which tiny data has not
CROSS = {"dim", "heads", "negatives"}  # in range alone, refused together (heads must divide dim; bpr needs a negative)
PLUGINS = '''
from dataclasses import dataclass

import torch
from torch import nn

from recmodels import RecModel, RecOutput


@dataclass
class PluginConfig:
    dim: int = 8


class NanScores(RecModel):
    """Every score is NaN (a plugin with a bug)."""

    name = "nan_scores"
    config_class = PluginConfig

    def __init__(self, spec, config=None, **hparams):
        super().__init__(spec, config, **hparams)
        self.item_embedding = nn.Embedding(self.n_items + 1, self.config.dim)

    def forward(self, batch, output_attentions=False, attention_override=None):
        scores = self.item_embedding(batch.items).sum(-1) * float("nan")
        return RecOutput(scores, {} if output_attentions else None)


class Explosive(RecModel):
    """exp of a scaled dot product: finite at first, past float32 once a large learning rate moves the weights."""

    name = "explosive"
    config_class = PluginConfig

    def __init__(self, spec, config=None, **hparams):
        super().__init__(spec, config, **hparams)
        self.user_embedding = nn.Embedding(self.n_users + 1, self.config.dim)
        self.item_embedding = nn.Embedding(self.n_items + 1, self.config.dim)
        self.init_embeddings(self.user_embedding, self.item_embedding, std=0.1)

    def forward(self, batch, output_attentions=False, attention_override=None):
        dot = (self.user_embedding(batch.users) * self.item_embedding(batch.items)).sum(-1)
        return RecOutput(torch.exp(10 * dot), {} if output_attentions else None)
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_atomic(make_tiny_dataset(n_users=12, n_items=20, per_user=16), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugins") / "broken_models.py"
    path.write_text(PLUGINS)
    return path


def train_args(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "tiny", "--data-dir", str(folder), "--out", str(out), "--quiet",
            "--max-history", "8", "--epochs", "1", "--max-steps", "2", *extra]  # fmt: skip


def run_train(argv: list[str]) -> RecModelsError | None:
    """The command as ``main`` runs it, but only the library's typed errors are caught: anything else fails."""
    args = build_parser().parse_args(argv)
    try:
        assert args.func(args) == 0
    except RecModelsError as err:
        return err
    return None


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and "Traceback" not in message, message
    assert message.endswith(".") and len(message) < 700, message


def assert_left_nothing(out: Path, logs: Path | None = None, kept: tuple[Path, ...] = ()) -> None:
    assert not out.exists(), f"a failed run left {files_under(out)}"
    if logs is not None:
        assert files_under(logs) == sorted(kept), "a failed run left its records"


def assert_trained(out: Path, folder: Path) -> None:
    config = json.loads((out / "config.json").read_text())
    for part in ("valid", "test"):
        for name, value in config["metrics"][part].items():
            assert value is not None and math.isfinite(value), (part, name, value)
    data = RecData.load("tiny", folder, max_history=8)
    model, _ = load_checkpoint(out, data=data)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- the fuzzer
def numeric_fields(model: str) -> dict[str, tuple]:
    """{name: (bound, kinds, owner class)} of every bounded setting a model's training run reads (image_lr and
    image_weight_decay only for a model with an image pathway: the others refuse them whatever their value)."""
    fields = {}
    for cls in (TrainConfig, model_info(model).config_class):
        kinds = field_kinds(cls)
        fields.update({name: (bound, kinds[name], cls) for name, bound in field_bounds(cls).items()})
    if not model_info(model).cls.image_pathway:
        fields = {name: field for name, field in fields.items() if name not in IMAGE_PATHWAY}
    return fields


def inside(rng: random.Random, name: str, bound, kinds: set[str]):
    """A value the bound accepts, cheap to train with."""
    if "null" in kinds and rng.random() < 0.2:
        return None
    whole = not kinds & {"float", "list:float"}
    if whole:
        high = min(bound.high, CHEAP.get(name, bound.high))
        value = rng.choice([bound.low, high, rng.randint(bound.low, high)])
        return [rng.randint(bound.low, high) for _ in range(rng.randint(1, 3))] if "list:int" in kinds else value
    low = math.nextafter(bound.low, math.inf) if bound.low_open else bound.low
    high = math.nextafter(bound.high, -math.inf) if bound.high_open else bound.high
    if low > 0 and high / low > 100 and rng.random() < 0.7:  # lr, l2, eps: across the orders of magnitude
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.choice([low, high, rng.uniform(low, high)])


def outside(rng: random.Random, bound, kinds: set[str]):
    """A value the setting refuses: past either end (or at an open one), not finite, or of another type."""
    whole = not kinds & {"float", "list:float"}
    step = 1 if whole else max(abs(bound.high), 1e-3)
    choices = [
        bound.low if bound.low_open else bound.low - step,
        bound.high if bound.high_open else bound.high + step,
        -(10**30),
        10**30 if whole else 1e300,
        float("nan"),
        float("inf"),
        float("-inf"),
        "abc",
        True,
        {"a": 1},
    ]
    if whole:
        choices.append(1.5)
    value = rng.choice(choices)
    return [bound.low, value] if "list:int" in kinds and rng.random() < 0.5 else value


def as_text(value) -> str:
    """How a user types the value after KEY= (JSON, with NaN and Infinity as Python's json reads them)."""
    return value if isinstance(value, str) else json.dumps(value)


def draw_case(seed: int) -> tuple[str, dict, str | None]:
    """(model, {setting: value}, the one setting drawn out of range or None): odd seeds draw one bad value."""
    rng = random.Random(seed)
    model = rng.choice(MODELS)
    # beside a bad value, only settings that cannot be refused for another reason, so the refusal names it
    fields = {k: v for k, v in numeric_fields(model).items() if k not in REGION_ONLY | (CROSS if seed % 2 else set())}
    chosen = rng.sample(sorted(fields), k=min(len(fields), rng.randint(1, 3)))
    values = {name: inside(rng, name, fields[name][0], fields[name][1]) for name in chosen}
    bad = None
    if seed % 2:
        bad = rng.choice(sorted(numeric_fields(model)))
        bound, kinds, _ = numeric_fields(model)[bad]
        values[bad] = outside(rng, bound, kinds)
    return model, values, bad


def check_case(seed: int, folder: Path, tmp_path: Path) -> str:
    model, values, bad = draw_case(seed)
    out, logs = tmp_path / "out", tmp_path / "logs"
    extra = [f"--set={name}={as_text(value)}" for name, value in values.items()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        err = run_train(train_args(folder, out, "--model", model, "--log-dir", str(logs), *extra))
    numeric = [w for w in caught if issubclass(w.category, RuntimeWarning) and "slice" in str(w.message)]
    assert not numeric, f"seed {seed}: {numeric[0].message}"  # "mean of empty slice": a NaN metric on its way
    if err is None:
        assert bad is None, f"seed {seed}: {model} trained with {bad}={values[bad]!r}"
        assert_trained(out, folder)
        return "trained"
    assert_one_sentence(one_line(err))
    if bad is not None:
        assert bad in str(err), f"seed {seed}: {err}"
    assert_left_nothing(out, logs)
    return "refused"


@pytest.mark.parametrize("seed", range(24))
def test_any_setting_trains_to_finite_metrics_or_is_one_sentence(seed, folder, tmp_path, capsys):
    check_case(seed, folder, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24, 120))
def test_any_setting_trains_to_finite_metrics_or_is_one_sentence_more(seed, folder, tmp_path, capsys):
    check_case(seed, folder, tmp_path)


def test_the_fuzz_budget_reaches_every_model_and_both_outcomes():
    """A budget that only ever refuses (or never reaches a model) would test little."""
    cases = [draw_case(seed) for seed in range(24)]
    assert {model for model, _, _ in cases} >= {"bpr", "din", "sasrec", "ease"}
    assert sum(bad is None for _, _, bad in cases) == 12
    drawn = {name for _, values, _ in cases for name in values}
    assert {"lr", "dim", "batch_size", "patience"} <= drawn


# ---------------------------------------------------------------------------------------------- 3: the bounds
def test_every_numeric_setting_has_bounds_and_the_shipped_checkpoints_keep_them():
    for cls in [TrainConfig, *{model_info(name).config_class for name in MODELS}]:
        kinds, bounds = field_kinds(cls), field_bounds(cls)
        numeric = {n for n, k in kinds.items() if k & {"int", "float", "list:int", "list:float"}}
        assert numeric == set(bounds), (cls.__name__, numeric ^ set(bounds))
        for name, bound in bounds.items():
            assert bound.low <= bound.high and math.isfinite(bound.low) and math.isfinite(bound.high)
            default = getattr(cls(), name)  # the defaults keep their own bounds
            assert check_values(cls, {name: default}, "x")
    folders = model_checkpoint_folders(Path(__file__).resolve().parents[1] / "checkpoints")  # pipelines: no settings
    checkpoints = [folder / "config.json" for folder in folders]
    assert len(checkpoints) >= 20
    for path in checkpoints:
        config = json.loads(path.read_text())
        check_values(model_info(config["model"]).config_class, config["hparams"], str(path))
        recorded = {k: v for k, v in config["training"].items() if k in field_kinds(TrainConfig)}
        check_values(TrainConfig, recorded, str(path))
        for point in config.get("selection", {}).get("grid", []):
            settings = point["settings"]
            check_values(TrainConfig, {k: v for k, v in settings.items() if k in field_kinds(TrainConfig)}, "grid")


@pytest.mark.parametrize(
    "setting, message",
    [
        ("dim=-4", "dim of model 'bpr' must be a whole number from 1 to 4096, got -4."),
        ("dim=1000000000", "dim of model 'bpr' must be a whole number from 1 to 4096, got 1000000000."),
        ("dim=0", "dim of model 'bpr' must be a whole number from 1 to 4096, got 0."),
        ("batch_size=0", "batch_size of training must be a whole number from 1 to 1048576, got 0."),
        ("patience=-1", "patience of training must be a whole number from 0 to 10000, got -1."),
        ("lr=Infinity", "lr of training must be a finite number above 0 and at most 10, got inf."),
        ("lr=1e30", "lr of training must be a finite number above 0 and at most 10, got 1e+30."),
        ("lr=NaN", "lr of training must be a finite number above 0 and at most 10, got nan."),
        (
            "monitor=evil",
            "training: monitor must be a metric the evaluator produces (recall@10, recall@20, ndcg@10, "
            "ndcg@20, hr@10, mrr@10, auc, gauc, logloss), got 'evil'.",
        ),
    ],
)
def test_settings_out_of_range_stop_before_the_data_loads(setting, message, folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(RecData, "load", lambda *a, **k: pytest.fail("the data was read"))
    assert cli_main(train_args(folder, tmp_path / "out", "--model", "bpr", "--set", setting)) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert cli_main(train_args(folder, tmp_path / "out", "--model", "bpr", "--grid", f"{setting},{setting}")) == 2
    assert_left_nothing(tmp_path / "out")


def test_the_constructor_build_config_and_the_cli_check_the_same_ranges():
    with pytest.raises(
        InvalidArgumentError, match=r"^dim of DINConfig must be a whole number from 1 to 4096, got -4\.$"
    ):
        DINConfig(dim=-4)
    with pytest.raises(InvalidArgumentError, match=r"hidden of DINConfig must be a list of whole numbers from 1 to"):
        DINConfig(hidden=(64, 0))
    with pytest.raises(InvalidArgumentError, match="dim of model 'bpr' must be"):
        BPRMF.from_data(RecData(make_tiny_dataset(n_users=5, n_items=8, per_user=6)), dim=5000)
    with pytest.raises(InvalidArgumentError, match="grad_clip of TrainConfig must be a finite number from 0 to"):
        TrainConfig(grad_clip=float("nan"))

    @dataclass
    class PluginConfig:  # a plugin's config that declares a range but checks nothing itself
        dim: int = bounded(4, 1, 7)

    class Plugin(RecModel):
        name = "capped"
        config_class = PluginConfig

    spec = RecData(make_tiny_dataset(n_users=5, n_items=8, per_user=6)).tables.spec()
    with pytest.raises(
        InvalidArgumentError, match=r"^dim of model 'capped' must be a whole number from 1 to 7, got 9\.$"
    ):
        Plugin(spec, PluginConfig(dim=9))
    config = TrainConfig(lr=1e-3)
    config.lr = 1e30  # set after it was built: training checks again
    data = RecData(make_tiny_dataset(n_users=5, n_items=8, per_user=6))
    with pytest.raises(InvalidArgumentError, match="lr of training must be a finite number above 0"):
        train_model(BPRMF.from_data(data, dim=4), data, config, device="cpu", progress=False)


# ---------------------------------------------------------------------------------------------- 1: divergence
def test_a_model_that_scores_nan_stops_at_its_first_step_and_leaves_nothing(folder, plugins, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.txt").write_text("mine")  # someone's file in the run folder stays
    argv = train_args(folder, tmp_path / "out", "--model", "nan_scores", "--model-module", str(plugins))
    assert cli_main([*argv, "--log-dir", str(logs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nan_scores diverged at epoch 1, step 1: the loss is nan before any update, so its ")
    assert "the learning rate is not the cause; no checkpoint was written, and the 3 record file(s) it wrote" in err
    assert_left_nothing(tmp_path / "out", logs, kept=(logs / "notes.txt",))
    # with nothing to learn by gradient, the evaluation refuses the scores instead of ranking NaN first
    assert cli_main([*argv, "--set", "epochs=0"]) == 2
    assert re.search(
        r"Model 'nan_scores' \(from broken_models\) returned (\d+) NaN scores of \1 for a batch",
        capsys.readouterr().err,
    )
    assert_left_nothing(tmp_path / "out")


def test_divergence_from_a_finite_learning_rate_names_the_step_and_lr(folder, plugins, tmp_path, capsys):
    argv = train_args(folder, tmp_path / "out", "--model", "explosive", "--model-module", str(plugins), "--set", "lr=1")
    argv += ["--epochs", "3"]  # one step an epoch on this data: the second update overflows
    assert cli_main([*argv, "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: explosive diverged at epoch ") and ": the gradients' norm is inf; lr 1 is" in err
    assert "the likely cause, so try a smaller one such as the model's default 0.001; no checkpoint was written" in err
    assert_left_nothing(tmp_path / "out", tmp_path / "logs")
    # a grid stops at its diverging point, and the points before it leave no records either
    grid = [
        *train_args(folder, tmp_path / "out", "--model", "explosive", "--model-module", str(plugins)),
        "--epochs",
        "3",
    ]
    assert cli_main([*grid, "--grid", "lr=0.001,1", "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: grid point 2/2 {"lr": 1}: explosive diverged at epoch ')
    assert_left_nothing(tmp_path / "out", tmp_path / "logs")


@pytest.mark.slow
def test_with_every_model_the_message_says_which_checkpoints_were_kept(folder, plugins, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --model all writes to checkpoints/<model>-<dataset> here
    argv = ["train", "--model", "all", "--model-module", str(plugins), "--dataset", "tiny", "--data-dir", str(folder)]
    assert cli_main([*argv, "--quiet", "--max-history", "8", "--epochs", "1", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert {"bpr-tiny", "sasrec-tiny", "mostpop-tiny"} <= set(kept) and "nan_scores-tiny" not in kept
    assert (
        "nan_scores diverged at epoch 1, step 1: " in err
        and "; the checkpoints saved before it are kept (checkpoints/" in err
    )
    assert all(f"checkpoints/{name}" in err for name in kept)


def test_weights_that_stop_being_finite_at_the_last_step_stop_the_run():
    class Poisoned(BPRMF):
        name = "poisoned"  # not registered: train_model takes any RecModel
        calls = 0

        def forward(self, batch, output_attentions=False, attention_override=None):
            out = super().forward(batch, output_attentions, attention_override)
            if self.training:
                Poisoned.calls += 1
                if Poisoned.calls == 2:  # after the loss is computed: only the weights carry it
                    with torch.no_grad():
                        self.item_bias.weight[1] = float("inf")
            return out

    data = RecData(make_tiny_dataset(n_users=8, n_items=10, per_user=10), max_history=8)
    config = TrainConfig.for_model(BPRMF, epochs=2, batch_size=16, max_steps=2)
    with pytest.raises(TrainingDivergedError) as stopped:
        train_model(Poisoned.from_data(data, dim=4), data, config, device="cpu", progress=False)
    assert (stopped.value.epoch, stopped.value.step, stopped.value.setting) == (1, 2, "lr")
    assert "diverged at epoch 1, step 2: the weights item_bias.weight are not finite after the last step" in str(
        stopped.value
    )


def test_evaluation_refuses_scores_that_are_not_numbers(tiny_data):
    model = BPRMF.from_data(tiny_data, dim=4)
    with torch.no_grad():
        model.item_embedding.weight[3] = float("nan")
    with pytest.raises(
        NotFiniteError,
        match=r"Model 'bpr' \(from recmodels.models.baselines\) gave [\d,]+ of [\d,]+ scores of the test part's "
        "candidate items",
    ):
        evaluate_topk(model, tiny_data, TEST)
    with pytest.raises(NotFiniteError, match="of the valid part's rated rows as nan"):
        evaluate_ctr(model, tiny_data, VALID)
    # the metrics themselves (which RecService.recommend ranks with too) refuse NaN; an excluded item's -inf ranks last
    scores = torch.tensor([[0.5, float("-inf"), 0.2]])
    assert top_k(scores, 2)[1].tolist() == [[0, 2]]
    with pytest.raises(NotFiniteError, match="1 of 3 scores are NaN, which cannot be ranked"):
        top_k(torch.tensor([[0.5, float("nan"), 0.2]]), 2)
    with pytest.raises(NotFiniteError, match="1 of 2 scores are NaN, so AUC cannot rank them"):
        auc(np.array([1, 0]), np.array([float("nan"), 0.1]))
    with pytest.raises(NotFiniteError, match="LogLoss is undefined"):
        logloss(np.array([1, 0]), np.array([float("nan"), 0.1]))


# ---------------------------------------------------------------------------------------------- 2: empty parts
def _atomic(folder: Path, rows: list[tuple]) -> Path:
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + ["\t".join(map(str, r)) for r in rows]
    (folder / "d.inter").write_text("\n".join(lines) + "\n")
    return folder


def test_a_split_with_an_empty_part_is_refused_before_training(tmp_path, capsys):
    same_second = _atomic(tmp_path / "same", [(f"u{u}", f"i{(u + i) % 9}", 1 + (u + i) % 5, 1000) for u in range(8)
                                              for i in range(6)])  # fmt: skip
    argv = ["train", "--dataset", "d", "--model", "bpr", "--quiet", "--epochs", "1", "--out", str(tmp_path / "out")]
    assert cli_main([*argv, "--data-dir", str(same_second), "--split", "global", "--log-dir", str(tmp_path / "l")]) == 2
    assert capsys.readouterr().err == (
        f"error: {same_second}: the global split (valid_fraction 0.1, test_fraction 0.2) gives 0 train, 0 valid and 48 "
        "test interactions: train is empty and valid is empty, but a model needs all three parts to train, stop early "
        "and be measured; interactions in the same second stay on one side of each time cut, so use data spread over "
        "more seconds, other fractions, or --split per_user; no checkpoint was written.\n"
    )
    assert_left_nothing(tmp_path / "out", tmp_path / "l")
    single = _atomic(tmp_path / "single", [("a", "x", 5, 1)])
    assert cli_main([*argv, "--data-dir", str(single)]) == 2
    err = capsys.readouterr().err
    assert "the per-user split (valid_fraction 0.1, test_fraction 0.2) gives 1 train, 0 valid and 0 test" in err
    assert "valid is empty and test is empty" in err and "raise --valid-fraction and --test-fraction" in err
    assert_left_nothing(tmp_path / "out")
    # a part with interactions but no positive to rank is as empty for the metrics
    low = _atomic(tmp_path / "low", [("a", f"i{i}", 5 if i < 8 else 1, i) for i in range(10)])
    with pytest.raises(DataFormatError, match="test holds no positive of a user with a train interaction"):
        RecData.load("d", low).check_parts()


def test_the_split_of_every_shipped_dataset_and_the_tiny_data_has_all_three_parts(ml100k, tiny_data):
    for data in (ml100k, tiny_data, RecData(make_tiny_dataset(), SplitConfig(0.1, 0.2, "global"), max_history=12)):
        data.check_parts()


@pytest.mark.slow
def test_the_fashion_splits_have_all_three_parts():
    for mode in ("per_user", "global"):
        RecData.load("fashion", split=SplitConfig(0.1, 0.2, mode)).check_parts()


# ---------------------------------------------------------------------------------------------- 7: output folders
def test_output_folders_are_checked_before_the_data_loads(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(RecData, "load", lambda *a, **k: pytest.fail("the data was read"))
    (tmp_path / "file").write_text("x")
    cases = [
        (["--out", str(tmp_path / "file")], f"--out '{tmp_path / 'file'}' is a file, not a folder"),
        (["--out", str(tmp_path / "file" / "x")], f"is inside '{tmp_path / 'file'}', which is a file, not a folder"),
        (["--out", "/proc/nope/x"], "--out '/proc/nope/x' cannot be written ("),
        (["--log-dir", "/proc/nope"], "--log-dir '/proc/nope' cannot be written ("),
    ]
    for extra, message in cases:
        argv = train_args(folder, tmp_path / "out", "--model", "bpr")
        assert cli_main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_plugin_without_bounds_that_cannot_be_built_is_named(folder, plugins, tmp_path, capsys):
    # its config declares no range, so dim=-4 passes the type check and reaches nn.Embedding
    argv = train_args(folder, tmp_path / "out", "--model", "nan_scores", "--model-module", str(plugins))
    assert cli_main([*argv, "--set", "dim=-4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Model 'nan_scores' (from broken_models) could not be built with '{\"dim\": -4}'")
    assert "RuntimeError" in err and "negative dimension" in err and "recmodels.models.bounded" in err
    assert_one_sentence(err.removeprefix("error: ").strip())
    assert_left_nothing(tmp_path / "out")
