"""The region feature store: per-item region features of a dataset's images, cached per dataset and backbone.

:func:`region_features` is what a model needs::

    regions = region_features(data, "fashion-cnn")      # data: InteractionData or RecData
    regions.features      # (n_items + 1, R, D) float32; row 0 (padding) and items without an image are 0
    regions.mask          # (n_items + 1,) bool; True where the item has a readable image
    regions.region_mask   # (n_items + 1, R) bool, the same mask per region
    regions.grid          # (h, w), R = h * w, regions in row-major order

Cache layout (``.cache/recmodels/`` in the repository root, or ``$RECMODELS_CACHE``)::

    regions/<dataset>/<backbone>/features.safetensors   "features" (n_images, R, D) float16, one row per
                                                         distinct image content, "image_rows" (n_items + 1,)
                                                         int64 index into it (-1: no image)
    regions/<dataset>/<backbone>/meta.json              fingerprint, backbone description, grid, per-item
                                                         file name and SHA-256, unreadable files

The fingerprint covers the item ids, every image's bytes (SHA-256) and the backbone (name, preprocessing,
weights SHA-256). When it changes the features are recomputed, reusing rows of images whose bytes and backbone
are unchanged. Computation runs in batches on the GPU when there is one, with a progress bar. Only safetensors
and JSON are written; nothing is pickled.

An image file that cannot be read gives one :class:`~recmodels.vision.images.ImageWarning` naming it (on every
call, cached or not) and the item counts as having no image; nothing else fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from recmodels import settings
from recmodels.vision.backbones import Backbone, GridShape, get_backbone
from recmodels.vision.images import ImageWarning, find_item_image, load_image

CACHE_ENV = settings.CACHE
STORE_FORMAT = 1
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """``$RECMODELS_CACHE`` when set, else ``.cache/recmodels`` in the repository root (git-ignored)."""
    return settings.path(CACHE_ENV) or REPO_ROOT / ".cache" / "recmodels"


@dataclass
class RegionFeatures(GridShape):
    """Region features for every item index of a dataset (row 0 is padding).

    Attributes:
        features: (n_items + 1, R, D); zero for row 0 and for items without a readable image.
        mask: (n_items + 1,) bool, True where the item has a readable image.
        grid: (h, w); region r is row r // w, column r % w of the image.
        backbone: the backbone's description (name, weights SHA-256, preprocessing, fingerprint).
        fingerprint: of the images and the backbone together; the cache key.
        item_ids: the dataset's own id per index (position 0 is padding).
        unreadable: {item id: file} for image files that exist but could not be read.
        cache_dir: where the features are cached; ``computed``: how many images were run through the backbone
            in this call (0 on a cache hit).
    """

    features: torch.Tensor
    mask: torch.Tensor
    grid: tuple[int, int]
    backbone: dict
    fingerprint: str
    item_ids: list[str]
    unreadable: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    computed: int = 0

    @property
    def region_mask(self) -> torch.Tensor:
        """(n_items + 1, R) bool: every region of an item with an image is valid."""
        return self.mask[:, None].expand(-1, self.n_regions)

    def to(self, device) -> RegionFeatures:
        self.features, self.mask = self.features.to(device), self.mask.to(device)
        return self


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "dataset"


def _sha256_bytes(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def image_manifest(item_ids, image_dir) -> list[tuple[str, str | None, str | None]]:
    """(item id, file path or None, SHA-256 of its bytes or None) per item, in index order (padding excluded)."""
    rows = []
    for item in item_ids:
        path = find_item_image(image_dir, item) if image_dir is not None else None
        digest = _sha256_bytes(path) if path is not None else None
        rows.append((str(item), None if path is None else str(path), digest))
    return rows


def _fingerprint(manifest, backbone: Backbone) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": STORE_FORMAT, "backbone": backbone.fingerprint}).encode())
    for item, _, sha in manifest:
        digest.update(f"{item}\x1f{sha or '-'}\x1e".encode())
    return digest.hexdigest()[:16]


def _read_cache(folder: Path):
    """(meta, tensors) of a cache folder, or None when absent or unreadable (then it is simply rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        tensors = load_file(str(folder / "features.safetensors"))
        if meta.get("format") != STORE_FORMAT or "features" not in tensors or "image_rows" not in tensors:
            return None
        return meta, tensors
    except (OSError, ValueError, SafetensorError):
        return None


def _write_cache(folder: Path, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp_weights, tmp_meta = folder / "features.safetensors.tmp", folder / "meta.json.tmp"
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(tmp_weights), metadata={"fingerprint": meta["fingerprint"]}
    )
    tmp_meta.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp_weights, folder / "features.safetensors")
    os.replace(tmp_meta, folder / "meta.json")


