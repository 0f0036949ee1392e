"""Training curves from a checkpoint's history (:meth:`~recmodels.serving.RecService.training_history`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from recmodels.viz.labels import shorts
from recmodels.viz.style import layout


def training_curves(history: pd.DataFrame, metrics: list[str]) -> go.Figure:
    frame = history.drop_duplicates("epoch")
    frame = frame[frame["epoch"] > 0]
    present = [m for m in dict.fromkeys(["train_loss", *metrics]) if m in frame and frame[m].notna().any()]
    fig = make_subplots(rows=1, cols=len(present) or 1, subplot_titles=shorts(present))
    for index, metric in enumerate(present, start=1):
        fig.add_trace(
            go.Scatter(x=frame["epoch"], y=frame[metric], mode="lines+markers", name=metric, showlegend=False),
            row=1,
            col=index,
        )
    fig.update_xaxes(title="epoch")
    return layout(fig, height=300)
