"""Corrupted copies of the shipped bpr-ml100k and din-ml100k either score finite numbers or are refused in one short
RecModelsError sentence: no other exception, pickle run, giant allocation or slow case. Seeded; ~30 s in all."""

from __future__ import annotations

import builtins
import json
import pickle
import re
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from recmodels.checkpoint.io import load_checkpoint
from recmodels.checkpoint.weights import read_header
from recmodels.cli.parser import main as cli_main
from recmodels.errors import CheckpointError, FingerprintMismatchError, RecModelsError
from recmodels.serving.service import RecService, load_data_cached

REPO = Path(__file__).resolve().parents[1]
SOURCES = {name: REPO / "checkpoints" / f"{name}-ml100k" for name in ("bpr", "din")}
SECONDS_PER_CASE = 5.0
MAX_MESSAGE = 300


@pytest.fixture(scope="module")
def data():
    # the same cache entry RecService.from_checkpoint uses for these checkpoints, so ml-100k is read once
    return load_data_cached("ml-100k", None, None, {"valid_fraction": 0.1, "test_fraction": 0.2}, 50)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One scratch checkpoint folder per model, reset before each case (Hypothesis reuses it across examples)."""
    root = tmp_path_factory.mktemp("fz")
    return {name: root / name for name in SOURCES}


def fresh(folder: Path, model: str) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(SOURCES[model], folder)
    return folder


def assert_one_sentence(err: BaseException) -> None:
    message = str(err)
    assert isinstance(err, RecModelsError), f"{type(err).__name__}: {message}"
    assert "\n" not in message and "Traceback" not in message, message
    # bounded apart from the file paths it names, whose length is the test machine's (pytest's temporary folders)
    without_paths = re.sub(r"/[^\s:'\"]+", "PATH", message)
    assert len(without_paths) <= MAX_MESSAGE, f"{len(without_paths)} characters: {message}"
    assert message.rstrip().endswith("."), message


def assert_finite_scores(model, data) -> None:
    users = np.array([1, data.dataset.n_users])
    history = torch.as_tensor(data.full_history(users))
    with torch.no_grad():
        scores = model.score_items(torch.as_tensor(users), history, torch.arange(1, data.dataset.n_items + 1))
    assert torch.isfinite(scores).all(), "a loaded checkpoint scored NaN or infinity"


def loads_or_refuses(folder: Path, data, service: bool = False) -> str:
    """The property: ``load_checkpoint`` (and optionally ``RecService.from_checkpoint``) either gives finite scores
    or raises one short RecModelsError sentence; anything else propagates and fails the test."""
    outcomes = []
    calls = [lambda: load_checkpoint(folder, data=data)[0]]
    if service:
        calls.append(lambda: RecService.from_checkpoint(folder, device="cpu").model)
    for call in calls:
        start = time.perf_counter()
        try:
            model = call()
        except RecModelsError as err:
            assert_one_sentence(err)
            outcomes.append("refused")
        else:
            assert_finite_scores(model, data)
            outcomes.append("loaded")
        assert time.perf_counter() - start < SECONDS_PER_CASE
    assert len(set(outcomes)) == 1, f"load_checkpoint and RecService disagree: {outcomes}"
    return outcomes[0]


# ---------------------------------------------------------------------------------------------- config.json
FIELDS = [
    ("format_version",),
    ("model",),
    ("hparams",),
    ("hparams", "dim"),
    ("hparams", "hidden"),
    ("hparams", "attention"),
    ("hparams", "unknown"),
    ("spec",),
    ("spec", "n_users"),
    ("spec", "n_items"),
    ("spec", "user_field_sizes"),
    ("spec", "user_field_sizes", 0),
    ("spec", "genre_names"),
    ("spec", "n_years"),
    ("dataset",),
    ("dataset", "name"),
    ("dataset", "data_dir"),
    ("dataset", "image_dir"),
    ("dataset", "split"),
    ("dataset", "split", "test_fraction"),
    ("dataset", "max_history"),
    ("dataset", "fingerprint"),
    ("metrics",),
    ("metrics", "test"),
    ("metrics", "test", "ndcg@10"),
    ("history",),
    ("history", 1),
    ("history", 1, "valid"),
    ("training",),
    ("training", "monitor"),
    ("collapse_example",),
    ("recovery",),
]
DATASET_IDENTITY = ("name", "data_dir", "image_dir", "split", "max_history")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=12),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 3, 50, 2**31, 10**7, 10**10, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e12, 1e10, 1e7, 50.0, 0.5, -0.0, float("nan"), float("inf"), float("-inf")]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
mutations = st.tuples(st.sampled_from(FIELDS), st.one_of(json_values, st.just(KeyError)))  # KeyError: delete


def mutate(config: dict, path: tuple, value) -> None:
    """Set (or, for ``KeyError``, delete) the field at ``path``; a path an earlier edit removed is left alone."""
    parent = config
    for step in path[:-1]:
        parent = parent[step] if holds(parent, step) else None
    last = path[-1]
    if value is KeyError:
        if holds(parent, last):
            del parent[last]
    elif (isinstance(parent, dict) and isinstance(last, str)) or holds(parent, last):
        parent[last] = value


def holds(parent, step) -> bool:
    if isinstance(parent, dict):
        return isinstance(step, str) and step in parent
    return isinstance(parent, list) and isinstance(step, int) and step < len(parent)


def write_config(folder: Path, config: dict) -> None:
    (folder / "config.json").write_text(json.dumps(config, allow_nan=True))


def edit_config(folder: Path, path: tuple, value) -> dict:
    config = json.loads((folder / "config.json").read_text())
    mutate(config, path, value)
    write_config(folder, config)
    return config


def same_dataset(config: dict, original: dict) -> bool:
    """Whether RecService would open the same data (otherwise it reads another dataset: the loaders' job)."""
    dataset = config.get("dataset")
    return isinstance(dataset, dict) and all(dataset.get(k) == original["dataset"].get(k) for k in DATASET_IDENTITY)


@pytest.mark.parametrize("model", ["bpr", "din"])
@settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(edits=st.lists(mutations, min_size=1, max_size=3))
def test_config_fields_of_every_json_type_load_or_are_refused(model, edits, workspace, data):
    folder = fresh(workspace[model], model)
    original = json.loads((folder / "config.json").read_text())
    config = json.loads(json.dumps(original))
    for path, value in edits:
        mutate(config, path, value)
    write_config(folder, config)
    loads_or_refuses(folder, data, service=same_dataset(config, original))


SIZE_EDITS = [
    (("spec", "n_items"), 1e10),
    (("spec", "n_items"), 10**10),
    (("spec", "n_items"), 2000),
    (("spec", "n_users"), 0),
    (("spec", "n_users"), -5),
    (("spec", "n_users"), True),
    (("spec", "user_field_sizes", 0), 10**9),
    (("spec", "n_years"), 10**9),
    (("hparams", "dim"), 1e7),
    (("hparams", "dim"), 10**6),
    (("hparams", "dim"), 0),
    (("hparams", "dim"), -1),
    (("hparams", "dim"), 32.0),
    (("dataset", "max_history"), 1e12),
    (("dataset", "max_history"), 0),
    (("dataset", "max_history"), -3),
    (("dataset", "max_history"), 10001),
    (("dataset", "max_history"), 50.0),
    (("dataset", "max_history"), True),
    (("dataset", "max_history"), 49),
]


@pytest.mark.parametrize("model", ["bpr", "din"])
def test_sizes_are_checked_before_anything_is_allocated(model, workspace, data):
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    for path, value in SIZE_EDITS:
        edit_config(fresh(workspace[model], model), path, value)
        assert loads_or_refuses(workspace[model], data, service=True) == "refused", (path, value)
    folder = fresh(workspace[model], model)
    edit_config(folder, ("hparams", "hidden"), [10**6] * 3)  # million-wide layers: terabytes (bpr has none)
    # DIN's config declares its layer sizes' range, the one --set checks too
    refusal = r"hparams.hidden\[0\] must be a whole number from 1 to 4096" if model == "din" else "not a hyperparameter"
    with pytest.raises(CheckpointError, match=refusal):
        load_checkpoint(folder, data=data)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 1024**2, "over 1 GB was allocated"


def test_messages_name_the_field_or_the_tensor(workspace, data):
    folder = fresh(workspace["bpr"], "bpr")
    config = edit_config(folder, ("dataset", "max_history"), 1e12)
    with pytest.raises(
        CheckpointError,
        match=r"config.json: dataset.max_history must be a whole number from 1 to "
        r"10000, got 1000000000000.0",
    ):
        RecService.from_checkpoint(folder, device="cpu")
    config["dataset"]["max_history"], config["spec"]["n_items"] = 50, 1681
    write_config(folder, config)
    with pytest.raises(CheckpointError, match=r"spec.n_items is 1681 \(a number\), but ml-100k gives 1682"):
        load_checkpoint(folder, data=data)
    config["spec"]["n_items"], config["hparams"]["dim"] = 1682, 65
    write_config(folder, config)
    with pytest.raises(
        CheckpointError,
        match=r"'user_embedding.weight' has shape \[944, 64\], which does not match "
        r"model 'bpr' as config.json describes it \(\[944, 65\]\)",
    ):
        load_checkpoint(folder, data=data)
    config["hparams"]["dim"], config["dataset"]["fingerprint"] = 64, "0" * 16
    write_config(folder, config)
    with pytest.raises(FingerprintMismatchError, match="load the same dataset, split and max_history"):
        load_checkpoint(folder, data=data)

    state = load_file(fresh(folder, "bpr") / "model.safetensors")
    state["item_embedding.weight"][7, 2] = float("nan")
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="tensor 'item_embedding.weight' holds NaN or infinite values"):
        load_checkpoint(folder, data=data)
    state["item_embedding.weight"] = torch.zeros(1683, 64, dtype=torch.int8)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(
        CheckpointError, match="'item_embedding.weight' is stored as int8, but model 'bpr' declares float32"
    ):
        load_checkpoint(folder, data=data)


