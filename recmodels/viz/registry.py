"""The map-to-figure registry: how any attention map is drawn, shared by the Explorer, Compare and the HTML report.

Each entry tests the map alone (its axes, level, normalisation and meta), never the model that made it; the
first entry whose test holds draws it. A new kind of map is one entry in ``ENTRIES``. Titles and captions are
plain text, not yet escaped: a page passes them through its own escaping (the app's ``literal`` for markdown) or
escapes them as HTML; figure labels are escaped by the figure builders (:func:`recmodels.viz.labels.short`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recmodels.explain.region_recovery import planted_region_recovery
from recmodels.viz import images, maps
from recmodels.viz.labels import plain

# a map's tab is its level's, unless its entry names one; the Explorer shows them in this order
LEVEL_TABS = {"head": "Heads", "item": "Items", "field": "Fields", "component": "Regions"}
TABS = ("Heads", "Items", "Fields", "Regions")
ALL_HEADS, MEAN_OVER_HEADS = "all heads", "mean over heads"
ALL_LAYERS, MEAN_OVER_LAYERS = "all layers and heads", "mean over layers and heads"


@dataclass(frozen=True)
class Drawn:
    """One figure of a map. ``figure`` is None when there is only the caption to show (an item without an
    image); a ``tile`` is one of many small figures a page lays out in a grid; a ``derived`` figure is about
    the map (e.g. head similarity) rather than the map itself, so a page shows it after the map's notes; a ``key``
    is a colour key that a grid of tiles shares."""

    title: str
    figure: object | None
    caption: str = ""
    tile: bool = False
    derived: bool = False
    key: bool = False


def _no_image(item: str):
    return None


def _no_choices(view) -> list[str]:
    return []


@dataclass(frozen=True)
class FigureContext:
    """What drawing needs beyond the map, from the service: an item's image by the dataset's id (or None), the
    grid cells the user was planted to care about (simulated data only), and for a map over the candidate's own
    regions, the candidate's id and the pair's attributions by tap (empty when they were not computed)."""

    item_image: Callable[[str], object] = _no_image
    planted: list[int] | None = None
    candidate: str | None = None
    attributions: dict = field(default_factory=dict)
    scale: str = "fixed"  # attention on 0..1, or "data": on 0..the map's largest weight (recmodels.viz.maps.SCALES)

    @classmethod
    def of(cls, service, user, explanation=None, scale: str = "fixed") -> FigureContext:
        """The context of a :class:`~recmodels.serving.RecService` for ``user`` (and, given an explanation, its
        candidate and attributions): what a notebook passes to draw region maps as the app does. ``scale`` "data"
        draws attention on 0..the map's largest weight instead of 0..1."""
        return cls(
            item_image=service.item_image,
            planted=service.planted_regions(user),
            candidate=None if explanation is None else explanation.item,
            attributions={} if explanation is None else explanation.attributions,
            scale=scale,
        )


@dataclass(frozen=True)
class Entry:
    """One kind of map: which maps it is for (``applies``), how they are drawn, and their tab in the Explorer."""

    name: str
    applies: Callable[[object], bool]
    draw: Callable[[object, FigureContext, str | None], list[Drawn]]
    tab: str | None = None  # None: the tab of the map's level
    choices: Callable[[object], list[str]] = _no_choices  # ways of showing the map a page may offer


# ---------------------------------------------------------------------------------------------- tests
def _distribution_over_other_axis(view) -> bool:
    return view.normalised_over is not None and view.normalised_over != "head"


def _cell_labels(view) -> list | None:
    """Per-cell labels in meta (``<key>_labels`` shaped like the values), or None."""
    for key, value in view.meta.items():
        if not (key.endswith("_labels") and isinstance(value, list)):
            continue
        try:
            fits = np.shape(value) == view.values.shape
        except ValueError:  # ragged lists
            fits = False
        if fits:
            return value
    return None


def _grid(view) -> tuple[int, int] | None:
    """The image grid in meta when it fits the map's last axis: a map over one image's regions (the candidate's),
    or over each item's regions when the first axis enumerates items."""
    grid = view.meta.get("grid")
    try:
        rows, cols = (int(x) for x in grid)
    except (TypeError, ValueError):
        return None
    one_image = len(view.axes) == 1
    per_item = len(view.axes) == 2 and view.axes[0] in view.item_ids
    fits = (one_image or per_item) and rows * cols == view.values.shape[-1]
    return (rows, cols) if fits and rows > 0 and cols > 0 else None


def _words(axis: str) -> str:
    return axis.replace("_", " ")


# ---------------------------------------------------------------------------------------------- drawers
def _head_choices(view) -> list[str]:
    return [ALL_HEADS, MEAN_OVER_HEADS, *view.labels["head"]]


