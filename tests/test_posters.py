"""Posters: a folder of real photos (scikit-image's CC0 samples) as item images gives EfficientNet-Lite0 region
features, ACF explains a score over those image regions end to end, and a VECF trained for one epoch on them opens
in the app with its attention over the candidate's photo."""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import make_tiny_dataset
from PIL import Image
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.io import load_checkpoint, save_checkpoint
from recmodels.data import RecData
from recmodels.errors import CheckpointError
from recmodels.models.acf import ACF
from recmodels.models.vecf import VECF
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig, seed_everything, train_model

pytestmark = pytest.mark.slow  # EfficientNet over real photos

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def write_posters(folder, dataset) -> None:
    """The photos as the first items' images, and one corrupt PNG."""
    folder.mkdir(parents=True)
    for item_id, name in zip(dataset.item_ids[1 : 1 + len(PHOTOS)], PHOTOS):
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(folder / f"{item_id}.jpg")
    (folder / f"{dataset.item_ids[len(PHOTOS) + 1]}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt


@pytest.fixture()
def poster_data(tmp_path, monkeypatch):
    monkeypatch.setenv("RECMODELS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "posters"
    dataset = make_tiny_dataset()
    write_posters(folder, dataset)
    dataset.image_dir = folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = RecData(dataset, max_history=12)
        seed_everything(0)
        model = ACF.from_data(data, dim=16)
    return data, model, folder, caught


def test_posters_give_efficientnet_regions_and_an_acf_explanation(poster_data):
    data, model, _folder, caught = poster_data
    assert model.component_source == "regions" and model.grid == [7, 7]
    assert model.hparams["backbone"] == "efficientnet-lite0" and model.hparams["component_dim"] == 1280
    assert int(model.has_image.sum()) == len(PHOTOS)  # the corrupt file counts as no image
    corrupt = [w for w in caught if "truncated" in str(w.message) or ".png" in str(w.message)]
    assert len(corrupt) == 1, [str(w.message) for w in caught]

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    service = RecService(model.eval(), data, device="cpu")
    user = next(u for u in service.users()["user"] if service.history(u)["image"].notna().sum() >= 2)
    history = service.history(user)
    assert history["image"].notna().any() and service.item_image(history["item"][history["image"].notna()].iloc[0])
    item = service.recommend(user, k=1)["item"][0]
    explanation = service.explain(user, item, n_steps=16)
    regions = explanation.maps["components"]
    assert regions.axes == ("profile", "component") and regions.values.shape[1] == 49
    assert tuple(regions.meta["grid"]) == (7, 7) and regions.meta["components"] == "image regions"
    with_image = [i for i, raw in enumerate(regions.item_ids["profile"]) if raw and service.item_image(raw)]
    assert with_image
    for row in with_image:
        assert regions.values[row].sum() == pytest.approx(1.0, abs=1e-5)
    assert "component_tap" in explanation.attributions
    assert explanation.attributions["component_tap"].values.shape[-1] == 49  # one value per region


@pytest.mark.filterwarnings("ignore::recmodels.vision.ImageWarning")  # the corrupt poster, warned about above
def test_checkpoint_refuses_a_changed_grid_or_changed_images(poster_data, tmp_path):
    data, model, folder, _ = poster_data
    checkpoint = save_checkpoint(tmp_path / "acf-posters", model, data)
    loaded, _ = load_checkpoint(checkpoint, data=data)  # the same images: accepted, regions re-read
    assert torch.equal(loaded.region_table, model.region_table)
    with pytest.raises(CheckpointError, match="reads features from its dataset"):
        load_checkpoint(checkpoint)

    config = json.loads((checkpoint / "config.json").read_text())
    config["hparams"]["grid"] = [5, 5]
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="region grid .* is 7x7x1280, but this ACF was trained on 5x5"):
        load_checkpoint(checkpoint, data=data)

    config["hparams"]["grid"] = [7, 7]
    (checkpoint / "config.json").write_text(json.dumps(config))
    poster = next(folder.glob("*.jpg"))
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(poster)  # a different poster
    with pytest.raises(CheckpointError, match="images or the backbone .* changed since this ACF was trained"):
        load_checkpoint(checkpoint, data=data)


@pytest.mark.filterwarnings("ignore::recmodels.vision.ImageWarning")  # the corrupt poster
def test_vecf_trains_on_posters_and_the_app_draws_the_candidates_photo(tmp_path, monkeypatch):
    import plotly.io
    from streamlit.testing.v1 import AppTest
    from test_app import ENTRY

    monkeypatch.setenv("RECMODELS_CACHE", str(tmp_path / "cache"))
    dataset = make_tiny_dataset()
    folder = write_atomic(dataset, tmp_path / "tiny")
    write_posters(folder / "images", dataset)
    data = RecData.load("tiny", folder, max_history=12)
    seed_everything(0)
    model = VECF.from_data(data, dim=16)
    assert model.hparams["backbone"] == "efficientnet-lite0" and model.grid == [7, 7]
    result = train_model(model, data, TrainConfig.for_model(VECF, epochs=1), device="cpu", progress=False)
    assert np.isfinite(result.history[-1]["train_loss"])
    checkpoint = save_checkpoint(tmp_path / "root" / "vecf-posters", result.model, data)
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(tmp_path / "root"))

    at = AppTest.from_file(ENTRY, default_timeout=180).run()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str(checkpoint.resolve())).run()
    photographed = {str(i) for i in dataset.item_ids[1 : 1 + len(PHOTOS)]}
    at.session_state["explain_tab"] = "Regions"
    at.selectbox(key="explain_item").set_value(sorted(photographed)[0]).run()
    assert not at.exception and not at.error, [e.value for e in list(at.exception) + list(at.error)]
    regions = next(tab for tab in at.tabs if tab.label == "Regions")
    figures = [plotly.io.from_json(chart.proto.spec) for chart in regions.get("plotly_chart")]
    overlays = [figure for figure in figures if any(trace.type == "image" for trace in figure.data)]
    assert overlays, "the candidate's photo is drawn under its attention"
    heat = next(trace for trace in overlays[0].data if trace.type == "heatmap")
    z = heat.z  # plotly sends arrays as base64 typed arrays
    z = (
        np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(
            [int(n) for n in str(z["shape"]).split(",")]
        )
        if isinstance(z, dict)
        else np.asarray(z, dtype=float)
    )
    assert z.shape == (7, 7) and np.nansum(z) == pytest.approx(1.0, abs=1e-3), "beta over the 49 regions"
