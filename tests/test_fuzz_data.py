"""Fuzzing the loaders: mutated GroupLens and RecBole folders either load into a sound schema or stop with one
short sentence that names the file.

Each example starts from a small valid folder, applies one seeded mutation to one file and loads it through
``RecData.load`` (which calls ``load_dataset``). Hypothesis runs a fixed, derandomised budget.
"""

from __future__ import annotations

import random
import re
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels.data import RecData
from recmodels.data.tables import read_delimited
from recmodels.errors import DataFormatError, RecModelsError

FLAGS = lambda on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731

# small valid folders, as the bytes of each file
ML100K = {
    "u.data": b"1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t4\t891717742\n2\t30\t1\t878887116\n"
    b"3\t20\t2\t880606923\n3\t30\t5\t886397596\n",
    "u.user": b"1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n",
    "u.item": (
        f"10|Caf\xe9 Society (1995)|01-Jan-1995||http://x|{FLAGS({1, 5})}\n"
        f"20|Heat\x85 Wave (1995)|15-Dec-1995||http://x|{FLAGS({1})}\n"
        f"30|Old One (1950)|01-Jan-1950||http://x|{FLAGS({8})}\n"
    ).encode("latin-1"),
}
ML1M = {
    "ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::914::3::978299999\n",
    "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
    "movies.dat": (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "914::My Fair Lady (1964)::Musical|Romance\n"
    ).encode("latin-1"),
}
ATOMIC = {
    "d.inter": b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    b"a\tx\t5\t1\na\ty\t2\t2\nb\tx\t4\t3\nb\tz\t3\t7\n",
    "d.user": b"user_id:token\tage:token\tgender:token\na\t24\tF\nb\t61\tM\n",
    "d.item": "item_id:token\ttitle:token_seq\trelease_year:token\tclass:token_seq\n"
    "x\tA kettle\t1999\tHome Kitchen\ny\tUn caf\u00e9\tunknown\tHome\nz\tA lamp\t2004\tLight\n".encode(),
}
FOLDERS = {"ml-100k": ML100K, "ml-1m": ML1M, "atomic": ATOMIC}
INTERACTION_FILE = {"ml-100k": "u.data", "ml-1m": "ratings.dat", "atomic": "d.inter"}

ODD_NUMBERS = [
    b"1e30",
    b"-1e400",
    b"nan",
    b"inf",
    b"9" * 40,
    b"1.5",
    b"-0",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"1e38",
    b"3.5e38",
    b"0x10",
    b"1_000",
    b"",
    b" ",
    b"\xd9\xa3",
    b"\xb2",
]
ODD_TOKENS = [
    b"<pad>",
    b"a b",
    b"'",
    b'"',
    b"#",
    b"\\",
    b"\xc2\xb2",
    b"\xef\xbb\xbf",
    b"\r",
    b"\x85",
    b"\x0c",
    b"\xe2\x80\xa8",
    b"::",
    b":",
    b"\t",
    b"|",
    b"x" * 5000,
    b"\x1f",
    b"\x1e",
]
LINE_ENDS = [b"\r\n", b"\r", b"\n\n", b"\x85", b"\xe2\x80\xa8", b"\x0c", b"\n\r"]
BOMS = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf\xef\xbb\xbf"]


# ---------------------------------------------------------------- mutations: (rng, file bytes) -> file bytes
def _insert_random_bytes(rng, data):
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))) + data[at:]


def _replace_byte(rng, data):
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]


def _truncate(rng, data):
    return data[: rng.randrange(len(data) + 1)]


def _separator_positions(data):
    return [m.start() for m in re.finditer(rb"::|\t|\|", data)]


def _delete_separator(rng, data):
    spots = _separator_positions(data)
    if not spots:
        return data
    at = rng.choice(spots)
    width = 2 if data[at : at + 2] == b"::" else 1
    return data[:at] + data[at + width :]


def _duplicate_separator(rng, data):
    spots = _separator_positions(data)
    if not spots:
        return data
    at = rng.choice(spots)
    width = 2 if data[at : at + 2] == b"::" else 1
    return data[:at] + data[at : at + width] * 2 + data[at + width :]


