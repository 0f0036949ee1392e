"""Datasets in one schema, the temporal split, feature tables and leakage-free samples."""
from .features import FeatureTables, build_feature_tables
from .loaders import load_dataset
from .prepared import POSITIVE_RATING, RecData, Rows, TopKCases
from .schema import GROUPLENS_CITATION, PAD, InteractionData
from .split import PART_NAMES, TEST, TRAIN, VALID, SplitConfig, temporal_split

__all__ = [
    "FeatureTables", "build_feature_tables", "load_dataset", "RecData", "Rows", "TopKCases", "POSITIVE_RATING",
    "GROUPLENS_CITATION", "PAD", "InteractionData", "PART_NAMES", "TRAIN", "VALID", "TEST", "SplitConfig",
    "temporal_split",
]
