"""The look every figure shares: colour scales and one layout.

Conventions: attention on a fixed 0..1 scale (``zmin=0, zmax=1``), signed attributions on a diverging scale
centred on 0, region attention on its own dark-to-bright scale.
"""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

from recmodels.viz.labels import short

ATTENTION_SCALE = "Blues"
# Inferno starts at #000004, one of the placeholder colours (#000001..#000040) that Streamlit's frontend swaps for
# its theme colours, which painted the low end pink; the same scale, starting at a black it leaves alone
REGION_SCALE = [
    [i / (len(px.colors.sequential.Inferno) - 1), "#010108" if i == 0 else colour]
    for i, colour in enumerate(px.colors.sequential.Inferno)
]
DIVERGING_SCALE = "RdBu"
JS_MAX = float(np.log(2))  # the largest Jensen-Shannon divergence (nats)


def layout(
    fig: go.Figure, height: int | None = None, title: str | None = None, legend_below: bool = False
) -> go.Figure:
    """Tight margins, an escaped title and a height; ``legend_below`` puts a horizontal legend under the plot (the
    line charts over epochs, whose legends name many heads)."""
    fig.update_layout(
        margin=dict(l=10, r=10, t=(60 if title else 30) if legend_below else (40 if title else 10), b=10),
        title=short(title, 90) if title else None,
        height=height,
    )
    if legend_below:
        fig.update_layout(legend=dict(orientation="h", yanchor="bottom", y=-0.35))
    return fig


def signed(view) -> bool:
    """Scores that are not a distribution and go below 0 get the diverging scale centred on 0."""
    valid = np.asarray(view.values)[np.asarray(view.mask, dtype=bool)]
    return view.normalised_over is None and valid.size > 0 and float(np.nanmin(valid)) < 0
