"""Plotly figures drawn from the service's MapView / AttributionView / DataFrames alone.

Conventions: attention on a fixed 0..1 scale (``zmin=0, zmax=1``), signed attributions on a diverging scale
centred on 0, padding never drawn, one facet per head. Plotly renders a subset of HTML in titles, tick labels,
annotations and hover text, so every label that comes from data goes through :func:`short` (cut and escaped), and
images are shrunk to display size (:func:`display_copy`) before they go into a figure.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale
from plotly.subplots import make_subplots

from .text import plain

ATTENTION_SCALE = "Blues"
# Inferno starts at #000004, one of the placeholder colours (#000001..#000040) that Streamlit's frontend swaps for
# its theme colours, which painted the low end pink; the same scale, starting at a black it leaves alone
REGION_SCALE = [[i / (len(px.colors.sequential.Inferno) - 1), "#010108" if i == 0 else colour]
                for i, colour in enumerate(px.colors.sequential.Inferno)]
DIVERGING_SCALE = "RdBu"
JS_MAX = float(np.log(2))  # the largest Jensen-Shannon divergence (nats)
DISPLAY_SIDE = 320  # pixels: an overlay is drawn 230 px high, so this is sharp and a figure stays small


def short(label, width: int = 32) -> str:
    """A label for a figure: one line, cut with an ellipsis, with ``<``, ``>`` and ``&`` escaped for plotly."""
    return html.escape(plain(label, width), quote=False)


def shorts(labels, width: int = 32) -> list[str]:
    return [short(label, width) for label in labels]


def axis_title(axis: str) -> str:
    """An axis name as words for a figure ("query_item" -> "query item"), escaped like any label."""
    return short(str(axis).replace("_", " "))


def _signed(view) -> bool:
    """Scores that are not a distribution and go below 0 get the diverging scale centred on 0."""
    valid = np.asarray(view.values)[np.asarray(view.mask, dtype=bool)]
    return view.normalised_over is None and valid.size > 0 and float(np.nanmin(valid)) < 0


def unique_labels(labels: list[str], positions) -> list[str]:
    """Category labels that stay distinct when two items share a title."""
    return [f"{p + 1}. {short(labels[p])}" for p in positions]


def _layout(fig: go.Figure, height: int | None = None, title: str | None = None) -> go.Figure:
    fig.update_layout(margin=dict(l=10, r=10, t=40 if title else 10, b=10), title=short(title, 90) if title else None,
                      height=height)
    return fig


def display_copy(image: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """A new RGB image no larger than ``side`` on its longer edge (a 9000x9000 poster would be 324 MB of JSON)."""
    width, height = image.size
    scale = min(1.0, side / max(width, height, 1))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)  # a new image
    else:
        image = image.copy()
    return image if image.mode == "RGB" else image.convert("RGB")


def _image_uri(image: Image.Image) -> str:
    """A data URI: PNG for small images (crisp when plotly scales them up), JPEG for photos (a tenth the size)."""
    kind = "png" if image.width * image.height <= 128 * 128 else "jpeg"
    buffer = io.BytesIO()
    image.save(buffer, format=kind.upper(), **({"quality": 85} if kind == "jpeg" else {}))
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode()


def heads_figure(view, max_positions: int = 50) -> go.Figure:
    """A grid of per-head heatmaps (``facet_col`` over heads) on the fixed 0..1 scale."""
    head_axis = view.axes.index("head")
    values = np.moveaxis(np.where(view.mask, view.values, np.nan), head_axis, 0)
    axes = [a for a in view.axes if a != "head"]
    heads = view.labels["head"]
    if len(axes) == 1:  # (head, history): one column per head, the history down the side where titles fit
        keep = view.valid_positions(axes[0])[-max_positions:]
        fig = px.imshow(values[:, keep].T, zmin=0, zmax=1, color_continuous_scale=ATTENTION_SCALE, aspect="auto",
                        y=unique_labels(view.labels[axes[0]], keep), x=shorts(heads),
                        labels=dict(y=axis_title(axes[0]), x="head", color="weight"))
        fig.update_xaxes(side="top")
        return _layout(fig, height=min(1200, 140 + 20 * len(keep)))
    rows, cols = axes
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    values = values[:, keep_rows][:, :, keep_cols]
    fig = px.imshow(values, facet_col=0, facet_col_wrap=min(len(heads), 4), zmin=0, zmax=1,
                    color_continuous_scale=ATTENTION_SCALE, x=unique_labels(view.labels[cols], keep_cols),
                    y=unique_labels(view.labels[rows], keep_rows), aspect="auto",
                    labels=dict(x=axis_title(cols), y=axis_title(rows), color="weight"))
    for annotation in fig.layout.annotations:  # "facet_col=0" -> "head 1"
        index = int(annotation.text.split("=")[-1])
        annotation.text = short(heads[index])
    fig.update_xaxes(showticklabels=len(keep_cols) <= 20, showgrid=False)  # no grid lines through masked cells
    fig.update_yaxes(showgrid=False)
    return _layout(fig, height=320 * int(np.ceil(len(heads) / 4)) + 80)


def matrix_figure(view, max_positions: int = 50) -> go.Figure:
    """A single 2-D map (e.g. the mean over heads): attention on the fixed 0..1 scale, signed scores on the
    diverging one."""
    rows, cols = view.axes
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    values = np.where(view.mask, view.values, np.nan)[np.ix_(keep_rows, keep_cols)]
    limit = float(np.nanmax(np.abs(values))) if _signed(view) else 0.0
    scale = (dict(zmin=-limit, zmax=limit, color_continuous_scale=DIVERGING_SCALE) if limit > 0
             else dict(zmin=0, zmax=1, color_continuous_scale=ATTENTION_SCALE))
    fig = px.imshow(values, aspect="auto", **scale,
                    x=unique_labels(view.labels[cols], keep_cols), y=unique_labels(view.labels[rows], keep_rows),
                    labels=dict(x=axis_title(cols), y=axis_title(rows), color="weight"))
    fig.update_xaxes(showgrid=False)  # grid lines would show through cells a mask leaves empty
    fig.update_yaxes(showgrid=False)
    return _layout(fig, height=min(900, 120 + 18 * len(keep_rows)))


def weights_bar(labels: list[str], values: np.ndarray, axis_title: str, signed: bool = False,
                value_title: str = "weight") -> go.Figure:
    """Horizontal bars, one per position, top to bottom in order, coloured on the attention scale (0..1) or, when
    ``signed``, on the diverging one centred on 0."""
    values = np.asarray(values, dtype=float)
    limit = float(np.nanmax(np.abs(values))) if signed and np.isfinite(values).any() else 0.0
    low, high = (-(limit or 1.0), limit or 1.0) if signed else (0.0, 1.0)
    scale = get_colorscale(DIVERGING_SCALE if signed else ATTENTION_SCALE)
    # each bar's colour as a string: handed numbers to map, plotly.js 3 logs a console stack trace per bar on every
    # draw (an "invalid color" warning while it works out the bar's opacity), which slowed every rerun
    share = np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0)
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=sample_colorscale(scale, share.tolist()),
                           showlegend=False, hovertemplate=f"{short(value_title)}=%{{x}}<br>%{{y}}<extra></extra>"))
    # the colour bar comes from an invisible point on the same scale; a colour bar squeezed into a chart of one to
    # three bars is unreadable, and the x axis carries the values anyway
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker=dict(color=[low], coloraxis="coloraxis")))
    fig.update_layout(coloraxis=dict(colorscale=scale, cmin=low, cmax=high, cmid=0.0 if signed else None,
                                     showscale=len(labels) > 3, colorbar=dict(title=short(value_title))))
    fig.update_xaxes(title=short(value_title), range=None if signed else (0, 1))
    fig.update_yaxes(autorange="reversed", title=axis_title, type="category", categoryorder="array",
                     categoryarray=labels)
    return _layout(fig, height=min(1200, 90 + 22 * len(labels)))


def field_figure(view) -> go.Figure:
    """A 1-D map whose positions are not items (e.g. one weight per feature field) as bars."""
    axis = view.axes[0]
    return weights_bar(shorts(view.labels[axis]), view.values, axis_title(axis), signed=_signed(view))


def item_attention_figure(view) -> go.Figure:
    """A 1-D map over items as bars, padding left out and items told apart by position."""
    axis = view.axes[0]
    keep = view.valid_positions(axis)
    return weights_bar(unique_labels(view.labels[axis], keep), view.values[keep], axis_title(axis),
                       signed=_signed(view))


def interaction_figure(view, mark_best: bool = True) -> go.Figure:
    """Signed scores over three axes (e.g. layer, user head, item head): one heatmap per position of the first,
    with each row's best column marked (``mark_best``)."""
    layers = view.labels[view.axes[0]]
    values = view.values
    limit = float(np.nanmax(np.abs(values))) or 1.0
    fig = make_subplots(rows=1, cols=len(layers), subplot_titles=shorts(layers), horizontal_spacing=0.04,
                        shared_yaxes=True)
    for index in range(len(layers)):
        matrix = values[index]
        best = matrix.argmax(axis=1)
        text = [["●" if mark_best and j == best[i] else "" for j in range(matrix.shape[1])]
                for i in range(matrix.shape[0])]
        fig.add_trace(go.Heatmap(z=matrix, x=shorts(view.labels[view.axes[2]]), y=shorts(view.labels[view.axes[1]]),
                                 text=text,
                                 texttemplate="%{text}", colorscale=DIVERGING_SCALE, zmid=0, zmin=-limit, zmax=limit,
                                 showscale=index == len(layers) - 1, colorbar=dict(title="similarity")),
                      row=1, col=index + 1)
    fig.update_yaxes(autorange="reversed")
    fig = _layout(fig, height=340)
    fig.update_layout(margin=dict(t=50))  # room for the layer titles
    return fig


