"""Datasets in one schema, the temporal split, feature tables and leakage-free samples."""
from recmodels.data.features import FeatureTables, build_feature_tables
from recmodels.data.loaders import load_dataset
from recmodels.data.prepared import POSITIVE_RATING, RecData, Rows, TopKCases
from recmodels.data.schema import GROUPLENS_CITATION, PAD, InteractionData
from recmodels.data.split import PART_NAMES, TEST, TRAIN, VALID, SplitConfig, temporal_split

__all__ = [
    "FeatureTables", "build_feature_tables", "load_dataset", "RecData", "Rows", "TopKCases", "POSITIVE_RATING",
    "GROUPLENS_CITATION", "PAD", "InteractionData", "PART_NAMES", "TRAIN", "VALID", "TEST", "SplitConfig",
    "temporal_split",
]
