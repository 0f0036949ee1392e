"""Planted-region recovery: how much of a model's component attention lands on the regions that drove a
(simulated) shopper's choices.

For shopper u with profile items p (valid where ``mask`` is True), component attention beta[u, p, r] over the
R regions of each item (summing to 1 over the item's valid regions) and planted cells S_u:

    share_u   = sum_p w[u,p] * sum_{r in S_u} beta[u,p,r]  /  sum_p w[u,p] * sum_r beta[u,p,r]
    uniform_u = sum_p w[u,p] * |S_u ∩ valid_p| / |valid_p|  /  sum_p w[u,p]

w is 1 for every valid profile item unless ``item_weights`` (e.g. the item-level attention alpha) is given.
With every region valid, uniform_u = k_u / R (k_u / 49 on the 7 x 7 grid): what attention spread evenly
over the image would score. Both are averaged over the shoppers that have at least one valid profile item.

:mod:`.region_report` runs a model over the shoppers' interactions and reports the measure with its control.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recmodels.errors import InvalidArgumentError, quote


@dataclass
class RegionRecovery:
    share: float  # mean over shoppers of the attention share on their planted regions
    uniform: float  # mean over shoppers of the share uniform attention would give (k / R)
    per_user_share: np.ndarray
    per_user_uniform: np.ndarray
    n_users: int  # shoppers counted (those with a valid profile item)

    @property
    def lift(self) -> float:
        """share / uniform: 1 is chance, R / k is all attention on the planted regions."""
        return self.share / self.uniform if self.uniform > 0 else float("nan")

    def as_dict(self) -> dict:
        return {"share": self.share, "uniform": self.uniform, "lift": self.lift, "users": self.n_users}


def planted_matrix(planted, n_regions: int = 49) -> np.ndarray:
    """(U, R) bool from a sequence of U collections of cell indices (row-major, 0..R-1)."""
    out = np.zeros((len(planted), n_regions), dtype=bool)
    for u, cells in enumerate(planted):
        cells = np.asarray(list(cells), dtype=np.int64)
        if cells.size and (cells.min() < 0 or cells.max() >= n_regions):
            raise ValueError(f"planted cells of shopper {u} must lie in 0..{n_regions - 1}, got {cells.tolist()}")
        out[u, cells] = True
    return out


def _array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def planted_region_recovery(attention, planted, mask=None, item_weights=None) -> RegionRecovery:
    """Share of component attention on each shopper's planted regions, and the uniform share, averaged.

    Args:
        attention: (U, P, R) attention over the R regions of each of P profile items per shopper.
        planted: (U, R) bool, or a sequence of U collections of planted cell indices.
        mask: validity, (U, P) per profile item or (U, P, R) per region (True = real); None = all valid.
        item_weights: optional (U, P) non-negative weights of the profile items (default 1 each).
    """
    beta = _array(attention)
    if beta.ndim != 3:
        raise ValueError(f"attention must be (shoppers, profile items, regions), got shape {beta.shape}")
    n_users, n_items, n_regions = beta.shape
    if isinstance(planted, (np.ndarray, torch.Tensor)) and np.asarray(planted).dtype == bool:
        planted = np.asarray(planted.cpu() if isinstance(planted, torch.Tensor) else planted)
    else:
        planted = planted_matrix(planted, n_regions)
    if planted.shape != (n_users, n_regions):
        raise ValueError(f"planted must be ({n_users}, {n_regions}), got {planted.shape}")

    if mask is None:
        region_valid = np.ones(beta.shape, dtype=bool)
    else:
        mask = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
        region_valid = np.broadcast_to(mask[..., None] if mask.ndim == 2 else mask, beta.shape)
    item_valid = region_valid.any(-1)  # (U, P)
    weights = np.ones((n_users, n_items)) if item_weights is None else _array(item_weights)
    weights = np.where(item_valid, weights, 0.0)

    beta = np.where(region_valid, beta, 0.0)
    on_planted = (beta * planted[:, None, :]).sum(-1)  # (U, P)
    total = beta.sum(-1)
    n_valid = region_valid.sum(-1)
    uniform_item = (region_valid & planted[:, None, :]).sum(-1) / np.maximum(n_valid, 1)  # (U, P)

    denominator = (weights * total).sum(-1)
    counted = (weights.sum(-1) > 0) & (denominator > 0)
    share = np.full(n_users, np.nan)
    uniform = np.full(n_users, np.nan)
    share[counted] = (weights * on_planted).sum(-1)[counted] / denominator[counted]
    uniform[counted] = (weights * uniform_item).sum(-1)[counted] / weights.sum(-1)[counted]
    n = int(counted.sum())
    return RegionRecovery(
        share=float(np.nanmean(share)) if n else float("nan"),
        uniform=float(np.nanmean(uniform)) if n else float("nan"),
        per_user_share=share,
        per_user_uniform=uniform,
        n_users=n,
    )


def planted_for_users(planted_regions: dict, user_ids, n_regions: int = 49) -> np.ndarray:
    """(len(user_ids), R) bool from the fashion catalogue's ``extras["planted_regions"]`` ({user id: cells})."""
    return planted_matrix([planted_regions.get(str(u), []) for u in user_ids], n_regions)


