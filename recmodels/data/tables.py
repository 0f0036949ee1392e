"""Reading delimited text files into string tables, with errors that name the file and the line.

Lines end at ``"\\n"`` only (``"\\r\\n"`` counts as one): ``str.splitlines`` would also break at ``\\x85``,
``\\u2028``, ``\\x0c`` or a lone ``\\r``, which latin-1 GroupLens titles hold as ordinary characters.

That careful reader holds every line as a Python string, which at ml-20m scale (20M lines) takes minutes. A
plain file (printable ASCII fields without spaces, tabs, ``"\\n"`` or ``"\\r\\n"`` line ends) can only mean
one thing, so :func:`read_plain_tsv` reads it with pyarrow instead and gives the same values; anything else, or
any value it is not sure of, goes to the careful reader, which reads it or names the line that is wrong.
"""
from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
import pandas as pd

from recmodels.errors import DataFormatError, quote

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_SHOWN = 80  # characters of a file's value quoted in a message
# single characters that stand in for a multi-character separator such as ml-1m's '::' so that pandas' C
# parser can split the fields; one that the text does not hold is used
_STAND_INS = ("\x1f", "\x1e", "\x1d", "\x1c", "\x01", "\x02", "\x03", "\x04")
_INT64_LOW, _INT64_HIGH = -(2 ** 63), 2 ** 63
_EXACT_IN_FLOAT = 2.0 ** 53  # whole numbers below this survive the trip through float64
PLAIN_BYTES = bytes(range(0x21, 0x7F)) + b"\t\r\n"  # printable ASCII but the space, tab, line ends
_WHOLE_NUMBER = r"^-?[0-9]+$"  # pyarrow's integer parser also takes hexadecimal ("0x10"); the careful one does not


def shown(value) -> str:
    """``repr`` of a value from a file, cut with an ellipsis so that a message stays one short line."""
    return quote(value, MAX_SHOWN)


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text.

    A UTF-8 byte-order mark is dropped, and since it declares the encoding, the rest is then read as UTF-8
    whatever ``encoding`` says (an editor that re-saved a latin-1 GroupLens file wrote it). For the same
    reason latin-1 files that are valid UTF-8 are read as UTF-8: GroupLens' own latin-1 files are not, and
    reading a re-saved copy as latin-1 would turn "é" into "Ã©". UTF-16 text and NUL bytes (binary files)
    are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found; check the folder and the file name")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataFormatError(path, f"could not be read ({err.strerror or type(err).__name__}); check that "
                                    "it is a readable file") from None
    if raw.startswith(UTF16_BOMS):
        raise DataFormatError(path, "is UTF-16 text; save it as UTF-8", 1)
    marked = raw.startswith(UTF8_BOM)
    if marked:
        raw, encoding = raw[len(UTF8_BOM):], "utf-8"
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataFormatError(path, "holds a NUL byte, so it is binary rather than text; check that this is the "
                                    "right file", raw.count(b"\n", 0, nul) + 1)
    if encoding == "latin-1":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        name = {"utf-8": "UTF-8"}.get(encoding, encoding)
        problem = ("starts with a UTF-8 byte-order mark but is not valid UTF-8; save it as UTF-8" if marked
                   else f"is not valid {name} text; save it as {name}")
        raise DataFormatError(path, problem, raw.count(b"\n", 0, err.start) + 1) from None


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, broken at ``"\\n"`` only; a final line end does not start another line."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_delimited(path: Path, text: str, sep: str, names: list[str] | None, header_lines: int = 0) -> pd.DataFrame:
    """Parse ``text`` into a table of strings; every row must have exactly ``len(names)`` fields.

    With ``names=None`` the first line is the header. Blank lines are skipped; ``table.attrs["line_numbers"]``
    holds the file's line number (from 1) of each row.
    """
    lines = split_lines(text)
    if names is None:
        names = header_names(path, lines, sep)
    blank = np.fromiter((not line.strip() for line in lines), dtype=bool, count=len(lines))
    _check_field_counts(path, lines, blank, sep, len(names), header_lines)
    keep = ~blank
    keep[:header_lines] = False
    line_numbers = np.flatnonzero(keep) + 1
    body = [line for line, kept in zip(lines, keep) if kept]
    if not body:
        table = pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    else:
        table = _parse_fields(body, sep, names)
    if len(table) != len(body):  # the parser must see the lines we counted; anything else would shift them
        raise DataFormatError(path, "could not be split into lines consistently; check its line ends")
    table.attrs["line_numbers"] = line_numbers
    return table


