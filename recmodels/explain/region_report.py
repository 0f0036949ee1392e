"""Dataset-level figures of a region-attention model on shoppers with planted cells (the simulated fashion data).

Over every interaction of a part (the test part by default), each with the history strictly before it:

- **recovery**: the share of the region attention on the shopper's planted cells, against uniform attention (k / R)
  and against *other* shoppers' planted cells (seeded shuffles), averaged per shopper and then over shoppers, with
  bootstrap intervals over shoppers. A model that attends over the candidate's regions (map axes ``("region",)``)
  is read on the candidate; ACF (``("profile", "component")``) on its profile items, plain and weighted by its
  item-level attention;
- **integrated gradients** over the same regions (a seeded sample of rows): recovery of the planted cells by the
  positive attributions themselves, and Kendall's tau between attention and IG per item;
- **deletion**: the score change when the 3 most attended regions of each item are zeroed (their features set to
  the padding baseline that IG starts from), against 3 random other regions.

:func:`region_report` returns plain numbers, which ``python -m recmodels recovery`` prints and training writes
into the checkpoint's ``config.json`` under ``recovery``.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from recmodels.data import TEST
from recmodels.eval.evaluate import evaluating
from recmodels.explain.attributions import integrated_gradients, private_copy
from recmodels.explain.faithfulness import kendall_tau
from recmodels.explain.region_recovery import (
    other_shoppers,
    planted_for_users,
    planted_region_recovery,
    region_map_name,
)
from recmodels.models.output_check import check_output
from recmodels.models.outputs import Batch

DELETED = 3


def shopper_means(values: np.ndarray, shoppers: np.ndarray, n_shoppers: int) -> np.ndarray:
    """Mean of the finite ``values`` per shopper (NaN for a shopper with none)."""
    finite = np.isfinite(values)
    total = np.bincount(shoppers[finite], weights=values[finite], minlength=n_shoppers)
    count = np.bincount(shoppers[finite], minlength=n_shoppers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def interaction_recovery(
    attention,
    shoppers: np.ndarray,
    planted: np.ndarray,
    mask=None,
    item_weights=None,
    n_shuffles: int = 20,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Recovery over interactions, shopper by shopper.

    Args:
        attention: (N, P, R) region weights of N interactions (P = 1 for the candidate's own regions).
        shoppers: (N,) index of each interaction's shopper into ``planted``.
        planted: (S, R) bool, each shopper's planted cells.
        mask, item_weights: as :func:`~recmodels.explain.region_recovery.planted_region_recovery`.
    """
    n_shoppers = len(planted)
    rng = np.random.default_rng(seed)
    own = planted_region_recovery(attention, planted[shoppers], mask, item_weights)
    share = shopper_means(own.per_user_share, shoppers, n_shoppers)
    uniform = shopper_means(own.per_user_uniform, shoppers, n_shoppers)
    control = np.zeros(n_shoppers)
    for _ in range(n_shuffles):
        donor = other_shoppers(n_shoppers, rng)
        other = planted_region_recovery(attention, planted[donor][shoppers], mask, item_weights)
        control += shopper_means(other.per_user_share, shoppers, n_shoppers) / n_shuffles
    counted = np.isfinite(share)
    share, uniform, control = share[counted], uniform[counted], control[counted]
    if not counted.any():
        return {"shoppers": 0, "interactions": 0}

    picks = rng.integers(0, len(share), size=(n_boot, len(share)))
    boot_share = share[picks].mean(1)
    lift = ratio(boot_share, uniform[picks].mean(1))
    own_over_control = ratio(boot_share, control[picks].mean(1))
    return {
        "share": float(share.mean()),
        "uniform": float(uniform.mean()),
        "lift": float(ratio(share.mean(), uniform.mean())),
        "lift_interval": interval(lift),
        "other_shoppers_share": float(control.mean()),
        "other_shoppers_lift": float(ratio(control.mean(), uniform.mean())),
        "own_over_other_shoppers": float(ratio(share.mean(), control.mean())),
        "own_over_other_shoppers_interval": interval(own_over_control),
        "shoppers": int(counted.sum()),
        "interactions": int(np.isfinite(own.per_user_share).sum()),
    }


def ratio(numerator, denominator):
    """numerator / denominator, NaN where the denominator is 0 (a ratio to nothing is undefined, not infinite)."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(
        numerator, denominator, out=np.full(np.broadcast(numerator, denominator).shape, np.nan), where=denominator > 0
    )


def interval(samples: np.ndarray) -> list[float]:
    """The central 95% of bootstrap samples (NaN when none is defined)."""
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return [float("nan"), float("nan")]
    return [float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))]


def region_tap_name(model, map_axes: tuple[str, ...]) -> str | None:
    """The input tap whose units are the region map's axes (the features the attention weighs), if any."""
    return next((name for name, tap in model.input_taps().items() if tap.units == tuple(map_axes)), None)


def as_items_by_regions(values: torch.Tensor) -> torch.Tensor:
    """(B, R) -> (B, 1, R); (B, P, R) unchanged."""
    return values.unsqueeze(1) if values.dim() == 2 else values


