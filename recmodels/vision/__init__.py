"""Image loading, CNN backbones with region grids, the region feature store and planted-region recovery.

    from recmodels.vision import region_features
    regions = region_features(data)               # (n_items + 1, R, D) features, (n_items + 1,) mask, grid

Importing this package does not build any network; backbones are built on demand by name.
"""
from .backbones import (BACKBONES, Backbone, BackboneWeightsError, RegionGrid, efficientnet_lite0, fashion_cnn,
                        get_backbone, resnet50)
from .images import IMAGE_SUFFIXES, ImageWarning, find_item_image, load_image
from .recovery import (RegionRecovery, other_shoppers_control, planted_for_users, planted_matrix,
                       planted_region_recovery)
from .store import CACHE_ENV, RegionFeatures, cache_root, compute_regions, region_features

__all__ = [
    "BACKBONES", "Backbone", "BackboneWeightsError", "RegionGrid", "efficientnet_lite0", "fashion_cnn",
    "get_backbone", "resnet50", "IMAGE_SUFFIXES", "ImageWarning", "find_item_image", "load_image",
    "RegionRecovery", "other_shoppers_control", "planted_for_users", "planted_matrix", "planted_region_recovery", "CACHE_ENV",
    "RegionFeatures", "cache_root", "compute_regions", "region_features",
]