def header_names(path: Path, lines: list[str], sep: str) -> list[str]:
    if not lines or not lines[0].strip():
        raise DataFormatError(path, "has no header line; its first line must name the fields", 1)
    names = [name.strip() for name in lines[0].split(sep)]
    seen = set()
    for name in names:
        if not name:
            raise DataFormatError(path, f"the header has an empty field name; separate the names by one {sep!r}", 1)
        if name in seen:
            raise DataFormatError(path, f"the header names the field {shown(name)} twice; each field needs its own "
                                        "name", 1)
        seen.add(name)
    return names


def _check_field_counts(path: Path, lines: list[str], blank: np.ndarray, sep: str, n_fields: int,
                        header_lines: int) -> None:
    counts = np.fromiter((line.count(sep) + 1 for line in lines), dtype=np.int64, count=len(lines))
    counts[blank] = n_fields
    bad = np.flatnonzero(counts[header_lines:] != n_fields)
    if not bad.size:
        return
    row = int(bad[0]) + header_lines
    problem = f"expected {n_fields} fields separated by {sep!r}, found {counts[row]}"
    if "\r" in lines[row].rstrip("\r"):
        problem += "; it holds a lone carriage return (\\r), which does not end a line: use \\n or \\r\\n line ends"
    raise DataFormatError(path, problem, row + 1)


def _parse_fields(body: list[str], sep: str, names: list[str]) -> pd.DataFrame:
    """Split checked lines into string columns, with pandas' C parser where a one-character separator allows."""
    text = "\n".join(body)
    parse_sep = sep if len(sep) == 1 else next((c for c in _STAND_INS if c not in text), None)
    if parse_sep is None:  # every stand-in occurs in the text: split in Python (slower, same result)
        columns = zip(*(line.split(sep) for line in body))
        return pd.DataFrame({name: pd.Series(list(values), dtype=str) for name, values in zip(names, columns)})
    if parse_sep != sep:
        text = text.replace(sep, parse_sep)  # replaces exactly the occurrences that str.count counted
    # lineterminator="\n": the C parser would otherwise also end a line at a lone "\r"
    return pd.read_csv(io.StringIO(text), sep=parse_sep, header=None, names=names, dtype=str,
                       keep_default_na=False, na_filter=False, quoting=csv.QUOTE_NONE, engine="c",
                       lineterminator="\n", skip_blank_lines=False)


def line_of(table: pd.DataFrame, row: int) -> int | None:
    """The file's line number of a table row, when the table came from :func:`read_delimited`."""
    numbers = table.attrs.get("line_numbers")
    return int(numbers[row]) if numbers is not None else None


def require_rows(table: pd.DataFrame, path: Path, what: str, how: str) -> None:
    """Refuse a table without rows: nothing can be trained or shown from it."""
    if len(table) == 0:
        raise DataFormatError(path, f"holds no {what}; {how}")


def numeric_column(table: pd.DataFrame, column: str, path: Path, what: str) -> np.ndarray:
    values = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataFormatError(path, f"{what} {shown(table[column].iloc[bad[0]])} is not a number",
                              line_of(table, bad[0]))
    return values