def js_figure(matrix: np.ndarray, labels: list[str], title: str | None = None) -> go.Figure:
    fig = px.imshow(matrix, zmin=0, zmax=JS_MAX, x=shorts(labels), y=shorts(labels), color_continuous_scale="Viridis",
                    labels=dict(color="JS (nats)"), text_auto=".2f")
    return _layout(fig, height=120 + 45 * len(labels), title=title)


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
        text = [[short(component_labels[r][c], 16) if view.mask[r, c] else "" for c in range(values.shape[1])]
                for r in keep]
    fig = go.Figure(go.Heatmap(z=values, y=unique_labels(view.labels[rows], keep),
                               x=_column_labels(view.labels[cols]), text=text,
                               texttemplate="%{text}" if text else None, colorscale=ATTENTION_SCALE, zmin=0, zmax=1,
                               colorbar=dict(title="weight")))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, height=min(900, 120 + 34 * len(keep)))


def region_overlay(image, weights: np.ndarray, grid: tuple[int, int], planted: list[int] | None = None,
                   title: str | None = None, zmax: float | None = None, signed: bool = False) -> go.Figure:
    """The item's image with its region attention laid over it; planted cells outlined in green. ``signed``
    values (attributions) take the diverging scale centred on 0, with a colour bar.

    The image goes in shrunk to display size (``DISPLAY_SIDE``) and encoded as PNG or JPEG, so one figure is
    tens of kilobytes whatever the size of the original."""
    small = display_copy(image)
    width, height = small.size
    rows, cols = grid
    if signed:
        limit = zmax or float(np.nanmax(np.abs(weights))) or 1.0
        scale = dict(colorscale=DIVERGING_SCALE, zmid=0.0, zmin=-limit, zmax=limit, showscale=True,
                     colorbar=dict(thickness=10, len=0.9), hovertemplate="attribution %{z:.4f}<extra></extra>")
    else:
        scale = dict(colorscale=REGION_SCALE, zmin=0, zmax=zmax or float(weights.max()) or 1.0, showscale=False,
                     hovertemplate="region weight %{z:.3f}<extra></extra>")
    fig = go.Figure(go.Image(source=_image_uri(small), hoverinfo="skip"))
    fig.add_trace(go.Heatmap(z=weights.reshape(rows, cols), x0=width / cols / 2, dx=width / cols,
                             y0=height / rows / 2, dy=height / rows, opacity=0.55, **scale))
    for cell in planted or []:
        r, c = divmod(int(cell), cols)
        fig.add_shape(type="rect", x0=c * width / cols, x1=(c + 1) * width / cols, y0=r * height / rows,
                      y1=(r + 1) * height / rows, line=dict(color="#00e676", width=2))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=230, title=title)


