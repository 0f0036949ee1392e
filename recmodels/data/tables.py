"""Reading delimited text files into string tables, with errors that name the file and the line."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataFormatError


def read_text(path: Path, encoding: str = "utf-8") -> str:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found; check the folder and the file name")
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataFormatError(path, f"is not valid {encoding} text", line) from None


def read_delimited(path: Path, text: str, sep: str, names: list[str] | None, header_lines: int = 0) -> pd.DataFrame:
    """Parse ``text`` into a table of strings; every row must have exactly ``len(columns)`` fields."""
    lines = text.splitlines()
    if names is None:
        if not lines or not lines[0].strip():
            raise DataFormatError(path, "is empty; it needs a header line", 1)
        names = lines[0].split(sep)
    n_fields = len(names)
    counts = np.fromiter((line.count(sep) + 1 for line in lines), dtype=np.int64, count=len(lines))
    blank = np.fromiter((not line.strip() for line in lines), dtype=bool, count=len(lines))
    counts[blank] = n_fields
    bad = np.flatnonzero(counts[header_lines:] != n_fields)
    if bad.size:
        line_no = int(bad[0]) + header_lines + 1
        raise DataFormatError(path, f"expected {n_fields} fields separated by {sep!r}, found "
                                    f"{counts[bad[0] + header_lines]}", line_no)
    body = "\n".join(line for line, empty in zip(lines[header_lines:], blank[header_lines:]) if not empty)
    if not body:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in names})
    table = pd.read_csv(io.StringIO(body), sep=sep, header=None, names=names, dtype=str, keep_default_na=False,
                        quoting=csv.QUOTE_NONE, engine="c" if len(sep) == 1 else "python")
    table.attrs["line_numbers"] = np.flatnonzero(~blank[header_lines:]) + header_lines + 1
    return table


def numeric_column(table: pd.DataFrame, column: str, path: Path, what: str) -> np.ndarray:
    values = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        line = int(table.attrs["line_numbers"][bad[0]]) if "line_numbers" in table.attrs else None
        raise DataFormatError(path, f"{what} {table[column].iloc[bad[0]]!r} is not a number", line)
    return values


def required_text_column(table: pd.DataFrame, column: str, path: Path, what: str) -> pd.Series:
    values = table[column].str.strip()
    bad = np.flatnonzero((values == "").to_numpy())
    if bad.size:
        line = int(table.attrs["line_numbers"][bad[0]]) if "line_numbers" in table.attrs else None
        raise DataFormatError(path, f"{what} is empty", line)
    return values
