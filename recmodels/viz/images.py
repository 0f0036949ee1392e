"""Image regions: an item's image with its region attention (or attributions) laid over it, and the colour key a
grid of such overlays shares.

Images are shrunk to display size (:func:`display_copy`) before they go into a figure, so one figure is tens
of kilobytes whatever the size of the original.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from recmodels.viz.labels import short
from recmodels.viz.style import DIVERGING_SCALE, REGION_SCALE, layout

DISPLAY_SIDE = 320  # pixels: an overlay is drawn 230 px high, so this is sharp and a figure stays small


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


def region_overlay(
    image,
    weights: np.ndarray,
    grid: tuple[int, int],
    planted: list[int] | None = None,
    title: str | None = None,
    zmax: float | None = None,
    signed: bool = False,
) -> go.Figure:
    """The item's image with its region attention laid over it; planted cells outlined in green. ``signed``
    values (attributions) take the diverging scale centred on 0, with a colour bar.

    The image goes in shrunk to display size (``DISPLAY_SIDE``) and encoded as PNG or JPEG, so one figure is
    tens of kilobytes whatever the size of the original."""
    small = display_copy(image)
    width, height = small.size
    rows, cols = grid
    if signed:
        limit = zmax or float(np.nanmax(np.abs(weights))) or 1.0
        scale = dict(
            colorscale=DIVERGING_SCALE,
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            showscale=True,
            colorbar=dict(thickness=10, len=0.9),
            hovertemplate="attribution %{z:.4f}<extra></extra>",
        )
    else:
        scale = dict(
            colorscale=REGION_SCALE,
            zmin=0,
            zmax=zmax or float(weights.max()) or 1.0,
            showscale=False,
            hovertemplate="region weight %{z:.3f}<extra></extra>",
        )
    fig = go.Figure(go.Image(source=_image_uri(small), hoverinfo="skip"))
    fig.add_trace(
        go.Heatmap(
            z=weights.reshape(rows, cols),
            x0=width / cols / 2,
            dx=width / cols,
            y0=height / rows / 2,
            dy=height / rows,
            opacity=0.55,
            **scale,
        )
    )
    for cell in planted or []:
        r, c = divmod(int(cell), cols)
        fig.add_shape(
            type="rect",
            x0=c * width / cols,
            x1=(c + 1) * width / cols,
            y0=r * height / rows,
            y1=(r + 1) * height / rows,
            line=dict(color="#00e676", width=2),
        )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, height=230, title=title)


def colour_key(zmax: float, title: str, colorscale=REGION_SCALE, reference: float | None = None) -> go.Figure:
    """A thin horizontal colour bar from 0 to ``zmax``, shared by a grid of overlays; ``reference`` is marked."""
    values = np.linspace(0.0, zmax, 101)
    fig = go.Figure(
        go.Heatmap(
            z=values[None, :],
            x=values,
            y=[""],
            colorscale=colorscale,
            zmin=0,
            zmax=zmax,
            showscale=False,
            hovertemplate="%{x:.3f}<extra></extra>",
        )
    )
    if reference is not None and 0 < reference < zmax:
        fig.add_vline(
            x=reference, line_width=2, line_color="#00e676", annotation_text="uniform", annotation_position="top"
        )
    fig.update_xaxes(title_text=short(title, 90), ticks="outside")
    fig.update_yaxes(visible=False)
    fig = layout(fig, height=95)
    fig.update_layout(margin=dict(l=10, r=10, t=22, b=40))
    return fig
