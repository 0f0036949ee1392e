"""Plain-text and Markdown tables of metrics, for the command line and the generated blocks of the docs."""

from __future__ import annotations

import math
from pathlib import Path

METRIC_LABELS = {
    "ndcg@10": "NDCG@10",
    "ndcg@20": "NDCG@20",
    "recall@10": "Recall@10",
    "recall@20": "Recall@20",
    "hr@10": "HR@10",
    "mrr@10": "MRR@10",
    "auc": "AUC",
    "gauc": "GAUC",
    "logloss": "LogLoss",
    "shortlist_recall@10": "Ranker's top 10 kept",
}


def format_value(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def text_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or [METRIC_LABELS.get(c, c) for c in columns]
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([line, rule, *body])


def markdown_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    headers = headers or [METRIC_LABELS.get(c, c) for c in columns]
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    for row in rows:
        out.append("| " + " | ".join(format_value(row.get(c)) for c in columns) + " |")
    return "\n".join(out)


def write_between_markers(path: Path, start: str, end: str, text: str) -> None:
    """Replace what lies between the lines ``start`` and ``end`` of a file (a generated block of a docs page or the
    README) with ``text``. Raises SystemExit naming the markers when the file lacks them."""
    content = path.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"{path} has no {start} ... {end} markers; add them where the table goes")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{tail}")
