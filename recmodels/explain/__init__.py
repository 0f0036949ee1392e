"""Explanations: attention maps, Captum attributions, collapse diagnostics and faithfulness checks."""
from .collapse import (STATISTICS, CollapseThresholds, epoch_summary, flags, js_divergence, map_statistics,
                       pairwise_head_js, row_statistics)

__all__ = ["STATISTICS", "CollapseThresholds", "epoch_summary", "flags", "js_divergence", "map_statistics",
           "pairwise_head_js", "row_statistics"]
