"""Image regions as a model's units, for every model that reads them from the region feature store (ACF, VECF):
which units a dataset gives, reading the regions, and refusing regions other than those a checkpoint was trained on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recmodels.errors import CheckpointError
from recmodels.models.config import config_dict

REGION_SETTINGS = ("backbone", "component_dim", "grid", "region_fingerprint")  # stored only for region units


class RegionUnits:
    """What ACF and VECF share when their units are image regions or genres: building for a dataset, reading the
    regions again when a checkpoint meets its data, and refusing regions it was not trained on. The model has the
    buffers ``region_table`` and ``has_image``, ``self.grid``, ``self.component_source`` and ``self.needs_data``.
    """

    @property
    def hparams(self) -> dict:
        values = super().hparams
        if self.component_source == "genres":  # genre units have no region settings to store
            for key in REGION_SETTINGS:
                del values[key]
        return values

    @classmethod
    def _units_for(cls, data, config, hparams: dict) -> tuple[dict, object]:
        """(hparams with the config's values and the units filled in, the regions read or None for genres)."""
        hparams = {**(config_dict(config) if config is not None else {}), **hparams}
        return hparams, choose_units(cls.title, data, hparams)

    def _with_units(self, data, regions):
        """The model built by ``from_data``, given the regions already read (reading them again would warn twice
        about the same unreadable files)."""
        if regions is not None:
            self._use_regions(regions, data.dataset.name)
        return self

    def attach_data(self, data) -> None:
        """Read the region features of ``data`` (cached by the region store); refuse a different grid, width or
        image set than the model was trained on."""
        if self.needs_data:
            self._use_regions(read_regions(self.title, data, self.config.backbone), data.dataset.name)

    def _use_regions(self, regions, dataset_name: str) -> None:
        check_regions(
            self.title, regions, self.grid, self.config.component_dim, self.config.region_fingerprint, dataset_name
        )
        with torch.no_grad():
            self.region_table.copy_(regions.features.to(self.region_table.dtype))
            self.has_image.copy_(regions.mask)
            self._regions_loaded()

    def _regions_loaded(self) -> None:
        """After the region table is filled: what a model derives from it (nothing by default)."""


def choose_units(title: str, data, hparams: dict):
    """Fill ``hparams["components"]`` when unset ("regions" when the dataset has an image folder, else "genres")
    and, for regions, the backbone's name, width, grid and fingerprint; the regions read, or None for genres."""
    if hparams.get("components") is None:
        image_dir = data.dataset.image_dir
        hparams["components"] = "regions" if image_dir is not None and Path(image_dir).is_dir() else "genres"
    if hparams["components"] != "regions":
        return None
    regions = read_regions(title, data, hparams.get("backbone"))
    hparams.update(
        backbone=regions.backbone["name"],
        component_dim=regions.dim,
        grid=list(regions.grid),
        region_fingerprint=regions.fingerprint,
    )
    return regions


def read_regions(title: str, data, backbone: str | None):
    from recmodels.vision import region_features

    if data.dataset.image_dir is None:
        raise CheckpointError(
            f"{data.dataset.name} has no image folder, so {title} cannot use image regions; "
            "pass --image-dir or train with --set components=genres."
        )
    return region_features(data, backbone, progress=True)


def check_regions(title: str, regions, grid, dim: int, trained_on: str | None, dataset_name: str) -> None:
    """Refuse regions of another grid or width, or of other images or another backbone (by fingerprint)."""
    if list(regions.grid) != list(grid) or regions.dim != dim:
        raise CheckpointError(
            f"the {regions.backbone['name']} region grid of {dataset_name} is {regions.grid[0]}x"
            f"{regions.grid[1]}x{regions.dim}, but this {title} was trained on {grid[0]}x{grid[1]}x{dim}; use the "
            "backbone it was trained with or retrain."
        )
    if trained_on and regions.fingerprint != trained_on:
        raise CheckpointError(
            f"the images or the backbone of {dataset_name} changed since this {title} was trained (region "
            f"fingerprint {regions.fingerprint[:12]}, trained on {trained_on[:12]}); retrain it on these images."
        )