def other_shoppers_control(
    attention, planted, mask=None, item_weights=None, n_shuffles: int = 20, seed: int = 0
) -> RegionRecovery:
    """The same measure scored against *other* shoppers' planted regions (seeded shuffles, averaged).

    Planted cells cluster where images carry information (the centre of a garment), so attention that
    ignores the shopper and merely looks at informative cells already beats k / R. This control keeps the
    attention and gives each shopper someone else's planted set: recovery above the control is what the
    attention knows about *this* shopper.
    """
    planted = np.asarray(planted.cpu() if isinstance(planted, torch.Tensor) else planted)
    if planted.dtype != bool:
        raise ValueError("planted must be a (shoppers, regions) bool matrix here; see planted_matrix")
    n_users = planted.shape[0]
    if n_users < 2:
        raise ValueError("the other-shoppers control needs at least two shoppers")
    rng = np.random.default_rng(seed)
    shares, uniforms = [], []
    for _ in range(n_shuffles):
        donor = other_shoppers(n_users, rng)
        result = planted_region_recovery(attention, planted[donor], mask, item_weights)
        shares.append(result.per_user_share)
        uniforms.append(result.per_user_uniform)
    share, uniform = np.mean(shares, axis=0), np.mean(uniforms, axis=0)
    counted = ~np.isnan(share)
    n = int(counted.sum())
    return RegionRecovery(
        share=float(np.nanmean(share)) if n else float("nan"),
        uniform=float(np.nanmean(uniform)) if n else float("nan"),
        per_user_share=share,
        per_user_uniform=uniform,
        n_users=n,
    )


def other_shoppers(n_shoppers: int, rng: np.random.Generator) -> np.ndarray:
    """For each shopper, the index of another shopper (a random cyclic shift of a random order: nobody keeps
    their own)."""
    order = rng.permutation(n_shoppers)
    donor = np.empty(n_shoppers, dtype=np.int64)
    donor[order] = np.roll(order, int(rng.integers(1, n_shoppers)))
    return donor


def region_map_name(maps: dict, map_name: str | None, model_name: str) -> str:
    """The region-level map to score: ``map_name`` when given, else the first map whose meta has a grid."""
    if map_name is None:
        map_name = next((name for name, m in maps.items() if m.meta.get("grid") is not None), None)
        if map_name is None:
            raise InvalidArgumentError(
                f"{model_name} has no region-level map (one whose meta gives a grid); "
                "recovery needs attention over image regions."
            )
    if map_name not in maps or maps[map_name].meta.get("grid") is None:
        raise InvalidArgumentError(f"{model_name} has no region-level map {quote(map_name)}.")
    return map_name