def compute_regions(
    paths: list[Path],
    backbone: Backbone,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "region features",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, list[bool]]:
    """Run image files through ``backbone`` in batches: (len(paths), R, D) in ``dtype`` on CPU, a readable flag each.

    Unreadable files give one warning each (from :func:`load_image`) and a zero row.
    """
    device = next(backbone.parameters()).device
    rows: list[torch.Tensor | None] = [None] * len(paths)
    ok = [False] * len(paths)
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False)
    for start in range(0, len(paths), batch_size):
        chunk = range(start, min(start + batch_size, len(paths)))
        inputs, where = [], []
        for i in chunk:
            image = load_image(paths[i], mode=backbone.image_mode)
            if image is not None:
                inputs.append(backbone.preprocess(image))
                where.append(i)
        if inputs:
            grid = backbone(torch.stack(inputs).to(device, non_blocking=True))
            for j, i in enumerate(where):
                rows[i], ok[i] = grid.features[j].to("cpu", dtype), True
        bar.update(len(chunk))
    bar.close()
    n_regions, dim = backbone.grid[0] * backbone.grid[1], backbone.dim
    empty = torch.zeros(n_regions, dim, dtype=dtype)
    out = (
        torch.stack([r if r is not None else empty for r in rows])
        if rows
        else torch.zeros(0, n_regions, dim, dtype=dtype)
    )
    return out, ok


