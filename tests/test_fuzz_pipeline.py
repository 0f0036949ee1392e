"""Pipeline checkpoints are untrusted input like any config.json: every bad folder, file or value ends in one typed
sentence, from read_pipeline, from RecService.from_checkpoint and from the ``pipeline`` command alike. Stages trained
on other data (fashion, or ml-100k under another split) are a FingerprintMismatchError naming both fingerprints; a
missing stage, a stage that is itself a pipeline, a shortlist that is not a whole number from 1 to the catalogue,
malformed, deeply nested or oversized JSON, and a stage outside the checkpoint roots are CheckpointErrors. Seeded
and bounded: Hypothesis, derandomised, over folders under tmp_path that point at the shipped checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels.checkpoint.pipeline import is_pipeline, read_pipeline, write_pipeline
from recmodels.checkpoint.schema import MAX_CONFIG_BYTES
from recmodels.cli.parser import main
from recmodels.errors import CheckpointError, FingerprintMismatchError, InvalidArgumentError
from recmodels.serving.service import RecService

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
RETRIEVER, RANKER = CHECKPOINTS / "two_tower-ml100k", CHECKPOINTS / "din-ml100k"
N_ITEMS = 1682
GOOD = {"format": "recmodels-pipeline", "version": 1, "retriever": str(RETRIEVER), "ranker": str(RANKER)}


def one_sentence(err: BaseException) -> str:
    message = str(err)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert message.rstrip().endswith("."), message
    return message


def write_raw(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = content if isinstance(content, bytes) else json.dumps(content, allow_nan=True).encode()
    (folder / "config.json").write_bytes(data)
    return folder


def refused(folder: Path, error=CheckpointError, roots=None) -> str:
    """The folder is refused in one sentence of ``error`` by read_pipeline and by from_checkpoint."""
    with pytest.raises(error) as caught:
        read_pipeline(folder, roots)
    with pytest.raises(error) as again:
        RecService.from_checkpoint(folder, device="cpu", roots=roots)
    assert str(caught.value) == str(again.value)
    return one_sentence(caught.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
SHORTLISTS = st.one_of(
    st.integers(-5, 2 * N_ITEMS),
    st.sampled_from([0, 1, N_ITEMS, N_ITEMS + 1, 10**30, True, False, 200.0, 1.5, math.nan, math.inf, "200", None]),
    JSON,
)


@FUZZ
@given(shortlist=SHORTLISTS)
def test_a_shortlist_is_a_whole_number_from_1_to_the_catalogue(shortlist, tmp_path_factory):
    folder = write_raw(tmp_path_factory.mktemp("p") / "pipe", {**GOOD, "shortlist": shortlist})
    valid = type(shortlist) is int and 1 <= shortlist <= N_ITEMS
    if valid:
        assert read_pipeline(folder).shortlist == shortlist
        return
    with pytest.raises(CheckpointError) as caught:
        read_pipeline(folder)
    message = one_sentence(caught.value)
    assert "shortlist must be a whole number from 1 to 1682" in message
    # the CLI says the same of a value it is given
    if type(shortlist) is int:
        with pytest.raises(CheckpointError, match="shortlist must be a whole number from 1 to 1682"):
            write_pipeline(folder.parent / "again", RETRIEVER, RANKER, shortlist)
        assert not (folder.parent / "again").exists()  # nothing written for a refused pipeline


@FUZZ
@given(field=st.sampled_from(["format", "version", "retriever", "ranker", "extra"]), value=JSON)
def test_any_value_of_any_entry_is_read_or_refused_in_one_sentence(field, value, tmp_path_factory):
    raw = {**GOOD, "shortlist": 50, field: value}
    folder = write_raw(tmp_path_factory.mktemp("p") / "pipe", raw)
    try:
        pipeline = read_pipeline(folder)
    except CheckpointError as err:
        one_sentence(err)
        return
    assert pipeline.shortlist == 50 and field in ("version", "format")  # only the values that were already right


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"[1, 2", b"null", b"[]", b'"pipeline"', b"\xff\xfe{}", b"{" * 5000 + b"}" * 5000]),
        JSON.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    )
)
def test_malformed_config_json_is_one_sentence(content, tmp_path_factory):
    folder = write_raw(tmp_path_factory.mktemp("p") / "pipe", content)
    with pytest.raises(CheckpointError) as caught:
        read_pipeline(folder)
    one_sentence(caught.value)
    assert isinstance(is_pipeline(folder), bool)


def test_an_oversized_config_json_is_refused_before_it_is_parsed(tmp_path):
    folder = tmp_path / "pipe"
    folder.mkdir()
    with open(folder / "config.json", "wb") as handle:  # valid JSON start, then more bytes than any config holds
        handle.write(b'{"format": "recmodels-pipeline", "pad": "')
        handle.write(b"x" * (MAX_CONFIG_BYTES + 10))
        handle.write(b'"}')
    assert "larger than 16 MB" in refused(folder)


@pytest.mark.parametrize(
    ("retriever", "ranker", "other"),
    [
        ("bpr-fashion", "din-ml100k", "2c6d23ae231ee224"),
        ("two_tower-ml100k", "ease-fashion", None),
        ("two_tower-ml100k", "din-ml100k-global", "6b6a6225b9edf9ea"),  # ml-100k, but split in global time cuts
    ],
)
def test_stages_trained_on_other_data_are_a_fingerprint_mismatch_naming_both(tmp_path, retriever, ranker, other):
    folder = write_raw(
        tmp_path / "pipe",
        {**GOOD, "retriever": str(CHECKPOINTS / retriever), "ranker": str(CHECKPOINTS / ranker), "shortlist": 10},
    )
    message = refused(folder, FingerprintMismatchError)
    assert "531ece1c6d2f1144" in message and "retriever" in message and "ranker" in message
    if other is not None:
        assert other in message
    with pytest.raises(FingerprintMismatchError):
        write_pipeline(tmp_path / "written", CHECKPOINTS / retriever, CHECKPOINTS / ranker, 10)
    assert not (tmp_path / "written").exists()


def test_a_missing_stage_a_stage_without_a_config_and_a_stage_that_is_a_pipeline(tmp_path):
    missing = write_raw(tmp_path / "missing", {**GOOD, "ranker": "../nowhere", "shortlist": 10})
    assert "ranker" in refused(missing) and "is not a folder" in refused(missing)
    (tmp_path / "empty").mkdir()
    hollow = write_raw(tmp_path / "hollow", {**GOOD, "retriever": "../empty", "shortlist": 10})
    assert "retriever cannot be read" in refused(hollow)
    inner = write_raw(tmp_path / "inner", {**GOOD, "shortlist": 10})
    nested = write_raw(tmp_path / "nested", {**GOOD, "ranker": "../inner", "shortlist": 10})
    assert is_pipeline(inner) and "is itself a pipeline" in refused(nested)
    with pytest.raises(CheckpointError, match="is itself a pipeline"):
        write_pipeline(tmp_path / "written", RETRIEVER, inner, 10)
    # without its format entry a folder is not a pipeline: read as one, it says so; opened, it is read as a model
    plain = write_raw(tmp_path / "plain", {**GOOD, "format": None, "shortlist": 10})
    with pytest.raises(CheckpointError, match="format must be 'recmodels-pipeline'"):
        read_pipeline(plain)
    with pytest.raises(CheckpointError, match="it was not written by recmodels"):
        RecService.from_checkpoint(plain, device="cpu")


def test_with_roots_every_stage_must_resolve_inside_them(tmp_path):
    root = tmp_path / "root"
    inside = write_raw(root / "pipe", {**GOOD, "shortlist": 10})  # stages: the shipped folders, outside the root
    message = refused(inside, roots=[root])
    assert "outside the checkpoint roots" in message
    (root / "din").symlink_to(RANKER, target_is_directory=True)  # a link out of the root is outside too
    linked = write_raw(root / "linked", {**GOOD, "ranker": "../din", "shortlist": 10})
    assert "outside the checkpoint roots" in refused(linked, roots=[root, RETRIEVER])
    # with both stages' folders among the roots the same pipeline opens
    assert read_pipeline(inside, roots=[root, CHECKPOINTS]).shortlist == 10
    # a pipeline folder outside the roots is not read at all
    for call in (read_pipeline, lambda folder, roots: RecService.from_checkpoint(folder, roots=roots)):
        with pytest.raises(CheckpointError) as caught:
            call(inside, roots=[CHECKPOINTS])
        assert "outside the checkpoint roots" in one_sentence(caught.value)


@FUZZ
@given(
    shortlist=st.sampled_from(["0", "-3", "1683", "99999999999999999999", "2.5", "nan", "x", ""]),
    where=st.sampled_from(["new", "file", "busy", "missing-stage"]),
)
def test_the_cli_refuses_bad_arguments_in_one_line_and_writes_nothing(shortlist, where, tmp_path_factory, capsys):
    base = tmp_path_factory.mktemp("cli")
    out = base / "out"
    retriever = RETRIEVER
    if where == "file":
        out.write_text("x")
    elif where == "busy":
        out.mkdir()
        (out / "keep.txt").write_text("x")
    elif where == "missing-stage":
        retriever = base / "nowhere"
    argv = ["pipeline", "--retriever", str(retriever), "--ranker", str(RANKER), "--shortlist", shortlist]
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exit_:  # argparse: a --shortlist that is not an int
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 or err.startswith("usage:")
    assert not (out / "config.json").exists()


def test_write_pipeline_refuses_arguments_of_the_wrong_type(tmp_path):
    for retriever, shortlist in ((None, 10), ("", 10), (RETRIEVER, 2.0), (RETRIEVER, True), (RETRIEVER, "10")):
        with pytest.raises((InvalidArgumentError, CheckpointError)) as caught:
            write_pipeline(tmp_path / "p", retriever, RANKER, shortlist)
        one_sentence(caught.value)
    assert not (tmp_path / "p").exists()


METRICS_VALUES = st.one_of(
    JSON,
    st.dictionaries(
        st.sampled_from(["100", "200", "0", "1683", "0100", "1e2", " 100", "١٠٠", "-1", "x", "99999999999"]),
        st.one_of(
            JSON,
            st.dictionaries(
                st.sampled_from(["valid", "test", "train", ""]),
                st.one_of(JSON, st.dictionaries(st.sampled_from(["ndcg@10", "x"]), JSON, max_size=2)),
                max_size=2,
            ),
        ),
        max_size=3,
    ),
)


def _good_metrics(value) -> bool:
    """What read_pipeline accepts: decimal sizes 1..N_ITEMS, parts valid/test, numbers (or null) as values."""
    if not isinstance(value, dict):
        return False
    for key, parts in value.items():
        if not (key.isascii() and key.isdecimal() and str(int(key)) == key and 1 <= int(key) <= N_ITEMS):
            return False
        if not isinstance(parts, dict) or not set(parts) <= {"valid", "test"}:
            return False
        for values in parts.values():
            if not isinstance(values, dict) or any(
                v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in values.values()
            ):
                return False
    return True


@FUZZ
@given(metrics=METRICS_VALUES)
def test_recorded_metrics_are_sizes_then_parts_then_numbers_or_one_sentence(metrics, tmp_path_factory):
    folder = write_raw(tmp_path_factory.mktemp("p") / "pipe", {**GOOD, "shortlist": 100, "metrics": metrics})
    if _good_metrics(metrics):
        pipeline = read_pipeline(folder)
        assert set(pipeline.metrics) == {int(key) for key in metrics}
        return
    message = refused(folder)
    assert "metrics" in message and str(folder / "config.json") in message


@pytest.mark.parametrize("sweep", ["0", "1683", "abc", "100,,x", "-5", "1e3", "100;200", "9" * 40, "١٠٠", "100, 2000"])
def test_the_pipeline_command_refuses_a_bad_sweep_in_one_line_before_measuring(sweep, tmp_path, capsys):
    out = tmp_path / "pipe"
    argv = ["pipeline", "--retriever", str(RETRIEVER), "--ranker", str(RANKER), "--shortlist", "10"]
    assert main([*argv, "--sweep", sweep, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sweep") and err.count("\n") == 1, err


@pytest.mark.parametrize("bad", ["not-a-folder", "checkpoints/din-ml100k", "README.md"])
def test_bench_refuses_a_pipeline_that_is_not_one_in_one_line(bad, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["bench", "--checkpoints", "--pipelines", bad, "--scales", "ml-100k", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