def _odd_line_ends(rng, data):
    end = rng.choice(LINE_ENDS)
    if rng.random() < 0.5:
        return data.replace(b"\n", end)
    lines = data.split(b"\n")
    at = rng.randrange(len(lines))
    lines[at] += end
    return b"\n".join(lines)


def _bom(rng, data):
    return rng.choice(BOMS) + data


def _field_spans(data):
    return [m.span() for m in re.finditer(rb"[^\t|:\n]+", data)]


def _replace_field(rng, data, values):
    spans = _field_spans(data)
    if not spans:
        return data
    start, end = rng.choice(spans)
    return data[:start] + rng.choice(values) + data[end:]


def _odd_number(rng, data):
    return _replace_field(rng, data, ODD_NUMBERS)


def _odd_token(rng, data):
    return _replace_field(rng, data, ODD_TOKENS)


def _emptied(rng, data):
    return rng.choice([b"", b"\n", b"  \n\n", b"\r\n", data.split(b"\n")[0] + b"\n"])


def _binary_junk(rng, data):
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))


def _shuffle_lines(rng, data):
    lines = data.split(b"\n")
    action = rng.randrange(3)
    at = rng.randrange(len(lines))
    if action == 0:
        lines.insert(at, lines[rng.randrange(len(lines))])
    elif action == 1:
        del lines[at]
    else:
        rng.shuffle(lines)
    return b"\n".join(lines)


def _long_line(rng, data):
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice([b"7", b"z", b"\xe9"]) * 200_000 + data[at:]


MUTATIONS = [
    _insert_random_bytes,
    _replace_byte,
    _truncate,
    _delete_separator,
    _duplicate_separator,
    _odd_line_ends,
    _bom,
    _odd_number,
    _odd_token,
    _emptied,
    _binary_junk,
    _shuffle_lines,
    _long_line,
]


# ---------------------------------------------------------------- the property
def _whole_numbers_in(data: bytes) -> set[int]:
    """Every whole number written in a file, so timestamps can be checked against what was there."""
    numbers = set()
    try:  # decoded as the loader does: UTF-8 where it is valid, so Unicode spaces (U+2028) split tokens too
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    for token in re.split(r"::|[\t|\s]+", text):
        try:
            value = Decimal(token.strip())
        except (InvalidOperation, ValueError):
            continue
        if value.is_finite() and value == value.to_integral_value():
            numbers.add(int(value))
    return numbers


def assert_sound(rec: RecData, interaction_bytes: bytes) -> None:
    data = rec.dataset
    frame = data.interactions
    assert len(frame) > 0
    assert data.user_ids[0] == "<pad>" and data.item_ids[0] == "<pad>"
    assert set(frame["user"]) == set(range(1, data.n_users + 1))  # contiguous from 1, 0 is padding only
    assert set(frame["item"]) == set(range(1, data.n_items + 1))
    assert all(isinstance(raw, str) and raw for raw in data.user_ids[1:])
    assert all(isinstance(raw, str) and raw for raw in data.item_ids[1:])
    assert frame["rating"].dtype == np.float32 and np.isfinite(frame["rating"]).all()
    assert frame["timestamp"].dtype == np.int64
    assert set(frame["timestamp"].tolist()) <= _whole_numbers_in(interaction_bytes)  # exactly as written
    order = np.lexsort((frame["item"], frame["timestamp"], frame["user"]))
    assert np.array_equal(order, np.arange(len(frame)))
    assert len(data.user_features) == data.n_users and len(data.item_features) == data.n_items
    assert str(data.item_features["year"].dtype) == "Int64"
    assert all(isinstance(title, str) and title for title in data.item_features["title"])
    assert all(isinstance(g, tuple) and all(isinstance(x, str) and x for x in g) for g in data.item_features["genres"])
    assert re.fullmatch(r"[0-9a-f]{16}", rec.fingerprint)
    assert rec.part.shape == (len(frame),)


def assert_one_sentence(error: RecModelsError, folder: Path) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) < 300, message
    assert str(folder) in message, message  # names the file (or the folder) it is about