def rating_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Ratings as float64 numbers that are also finite as float32 (the dtype they are kept in)."""
    values = numeric_column(table, column, path, "rating")
    bad = np.flatnonzero(np.abs(values) > np.finfo(np.float32).max)
    if bad.size:
        raise DataFormatError(path, f"rating {shown(table[column].iloc[bad[0]])} is too large to keep as a "
                                    "32-bit float; rescale the ratings", line_of(table, bad[0]))
    return values


def timestamp_column(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """Timestamps as int64, exactly as written.

    Any whole number within int64 is kept, negative ones included (times before 1970), also when written
    as a float (``978300760.0``, ``9.783e8``). Fractional timestamps are refused rather than truncated,
    since truncating would silently tie or reorder interactions; so are values beyond int64.
    """
    values = numeric_column(table, column, path, "timestamp")
    small = np.abs(values) < _EXACT_IN_FLOAT
    fractional = np.flatnonzero(small & (values != np.floor(values)))
    if fractional.size:
        _refuse_timestamp(table, column, path, int(fractional[0]), "is not a whole number; the split needs whole "
                                                                   "numbers such as Unix seconds")
    stamps = np.where(small, values, 0).astype(np.int64)
    for row in np.flatnonzero(~small):  # beyond float64's exact range: read the text itself
        stamps[row] = _exact_timestamp(table, column, path, int(row))
    return stamps


def _exact_timestamp(table: pd.DataFrame, column: str, path: Path, row: int) -> int:
    text = table[column].iloc[row].strip()
    try:
        value = Decimal(text)
    except InvalidOperation:  # numeric_column accepted it, so only an odd spelling gets here
        _refuse_timestamp(table, column, path, row, "is not a number")
    if value != value.to_integral_value():
        _refuse_timestamp(table, column, path, row, "is not a whole number; the split needs whole numbers such "
                                                    "as Unix seconds")
    if not _INT64_LOW <= value < _INT64_HIGH:
        _refuse_timestamp(table, column, path, row, "does not fit in a 64-bit integer; use seconds (or "
                                                    "milliseconds) since 1970")
    return int(value)


def _refuse_timestamp(table: pd.DataFrame, column: str, path: Path, row: int, problem: str):
    raise DataFormatError(path, f"timestamp {shown(table[column].iloc[row])} {problem}", line_of(table, row))


def required_text_column(table: pd.DataFrame, column: str, path: Path, what: str) -> pd.Series:
    values = table[column].str.strip()
    bad = np.flatnonzero((values == "").to_numpy())
    if bad.size:
        raise DataFormatError(path, f"{what} is empty", line_of(table, bad[0]))
    return values


def read_plain_bytes(path: Path) -> bytes | None:
    """The file's bytes when every one is in ``PLAIN_BYTES`` and each ``"\\r"`` ends a line (pyarrow would also end
    one at a lone ``"\\r"``); None otherwise (or unreadable)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    if raw.translate(None, PLAIN_BYTES) or (b"\r" in raw and raw.count(b"\r") != raw.count(b"\r\n")):
        return None
    return raw


def read_plain_tsv(raw: bytes, n_fields: int, kinds: dict[int, str]) -> dict[int, object] | None:
    """The fields at the positions of ``kinds`` from the lines after the header of plain tab-separated bytes
    (:func:`read_plain_bytes`), read by pyarrow.

    A "token" comes back as a pandas Categorical of strings; a "number" as float64, each distinct text read as
    :func:`numeric_column` reads it; a "whole" number (written ``-?[0-9]+``) as int64. Returns None, so that the
    careful reader decides, when pyarrow is missing, the file has no row, a line has other than ``n_fields``
    fields, a token is empty, or a number is not finite or not written as these read it.
    """
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
    except ImportError:
        return None
    names = [f"f{i}" for i in range(n_fields)]
    types = {"token": pa.dictionary(pa.int32(), pa.string()), "number": pa.dictionary(pa.int32(), pa.string()),
             "whole": pa.string()}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(raw)),
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={names[i]: types[kind] for i, kind in kinds.items()}, null_values=[],
                strings_can_be_null=False, include_columns=[names[i] for i in sorted(kinds)]))
    except pa.ArrowException:  # a line with another field count, mostly
        return None
    if table.num_rows == 0:
        return None
    out = {}
    for position, kind in kinds.items():
        column = table.column(names[position])
        if kind == "whole":
            if not pc.all(pc.match_substring_regex(column, _WHOLE_NUMBER)).as_py():
                return None
            try:
                out[position] = pc.cast(column, pa.int64()).to_numpy()
            except pa.ArrowException:  # beyond int64
                return None
            continue
        values = column.to_pandas()  # one Categorical over every chunk's dictionary
        categories = values.cat.categories
        if kind == "token":
            if (categories == "").any():
                return None
            out[position] = values.array
            continue
        numbers = pd.to_numeric(pd.Series(categories.to_numpy(dtype=object), dtype=str).str.strip(),
                                errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(numbers).all():
            return None
        out[position] = numbers[values.cat.codes.to_numpy()]
    return out
