"""Labels for figures: any string from data as one clean line, cut to a width, and escaped for plotly.

Plotly renders a subset of HTML in titles, tick labels, annotations and hover text, so every label that comes
from a dataset or a checkpoint goes through :func:`short` (cut and escaped). :func:`plain` does the cleaning and
cutting alone, for places that show plain text anyway (the app's selectbox options, or before markdown escaping).
"""

from __future__ import annotations

import html
import math
import unicodedata

ELLIPSIS = "…"
BLANK = "(blank)"
# bidirectional overrides and isolates reorder what follows them (a title could spoof the text after it)
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"))


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


def short(label, width: int = 32) -> str:
    """A label for a figure: one line, cut with an ellipsis, with ``<``, ``>`` and ``&`` escaped for plotly."""
    return html.escape(plain(label, width), quote=False)


def shorts(labels, width: int = 32) -> list[str]:
    return [short(label, width) for label in labels]


def axis_title(axis: str) -> str:
    """An axis name as words for a figure ("query_item" -> "query item"), escaped like any label."""
    return short(str(axis).replace("_", " "))


def unique_labels(labels: list[str], positions) -> list[str]:
    """Category labels that stay distinct when two items share a title."""
    return [f"{p + 1}. {short(labels[p])}" for p in positions]
