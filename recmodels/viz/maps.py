"""Figures of attention maps from the explanation views alone (:class:`~recmodels.explain.views.MapView`): heads,
matrices, bars over history items or fields, signed similarity grids, head importance.

Padding is never drawn and heads are one facet each; every label from data goes through
:func:`~recmodels.viz.labels.short`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.colors import get_colorscale, sample_colorscale
from plotly.subplots import make_subplots

from recmodels.viz.labels import axis_title, short, shorts, unique_labels
from recmodels.viz.style import ATTENTION_SCALE, DIVERGING_SCALE, JS_MAX, layout, signed

SCALES = ("fixed", "data")  # attention on 0..1, or on 0..the map's largest weight (a diffuse map shows its shape)


def top_of(values, scale: str) -> float:
    """The top of the colour scale: 1 for the fixed scale, else the largest finite value shown."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return 1.0 if scale == "fixed" or not finite.size else max(float(finite.max()), 1e-12)


def weight_title(scale: str) -> str:
    return "weight" if scale == "fixed" else "weight (scale: 0 to the largest)"


def heads_figure(view, max_positions: int = 50, scale: str = "fixed") -> go.Figure:
    """A grid of per-head heatmaps (``facet_col`` over heads) on the fixed 0..1 scale, or (``scale="data"``) on
    0..the largest weight shown, so a diffuse map shows its shape."""
    head_axis = view.axes.index("head")
    values = np.moveaxis(np.where(view.mask, view.values, np.nan), head_axis, 0)
    axes = [a for a in view.axes if a != "head"]
    heads = view.labels["head"]
    if len(axes) == 1:  # (head, history): one column per head, the history down the side where titles fit
        keep = view.valid_positions(axes[0])[-max_positions:]
        fig = px.imshow(
            values[:, keep].T,
            zmin=0,
            zmax=top_of(values[:, keep], scale),
            color_continuous_scale=ATTENTION_SCALE,
            aspect="auto",
            y=unique_labels(view.labels[axes[0]], keep),
            x=shorts(heads),
            labels=dict(y=axis_title(axes[0]), x="head", color=weight_title(scale)),
        )
        fig.update_xaxes(side="top")
        return layout(fig, height=min(1200, 140 + 20 * len(keep)))
    rows, cols = axes
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    values = values[:, keep_rows][:, :, keep_cols]
    fig = px.imshow(
        values,
        facet_col=0,
        facet_col_wrap=min(len(heads), 4),
        zmin=0,
        zmax=top_of(values, scale),
        color_continuous_scale=ATTENTION_SCALE,
        x=unique_labels(view.labels[cols], keep_cols),
        y=unique_labels(view.labels[rows], keep_rows),
        aspect="auto",
        labels=dict(x=axis_title(cols), y=axis_title(rows), color=weight_title(scale)),
    )
    for annotation in fig.layout.annotations:  # "facet_col=0" -> "head 1"
        index = int(annotation.text.split("=")[-1])
        annotation.text = short(heads[index])
    fig.update_xaxes(showticklabels=len(keep_cols) <= 20, showgrid=False)  # no grid lines through masked cells
    fig.update_yaxes(showgrid=False)
    return layout(fig, height=320 * int(np.ceil(len(heads) / 4)) + 80)


def layer_heads_figure(view, max_positions: int = 50, scale: str = "fixed") -> go.Figure:
    """A (layer, head, rows, columns) map as a grid of heatmaps, one row per layer and one column per head, on the
    fixed 0..1 scale; padding left out."""
    rows, cols = [a for a in view.axes if a not in ("layer", "head")]
    values = np.moveaxis(
        np.where(view.mask, view.values, np.nan), (view.axes.index("layer"), view.axes.index("head")), (0, 1)
    )
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    layers, heads = view.labels["layer"], view.labels["head"]
    values = values[:, :, keep_rows][:, :, :, keep_cols].reshape(
        len(layers) * len(heads), len(keep_rows), len(keep_cols)
    )
    fig = px.imshow(
        values,
        facet_col=0,
        facet_col_wrap=len(heads),
        zmin=0,
        zmax=top_of(values, scale),
        facet_row_spacing=min(0.06, 0.5 / len(layers)),
        facet_col_spacing=min(0.03, 0.3 / len(heads)),
        color_continuous_scale=ATTENTION_SCALE,
        x=unique_labels(view.labels[cols], keep_cols),
        y=unique_labels(view.labels[rows], keep_rows),
        aspect="auto",
        labels=dict(x=axis_title(cols), y=axis_title(rows), color=weight_title(scale)),
    )
    for annotation in fig.layout.annotations:  # "facet_col=3" -> "layer 2 · head 2"
        index = int(annotation.text.split("=")[-1])
        annotation.text = f"{short(layers[index // len(heads)], 24)} · {short(heads[index % len(heads)], 24)}"
    # no grid lines: they would show through the cells a causal mask leaves empty
    fig.update_xaxes(showticklabels=len(keep_cols) <= 20, showgrid=False)
    fig.update_yaxes(showgrid=False)
    fig = layout(fig, height=300 * len(layers) + 80)
    fig.update_layout(margin=dict(t=36))  # room for the top row's titles
    return fig


