"""Checkpoint roots: the only folders the app reads checkpoints and training runs from.

An empty or blank root (``--checkpoint-root ""``, ``--checkpoint-root=``, an empty entry of
RECMODELS_CHECKPOINT_ROOTS) would be the current folder, and a root with spaces around it a folder of that odd name
under it: both are refused in one sentence, never stripped or skipped. Every file a checkpoint or run opens must
resolve inside a root, links followed: a model.safetensors, config.json, history.jsonl or run.json that links out of
the roots is not read. Seeded and bounded: Hypothesis, derandomised, on copies of the shipped din-ml100k.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels import settings as recmodels_settings
from recmodels.checkpoint.io import load_checkpoint, read_config
from recmodels.checkpoint.runs import read_run
from recmodels.cli.parser import build_parser
from recmodels.errors import CheckpointError, InvalidArgumentError
from recmodels.serving.service import RecService
from recmodels_explorer import serve, services

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "checkpoints" / "din-ml100k"
ENV = recmodels_settings.CHECKPOINT_ROOTS
OUTSIDE = "lies outside the checkpoint roots once links are followed, so it was not opened"

# folder names as people type them, and the ways they go wrong: empty, blank, spaces around, the separator
ENTRIES = st.one_of(
    st.sampled_from(["", " ", "\t", " /tmp", "/tmp ", " ck ", "ck", "checkpoints", ".", "./ck", "~/ck", "a b", "é"]),
    st.text(alphabet=" \tab/.~:", max_size=6),
)


def is_literal_name(entry: str) -> bool:
    """A name taken as it is: not blank, no spaces around it, and a leading ~ that names a home folder."""
    try:
        Path(entry).expanduser()
    except RuntimeError:
        return False
    return bool(entry.strip()) and entry == entry.strip()


@FUZZ
@given(entries=st.lists(ENTRIES, min_size=1, max_size=4))
def test_root_lists_are_taken_literally_or_refused(entries, monkeypatch):
    value = os.pathsep.join(entries)
    monkeypatch.setenv(ENV, value)
    parts = value.split(os.pathsep)  # an entry holding the separator is two entries, as the variable reads it
    try:
        roots = recmodels_settings.paths(ENV)
    except InvalidArgumentError as error:
        message = str(error)
        assert message.startswith(ENV) and "\n" not in message and message.endswith("."), message
        assert not all(is_literal_name(part) for part in parts), f"{value!r} was refused: {message}"
        with pytest.raises(InvalidArgumentError):
            services.checkpoint_roots()  # the app reads it the same way (explorer.py shows the sentence)
        return
    assert all(is_literal_name(part) for part in parts), f"{value!r} was accepted as {roots}"
    assert roots == [Path(part).expanduser() for part in parts]
    if Path.cwd().resolve() in services.checkpoint_roots():
        assert any(Path(part).expanduser().resolve() == Path.cwd().resolve() for part in parts), value


@pytest.mark.parametrize("value", ["", " ", " :/tmp", f"/tmp{os.pathsep}", f"/tmp{os.pathsep}{os.pathsep}/var"])
def test_an_empty_or_blank_roots_variable_is_one_sentence(value, monkeypatch):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(InvalidArgumentError, match=f"^{ENV} (is set but|holds)") as caught:
        recmodels_settings.paths(ENV)
    assert "current folder" in str(caught.value) or "spaces" in str(caught.value)
    with pytest.raises(SystemExit, match=f"^{ENV} "):
        serve.add_checkpoint_roots([])


@FUZZ
@given(value=ENTRIES, equals=st.booleans())
def test_a_checkpoint_root_flag_is_a_folder_name_or_one_sentence(value, equals, tmp_path, monkeypatch, capsys):
    # the whole environment comes back after each example: add_checkpoint_roots sets the variable itself, and
    # monkeypatch.delenv records nothing when it is unset, so an example's root would outlive the test
    with mock.patch.dict(os.environ):
        _check_a_checkpoint_root_flag(value, equals, tmp_path, monkeypatch, capsys)


def _check_a_checkpoint_root_flag(value, equals, tmp_path, monkeypatch, capsys):
    os.environ.pop(ENV, None)
    argv = ["explore", f"--checkpoint-root={value}"] if equals else ["explore", "--checkpoint-root", value]
    literal = is_literal_name(value) and os.pathsep not in value
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        assert stop.code == 2 and not literal, value
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("recmodels explore: error: argument --checkpoint-root: the folder is "), error
        return
    assert literal and args.checkpoint_root == [value]
    # what `recmodels explore` then hands the app: a folder that exists is added, resolved; nothing else is
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    folder = Path(value).expanduser()
    try:
        serve.add_checkpoint_roots([value])
    except SystemExit as stop:
        assert str(stop).startswith(f"--checkpoint-root {value}: not a folder"), stop
        assert ENV not in os.environ
        return
    assert folder.is_dir() and os.environ[ENV] == str(folder.resolve())


@pytest.mark.parametrize("argv", [["--checkpoint-root", ""], ["--checkpoint-root="], ["--checkpoint-root", " /tmp"]])
def test_serve_refuses_an_empty_root_rather_than_adding_the_current_folder(argv, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    roots, _ = serve.split_arguments(argv)
    with pytest.raises(SystemExit, match="^--checkpoint-root is (empty|' /tmp', with spaces)") as caught:
        serve.add_checkpoint_roots(roots)
    assert "\n" not in str(caught.value)
    assert ENV not in os.environ


# ---------------------------------------------------------------- files that link out of the roots
WHERE = st.sampled_from(["copy", "link inside", "link outside"])
_layouts = itertools.count()


def layout(base: Path, folder: str, config: str, weights: str) -> tuple[Path, Path]:
    """``(root, checkpoint folder)``: a copy of din-ml100k in a root whose folder, config.json and model.safetensors
    are each a real copy, a link to a copy elsewhere inside the root, or a link to a copy outside every root."""
    case = base / f"case{next(_layouts)}"
    root, outside, spare = case / "root", case / "outside", case / "root" / "spare"
    for place in (outside, spare):
        shutil.copytree(SOURCE, place)
    real = root / "real"
    real.mkdir()
    for name, where in (("config.json", config), ("model.safetensors", weights)):
        if where == "copy":
            shutil.copy(SOURCE / name, real / name)
        else:
            (real / name).symlink_to((spare if where == "link inside" else outside) / name)
    if folder == "copy":
        return root, real
    target = real if folder == "link inside" else shutil.copytree(real, outside / "ck", symlinks=True)
    (root / "ck").symlink_to(target, target_is_directory=True)
    return root, root / "ck"


@FUZZ
@given(folder=WHERE, config=WHERE, weights=WHERE)
def test_a_checkpoint_opens_only_when_every_file_resolves_inside_a_root(tmp_path, folder, config, weights):
    root, checkpoint = layout(tmp_path, folder, config, weights)
    outside = "link outside" in (folder, config, weights)
    try:
        model, loaded = load_checkpoint(checkpoint, roots=[root])
    except CheckpointError as error:
        assert outside and OUTSIDE in str(error) and "\n" not in str(error), error
    else:
        assert not outside and loaded.model == "din" and model.n_items == 1682
    config_outside = "link outside" in (folder, config)
    try:
        read_config(checkpoint, roots=[root])
    except CheckpointError as error:
        assert config_outside and OUTSIDE in str(error), error
    else:
        assert not config_outside
    # without roots (the library and the CLI open what their user names) links are followed as ever
    assert load_checkpoint(checkpoint)[1].model == "din"


def test_the_app_and_the_service_refuse_a_weights_file_that_links_out(tmp_path, monkeypatch):
    root, checkpoint = layout(tmp_path, "copy", "copy", "link outside")
    with pytest.raises(CheckpointError, match=f"model.safetensors {OUTSIDE}"):
        RecService.from_checkpoint(checkpoint, device="cpu", roots=[root])
    monkeypatch.setenv(ENV, str(root))
    assert services.resolve_checkpoint(str(checkpoint)) == str(checkpoint)  # the folder and config.json pass
    service, error = services.open_service(str(checkpoint))
    assert service is None and f"model.safetensors {OUTSIDE}" in error
    # a checkpoint whose config.json links out is not even listed
    linked_root, _ = layout(tmp_path, "copy", "link outside", "copy")
    listed = services._scan_roots((str(linked_root),))
    assert {Path(entry.path).name for entry in listed} == {"spare"}  # "real", whose config.json links out, is not
    assert {Path(entry.path).name for entry in services._scan_roots((str(root),))} == {"real", "spare"}
    with pytest.raises(InvalidArgumentError, match="roots must be a list of folders"):
        RecService.from_checkpoint(checkpoint, roots=str(root))


def test_a_training_run_reads_only_files_inside_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    run = root / "run"
    run.mkdir(parents=True)
    outside.mkdir()
    (outside / "history.jsonl").write_text("")
    (outside / "run.json").write_text('{"model": "din"}')
    (run / "history.jsonl").symlink_to(outside / "history.jsonl")
    with pytest.raises(CheckpointError, match=f"history.jsonl {OUTSIDE}"):
        read_run(run, roots=[root])
    (run / "history.jsonl").unlink()
    (run / "history.jsonl").write_text("")
    (run / "run.json").symlink_to(outside / "run.json")
    assert read_run(run, roots=[root]).run == {}  # an optional file that links out is left unread
    assert read_run(run).run == {"model": "din"}  # without roots, as before


def test_the_app_says_a_bad_roots_variable_in_one_sentence_and_stops(monkeypatch):
    from streamlit.testing.v1 import AppTest

    from recmodels_explorer.text import literal

    monkeypatch.setenv(ENV, f"{REPO / 'checkpoints'}{os.pathsep}")
    at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=120).run()
    expected = (
        f"{ENV} holds an empty entry (two separators in a row, or one at an end), which would mean the current "
        "folder; name the folder, . for the current one."
    )
    assert not at.exception and [error.value for error in at.error] == [literal(expected, 400)]
    assert not at.sidebar.selectbox, "no page ran"