def _heads(view, context, choice) -> list[Drawn]:
    """Every head side by side, or (``choice``) their mean or one head, drawn as the map that leaves."""
    heads = view.labels["head"]
    if choice in (None, ALL_HEADS) or (choice != MEAN_OVER_HEADS and choice not in heads):
        drawn = [Drawn("", maps.heads_figure(view, scale=context.scale))]
    else:
        shown = view.mean_over("head") if choice == MEAN_OVER_HEADS else view.select("head", heads.index(choice))
        drawn = [d for d in figures_for(shown, context) if not d.derived]
    if view.head_similarity is not None:
        drawn.append(
            Drawn(
                "Head similarity (Jensen-Shannon divergence between heads; 0 = redundant heads)",
                maps.js_figure(view.head_similarity, heads),
                derived=True,
            )
        )
    return drawn


def _layer_head_choices(view) -> list[str]:
    layers, heads = view.labels["layer"], view.labels["head"]
    return [ALL_LAYERS, MEAN_OVER_LAYERS, *layers, *(f"{layer} · {head}" for layer in layers for head in heads)]


def _layer_heads(view, context, choice) -> list[Drawn]:
    """A (layer, head, query, key) map: every layer and head as a grid of heatmaps, or (``choice``) their mean, one
    layer's heads, or one head of one layer, each drawn as the map that leaves."""
    layers, heads = view.labels["layer"], view.labels["head"]
    cells = {f"{layer} · {head}": (i, j) for i, layer in enumerate(layers) for j, head in enumerate(heads)}
    shown = None
    if choice == MEAN_OVER_LAYERS:
        shown = view.mean_over("layer").mean_over("head")
    elif choice in layers:
        shown = view.select("layer", layers.index(choice))
    elif choice in cells:
        shown = view.select("layer", cells[choice][0]).select("head", cells[choice][1])
    drawn = (
        [Drawn("", maps.layer_heads_figure(view, scale=context.scale))]
        if shown is None
        else [d for d in figures_for(shown, context) if not d.derived]
    )
    if view.head_similarity is not None and np.ndim(view.head_similarity) == 2:
        drawn.append(
            Drawn(
                "Head similarity (Jensen-Shannon divergence between heads, averaged over layers; 0 = redundant heads)",
                maps.js_figure(view.head_similarity, heads),
                derived=True,
            )
        )
    return drawn


def _regions(view, context, choice) -> list[Drawn]:
    """Each item's image with its attention over the grid laid on top, on one colour scale; planted cells
    outlined."""
    rows_axis, cells_axis = view.axes
    grid = _grid(view)
    keep = view.valid_positions(rows_axis)
    peak = float(np.nanmax(np.where(view.mask, view.values, np.nan)[keep])) if len(keep) else 1.0
    uniform = 1 / (grid[0] * grid[1])
    what = f"share of each {_words(rows_axis)} item's {_words(cells_axis)} attention"
    caption = f"Colour: {what}, 0 to {peak:.2f} (uniform would be {uniform:.3f}); the same scale on every image."
    if context.planted is not None:
        caption = (
            f"Green squares: the {len(context.planted)} regions this user was planted to care about "
            f"(the simulation's ground truth). {caption}"
        )
    drawn = [Drawn("", images.colour_key(peak, what, reference=uniform), caption, key=True)]
    for position in keep:
        raw, label = view.item_ids[rows_axis][position], view.labels[rows_axis][position]
        image = context.item_image(raw) if raw else None
        if image is None:
            drawn.append(Drawn(label, None, f"{plain(label, 24)}: no image", tile=True))
        else:
            drawn.append(
                Drawn(
                    label,
                    images.region_overlay(
                        image, view.values[position], grid, context.planted, title=plain(label, 22), zmax=peak
                    ),
                    tile=True,
                )
            )
    return drawn


def _candidate_regions(view, context, choice) -> list[Drawn]:
    """The candidate's own image with the attention over its regions, and beside it the integrated gradients per
    region on the diverging scale; planted cells outlined, and one sentence on whether the attention lands there."""
    grid = _grid(view)
    values = np.where(view.mask, view.values, 0.0)
    image = context.item_image(context.candidate) if context.candidate else None
    if image is None:
        return [Drawn("", None, "The candidate has no image, so there are no regions to attend over.")]
    regions = max(int(view.mask.sum()), 1)
    caption = (
        f"Colour: the share of the attention on each region of the candidate's image, 0 to "
        f"{values.max():.2f} (uniform would be {1 / regions:.3f})."
    )
    if context.planted is not None:
        caption = f"{planted_sentence(values, view.mask, context.planted)} Green squares: the planted cells. {caption}"
    drawn = [
        Drawn("", None, caption),
        Drawn("attention", images.region_overlay(image, values, grid, context.planted, title="attention"), tile=True),
    ]
    ig = next((a for a in context.attributions.values() if tuple(a.units) == tuple(view.axes)), None)
    if ig is None:
        drawn.append(
            Drawn("", None, "Integrated gradients per region appear beside it when attributions are on.", tile=True)
        )
    else:
        drawn.append(
            Drawn(
                "IG",
                images.region_overlay(
                    image,
                    np.asarray(ig.values, dtype=float),
                    grid,
                    context.planted,
                    title="integrated gradients",
                    signed=True,
                ),
                tile=True,
            )
        )
    return drawn


