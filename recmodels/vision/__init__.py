"""Image loading, CNN backbones with region grids, and the region feature store that ACF and VECF read.

    from recmodels.vision import region_features
    regions = region_features(data)               # (n_items + 1, R, D) features, (n_items + 1,) mask, grid

Importing this package does not build any network; backbones are built on demand by name.
"""

from recmodels.vision.backbones import (
    BACKBONES,
    Backbone,
    BackboneWeightsError,
    RegionGrid,
    efficientnet_lite0,
    fashion_cnn,
    get_backbone,
    resnet50,
)
from recmodels.vision.images import IMAGE_SUFFIXES, ImageWarning, find_item_image, load_image
from recmodels.vision.store import CACHE_ENV, RegionFeatures, cache_root, compute_regions, region_features

__all__ = [
    "BACKBONES",
    "CACHE_ENV",
    "IMAGE_SUFFIXES",
    "Backbone",
    "BackboneWeightsError",
    "ImageWarning",
    "RegionFeatures",
    "RegionGrid",
    "cache_root",
    "compute_regions",
    "efficientnet_lite0",
    "fashion_cnn",
    "find_item_image",
    "get_backbone",
    "load_image",
    "region_features",
    "resnet50",
]
