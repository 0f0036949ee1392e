"""``python -m recmodels bench``: latency per model, operation, scale and device, printed as a table.

Operations: ranking the full catalogue for one user (vectorised ``score_items``, and the naive path that
scores one candidate at a time through ``forward``); every attention map for one pair; integrated gradients
for a user's top-10 with n_steps=50, with the largest |delta| relative to that user's score range; head
importance for one pair (every head masked in turn, one batched forward) for models with heads. On ml-100k the
benched user is the most active one, with their own history. Scales: ml-100k through the shipped checkpoints,
and synthetic catalogues at ml-1m scale (3,706 items, 6,040 users) and ml-20m scale (26,744 items, 138,493
users), each with history 50, the checkpoint's architecture, random weights and a random history. The naive path
times at most ``NAIVE_CANDIDATES`` candidates and scales that time to the catalogue (labelled as extrapolated):
at ml-20m scale it would otherwise take seconds per model. Devices: CPU, and CUDA when present.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.errors import InvalidArgumentError, quote
from recmodels.explain.attributions import integrated_gradients
from recmodels.explain.heads import find_heads, pair_head_importance
from recmodels.models import Batch, build_model

SYNTHETIC_SCALES = {
    "ml-1m": {"n_users": 6040, "n_items": 3706, "history": 50},
    "ml-20m": {"n_users": 138_493, "n_items": 26_744, "history": 50},
}
ML1M_SCALE = SYNTHETIC_SCALES["ml-1m"]
SCALES = ("ml-100k", *SYNTHETIC_SCALES)
NAIVE_CANDIDATES = 3706  # the naive loop's sample: all of ml-1m's catalogue, 1 in 7.2 of ml-20m's


def parse_scales(text: str) -> list[str]:
    """``--scales``: a comma-separated list of known scales, each once."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    unknown = [name for name in names if name not in SCALES]
    if unknown or not names:
        raise InvalidArgumentError(
            f"Unknown scale {quote(unknown[0] if unknown else text)}; --scales takes a "
            f"comma-separated list of {', '.join(SCALES)}."
        )
    return list(dict.fromkeys(names))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _synthetic(model_name: str, config: dict, device, scale: str = "ml-1m", seed: int = 0):
    """The checkpoint's architecture at a synthetic scale: random weights and feature tables, a random history."""
    size = SYNTHETIC_SCALES[scale]
    spec = {**config.spec, "n_users": size["n_users"], "n_items": size["n_items"]}
    torch.manual_seed(seed)
    model = build_model(model_name, spec, **config.hparams)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.user_fields.copy_(
            torch.stack(
                [
                    torch.randint(0, size, (spec["n_users"] + 1,), generator=generator)
                    for size in spec["user_field_sizes"]
                ],
                1,
            )
            if spec["user_field_sizes"]
            else model.user_fields
        )
        model.item_genres.copy_((torch.rand(model.item_genres.shape, generator=generator) < 0.15).float())
        model.item_year.copy_(torch.randint(0, spec["n_years"], model.item_year.shape, generator=generator))
        for name in ("user_mean_rating", "item_mean_rating", "item_popularity"):
            getattr(model, name).copy_(torch.rand(getattr(model, name).shape, generator=generator))
    history = torch.randint(1, spec["n_items"] + 1, (1, size["history"]), generator=generator)
    return model.to(device).eval(), 1, history.to(device), spec["n_items"]


def _real(path: Path, device):
    from recmodels.serving.service import load_data_cached

    config = read_config(path)
    dataset = config.dataset
    data_dir, image_dir = dataset_location(config, path)
    data = load_data_cached(dataset.name, data_dir, image_dir, dataset.split, dataset.max_history)
    model, _ = load_checkpoint(path, device=device, data=data)
    user = (
        int(
            np.argmax(
                np.diff(
                    np.searchsorted(data.dataset.interactions["user"].to_numpy(), np.arange(data.dataset.n_users + 2))
                )[1:]
            )
        )
        + 1
    )
    history = torch.as_tensor(data.full_history(np.array([user]))).to(device)
    return model.eval(), user, history, data.dataset.n_items


@torch.no_grad()
def _naive_rank(model, user, history, n_candidates, device):
    """One candidate at a time: what a loop over items costs."""
    for item in range(1, n_candidates + 1):
        model(Batch(user, torch.tensor([item], device=device), history))


