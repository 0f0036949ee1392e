"""Pipeline rows of ``python -m recmodels bench``: a retriever's top N ranked by a ranker, timed per operation.

Operations, for one user:

- ``recommend``: the retriever scores the whole catalogue, keeps its top N, the ranker scores those N and the top
  10 are taken; beside it ``ranker_full``, the ranker over the whole catalogue (what the shortlist saves);
- ``explain``: both stages' explanation of one pair (every attention map, then integrated gradients with 50 steps,
  in each stage), beside ``explain_ranker``, the ranker's alone; ``explain_ratio`` is the first over the second;
- ``IG top-10``: integrated gradients (50 steps) of the pipeline's top 10 in both stages, batched per stage.

Scales as :mod:`recmodels.bench.latency`: ml-100k through the shipped stages (the most active user, their own
history), and synthetic catalogues at ml-1m and ml-20m scale with each stage's architecture and random weights.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from recmodels.bench.latency import _real, _synthetic, timed
from recmodels.checkpoint.io import read_config
from recmodels.checkpoint.pipeline import read_pipeline
from recmodels.eval.metrics import top_k
from recmodels.explain.attributions import integrated_gradients
from recmodels.models import Batch

__all__ = ["PIPELINE_COLUMNS", "PIPELINE_HEADERS", "bench_pipeline", "run_pipeline_bench"]

PIPELINE_COLUMNS = [
    "pipeline", "scale", "device", "items", "shortlist", "recommend_ms", "ranker_full_ms", "explain_ms",
    "explain_ranker_ms", "explain_ratio", "ig_top10_ms",
]  # fmt: skip
PIPELINE_HEADERS = [
    "pipeline", "scale", "device", "items", "N", "recommend ms/user", "ranker alone, whole catalogue ms",
    "explain both stages ms (1 pair)", "explain ranker alone ms", "ratio", "IG top-10 ms (both stages)",
]  # fmt: skip


def _explain(models, pair: Batch) -> None:
    """What explaining one pair costs per stage: every attention map, then integrated gradients (50 steps)."""
    for model in models:
        with torch.no_grad():
            model(pair, output_attentions=True)
        if model.input_taps():
            integrated_gradients(model, pair, n_steps=50)


@torch.no_grad()
def _recommend(retriever, ranker, user, history, items, shortlist: int) -> torch.Tensor:
    """The pipeline's top 10 item indices (1-based)."""
    _, kept = top_k(retriever.score_items(user, history, items)[0], shortlist)
    shortlisted = items[kept]
    _, order = top_k(ranker.score_items(user, history, shortlisted)[0], min(10, shortlist))
    return shortlisted[order]


def bench_pipeline(retriever, ranker, user: int, history, n_items: int, shortlist: int, device, repeats: int) -> dict:
    """One row of timings (ms) for a pipeline of ``retriever`` and ``ranker`` over ``n_items`` items."""
    user = torch.tensor([user], device=device)
    items = torch.arange(1, n_items + 1, device=device)
    shortlist = min(shortlist, n_items)
    row = {"shortlist": shortlist}
    row["recommend_ms"] = timed(lambda: _recommend(retriever, ranker, user, history, items, shortlist), device, repeats)
    with torch.no_grad():
        row["ranker_full_ms"] = timed(lambda: ranker.score_items(user, history, items), device, max(1, repeats // 4))
    top = _recommend(retriever, ranker, user, history, items, shortlist)
    pair = Batch(user, top[:1], history)
    few = max(1, repeats // 4)
    _explain((retriever, ranker), pair)  # warm-up
    # the two explanations alternate, so that a busy moment of the machine falls on both alike
    both, alone = [], []
    for _ in range(repeats):
        both.append(timed(lambda: _explain((retriever, ranker), pair), device, 1, warmup=0))
        alone.append(timed(lambda: _explain((ranker,), pair), device, 1, warmup=0))
    row["explain_ms"], row["explain_ranker_ms"] = statistics.median(both), statistics.median(alone)
    row["explain_ratio"] = row["explain_ms"] / row["explain_ranker_ms"]
    batch = Batch(user.expand(len(top)), top, history.expand(len(top), -1))
    staged = [model for model in (retriever, ranker) if model.input_taps()]
    if staged:
        row["ig_top10_ms"] = timed(
            lambda: [integrated_gradients(model, batch, n_steps=50) for model in staged], device, few, warmup=1
        )
    return row


def run_pipeline_bench(
    pipelines: list[Path], devices: list[str], repeats: int = 20, scales=("ml-100k",), shortlists=None
) -> list[dict]:
    """A row per pipeline, scale, device and shortlist size: each pipeline's own N, or each of ``shortlists`` (at
    most the catalogue); each row is printed as it is measured."""
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        for path in pipelines:
            pipeline = read_pipeline(path)
            for scale in scales:
                if scale == "ml-100k":
                    retriever, user, history, n_items = _real(pipeline.retriever, device)
                    ranker, _, _, _ = _real(pipeline.ranker, device)
                else:
                    retriever, user, history, n_items = _synthetic(
                        pipeline.retriever_config.model, read_config(pipeline.retriever), device, scale
                    )
                    ranker, _, _, _ = _synthetic(
                        pipeline.ranker_config.model, read_config(pipeline.ranker), device, scale
                    )
                for size in shortlists or [pipeline.shortlist]:
                    row = {"pipeline": path.name, "scale": scale, "device": device_name, "items": n_items}
                    row.update(bench_pipeline(retriever, ranker, user, history, n_items, size, device, repeats))
                    rows.append(row)
                    print(
                        f"{path.name:<22} {scale:<8} {device_name:<5} N={row['shortlist']:<5} recommend "
                        f"{row['recommend_ms']:7.2f} ms (ranker alone {row['ranker_full_ms']:7.1f} ms)  explain "
                        f"{row['explain_ms']:7.1f} ms (x{row['explain_ratio']:.2f} the ranker's)  IG top-10 "
                        f"{row.get('ig_top10_ms', float('nan')):7.1f} ms",
                        flush=True,
                    )
    return rows