def matrix_figure(view, max_positions: int = 50, scale: str = "fixed") -> go.Figure:
    """A single 2-D map (e.g. the mean over heads): attention on the fixed 0..1 scale, signed scores on the
    diverging one."""
    rows, cols = view.axes
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    values = np.where(view.mask, view.values, np.nan)[np.ix_(keep_rows, keep_cols)]
    limit = float(np.nanmax(np.abs(values))) if signed(view) else 0.0
    scale = (
        dict(zmin=-limit, zmax=limit, color_continuous_scale=DIVERGING_SCALE)
        if limit > 0
        else dict(zmin=0, zmax=top_of(values, scale), color_continuous_scale=ATTENTION_SCALE)
    )
    fig = px.imshow(
        values,
        aspect="auto",
        **scale,
        x=unique_labels(view.labels[cols], keep_cols),
        y=unique_labels(view.labels[rows], keep_rows),
        labels=dict(x=axis_title(cols), y=axis_title(rows), color="weight"),
    )
    fig.update_xaxes(showgrid=False)  # grid lines would show through cells a mask leaves empty
    fig.update_yaxes(showgrid=False)
    return layout(fig, height=min(900, 120 + 18 * len(keep_rows)))


def weights_bar(
    labels: list[str],
    values: np.ndarray,
    axis_title: str,
    signed: bool = False,
    value_title: str = "weight",
    scale: str = "fixed",
    uniform: float | None = None,
) -> go.Figure:
    """Horizontal bars, one per position, top to bottom in order, coloured on the attention scale (0..1, or with
    ``scale="data"`` 0..the largest value) or, when ``signed``, on the diverging one centred on 0. ``uniform`` marks
    what an even spread would give each position (1/n), dashed."""
    values = np.asarray(values, dtype=float)
    limit = float(np.nanmax(np.abs(values))) if signed and np.isfinite(values).any() else 0.0
    low, high = (-(limit or 1.0), limit or 1.0) if signed else (0.0, top_of(values, scale))
    if not signed and scale == "data":
        value_title = f"{value_title} (scale: 0 to the largest)"
    scale = get_colorscale(DIVERGING_SCALE if signed else ATTENTION_SCALE)
    # each bar's colour as a string: handed numbers to map, plotly.js 3 logs a console stack trace per bar on every
    # draw (an "invalid color" warning while it works out the bar's opacity), which slowed every rerun
    share = np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0)
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=sample_colorscale(scale, share.tolist()),
            showlegend=False,
            hovertemplate=f"{short(value_title)}=%{{x}}<br>%{{y}}<extra></extra>",
        )
    )
    # the colour bar comes from an invisible point on the same scale; a colour bar squeezed into a chart of one to
    # three bars is unreadable, and the x axis carries the values anyway
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            showlegend=False,
            hoverinfo="skip",
            marker=dict(color=[low], coloraxis="coloraxis"),
        )
    )
    fig.update_layout(
        coloraxis=dict(
            colorscale=scale,
            cmin=low,
            cmax=high,
            cmid=0.0 if signed else None,
            showscale=len(labels) > 3,
            colorbar=dict(title=short(value_title)),
        )
    )
    fig.update_xaxes(title=short(value_title), range=None if signed else (0, high * (1.05 if scale == "data" else 1)))
    if uniform is not None and not signed:
        fig.add_vline(
            x=uniform,
            line_dash="dash",
            line_color="#666",
            annotation_text="uniform",
            annotation_position="bottom right",
        )  # fmt: skip (inside the plot: a top margin clips it)
    fig.update_yaxes(
        autorange="reversed", title=axis_title, type="category", categoryorder="array", categoryarray=labels
    )
    return layout(fig, height=min(1200, 90 + 22 * len(labels)))


def field_figure(view, scale: str = "fixed") -> go.Figure:
    """A 1-D map whose positions are not items (e.g. one weight per feature field) as bars."""
    axis = view.axes[0]
    return weights_bar(shorts(view.labels[axis]), view.values, axis_title(axis), signed=signed(view), scale=scale,
                       uniform=_uniform(view, view.valid_positions(axis)))  # fmt: skip