@torch.no_grad()
def collect_attention(model, batches, map_name: str | None):
    """Region weights, masks and item-level weights (or None) of every row, on the CPU."""
    betas, masks, alphas, name = [], [], [], map_name
    for batch in batches:
        out = model(batch.to(model.device), output_attentions=True)
        maps = check_output(model, out, len(batch), maps=True).attentions or {}
        name = region_map_name(maps, name, model.name)
        region_map = maps[name]
        betas.append(as_items_by_regions(region_map.values.float().cpu()))
        masks.append(as_items_by_regions(region_map.full_mask().cpu()))
        item_level = next(
            (
                m
                for m in maps.values()
                if m.level == "item"
                and m.values.dim() == 2
                and betas[-1].shape[1] > 1
                and m.values.shape[1] == betas[-1].shape[1]
            ),
            None,
        )
        alphas.append(item_level.values.float().cpu() if item_level is not None else None)
        axes, grid = region_map.axes, region_map.meta["grid"]
    alpha = torch.cat(alphas) if alphas and alphas[0] is not None else None
    return name, tuple(axes), tuple(grid), torch.cat(betas), torch.cat(masks), alpha


def deletion_changes(
    model, batch: Batch, tap_name: str, beta: torch.Tensor, mask: torch.Tensor, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Score change per row when the DELETED most attended regions of every item are zeroed at the tap, and when
    DELETED random other valid regions are (an item with too few regions is left whole)."""
    worker = private_copy(model)
    tap = dict(worker.input_taps())[tap_name]
    with torch.no_grad():
        scores = worker(batch).scores
    weights = beta.masked_fill(~mask, -1.0)
    top = torch.zeros_like(mask)
    top.scatter_(-1, torch.argsort(weights, dim=-1, descending=True, stable=True)[..., :DELETED], True)
    noise = torch.as_tensor(rng.random(mask.shape), dtype=torch.float32).masked_fill(~mask | top, -1.0)
    random = torch.zeros_like(mask)
    random.scatter_(-1, torch.argsort(noise, dim=-1, descending=True, stable=True)[..., :DELETED], True)
    enough = mask.sum(-1, keepdim=True) >= 2 * DELETED
    changes = []
    for drop in (top & mask & enough, random & mask & enough):
        keep = (~drop).float()
        handle = tap.register_forward_hook(lambda module, inputs, output, keep=keep: output * _broadcast(keep, output))
        try:
            with torch.no_grad():
                changes.append((worker(batch).scores - scores).float().cpu().numpy())
        finally:
            handle.remove()
    return changes[0], changes[1]


def _broadcast(keep: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The (B, P, R) keep mask shaped for the tap's output (B, *units, dim)."""
    units = output.shape[1:-1]
    return keep.reshape(output.shape[0], *units).unsqueeze(-1).to(output.dtype).to(output.device)


def region_report(
    model,
    data,
    planted_regions: dict,
    part: int = TEST,
    map_name: str | None = None,
    ig_rows: int = 256,
    n_steps: int = 50,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Every figure of the module docstring for ``model`` on ``data``'s interactions in ``part`` (in eval mode: a
    model that encodes distinct rows once in training would not see IG's replaced taps)."""
    with evaluating(model):
        return _region_report(
            model, data, planted_regions, part, map_name, ig_rows, n_steps, batch_size, seed, progress
        )


def _region_report(model, data, planted_regions, part, map_name, ig_rows, n_steps, batch_size, seed, progress):
    rows = data.interaction_rows(part)
    users, items, history = rows.users, rows.items, rows.history
    shopper_ids, shoppers = np.unique(users, return_inverse=True)
    batches = [
        Batch.from_numpy(users[s : s + batch_size], items[s : s + batch_size], history[s : s + batch_size])
        for s in range(0, len(users), batch_size)
    ]
    name, axes, grid, beta, mask, alpha = collect_attention(
        model, tqdm(batches, desc="region attention", disable=not progress, leave=False), map_name
    )
    planted = planted_for_users(planted_regions, data.dataset.user_ids[shopper_ids], n_regions=grid[0] * grid[1])
    report = {
        "map": name,
        "part": {TEST: "test"}.get(part, "valid"),
        "grid": list(grid),
        "over": "candidate" if len(axes) == 1 else "profile",
        "attention": interaction_recovery(beta, shoppers, planted, mask, seed=seed),
    }
    if alpha is not None:
        report["attention_weighted_by_item_attention"] = interaction_recovery(
            beta, shoppers, planted, mask, alpha, seed=seed
        )
    tap_name = region_tap_name(model, axes)
    if tap_name is None:
        return report

    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(users), size=min(ig_rows, len(users)), replace=False))
    ig, taus, top_changes, random_changes = [], [], [], []
    for start in tqdm(range(0, len(sample), 64), desc="region IG and deletion", disable=not progress, leave=False):
        index = sample[start : start + 64]
        batch = Batch.from_numpy(users[index], items[index], history[index]).to(model.device)
        values = as_items_by_regions(
            integrated_gradients(model, batch, n_steps=n_steps).attributions[tap_name].values.float().cpu()
        )
        ig.append(values)
        for b, m, v in zip(beta[index], mask[index], values):
            taus.extend(kendall_tau(b[k][m[k]].numpy(), v[k][m[k]].numpy()) for k in range(len(b)) if m[k].sum() > 1)
        top, random = deletion_changes(model, batch, tap_name, beta[index], mask[index], rng)
        top_changes.append(top)
        random_changes.append(random)
    positive = torch.cat(ig).clamp(min=0)
    by_ig = interaction_recovery(positive, shoppers[sample], planted, mask[sample], seed=seed)
    taus = np.asarray(taus, dtype=float)
    top_changes, random_changes = np.concatenate(top_changes), np.concatenate(random_changes)
    report["integrated_gradients"] = {
        **by_ig,
        "kendall_tau": float(np.nanmean(taus)),
        "rows": len(sample),
        "n_steps": n_steps,
    }
    report["deletion"] = {
        "regions": DELETED,
        "rows": len(sample),
        "top_attended_change": float(top_changes.mean()),
        "random_change": float(random_changes.mean()),
        "share_top_drops_more": float((top_changes < random_changes).mean()),
    }
    return report