def colour_key(zmax: float, title: str, colorscale=REGION_SCALE, reference: float | None = None) -> go.Figure:
    """A thin horizontal colour bar from 0 to ``zmax``, shared by a grid of overlays; ``reference`` is marked."""
    values = np.linspace(0.0, zmax, 101)
    fig = go.Figure(go.Heatmap(z=values[None, :], x=values, y=[""], colorscale=colorscale, zmin=0, zmax=zmax,
                               showscale=False, hovertemplate="%{x:.3f}<extra></extra>"))
    if reference is not None and 0 < reference < zmax:
        fig.add_vline(x=reference, line_width=2, line_color="#00e676",
                      annotation_text="uniform", annotation_position="top")
    fig.update_xaxes(title_text=short(title, 90), ticks="outside")
    fig.update_yaxes(visible=False)
    fig = _layout(fig, height=95)
    fig.update_layout(margin=dict(l=10, r=10, t=22, b=40))
    return fig


def attribution_figure(view) -> go.Figure:
    """Signed attributions per unit on a diverging scale centred at 0."""
    if view.values.ndim == 1:
        return weights_bar(shorts(view.labels[view.units[0]]), view.values, view.units[0].replace("_", " "),
                           signed=True, value_title="attribution")
    rows, cols = view.units[:2]
    values = view.values.reshape(view.values.shape[0], view.values.shape[1], -1).sum(-1)
    limit = float(np.abs(values).max()) or 1.0
    fig = px.imshow(values, zmin=-limit, zmax=limit, color_continuous_scale=DIVERGING_SCALE, aspect="auto",
                    y=unique_labels(view.labels[rows], range(values.shape[0])),
                    x=[short(x, 14) for x in view.labels[cols]], labels=dict(color="attribution"))
    return _layout(fig, height=min(900, 120 + 22 * values.shape[0]))


