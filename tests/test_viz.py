"""recmodels.viz on its own: a diffuse map can be drawn on a scale that follows the data, labelled as such, with the
uniform share marked; the fixed 0..1 scale stays the default."""

from __future__ import annotations

import numpy as np
import pytest

from recmodels import viz
from recmodels.explain.views import MapView
from recmodels.viz.maps import top_of


def diffuse(n: int = 50) -> MapView:
    values = np.full(n, 1 / n) + np.linspace(-0.005, 0.005, n)
    titles, ids = {"history": [f"Film {i}" for i in range(n)]}, {"history": [str(i) for i in range(n)]}
    return MapView("history", "item", ("history",), values, np.ones(n, bool), "history", titles, ids, "", {})


def test_a_diffuse_map_follows_the_data_when_asked_and_says_so():
    fixed = viz.figure(diffuse())
    assert tuple(fixed.layout.xaxis.range) == (0, 1) and fixed.layout.xaxis.title.text == "weight"
    following = viz.figure(diffuse(), viz.FigureContext(scale="data"))
    top = float(diffuse().values.max())
    assert following.layout.coloraxis.cmax == pytest.approx(top)
    assert following.layout.xaxis.title.text == "weight (scale: 0 to the largest)"
    uniform = [shape for shape in following.layout.shapes if shape.line.dash == "dash"]
    assert len(uniform) == 1 and uniform[0].x0 == pytest.approx(1 / 50), "the uniform share is marked"


def test_heads_take_the_same_scale():
    values = np.stack([np.full(10, 0.1), np.linspace(0.05, 0.15, 10)])
    view = MapView("heads", "head", ("head", "history"), values, np.ones((2, 10), bool), "history",
                   {"head": ["head 1", "head 2"], "history": [f"Film {i}" for i in range(10)]},
                   {"history": [str(i) for i in range(10)]}, "", {})  # fmt: skip
    assert viz.figure(view).layout.coloraxis.cmax == 1
    assert viz.figure(view, viz.FigureContext(scale="data")).layout.coloraxis.cmax == pytest.approx(0.15)


def test_an_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale must be one of"):
        top_of([0.1], "log")
