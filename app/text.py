"""Strings from data (titles, ids, features, names, paths, messages) shown as literal text.

Streamlit renders markdown, its own directives (``:red[...]``, ``:material/icon:``, emoji shortcodes) and LaTeX in
titles, captions, alerts, metric labels, tabs and button labels. A string from a dataset or a checkpoint is
none of those: :func:`literal` makes it plain text, one line, cut to a width. :func:`plain` does the cleaning and
cutting alone, for places that show plain text anyway (selectbox options, plotly labels after their own escape).
"""

from __future__ import annotations

import re

from recmodels.viz.labels import BLANK, plain

# every ASCII punctuation character can be backslash-escaped in CommonMark, and an escaped one is always literal
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# GitHub-flavoured markdown turns bare URLs, www. names and e-mail addresses into links after unescaping, so
# backslashes cannot stop it; an invisible word joiner inside the pattern does
_WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(://|www\.|@)")


def cut_cells(frame, width: int = 200, keep: tuple[str, ...] = ("image",)):
    """A copy of a DataFrame to show, with its text cells cut to one line of ``width`` (a 1 MB title would
    otherwise travel to the browser whole); columns in ``keep`` (data URIs) stay as they are."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if column not in keep and (is_object_dtype(values) or is_string_dtype(values)):
            out[column] = [plain(v, width, blank="") if isinstance(v, str) else v for v in values]
    return out


def literal(value, width: int = 80, blank: str = BLANK) -> str:
    """``value`` as literal text inside Streamlit markdown: cleaned, cut to ``width`` and every markdown or
    Streamlit special character backslash-escaped (directives, ``$`` for LaTeX, HTML, links, emphasis, tables)."""
    text = _AUTOLINK.sub(_break_autolink, plain(value, width, blank))
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def code(value, width: int = 80, blank: str = BLANK) -> str:
    """``value`` as an inline code span: literal inside (no markdown, directives or LaTeX), cut to ``width``.

    The fence is one backtick longer than the longest run of backticks in the text, as CommonMark requires."""
    text = plain(value, width, blank)
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _break_autolink(match: re.Match) -> str:
    token = match.group(0)
    return token[:3] + _WORD_JOINER + token[3:] if token.lower() == "www." else _WORD_JOINER + token


def filename(value, width: int = 40) -> str:
    """A safe fragment of a download file name: letters, digits, ``.``, ``_`` and ``-`` only, cut to ``width``."""
    return _FILENAME_UNSAFE.sub("-", plain(value, 4 * width, blank=""))[:width].strip(".-") or "x"


STAGE_TITLES = {"retriever": "Stage 1 · retrieval", "ranker": "Stage 2 · ranking"}  # a pipeline's, retriever first