DEEP = "[" * 200 + "]" * 200
RAW_CONFIGS = {  # label -> the bytes of config.json, from the real config's text
    "deeply nested": lambda text: b"[" * 100_000 + b"]" * 100_000,
    "200 deep in a field": lambda text: text.replace('"training": {', f'"training": {{"x": {DEEP},').encode(),
    "over 16 MB": lambda text: b'{"model": "' + b"x" * (16 * 2**20 + 10) + b'"}',
    "not UTF-8": lambda text: text.replace('"bpr"', '"bpr\udcff"').encode("utf-8", "surrogateescape"),
    "empty": lambda text: b"",
    "truncated": lambda text: text[: len(text) // 2].encode(),
    "a list": lambda text: b"[1, 2, 3]",
    "NaN size": lambda text: text.replace('"n_users": 943', '"n_users": NaN').encode(),
    "Infinity fraction": lambda text: text.replace('"valid_fraction": 0.1', '"valid_fraction": Infinity').encode(),
    "a 5000-digit number": lambda text: b'{"format_version": ' + b"9" * 5000 + b"}",
}


def raw_config(label: str) -> bytes:
    return RAW_CONFIGS[label]((SOURCES["bpr"] / "config.json").read_text())


@pytest.mark.parametrize("label", list(RAW_CONFIGS))
def test_unreadable_config_files_are_one_sentence(label, workspace, data):
    folder = fresh(workspace["bpr"], "bpr")
    (folder / "config.json").write_bytes(raw_config(label))
    assert loads_or_refuses(folder, data, service=True) == "refused"


# ---------------------------------------------------------------------------------------------- model.safetensors
def header_of(raw: bytes) -> tuple[int, dict]:
    length = int.from_bytes(raw[:8], "little")
    return length, json.loads(raw[8 : 8 + length])


def with_header(raw: bytes, header: dict) -> bytes:
    length, _ = header_of(raw)
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :]