def recovery_if_planted(model, data, progress: bool = False) -> dict | None:
    """:func:`region_report` when the data has planted cells and the model a region-level map; else None."""
    planted = data.dataset.extras.get("planted_regions")
    if not planted:
        return None
    rows = data.interaction_rows(TEST)
    probe = Batch.from_numpy(rows.users[:1], rows.items[:1], rows.history[:1]).to(model.device)
    with torch.no_grad():
        maps = model(probe, output_attentions=True).attentions or {}
    if not any(m.meta.get("grid") is not None for m in maps.values()):
        return None
    return region_report(model, data, planted, progress=progress)


MEASURES = {
    "attention": "attention",
    "attention_weighted_by_item_attention": "attention x item attention",
    "integrated_gradients": "IG (positive part)",
}


def recovery_rows(checkpoint: str, report: dict) -> list[dict]:
    """One table row per measure of a report: share, lift with its interval, the other-shoppers control."""
    rows = []
    for key, label in MEASURES.items():
        figures = report.get(key)
        if not figures or not figures.get("shoppers"):
            continue
        low, high = figures["lift_interval"]
        ratio_low, ratio_high = figures["own_over_other_shoppers_interval"]
        rows.append(
            {
                "checkpoint": checkpoint,
                "over": report["over"],
                "measure": label,
                "share": figures["share"],
                "uniform": figures["uniform"],
                "lift": f"x{figures['lift']:.2f} [{low:.2f}, {high:.2f}]",
                "other shoppers": f"x{figures['other_shoppers_lift']:.2f}",
                "own / other shoppers": f"x{figures['own_over_other_shoppers']:.2f} [{ratio_low:.2f}, "
                f"{ratio_high:.2f}]",
                "shoppers": figures["shoppers"],
                "interactions": figures["interactions"],
            }
        )
    return rows


def faithfulness_row(checkpoint: str, report: dict) -> dict | None:
    """Kendall's tau between attention and IG, and the deletion test, as one table row (None without a tap)."""
    if "deletion" not in report:
        return None
    deletion = report["deletion"]
    return {
        "checkpoint": checkpoint,
        "over": report["over"],
        "rows": deletion["rows"],
        "kendall_tau": report["integrated_gradients"]["kendall_tau"],
        "top_attended_change": deletion["top_attended_change"],
        "random_change": deletion["random_change"],
        "share_top_drops_more": deletion["share_top_drops_more"],
    }


def recovery_tables(reports: dict[str, dict]) -> tuple[str, str]:
    """The recovery and the attention-faithfulness tables of named reports, as text and as markdown."""
    from recmodels.formatting import markdown_table, text_table

    recovery = [row for name, report in reports.items() for row in recovery_rows(name, report)]
    faithfulness = [row for name, report in reports.items() if (row := faithfulness_row(name, report))]
    columns = [
        "checkpoint",
        "over",
        "measure",
        "share",
        "uniform",
        "lift",
        "other shoppers",
        "own / other shoppers",
        "shoppers",
    ]
    deletion = [
        "checkpoint",
        "over",
        "rows",
        "kendall_tau",
        "top_attended_change",
        "random_change",
        "share_top_drops_more",
    ]
    headers = [
        "checkpoint",
        "over",
        "rows",
        "Kendall tau (attention, IG)",
        "score change, top-3 attended zeroed",
        "score change, 3 random zeroed",
        "share of rows where top-3 drops more",
    ]
    parts = sorted({report.get("part", "test") for report in reports.values()})
    title = (
        f"planted-cell recovery on the {' and '.join(parts)} interactions (simulated shoppers; lift over uniform "
        "k/49 with a 95% "
        "bootstrap interval over shoppers; other shoppers: the same weights scored against someone else's cells)"
    )
    text = "\n".join(
        [title, text_table(recovery, columns)] + ([text_table(faithfulness, deletion, headers)] if faithfulness else [])
    )
    markdown = markdown_table(recovery, columns) + (
        "\n\n" + markdown_table(faithfulness, deletion, headers) if faithfulness else ""
    )
    return text, markdown
