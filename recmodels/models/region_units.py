"""Image regions as a model's units, for every model that reads them from the region feature store (ACF, VECF):
which units a dataset gives, reading the regions, and refusing regions other than those a checkpoint was trained on.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError


def choose_units(title: str, data, hparams: dict):
    """Fill ``hparams["components"]`` when unset ("regions" when the dataset has an image folder, else "genres")
    and, for regions, the backbone's name, width, grid and fingerprint; the regions read, or None for genres."""
    if hparams.get("components") is None:
        image_dir = data.dataset.image_dir
        hparams["components"] = "regions" if image_dir is not None and Path(image_dir).is_dir() else "genres"
    if hparams["components"] != "regions":
        return None
    regions = read_regions(title, data, hparams.get("backbone"))
    hparams.update(backbone=regions.backbone["name"], component_dim=regions.dim, grid=list(regions.grid),
                   region_fingerprint=regions.fingerprint)
    return regions


def read_regions(title: str, data, backbone: str | None):
    from ..vision import region_features

    if data.dataset.image_dir is None:
        raise CheckpointError(f"{data.dataset.name} has no image folder, so {title} cannot use image regions; "
                              "pass --image-dir or train with --set components=genres.")
    return region_features(data, backbone, progress=True)


def check_regions(title: str, regions, grid, dim: int, trained_on: str | None, dataset_name: str) -> None:
    """Refuse regions of another grid or width, or of other images or another backbone (by fingerprint)."""
    if list(regions.grid) != list(grid) or regions.dim != dim:
        raise CheckpointError(
            f"the {regions.backbone['name']} region grid of {dataset_name} is {regions.grid[0]}x"
            f"{regions.grid[1]}x{regions.dim}, but this {title} was trained on {grid[0]}x{grid[1]}x{dim}; use the "
            "backbone it was trained with or retrain.")
    if trained_on and regions.fingerprint != trained_on:
        raise CheckpointError(
            f"the images or the backbone of {dataset_name} changed since this {title} was trained (region "
            f"fingerprint {regions.fingerprint[:12]}, trained on {trained_on[:12]}); retrain it on these images.")