def flip_bits(raw: bytes, rng, start: int, stop: int, count: int) -> bytes:
    out = bytearray(raw)
    for position in rng.integers(start, stop, size=count):
        out[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def corrupt_bytes(raw: bytes, kind: str, rng) -> bytes:  # noqa: PLR0911 - one return per kind of corruption
    length, header = header_of(raw)
    data_start, tensors = 8 + length, sorted(k for k in header if k != "__metadata__")
    name = tensors[int(rng.integers(len(tensors)))]
    if kind == "truncate":
        return raw[: int(rng.integers(0, len(raw)))]
    if kind == "flip anywhere":
        return flip_bits(raw, rng, 0, len(raw), int(rng.integers(1, 16)))
    if kind == "flip header":
        return flip_bits(raw, rng, 0, data_start, int(rng.integers(1, 4)))
    if kind == "flip data":
        return flip_bits(raw, rng, data_start, len(raw), int(rng.integers(1, 64)))
    if kind == "header length":
        choices = [0, 1, 7, length - 1, length + 1, len(raw), 2**40, 2**64 - 1]
        return choices[int(rng.integers(len(choices)))].to_bytes(8, "little") + raw[8:]
    if kind == "garbage appended":
        return raw + rng.bytes(int(rng.integers(1, 4096)))
    if kind == "giant shape":
        header[name]["shape"] = [10**12, 64]
        return with_header(raw, header)
    if kind == "giant shape and offsets":
        begin = header[name]["data_offsets"][0]
        header[name].update(shape=[10**9, 10**3], data_offsets=[begin, begin + 4 * 10**12])
        return with_header(raw, header)
    if kind == "unknown dtype":
        header[name]["dtype"] = str(rng.choice(["F128", "C64", "", "object"]))
        return with_header(raw, header)
    raise AssertionError(kind)


BYTE_KINDS = [
    "truncate",
    "flip anywhere",
    "flip header",
    "flip data",
    "header length",
    "garbage appended",
    "giant shape",
    "giant shape and offsets",
    "unknown dtype",
]


def corrupt_tensors(state: dict, kind: str, rng) -> dict:
    floats = sorted(k for k, v in state.items() if v.is_floating_point())
    name = floats[int(rng.integers(len(floats)))]
    tensor = state[name].clone()
    if kind in ("nan", "inf", "huge"):
        tensor.view(-1)[int(rng.integers(tensor.numel()))] = {"nan": float("nan"), "inf": -float("inf"), "huge": 3e38}[
            kind
        ]
    elif kind == "dtype":
        tensor = tensor.to([torch.int8, torch.float16, torch.float64, torch.bfloat16, torch.bool][int(rng.integers(5))])
    elif kind == "extra tensor":
        state = {**state, "smuggled.weight": torch.zeros(3)}
    elif kind == "missing tensor":
        return {k: v for k, v in state.items() if k != name}
    elif kind == "reshaped":
        tensor = tensor.reshape(-1, 1) if tensor.dim() < 2 else tensor.reshape(-1)
    elif kind == "feature table":
        table = str(rng.choice(["item_year", "user_fields", "item_popularity"]))
        changed = state[table].clone()
        changed.view(-1)[int(rng.integers(changed.numel()))] += 1
        return {**state, table: changed}
    return {**state, name: tensor}


TENSOR_KINDS = ["nan", "inf", "huge", "dtype", "extra tensor", "missing tensor", "reshaped", "feature table"]
CASES = [
    (model, kind, seed)
    for model, count in (("bpr", 3), ("din", 1))
    for seed in range(count)
    for kind in BYTE_KINDS + TENSOR_KINDS
]


@pytest.mark.parametrize("model,kind,seed", CASES, ids=[f"{m}-{k.replace(' ', '_')}-{s}" for m, k, s in CASES])
def test_corrupted_weights_load_finite_or_are_refused(model, kind, seed, workspace, data):
    rng = np.random.default_rng([seed, (BYTE_KINDS + TENSOR_KINDS).index(kind)])
    folder = fresh(workspace[model], model)
    weights = folder / "model.safetensors"
    if kind in BYTE_KINDS:
        weights.write_bytes(corrupt_bytes(weights.read_bytes(), kind, rng))
    else:
        save_file(corrupt_tensors(load_file(weights), kind, rng), weights)
    outcome = loads_or_refuses(folder, data, service=seed == 0)
    if kind in TENSOR_KINDS or kind in ("truncate", "garbage appended", "giant shape", "giant shape and offsets"):
        assert outcome == "refused", kind


# ---------------------------------------------------------------------------------------------- pickles
class Payload:
    """Unpickling this creates ``marker``: proof that a pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def test_pickles_are_never_unpickled(workspace, data, tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists(), "the payload is live: unpickling it creates its marker"
    marker = tmp_path / "marker"
    torch_zip = tmp_path / "weights.pt"
    torch.save({"weight": Payload(marker)}, torch_zip)
    folder = workspace["bpr"]
    layouts = {
        "model.safetensors is a pickle": lambda: (folder / "model.safetensors").write_bytes(
            pickle.dumps({"weight": Payload(marker)})
        ),
        "model.safetensors is a torch.save zip": lambda: shutil.copy(torch_zip, folder / "model.safetensors"),
        "pytorch_model.bin beside": lambda: (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker))),
        "pytorch_model.bin instead": lambda: (
            (folder / "model.safetensors").unlink(),
            shutil.copy(torch_zip, folder / "pytorch_model.bin"),
        ),
    }
    for label, arrange in layouts.items():
        fresh(folder, "bpr")
        arrange()
        for load in (lambda: load_checkpoint(folder, data=data), lambda: RecService.from_checkpoint(folder)):
            with pytest.raises(CheckpointError, match="pickle|zip") as caught:
                load()
            assert_one_sentence(caught.value)
        assert not marker.exists(), f"{label}: a pickle was run"


@pytest.mark.slow
def test_a_safetensors_header_that_starts_like_a_pickle_is_read(tmp_path):
    """A header of 1408 bytes (0x580) makes the file start 80 05, a pickle's protocol-5 opening."""
    path = tmp_path / "model.safetensors"
    for pad in range(1500):
        save_file({"weight": torch.ones(3)}, path, metadata={"pad": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x05":
            break
    else:
        pytest.fail("no padding gave a 1408-byte header")
    assert set(read_header(path)) == {"weight"}


# ---------------------------------------------------------------------------------------------- the CLI
def nan_weights(folder: Path) -> None:
    state = load_file(folder / "model.safetensors")
    state["user_embedding.weight"][3, 3] = float("nan")
    save_file(state, folder / "model.safetensors")


CLI_CASES = {  # label -> how to break a fresh bpr checkpoint
    **{
        label: lambda folder, path=path, value=value: edit_config(folder, path, value)
        for label, (path, value) in {
            "format_version text": (("format_version",), "1"),
            "format_version null": (("format_version",), None),
            "dataset text": (("dataset",), "ml-100k"),
            "data_dir a number": (("dataset", "data_dir"), 5),
            "split missing": (("dataset", "split"), KeyError),
            "hparams a list": (("hparams",), [1]),
            "unknown hyperparameter": (("hparams", "depth"), 3),
            "max_history 1e12": (("dataset", "max_history"), 1e12),
            "model unknown": (("model",), "gpt"),
        }.items()
    },
    **{
        label: lambda folder, label=label: (folder / "config.json").write_bytes(raw_config(label))
        for label in ("deeply nested", "not UTF-8")
    },
    "NaN weights": nan_weights,
}


def test_cli_evaluate_prints_one_line_for_every_bad_checkpoint(workspace, capsys):
    for label, arrange in CLI_CASES.items():
        folder = fresh(workspace["bpr"], "bpr")
        arrange(folder)
        assert cli_main(["evaluate", str(folder), "--quiet", "--device", "cpu"]) == 2, label
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: ") and err.count("\n") == 1, f"{label}: {err!r}"
        assert "Traceback" not in err and len(err) < MAX_MESSAGE + 10, f"{label}: {err!r}"


def test_the_schema_holds_hyperparameters_to_the_ranges_their_config_declares():
    """One source: the schema reads each field's bound from the config dataclass, as ``--set`` does."""
    from dataclasses import dataclass

    from recmodels.checkpoint.schema import SchemaProblem, check_hparams
    from recmodels.models import RecModel, bounded, field_bounds, model_class
    from recmodels.models.config import check_values

    @dataclass
    class CappedConfig:
        width: int = bounded(4, 1, 7)
        rate: float = bounded(0.5, 0.0, 1.0, high_open=True)
        free: int = 3  # no bound declared (a plugin's): the generic cap

    class Capped(RecModel):
        name = "capped"
        config_class = CappedConfig

    check_hparams(Capped, {"width": 7, "rate": 0.0, "free": 10**6})
    for hparams, words in [
        ({"width": 8}, "hparams.width must be a whole number from 1 to 7, got 8"),
        ({"rate": 1.0}, "hparams.rate must be a finite number of at least 0 and below 1, got 1.0"),
        ({"free": 10**6 + 1}, "hparams.free must be a whole number from 0 to 1000000"),
    ]:
        with pytest.raises(SchemaProblem, match=re.escape(words)):
            check_hparams(Capped, hparams)
    for name in ("bpr", "din", "sasrec", "bert4rec", "ease", "acf", "vecf", "nrms", "two_tower", "inttower"):
        cls = model_class(name)
        for field, bound in field_bounds(cls.config_class).items():
            if isinstance(bound.high, int) and not bound.high_open:
                value = [bound.high] if field in ("hidden", "grid") else bound.high
                check_values(cls.config_class, {field: value}, name)
                check_hparams(cls, {field: value})
                past = [bound.high + 1] if field in ("hidden", "grid") else bound.high + 1
                with pytest.raises(SchemaProblem, match=rf"from {bound.low} to {bound.high}( \(or null\))?, got"):
                    check_hparams(cls, {field: past})