def item_attention_figure(view, scale: str = "fixed") -> go.Figure:
    """A 1-D map over items as bars, padding left out and items told apart by position."""
    axis = view.axes[0]
    keep = view.valid_positions(axis)
    return weights_bar(unique_labels(view.labels[axis], keep), view.values[keep], axis_title(axis),
                       signed=signed(view), scale=scale, uniform=_uniform(view, keep))  # fmt: skip


def _uniform(view, keep) -> float | None:
    """1/n for a distribution over n positions; None for scores that are not one."""
    return 1 / len(keep) if view.normalised_over is not None and len(keep) else None


def interaction_figure(view, mark_best: bool = True) -> go.Figure:
    """Signed scores over three axes (e.g. layer, user head, item head): one heatmap per position of the first,
    with each row's best column marked (``mark_best``)."""
    layers = view.labels[view.axes[0]]
    values = view.values
    limit = float(np.nanmax(np.abs(values))) or 1.0
    fig = make_subplots(
        rows=1, cols=len(layers), subplot_titles=shorts(layers), horizontal_spacing=0.04, shared_yaxes=True
    )
    for index in range(len(layers)):
        matrix = values[index]
        best = matrix.argmax(axis=1)
        text = [
            ["●" if mark_best and j == best[i] else "" for j in range(matrix.shape[1])] for i in range(matrix.shape[0])
        ]
        fig.add_trace(
            go.Heatmap(
                z=matrix,
                x=shorts(view.labels[view.axes[2]]),
                y=shorts(view.labels[view.axes[1]]),
                text=text,
                texttemplate="%{text}",
                colorscale=DIVERGING_SCALE,
                zmid=0,
                zmin=-limit,
                zmax=limit,
                showscale=index == len(layers) - 1,
                colorbar=dict(title="similarity"),
            ),
            row=1,
            col=index + 1,
        )
    fig.update_yaxes(autorange="reversed")
    fig = layout(fig, height=340)
    fig.update_layout(margin=dict(t=50))  # room for the layer titles
    return fig


def js_figure(matrix: np.ndarray, labels: list[str], title: str | None = None) -> go.Figure:
    fig = px.imshow(
        matrix,
        zmin=0,
        zmax=JS_MAX,
        x=shorts(labels),
        y=shorts(labels),
        color_continuous_scale="Viridis",
        labels=dict(color="JS (nats)"),
        text_auto=".2f",
    )
    return layout(fig, height=120 + 45 * len(labels), title=title)


def _column_labels(labels: list[str]) -> list[str]:
    """Labels as they are when they tell the columns apart (plotly merges equal categories), else numbered."""
    shown = shorts(labels)
    return shown if len(set(shown)) == len(shown) else unique_labels(labels, range(len(labels)))


def component_figure(view, component_labels: list[list[str]] | None = None) -> go.Figure:
    """A 2-D map whose cells each stand for something of their own (e.g. an item's genres), labelled per cell."""
    rows, cols = view.axes
    keep = view.valid_positions(rows)
    values = np.where(view.mask, view.values, np.nan)[keep]
    text = None
    if component_labels is not None:
        text = [
            [short(component_labels[r][c], 16) if view.mask[r, c] else "" for c in range(values.shape[1])] for r in keep
        ]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            y=unique_labels(view.labels[rows], keep),
            x=_column_labels(view.labels[cols]),
            text=text,
            texttemplate="%{text}" if text else None,
            colorscale=ATTENTION_SCALE,
            zmin=0,
            zmax=1,
            colorbar=dict(title="weight"),
        )
    )
    fig.update_yaxes(autorange="reversed")
    return layout(fig, height=min(900, 120 + 34 * len(keep)))


def head_grid_figure(table: pd.DataFrame, value_title: str = "score change") -> go.Figure:
    """A labelled layer x head table of signed numbers (head importance) as a heatmap on the diverging scale centred
    on 0, each cell written out; empty cells (no head there) stay blank."""
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    text = [[f"{v:+.3g}" if np.isfinite(v) else "" for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=_column_labels([str(c) for c in table.columns]),
            y=_column_labels([str(r) for r in table.index]),
            text=text,
            texttemplate="%{text}",
            colorscale=DIVERGING_SCALE,
            zmid=0,
            zmin=-(limit or 1.0),
            zmax=limit or 1.0,
            colorbar=dict(title=short(value_title, 24)),
            xgap=2,
            ygap=2,
            hovertemplate="%{y} · %{x}: %{z:+.4g}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", type="category")
    return layout(fig, height=150 + 42 * len(table.index))
