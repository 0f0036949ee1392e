"""Posters: a folder of real photos (scikit-image's CC0 samples) as item images gives EfficientNet-Lite0 region
features, and ACF explains a score over those image regions end to end."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from recmodels.checkpoint import load_checkpoint, save_checkpoint
from recmodels.data import RecData
from recmodels.errors import CheckpointError
from recmodels.models.acf import ACF
from recmodels.service import RecService
from recmodels.train import seed_everything

from conftest import make_tiny_dataset

skimage_data = pytest.importorskip("skimage.data")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


@pytest.fixture()
def poster_data(tmp_path, monkeypatch):
    monkeypatch.setenv("RECMODELS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "posters"
    folder.mkdir()
    dataset = make_tiny_dataset()
    for item_id, name in zip(dataset.item_ids[1:1 + len(PHOTOS)], PHOTOS):
        Image.fromarray(getattr(skimage_data, name)()).convert("RGB").save(folder / f"{item_id}.jpg")
    (folder / f"{dataset.item_ids[len(PHOTOS) + 1]}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt
    dataset.image_dir = folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = RecData(dataset, max_history=12)
        seed_everything(0)
        model = ACF.from_data(data, dim=16)
    return data, model, folder, caught


def test_posters_give_efficientnet_regions_and_an_acf_explanation(poster_data):
    data, model, folder, caught = poster_data
    assert model.component_source == "regions" and model.grid == [7, 7]
    assert model.hparams["backbone"] == "efficientnet-lite0" and model.hparams["component_dim"] == 1280
    assert int(model.has_image.sum()) == len(PHOTOS)  # the corrupt file counts as no image
    corrupt = [w for w in caught if "truncated" in str(w.message) or ".png" in str(w.message)]
    assert len(corrupt) == 1, [str(w.message) for w in caught]

    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    service = RecService(model.eval(), {"model": "acf", "history": []}, data, torch.device("cpu"))
    user = next(u for u in service.users()["user"]
                if service.history(u)["image"].notna().sum() >= 2)
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
