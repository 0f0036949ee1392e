"""Strings from data (titles, ids, features, names, paths, messages) shown as literal text.

Streamlit renders markdown, its own directives (``:red[...]``, ``:material/icon:``, emoji shortcodes) and LaTeX in
titles, captions, alerts, metric labels, tabs and button labels. A string from a dataset or a checkpoint is
none of those: :func:`literal` makes it plain text, one line, cut to a width. :func:`plain` does the cleaning and
cutting alone, for places that show plain text anyway (selectbox options, plotly labels after their own escape).
"""
from __future__ import annotations

import math
import re
import unicodedata

ELLIPSIS = "…"
BLANK = "(blank)"
# every ASCII punctuation character can be backslash-escaped in CommonMark, and an escaped one is always literal
_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
# bidirectional overrides and isolates reorder what follows them (a title could spoof the text after it)
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"))
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# GitHub-flavoured markdown turns bare URLs, www. names and e-mail addresses into links after unescaping, so
# backslashes cannot stop it; an invisible word joiner inside the pattern does
_WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(://|www\.|@)")


def _as_text(value) -> str:
    """``value`` as a string; None and NaN (pandas' missing values) are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        return value if isinstance(value, str) else str(value)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not become the page's error
        return f"<{type(value).__name__}>"


def _clean(text: str) -> str:
    """One line of printable text: controls and line breaks become spaces, bidi controls go, lone surrogates
    (which cannot be encoded to UTF-8 for the browser) become U+FFFD."""
    text = text.translate(_BIDI_CONTROLS)
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category == "Cs":
            out.append("\ufffd")
        else:
            out.append(char)
    return "".join(out)


def plain(value, width: int = 80, blank: str = BLANK) -> str:
    """``value`` as one clean line of at most ``width`` characters (cut with an ellipsis); ``blank`` when it
    holds nothing visible. Not escaped: for widgets that show plain text."""
    text = _as_text(value).lstrip()
    # clean a bounded prefix, so a 1 MB string costs no more than a short one
    prefix = text[: 2 * width + 16]
    line = _clean(prefix).strip()
    if not line:
        return blank
    if len(line) > width or len(text) > len(prefix):
        line = line[: max(width - 1, 0)].rstrip() + ELLIPSIS
    return line


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