def naive_ms(model, user, history, n_items: int, device) -> tuple[float, int]:
    """(ms for the whole catalogue, candidates timed): the loop over the first ``NAIVE_CANDIDATES`` items, scaled
    linearly to ``n_items`` when the catalogue is larger (each candidate is one identical forward)."""
    timed_candidates = min(n_items, NAIVE_CANDIDATES)
    ms = timed(lambda: _naive_rank(model, user, history, timed_candidates, device), device, 1, warmup=0)
    return ms * n_items / timed_candidates, timed_candidates


def bench_model(model, user: int, history, n_items, device, repeats: int, naive: bool = True) -> dict:
    user = torch.tensor([user], device=device)
    items = torch.arange(1, n_items + 1, device=device)
    with torch.no_grad():
        row = {"recommend_ms": timed(lambda: model.score_items(user, history, items), device, repeats)}
        if naive:
            row["naive_ms"], row["naive_candidates"] = naive_ms(model, user, history, n_items, device)
            row["speedup"] = row["naive_ms"] / row["recommend_ms"]
        pair = Batch(user, items[:1], history)
        row["maps_ms"] = timed(lambda: model(pair, output_attentions=True), device, repeats)
        if model(pair, output_attentions=True).attentions:
            row["catalogue_maps_ms"] = timed(
                lambda: model.catalogue_attention(user, history, items), device, max(1, repeats // 4)
            )
        if find_heads(model(pair, output_attentions=True).attentions):
            row["heads_ms"] = timed(lambda: pair_head_importance(model, pair), device, repeats)
        scores = model.score_items(user, history, items)[0]
    top = torch.topk(scores, 10).indices + 1
    batch = Batch(user.expand(10), top, history.expand(10, -1))
    if model.input_taps():
        results = []
        row["ig_top10_ms"] = timed(
            lambda: results.append(integrated_gradients(model, batch, n_steps=50)),
            device,
            max(1, repeats // 4),
            warmup=1,
        )
        score_range = float(scores.max() - scores.min())
        row["max_delta_share"] = float(results[-1].delta.abs().max()) / max(score_range, 1e-12)
    return row


def run_bench(
    checkpoints: list[Path], devices: list[str], repeats: int = 20, scales=("ml-100k", "ml-1m"), naive: bool = True
) -> list[dict]:
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        for path in checkpoints:
            config = read_config(path)
            for scale in scales:
                if scale == "ml-100k":
                    model, user, history, n_items = _real(path, device)
                else:
                    model, user, history, n_items = _synthetic(config.model, config, device, scale)
                row = {
                    "model": config.model,
                    "checkpoint": path.name,
                    "scale": scale,
                    "device": device_name,
                    "items": n_items,
                }
                row.update(bench_model(model, user, history, n_items, device, repeats, naive))
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict) -> str:
    parts = [
        f"{row['checkpoint']:<20} {row['scale']:<8} {row['device']:<5}",
        f"recommend {row['recommend_ms']:8.2f} ms",
    ]
    if "naive_ms" in row:
        parts.append(f"naive {row['naive_ms']:9.1f} ms{extrapolated(row)} (x{row['speedup']:.0f})")
    parts.append(f"maps {row['maps_ms']:7.2f} ms")
    if "catalogue_maps_ms" in row:
        parts.append(f"catalogue maps {row['catalogue_maps_ms']:8.2f} ms")
    if "heads_ms" in row:
        parts.append(f"head importance {row['heads_ms']:6.2f} ms")
    if "ig_top10_ms" in row:
        parts.append(f"IG top-10 {row['ig_top10_ms']:8.1f} ms |delta|/range {row['max_delta_share']:.2e}")
    return "  ".join(parts)


def extrapolated(row: dict) -> str:
    """A star on a naive figure scaled up from a sample of the catalogue."""
    return "*" if row.get("naive_candidates", row["items"]) < row["items"] else ""


def shown(row: dict) -> dict:
    """The row as the table shows it: an extrapolated naive figure carries its star."""
    return {**row, "naive_ms": f"{row['naive_ms']:.1f}*"} if "naive_ms" in row and extrapolated(row) else row