def agreement_figure(per_item: pd.DataFrame) -> go.Figure:
    """Attention, integrated gradients and leave-one-out per history item, side by side on shared rows."""
    labels = unique_labels(list(per_item["title"]), range(len(per_item)))
    columns = [("attention", "attention", False), ("integrated_gradients", "integrated gradients", True),
               ("leave_one_out", "leave-one-out", True)]
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, subplot_titles=[c[1] for c in columns],
                        horizontal_spacing=0.03)
    for index, (column, _, signed) in enumerate(columns, start=1):
        values = per_item[column].to_numpy(dtype=float)
        if signed:  # the ends of RdBu, as in the other attribution charts: positive blue, negative red
            colors = np.where(values >= 0, "#2166ac", "#b2182b")
        else:
            colors = "#2171b5"
        fig.add_trace(go.Bar(x=values, y=labels, orientation="h", marker_color=colors, showlegend=False,
                             hovertemplate="%{y}: %{x:.4f}<extra></extra>"), row=1, col=index)
        if signed:
            fig.add_vline(x=0, line_width=1, line_color="#444", row=1, col=index)
    fig.update_yaxes(autorange="reversed", type="category")
    fig = _layout(fig, height=min(1200, 120 + 20 * len(labels)))
    fig.update_layout(margin=dict(t=40))  # room for the three subplot titles
    return fig


def statistic_box(rows: pd.DataFrame, statistic: str, title: str | None = None) -> go.Figure:
    """Distribution of one collapse statistic over users, one box per map and head."""
    frame = rows.copy()
    names = frame["map"].map(short)
    frame["map / head"] = np.where(frame["head"] >= 0, names + " · head " + (frame["head"] + 1).astype(str), names)
    fig = px.box(frame, x="map / head", y=statistic, points=False, range_y=(0, 1.02))
    return _layout(fig, height=340, title=title)


