"""Explanations: attention maps, Captum attributions, collapse diagnostics and faithfulness checks.

- ``explainers``: the explainer interface (``attribute(model, batch, **context)``, as Captum's) and its
  implementations: integrated gradients, leave-one-out, perturbation tests;
- ``pipeline``: :class:`~.pipeline.PairExplainer`, which runs them on one (user, item) pair;
- ``views``: the labelled results the app draws (``MapView``, ``AttributionView``, ``Explanation``);
- ``attributions``, ``faithfulness``, ``collapse``, ``diagnostics``: the math.

Only the collapse statistics are imported here: training reads them, and need not load Captum.
"""

from recmodels.explain.collapse import (
    STATISTICS,
    CollapseThresholds,
    epoch_summary,
    flags,
    js_divergence,
    map_statistics,
    pairwise_head_js,
    row_statistics,
)

__all__ = [
    "STATISTICS",
    "CollapseThresholds",
    "epoch_summary",
    "flags",
    "js_divergence",
    "map_statistics",
    "pairwise_head_js",
    "row_statistics",
]