def planted_sentence(values: np.ndarray, mask: np.ndarray, planted: list[int]) -> str:
    """Whether this shopper's attention on the candidate lands on their planted cells, in one sentence."""
    result = planted_region_recovery(values[None, None, :], [planted], mask[None, None, :])
    lift = result.lift
    verdict = "lands on" if lift >= 2 else "leans towards" if lift >= 1.25 else "does not land on"
    return (
        f"This shopper's attention {verdict} their {len(planted)} planted cells: {result.share:.2f} of it falls "
        f"there, against {result.uniform:.3f} for uniform attention (x{lift:.1f})."
    )


def _signed_grids(view, context, choice) -> list[Drawn]:
    """Scores that are not a distribution, one signed heatmap per position of the first axis."""
    best = view.meta.get("argmax_axis") == view.axes[2]
    caption = f"● marks each {_words(view.axes[1])}'s best-matching {_words(view.axes[2])}." if best else ""
    return [Drawn("", maps.interaction_figure(view, mark_best=best), caption)]


def _labelled_cells(view, context, choice) -> list[Drawn]:
    kind = view.meta.get("components")
    caption = (
        f"The {_words(view.axes[1])}s here are each item's {kind}, not image regions."
        if isinstance(kind, str)
        else f"Each cell is labelled with the {_words(view.axes[1])} it stands for."
    )
    return [Drawn("", maps.component_figure(view, _cell_labels(view)), caption)]


def _matrix(view, context, choice) -> list[Drawn]:
    return [Drawn("", maps.matrix_figure(view, scale=context.scale))]


def _item_bars(view, context, choice) -> list[Drawn]:
    return [Drawn("", maps.item_attention_figure(view, scale=context.scale))]


def _bars(view, context, choice) -> list[Drawn]:
    return [Drawn("", maps.field_figure(view, scale=context.scale))]


def _reduced(view, context, choice) -> list[Drawn]:
    """A map with more axes than a figure shows: its mean over the first axis, drawn as what remains."""
    if len(view.axes) == 0:
        return [Drawn("", None, "A single number: there is nothing to draw.")]
    axis = view.axes[0]
    drawn = [d for d in figures_for(view.mean_over(axis), context) if not d.derived]
    note = f"Mean over the {_words(axis)} axis: this map has more axes than one figure shows."
    return [
        Drawn(d.title, d.figure, f"{note} {d.caption}".strip() if i == 0 else d.caption, d.tile)
        for i, d in enumerate(drawn)
    ]


# ---------------------------------------------------------------------------------------------- the registry
ENTRIES: list[Entry] = [
    Entry(
        "layers and heads",
        lambda v: (
            len(v.axes) == 4 and {"layer", "head"} <= set(v.axes) and v.normalised_over not in (None, "layer", "head")
        ),
        _layer_heads,
        tab="Heads",
        choices=_layer_head_choices,
    ),
    Entry(
        "heads",
        lambda v: "head" in v.axes and len(v.axes) in (2, 3) and _distribution_over_other_axis(v),
        _heads,
        tab="Heads",
        choices=_head_choices,
    ),
    Entry(
        "image regions",
        lambda v: len(v.axes) == 2 and _grid(v) is not None and v.normalised_over == v.axes[1],
        _regions,
        tab="Regions",
    ),
    Entry(
        "candidate regions",
        lambda v: len(v.axes) == 1 and _grid(v) is not None and v.normalised_over == v.axes[0],
        _candidate_regions,
        tab="Regions",
    ),
    Entry("signed grids", lambda v: len(v.axes) == 3 and v.normalised_over is None, _signed_grids),
    Entry("labelled cells", lambda v: len(v.axes) == 2 and _cell_labels(v) is not None, _labelled_cells),
    Entry("matrix", lambda v: len(v.axes) == 2, _matrix),
    Entry("item bars", lambda v: len(v.axes) == 1 and v.axes[0] in v.item_ids, _item_bars),
    Entry("bars", lambda v: len(v.axes) == 1, _bars),
    Entry("reduced", lambda v: True, _reduced),
]


def entry_for(view) -> Entry:
    return next(entry for entry in ENTRIES if entry.applies(view))


def tab_of(view) -> str:
    return entry_for(view).tab or LEVEL_TABS.get(view.level, "Other")


def maps_by_tab(maps: dict) -> dict[str, list[tuple[str, object]]]:
    """The maps in each tab that has some, tabs in ``TABS`` order (then any other an entry names)."""
    grouped: dict[str, list] = {}
    for name, view in maps.items():
        grouped.setdefault(tab_of(view), []).append((name, view))
    order = [*TABS, *sorted(set(grouped) - set(TABS))]
    return {tab: grouped[tab] for tab in order if tab in grouped}


def choices_for(view) -> list[str]:
    """Ways of showing the map a page may offer (e.g. all heads, their mean, one head); empty for most."""
    return list(entry_for(view).choices(view))


def figures_for(view, context: FigureContext = FigureContext(), choice: str | None = None) -> list[Drawn]:
    """The figures of one map, in order: the map itself, then what is derived from it."""
    return entry_for(view).draw(view, context, choice)