def load_or_refuse(folder: Path, files: dict[str, bytes], interaction_file: str) -> str:
    for name, content in files.items():
        (folder / name).write_bytes(content)
    try:
        rec = RecData.load("d", data_dir=folder)
    except RecModelsError as error:
        assert_one_sentence(error, folder)
        return "refused"
    assert_sound(rec, files[interaction_file])
    return "loaded"


@pytest.mark.parametrize("layout", sorted(FOLDERS))
def test_the_unmutated_folders_load(layout, tmp_path):
    assert load_or_refuse(tmp_path, FOLDERS[layout], INTERACTION_FILE[layout]) == "loaded"


@settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.sampled_from(sorted(FOLDERS)),
    which=st.integers(0, 2),
    mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2),
    seed=st.integers(0, 2**32 - 1),
)
def test_mutated_folders_load_soundly_or_stop_with_one_sentence(layout, which, mutations, seed):
    files = dict(FOLDERS[layout])
    target = sorted(files)[which]
    rng = random.Random(seed)
    for mutate in mutations:
        files[target] = mutate(rng, files[target])
    with tempfile.TemporaryDirectory() as folder:
        load_or_refuse(Path(folder), files, INTERACTION_FILE[layout])


def test_the_fuzz_budget_sees_both_outcomes(tmp_path):
    """A mutation budget that only ever loads (or only ever refuses) would test nothing."""
    outcomes = set()
    rng = random.Random(7)
    for index in range(60):
        layout = sorted(FOLDERS)[index % 3]
        files = dict(FOLDERS[layout])
        target = rng.choice(sorted(files))
        files[target] = rng.choice(MUTATIONS)(rng, files[target])
        folder = tmp_path / str(index)
        folder.mkdir()
        outcomes.add(load_or_refuse(folder, files, INTERACTION_FILE[layout]))
    assert outcomes == {"loaded", "refused"}


# ---------------------------------------------------------------- the splitter itself
# characters that str.splitlines or pandas' default C parser would take for line ends, the stand-ins used for
# '::', quotes and comment marks: all are ordinary field content
FIELD_CHARS = "ab1 :|,\t\r\x85\u2028\u2029\x0c\x0b\x1c\x1d\x1e\x1f\x01\x02\x03\x04'\"#\\\ufeffé"


@settings(deadline=None, derandomize=True)
@given(
    sep=st.sampled_from(["\t", "|", "::", ","]),
    rows=st.lists(st.lists(st.text(FIELD_CHARS, max_size=6), min_size=3, max_size=3), min_size=1, max_size=8),
    crlf=st.booleans(),
)
def test_fields_split_at_the_separator_and_lines_at_newlines_only(sep, rows, crlf):
    text = ("\r\n" if crlf else "\n").join(sep.join(row) for row in rows) + "\n"
    lines = text.replace("\r\n", "\n").split("\n")[:-1]
    expected = [(number, line.split(sep)) for number, line in enumerate(lines, start=1) if line.strip()]
    if any(len(fields) != 3 for _, fields in expected):  # a field held the separator: the count must catch it
        with pytest.raises(DataFormatError, match=re.escape(f"separated by {sep!r}")):
            read_delimited(Path("f.txt"), text, sep, names=["a", "b", "c"])
        return
    table = read_delimited(Path("f.txt"), text, sep, names=["a", "b", "c"])
    assert table.values.tolist() == [fields for _, fields in expected]
    assert table.attrs["line_numbers"].tolist() == [number for number, _ in expected]


def test_a_two_character_separator_splits_the_same_when_every_stand_in_is_taken():
    stand_ins = "\x1f\x1e\x1d\x1c\x01\x02\x03\x04"
    text = f"1::{stand_ins}::x:y\n\n2::a\tb::\r\n"
    table = read_delimited(Path("ratings.dat"), text, "::", names=["a", "b", "c"])
    assert table.values.tolist() == [["1", stand_ins, "x:y"], ["2", "a\tb", ""]]
    assert table.attrs["line_numbers"].tolist() == [1, 3]
    assert table["b"].dtype == read_delimited(Path("r"), "1::a::b\n", "::", names=["a", "b", "c"])["b"].dtype
