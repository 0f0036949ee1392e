"""The synthetic scale dataset (recmodels/data/synth.py): seeded files that the atomic loader reads, with the
heavy tails, timestamps and planted sequential structure it promises, and one sentence for every bad argument."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from recmodels.cli.parser import main as cli_main
from recmodels.data import RecData, synth
from recmodels.data.synth import GENRES, PRESETS, Shape, _tab_lines, generate, shape_of
from recmodels.errors import InvalidArgumentError

TINY = PRESETS["tiny"]
FILES = ("synth.inter", "synth.item", "synth.user", "dataset.json")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny") / "data", TINY, seed=0, progress=False)


@pytest.fixture(scope="module")
def tiny(tiny_folder) -> RecData:
    return RecData.load("synth", data_dir=tiny_folder)


def _primary_genres(data: RecData) -> np.ndarray:
    """The primary genre (listed first) of each interaction's item, in the frame's order (user, then time)."""
    dataset = data.dataset
    index = {genre: i for i, genre in enumerate(dataset.genre_names)}
    per_item = np.r_[-1, [index[genres[0]] for genres in dataset.item_features["genres"]]]
    return per_item[dataset.interactions["item"].to_numpy()]


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_folder, tmp_path):
    again = generate(tmp_path / "again", TINY, seed=0, progress=False)
    other = generate(tmp_path / "other", TINY, seed=1, progress=False)
    for name in FILES:
        assert (again / name).read_bytes() == (tiny_folder / name).read_bytes(), name
    assert (other / "synth.inter").read_bytes() != (tiny_folder / "synth.inter").read_bytes()


def test_loads_with_the_requested_shape_and_side_information(tiny):
    dataset = tiny.dataset
    assert (dataset.n_users, dataset.n_items, len(dataset.interactions)) == (TINY.users, TINY.items, TINY.interactions)
    frame = dataset.interactions
    assert not frame.duplicated(["user", "item"]).any()  # each (user, item) pair once
    assert set(frame["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert set(dataset.genre_names) == set(GENRES)
    assert all(1 <= len(genres) <= 3 for genres in dataset.item_features["genres"])
    assert dataset.item_features["year"].notna().all()
    assert tiny.tables.user_field_names == ["age", "gender", "occupation"]
    assert set(dataset.user_features["gender"]) == {"F", "M"}


def test_popularity_and_activity_are_heavy_tailed(tiny):
    frame = tiny.dataset.interactions
    per_item = np.sort(np.bincount(frame["item"])[1:])[::-1]
    share = lambda top: per_item[: max(1, int(len(per_item) * top))].sum() / per_item.sum()  # noqa: E731
    assert share(0.01) > 0.05 and share(0.10) > 0.3  # uniform popularity would give 0.01 and 0.10
    assert per_item[0] > 5 * np.median(per_item)
    per_user = np.bincount(frame["user"])[1:]
    assert per_user.min() >= 20 and per_user.max() > 4 * np.median(per_user)


def test_timestamps_increase_strictly_within_each_user(tiny):
    frame = tiny.dataset.interactions
    same_user = frame["user"].to_numpy()[1:] == frame["user"].to_numpy()[:-1]
    assert (np.diff(frame["timestamp"].to_numpy())[same_user] > 0).all()
    first_seen = frame.groupby("user")["timestamp"].min()
    assert first_seen.nunique() > 0.9 * len(first_seen)  # users join at different times


def test_next_items_follow_recent_genres_and_taste_drifts(tiny):
    genres = _primary_genres(tiny)
    users = tiny.dataset.interactions["user"].to_numpy()
    same_user = users[1:] == users[:-1]
    repeat = (genres[1:] == genres[:-1])[same_user].mean()
    chance = ((np.bincount(genres) / len(genres)) ** 2).sum()
    # the planted rate itself: a fresh draw that repeats the genre, or redraws of repeated items that leave it,
    # would move it (0.75 and 0.59 at ml-1m scale before each was fixed)
    assert abs(repeat - synth.STAY) < 0.01 and repeat > 3 * chance

    # drift: a user's genre mix of quarter i against quarter j, as the inner product of the two histograms (an
    # unbiased estimate for disjoint samples); without drift, quarters 1-4 would be as alike as 1-3 and 2-4, which
    # are as far apart as each other (two quarters), and none is adjacent, so runs of one genre do not count
    def alike(a, b):
        return (np.bincount(a, minlength=len(GENRES)) / len(a)) @ (np.bincount(b, minlength=len(GENRES)) / len(b))

    pairs = []
    starts = np.searchsorted(users, np.arange(1, tiny.dataset.n_users + 2))
    for begin, end in itertools.pairwise(starts):
        own, q = genres[begin:end], (end - begin) // 4
        pairs.append((alike(own[:q], own[2 * q : 3 * q]), alike(own[q : 2 * q], own[-q:]), alike(own[:q], own[-q:])))
    first_third, second_fourth, first_fourth = np.mean(pairs, axis=0)
    assert (first_third + second_fourth) / 2 > 1.08 * first_fourth  # 1.14-1.23 over seeds; 0.98-1.02 without


def test_presets_and_counts():
    assert shape_of("ml-1m") == Shape(6_040, 3_706, 1_000_209)
    assert shape_of() == Shape(138_493, 26_744, 20_000_000)
    assert shape_of("tiny", interactions=9_000) == Shape(1_000, 1_000, 9_000)


def test_small_and_dense_shapes_are_exact(tmp_path):
    folder = generate(tmp_path / "dense", Shape(7, 5, 35), seed=3, progress=False)  # every pair once
    data = RecData.load("synth", data_dir=folder).dataset
    assert (data.n_users, data.n_items, len(data.interactions)) == (7, 5, 35)
    folder = generate(tmp_path / "sparse", Shape(3, 40, 40), seed=3, progress=False)  # every item once
    assert RecData.load("synth", data_dir=folder).dataset.n_items == 40


@pytest.mark.parametrize(
    "shape, message",
    [
        (Shape(-5, 10, 100), "number of users must be from 1"),
        (Shape(10, 0, 100), "number of items must be from 1"),
        (Shape(10, 10, 2.5), "must be a whole number"),
        (Shape(10, 10, 101), "do not fit 10 users x 10 items"),
        (Shape(10, 50, 20), "cannot give each of 10 users and 50 items one"),
    ],
)
def test_bad_shapes_are_one_sentence(tmp_path, shape, message):
    with pytest.raises(InvalidArgumentError, match=message) as error:
        generate(tmp_path / "out", shape, progress=False)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_bad_targets_are_one_sentence(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    cases = [
        (dict(out=tmp_path / "full"), "is not empty; pass another --out, or --force"),
        (dict(out=tmp_path / "file"), "is not a folder"),
        (dict(out=" "), "empty name"),
        (dict(out=tmp_path / "a", name="../x"), "dataset name '../x' must be"),
        (dict(out=tmp_path / "a", seed=-1), "seed must be a whole number"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            generate(shape=TINY, progress=False, **kwargs)
    with pytest.raises(InvalidArgumentError, match="Unknown preset 'ml-30m'"):
        shape_of("ml-30m")
    folder = generate(tmp_path / "full", Shape(4, 4, 8), force=True, progress=False)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "synth.inter").is_file()


def test_the_command_writes_a_folder_or_prints_one_error_line(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli_main(["synth", "--preset", "tiny", "--users", "50", "--interactions", "2000", "--out", str(out),
                     "--name", "small", "--seed", "4", "--quiet"]) == 0  # fmt: skip
    assert "--dataset small --data-dir" in capsys.readouterr().out
    assert RecData.load("small", data_dir=out).dataset.n_users == 50
    assert cli_main(["synth", "--preset", "tiny", "--users", "-3", "--out", str(tmp_path / "e"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The number of users must be from 1") and err.count("\n") == 1


def test_the_writer_without_pyarrow_writes_the_same_bytes(monkeypatch):
    columns = (np.array([1, 22, 333], np.int32), np.array([-5, 0, 9], np.int64), np.array([1, 5, 3], np.int8))
    with_arrow = _tab_lines(*columns)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    assert _tab_lines(*columns) == with_arrow == b"1\t-5\t1\n22\t0\t5\n333\t9\t3\n"


def test_the_card_marks_the_data_simulated_and_a_bad_card_is_one_sentence(tiny_folder, tmp_path):
    import shutil

    from recmodels.errors import DataFormatError

    data = RecData.load("synth", tiny_folder)
    assert data.dataset.simulated and "recmodels synth" in data.dataset.citation
    folder = tmp_path / "copy"
    shutil.copytree(tiny_folder, folder)
    cards = {
        "[1]": "not a JSON object",
        '{"simulated": "yes"}': "must be true or false",
        '{"licence": "x"}': "takes only simulated, citation",
        "{": "not valid JSON",
        '"' + "x" * 70_000 + '"': "over 65,536 bytes",
        '{"citation": "' + "c" * 2_001 + '"}': "at most 2,000 characters",
    }
    for text, message in cards.items():
        (folder / "dataset.json").write_text(text)
        with pytest.raises(DataFormatError, match=message) as caught:
            RecData.load("synth", folder)
        assert "\n" not in str(caught.value)
    (folder / "dataset.json").unlink()
    assert not RecData.load("synth", folder).dataset.simulated  # no card: observed data, as before


def test_sizes_past_the_memory_are_refused_with_the_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(synth, "available_memory", lambda: 24 * 2**30)  # a 24 GB machine, whatever runs this
    argv = ["synth", "--users", "2000000000", "--interactions", "2000000000", "--out", str(tmp_path / "big"), "--quiet"]
    assert cli_main(argv) == 2
    assert capsys.readouterr().err == (
        "error: 2,000,000,000 users, 26,744 items and 2,000,000,000 interactions need about 537.0 GiB of memory to "
        "generate (32 bytes per interaction, 256 per user, 512 per item and 512 MB besides), but 24.0 GiB is "
        "available; ask for fewer.\n"
    )
    assert not (tmp_path / "big").exists()
    for shape in PRESETS.values():  # every preset stays allowed with a third of such a machine free
        synth.check_memory(shape, available=8 * 2**30)
    assert synth.memory_needed(PRESETS["ml-20m"]) < 3 * 2**30


def test_the_output_folder_is_checked_before_generating(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("recmodels.cli.synth.generate", lambda *a, **k: pytest.fail("generated before the check"))
    (tmp_path / "file").write_text("x")
    for out, message in [
        ("/proc/nope/x", "error: --out '/proc/nope/x' cannot be written ("),
        (str(tmp_path / "file" / "x"), f"error: --out '{tmp_path / 'file' / 'x'}' is inside '{tmp_path / 'file'}'"),
    ]:
        assert cli_main(["synth", "--preset", "tiny", "--out", out, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.slow
def test_the_memory_estimate_covers_a_measured_run(tmp_path):
    """The estimate is an upper bound of the peak resident memory of a run a few million rows long. The peak is the
    process's own VmHWM: ru_maxrss survives exec, so a child of a big pytest worker would report the worker's."""
    shape = Shape(20_000, 5_000, 2_000_000)
    script = (
        "import re, sys; from recmodels.data.synth import Shape, generate; "
        f"generate(sys.argv[1], Shape({shape.users}, {shape.items}, {shape.interactions}), progress=False); "
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)) * 1024)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.split()[-1])
    assert peak < synth.memory_needed(shape) < 3 * peak