def region_features(
    data,
    backbone: str | Backbone | None = None,
    *,
    weights=None,
    image_dir=None,
    device="auto",
    batch_size: int = 64,
    cache_dir=None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
) -> RegionFeatures:
    """Region features for every item of ``data`` (an InteractionData, or a RecData via ``.dataset``).

    Args:
        backbone: a name (``"efficientnet-lite0"``, ``"fashion-cnn"``, ``"resnet50"``) or a built Backbone;
            defaults to the dataset's ``extras["region_backbone"]``, else EfficientNet-Lite0.
        weights: the backbone's weights file (required for ResNet-50); see :func:`get_backbone`.
        image_dir: overrides the dataset's ``image_dir``.
        cache_dir: overrides :func:`cache_root`.

    Returns a :class:`RegionFeatures` whose ``features`` are (n_items + 1, R, D) in ``dtype``.
    """
    dataset = getattr(data, "dataset", data)
    image_dir = image_dir if image_dir is not None else dataset.image_dir
    if backbone is None:
        backbone = dataset.extras.get("region_backbone", "efficientnet-lite0")
    if isinstance(backbone, str):
        backbone = get_backbone(backbone, weights=weights, device=device)
    item_ids = [str(i) for i in dataset.item_ids[1:]]
    manifest = image_manifest(item_ids, image_dir)
    fingerprint = _fingerprint(manifest, backbone)
    folder = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = folder / "regions" / _slug(dataset.name) / _slug(backbone.name)
    n_regions, dim = backbone.grid[0] * backbone.grid[1], backbone.dim

    cached = _read_cache(folder)
    computed = 0
    if cached is not None and cached[0].get("fingerprint") == fingerprint:
        meta, tensors = cached
        store, image_rows = tensors["features"], tensors["image_rows"]
        unreadable = meta.get("unreadable", {})
    else:
        # reuse the rows of images whose bytes and backbone are unchanged; run the rest through the backbone
        reusable: dict[str, torch.Tensor] = {}
        if cached is not None and cached[0].get("backbone", {}).get("fingerprint") == backbone.fingerprint:
            old_meta, old = cached
            for (_, _, sha), row in zip(old_meta["items"], old["image_rows"].tolist()[1:]):
                if sha is not None and row >= 0:
                    reusable[sha] = old["features"][row]
        by_sha: dict[str, int] = {}
        unique_paths, unique_shas = [], []
        for _, path, sha in manifest:
            if path is not None and sha is not None and sha not in by_sha and sha not in reusable:
                by_sha[sha] = -1
                unique_paths.append(Path(path))
                unique_shas.append(sha)
        new_rows, ok = compute_regions(
            unique_paths,
            backbone,
            batch_size,
            progress,
            desc=f"{dataset.name} regions ({backbone.name})",
            dtype=torch.float16,
        )
        computed = len(unique_paths)
        # one stored row per distinct readable image content
        rows, row_of = [], {}
        for sha, row in reusable.items():
            row_of[sha] = len(rows)
            rows.append(row.to(torch.float16))
        for sha, row, good in zip(unique_shas, new_rows, ok):
            if good:
                row_of[sha] = len(rows)
                rows.append(row.to(torch.float16))
        image_rows = torch.full((len(item_ids) + 1,), -1, dtype=torch.int64)
        unreadable = {}
        for index, (item, path, sha) in enumerate(manifest, start=1):
            if sha is not None and sha in row_of:
                image_rows[index] = row_of[sha]
            elif path is not None:
                unreadable[item] = path
        used = sorted(set(image_rows[image_rows >= 0].tolist()))  # drop rows no item points at any more
        remap = torch.full((max(len(rows), 1),), -1, dtype=torch.int64)
        remap[used] = torch.arange(len(used))
        image_rows = torch.where(image_rows >= 0, remap[image_rows.clamp(min=0)], image_rows)
        store = torch.stack([rows[i] for i in used]) if used else torch.zeros(0, n_regions, dim, dtype=torch.float16)
        meta = {
            "format": STORE_FORMAT,
            "dataset": dataset.name,
            "fingerprint": fingerprint,
            "backbone": backbone.describe(),
            "grid": list(backbone.grid),
            "dim": dim,
            "image_dir": None if image_dir is None else str(image_dir),
            "items": [[item, None if path is None else Path(path).name, sha] for item, path, sha in manifest],
            "unreadable": unreadable,
        }
        _write_cache(folder, meta, {"features": store, "image_rows": image_rows})
        # load_image has warned once for each file it failed on; warn for the rest (same bytes, other name)
        failed_paths = {str(path) for path, good in zip(unique_paths, ok) if not good}
        _warn_unreadable({k: v for k, v in unreadable.items() if v not in failed_paths})
        return _assemble(store, image_rows, meta, item_ids, unreadable, folder, computed, dtype)

    _warn_unreadable(unreadable)
    return _assemble(store, image_rows, meta, item_ids, unreadable, folder, computed, dtype)


def _warn_unreadable(unreadable: dict[str, str]) -> None:
    for item, path in unreadable.items():
        warnings.warn(
            f"{path}: cannot be read as an image; item {item} is treated as having no image.",
            ImageWarning,
            stacklevel=3,
        )


def _assemble(store, image_rows, meta, item_ids, unreadable, folder, computed, dtype) -> RegionFeatures:
    grid = tuple(int(v) for v in meta["grid"])
    n_regions, dim = grid[0] * grid[1], int(meta["dim"])
    mask = image_rows >= 0
    features = torch.zeros(len(image_rows), n_regions, dim, dtype=dtype)
    if mask.any():
        features[mask] = store[image_rows[mask]].to(dtype)
    return RegionFeatures(
        features=features,
        mask=mask,
        grid=grid,
        backbone=meta["backbone"],
        fingerprint=meta["fingerprint"],
        item_ids=["<pad>"] + list(item_ids),
        unreadable=dict(unreadable),
        cache_dir=folder,
        computed=computed,
    )
