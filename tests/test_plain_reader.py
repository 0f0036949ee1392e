"""The fast reader of plain atomic .inter files (pyarrow) against the careful one: on any file it either declines
(and the careful reader decides) or gives exactly the careful reader's table, so it cannot change a dataset, a
fingerprint or an error message. Scale data and ml-100k take the fast path."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_data import ATOMIC, MUTATIONS

from recmodels.data.atomic import _interactions, _plain_interactions
from recmodels.data.loaders import recbole_ml100k_folder
from recmodels.data.schema import build_interaction_data
from recmodels.data.synth import PRESETS, generate
from recmodels.errors import RecModelsError

HEADER = b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def read_both(path: Path) -> str:
    """'fast' when the fast reader gave the careful reader's table, 'careful' when it declined a file the careful
    reader reads, 'refused' when both stop (the fast one by declining)."""
    fast = _plain_interactions(path)
    try:
        expected = build_interaction_data("d", _interactions(path), None, None)
    except RecModelsError:
        assert fast is None, "the fast reader read a file the careful one refuses"
        return "refused"
    if fast is None:
        return "careful"
    got = build_interaction_data("d", fast, None, None)
    pd.testing.assert_frame_equal(got.interactions, expected.interactions)
    assert got.user_ids.tolist() == expected.user_ids.tolist()
    assert got.item_ids.tolist() == expected.item_ids.tolist()
    return "fast"


def _write(folder: Path, content: bytes) -> Path:
    path = folder / "d.inter"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    "body, outcome",
    [
        (b"a\tx\t5\t1\nb\tx\t4\t3\na\ty\t2\t2\n", "fast"),
        (b"a\tx\t5\t1\r\nb\tx\t4\t3\r\n\r\n\na\ty\t2\t2", "fast"),  # CRLF, blank lines, no final line end
        (b"7\t0x10\t+5\t0005\n7\t<pad>\t.5\t-0\n08\t10\t5.\t-9223372036854775808\n", "fast"),
        (b"a\tx\t-0\t9223372036854775807\na\ty\t1E0\t1\n", "fast"),
        (b"a\tx\t5\t0x10\n", "refused"),  # pyarrow reads hexadecimal integers; the careful reader does not
        (b"a\tx\t5\t1e3\n", "careful"),  # a whole number written as a float
        (b"a\tx\t5\t9223372036854775808\n", "refused"),
        (b"a\tx\tnan\t1\n", "refused"),
        (b"a\tx\t1e39\t1\n", "refused"),
        (b"a\tx\tinf\t1\n", "refused"),
        (b"a\tx\t5\t1\rb\tx\t4\t3\n", "refused"),  # a lone carriage return is content, not a line end
        (b"a\t\t5\t1\n", "refused"),
        (b"a\tx\t5\n", "refused"),
        (b"a\tx\t5\t1\t9\n", "refused"),
        (b" a\tx\t5\t1\n", "careful"),  # spaces are stripped by the careful reader
        ("\u00e9\tx\t5\t1\n".encode(), "careful"),
        (b"", "refused"),
        (b"\n\r\n", "refused"),
    ],
)
def test_odd_files_are_read_as_the_careful_reader_reads_them(tmp_path, body, outcome):
    assert read_both(_write(tmp_path, HEADER + body)) == outcome


def test_odd_headers_go_to_the_careful_reader(tmp_path):
    assert (
        read_both(
            _write(
                tmp_path, b"item_id:token\tuser_id:token\ttimestamp:float\tx:token_seq\r\nx\ta\t1\tq r\nx\tb\t2\tq\n"
            )
        )
        == "careful"
    )  # a space in another field
    assert (
        read_both(
            _write(tmp_path, b"item_id:token\tuser_id:token\ttimestamp:float\tx:token\r\nx\ta\t1\tq\ny\ta\t2\tq\n")
        )
        == "fast"
    )  # implicit feedback, other order
    for header in (
        b"user_id:token\titem_id:token\n",
        b"user_id\titem_id:token\ttimestamp:float\n",
        b"\xef\xbb\xbf" + HEADER,
    ):
        assert read_both(_write(tmp_path, header + b"a\tx\t1\n")) in ("careful", "refused")


@settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2), seed=st.integers(0, 2**32 - 1))
def test_mutated_files_are_read_as_the_careful_reader_reads_them(mutations, seed):
    content = ATOMIC["d.inter"]
    rng = random.Random(seed)
    for mutate in mutations:
        content = mutate(rng, content)
    with tempfile.TemporaryDirectory() as folder:
        read_both(_write(Path(folder), content))


@pytest.mark.slow
def test_scale_data_and_ml100k_take_the_fast_path(tmp_path):
    folder = generate(tmp_path / "tiny", PRESETS["tiny"], progress=False)
    assert read_both(folder / "synth.inter") == "fast"
    assert read_both(Path(str(recbole_ml100k_folder())) / "ml-100k.inter") == "fast"  # CRLF line ends