def epochs_figure(history: pd.DataFrame, statistic: str, title: str | None = None) -> go.Figure:
    frame = history.dropna(subset=[statistic]) if statistic in history else pd.DataFrame()
    if frame.empty:
        return _layout(go.Figure(), height=300, title=title)
    frame = frame.assign(map=frame["map"].map(short)) if "map" in frame else frame
    fig = px.line(frame, x="epoch", y=statistic, color="map" if "map" in frame else None, markers=True,
                  range_y=(0, 1.02))
    return _layout(fig, height=320, title=title)


def training_curves(history: pd.DataFrame, metrics: list[str]) -> go.Figure:
    frame = history.drop_duplicates("epoch")
    frame = frame[frame["epoch"] > 0]
    present = [m for m in dict.fromkeys(["train_loss", *metrics]) if m in frame and frame[m].notna().any()]
    fig = make_subplots(rows=1, cols=len(present) or 1, subplot_titles=shorts(present))
    for index, metric in enumerate(present, start=1):
        fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[metric], mode="lines+markers", name=metric,
                                 showlegend=False), row=1, col=index)
    fig.update_xaxes(title="epoch")
    return _layout(fig, height=300)


def layer_heads_figure(view, max_positions: int = 50) -> go.Figure:
    """A (layer, head, rows, columns) map as a grid of heatmaps, one row per layer and one column per head, on the
    fixed 0..1 scale; padding left out."""
    rows, cols = [a for a in view.axes if a not in ("layer", "head")]
    values = np.moveaxis(np.where(view.mask, view.values, np.nan),
                         (view.axes.index("layer"), view.axes.index("head")), (0, 1))
    keep_rows = view.valid_positions(rows)[-max_positions:]
    keep_cols = view.valid_positions(cols)[-max_positions:]
    layers, heads = view.labels["layer"], view.labels["head"]
    values = values[:, :, keep_rows][:, :, :, keep_cols].reshape(len(layers) * len(heads), len(keep_rows),
                                                                    len(keep_cols))
    fig = px.imshow(values, facet_col=0, facet_col_wrap=len(heads), zmin=0, zmax=1,
                    facet_row_spacing=min(0.06, 0.5 / len(layers)), facet_col_spacing=min(0.03, 0.3 / len(heads)),
                    color_continuous_scale=ATTENTION_SCALE, x=unique_labels(view.labels[cols], keep_cols),
                    y=unique_labels(view.labels[rows], keep_rows), aspect="auto",
                    labels=dict(x=axis_title(cols), y=axis_title(rows), color="weight"))
    for annotation in fig.layout.annotations:  # "facet_col=3" -> "layer 2 · head 2"
        index = int(annotation.text.split("=")[-1])
        annotation.text = f"{short(layers[index // len(heads)], 24)} · {short(heads[index % len(heads)], 24)}"
    # no grid lines: they would show through the cells a causal mask leaves empty
    fig.update_xaxes(showticklabels=len(keep_cols) <= 20, showgrid=False)
    fig.update_yaxes(showgrid=False)
    fig = _layout(fig, height=300 * len(layers) + 80)
    fig.update_layout(margin=dict(t=36))  # room for the top row's titles
    return fig


def head_grid_figure(table: pd.DataFrame, value_title: str = "score change") -> go.Figure:
    """A labelled layer x head table of signed numbers (head importance) as a heatmap on the diverging scale centred
    on 0, each cell written out; empty cells (no head there) stay blank."""
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    limit = float(np.abs(finite).max()) if finite.size else 0.0
    text = [[f"{v:+.3g}" if np.isfinite(v) else "" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(z=values, x=_column_labels([str(c) for c in table.columns]),
                               y=_column_labels([str(r) for r in table.index]), text=text, texttemplate="%{text}",
                               colorscale=DIVERGING_SCALE, zmid=0, zmin=-(limit or 1.0), zmax=limit or 1.0,
                               colorbar=dict(title=short(value_title, 24)), xgap=2, ygap=2,
                               hovertemplate="%{y} · %{x}: %{z:+.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(side="top", type="category")
    return _layout(fig, height=150 + 42 * len(table.index))
