"""The shipped fashion catalogue (real Fashion-MNIST images, simulated shoppers) and the recovery measure."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recmodels.data import RecData, load_dataset
from recmodels.data.fashion import CLASS_NAMES, DEBIAN_FASHION_MNIST, FASHION_DIR, load_fashion
from recmodels.explain.region_recovery import other_shoppers_control, planted_for_users, planted_region_recovery
from recmodels.vision import find_item_image, load_image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (
    "images",
    "items.csv",
    "users.csv",
    "interactions.csv",
    "planted_regions.json",
    "simulation.json",
    "LICENSE",
    "README.md",
)


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion")


def test_loads_from_the_shipped_folder_alone(tmp_path):
    copy = tmp_path / "fashion"
    copy.mkdir()
    for name in SHIPPED:
        source = FASHION_DIR / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    data = load_fashion(folder=copy)
    assert (data.n_users, data.n_items) == (500, 2000)
    assert data.image_dir == copy / "images"
    # every item has its own image, named by its id, readable as a 28 x 28 picture
    paths = [find_item_image(data.image_dir, item) for item in data.item_ids[1:]]
    assert all(p is not None and p.name == f"{item}.png" for p, item in zip(paths, data.item_ids[1:]))
    image = load_image(paths[0], mode="L")
    assert image.size == (28, 28)
    # genres are the classes, 200 items each
    genres = [g for (g,) in data.item_features["genres"]]
    assert sorted(data.genre_names) == sorted(CLASS_NAMES)
    assert all(genres.count(name) == 200 for name in CLASS_NAMES)


def test_licence_and_attribution_ship_with_the_images():
    licence = (FASHION_DIR / "LICENSE").read_text()
    assert "MIT" in licence and "Zalando SE" in licence
    total = sum(p.stat().st_size for p in FASHION_DIR.rglob("*") if p.is_file())
    assert total < 4_000_000, f"data/fashion holds {total} bytes; it should stay a few MB at most"


def test_simulated_flag_citation_and_extras(fashion):
    assert fashion.simulated is True
    assert "1708.07747" in fashion.citation and "Xiao" in fashion.citation
    assert fashion.licence_note == "MIT"
    assert fashion.extras["grid"] == (7, 7)
    assert fashion.extras["class_names"] == list(CLASS_NAMES)
    assert fashion.extras["region_backbone"] == "fashion-cnn"
    assert list(fashion.user_features.columns) == ["segment"]


def test_planted_regions_for_every_shopper(fashion):
    planted = fashion.extras["planted_regions"]
    assert set(planted) == set(fashion.user_ids[1:])
    for cells in planted.values():
        assert 3 <= len(cells) <= 5
        assert len(set(cells)) == len(cells)
        assert all(0 <= c < 49 for c in cells)
    raw = json.loads((FASHION_DIR / "planted_regions.json").read_text())
    assert raw["grid"] == [7, 7]


def test_timestamps_strictly_increase_per_shopper(fashion):
    frame = fashion.interactions
    steps = frame.groupby("user")["timestamp"].diff().dropna()
    assert (steps > 0).all()
    per_user = frame.groupby("user").size()
    assert per_user.min() >= 30 and per_user.max() <= 80
    assert not frame.duplicated(["user", "item"]).any()


def test_ratings_serve_both_protocols(fashion):
    ratings = fashion.interactions["rating"].to_numpy()
    assert set(np.unique(ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    data = RecData(fashion)
    ctr = data.ctr_rows(0)
    assert 0.2 < ctr.labels.mean() < 0.9  # liked (> 3) and disliked (< 3) both present
    assert len(data.topk_cases(2)) > 400  # most shoppers have a test rating >= 4


def test_recovery_on_a_hand_made_case():
    # shopper A: planted {0, 1}; two profile items, the second padded away
    #   item 1 puts 0.5 on cell 0, 0.25 on cell 1, 0.25 on cell 10 -> 0.75 on planted cells
    # shopper B: planted {48, 47, 40}; two valid items
    #   item 1: all on cell 48 -> 1.0; item 2: uniform over 49 cells -> 3/49
    attention = np.zeros((2, 2, 49))
    attention[0, 0, [0, 1, 10]] = [0.5, 0.25, 0.25]
    attention[0, 1, 0] = 1.0  # padding: must be ignored
    attention[1, 0, 48] = 1.0
    attention[1, 1, :] = 1 / 49
    mask = np.array([[True, False], [True, True]])
    result = planted_region_recovery(attention, [[0, 1], [48, 47, 40]], mask)
    share_a, share_b = 0.75, (1.0 + 3 / 49) / 2
    assert result.per_user_share == pytest.approx([share_a, share_b])
    assert result.per_user_uniform == pytest.approx([2 / 49, 3 / 49])
    assert result.share == pytest.approx((share_a + share_b) / 2)
    assert result.uniform == pytest.approx((2 / 49 + 3 / 49) / 2)
    assert result.n_users == 2
    # torch input, a per-region mask and a bool planted matrix give the same answer
    planted = np.zeros((2, 49), bool)
    planted[0, [0, 1]] = planted[1, [40, 47, 48]] = True
    again = planted_region_recovery(
        torch.tensor(attention), torch.tensor(planted), torch.tensor(mask)[..., None].expand(2, 2, 49)
    )
    assert again.share == pytest.approx(result.share) and again.uniform == pytest.approx(result.uniform)
    # weighting the items (e.g. by item-level attention) weights the shares
    weighted = planted_region_recovery(attention, planted, mask, item_weights=[[1.0, 0.0], [0.75, 0.25]])
    assert weighted.per_user_share[1] == pytest.approx(0.75 * 1.0 + 0.25 * 3 / 49)


def test_recovery_of_uniform_attention_is_chance_and_of_planted_attention_is_one(fashion):
    users = fashion.user_ids[1:]
    planted = planted_for_users(fashion.extras["planted_regions"], users)
    uniform = planted_region_recovery(np.full((len(users), 3, 49), 1 / 49), planted)
    assert uniform.share == pytest.approx(uniform.uniform)
    assert uniform.lift == pytest.approx(1.0)
    on_planted = planted / planted.sum(1, keepdims=True)
    perfect = planted_region_recovery(np.repeat(on_planted[:, None], 3, axis=1), planted)
    assert perfect.share == pytest.approx(1.0)
    ks = np.array([len(fashion.extras["planted_regions"][u]) for u in users])
    assert perfect.uniform == pytest.approx(np.mean(ks / 49))


def test_other_shoppers_control_separates_taste_from_generally_informative_cells(fashion):
    users = fashion.user_ids[1:]
    planted = planted_for_users(fashion.extras["planted_regions"], users)
    # one map for everybody, on the cells planted most often: beats k/49 but knows nothing about the shopper,
    # so the control (someone else's planted cells) scores exactly the same share
    popular = planted.sum(0).astype(float)
    shared = np.broadcast_to(popular / popular.sum(), (len(users), 2, 49))
    own, control = planted_region_recovery(shared, planted), other_shoppers_control(shared, planted)
    assert own.lift > 1.5
    assert control.share == pytest.approx(own.share)
    # each shopper's own cells: all of it on planted cells, far less on another shopper's
    on_planted = np.repeat((planted / planted.sum(1, keepdims=True))[:, None], 2, axis=1)
    own, control = planted_region_recovery(on_planted, planted), other_shoppers_control(on_planted, planted)
    assert own.share == pytest.approx(1.0)
    assert control.share < 0.5
    with pytest.raises(ValueError, match="two shoppers"):
        other_shoppers_control(on_planted[:1], planted[:1])


@pytest.mark.slow
@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(), reason="needs Debian's dataset-fashion-mnist"
)
@pytest.mark.slow
def test_the_generator_reproduces_the_shipped_files(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_fashion", ROOT / "tools" / "build_fashion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(DEBIAN_FASHION_MNIST, tmp_path)
    for name in ("items.csv", "users.csv", "interactions.csv", "planted_regions.json", "simulation.json"):
        assert filecmp.cmp(tmp_path / name, FASHION_DIR / name, shallow=False), name
    for name in ("1.png", "1000.png", "2000.png"):  # pixels, not bytes: PNG compression may vary with zlib
        assert np.array_equal(
            np.asarray(load_image(tmp_path / "images" / name, mode="L")),
            np.asarray(load_image(FASHION_DIR / "images" / name, mode="L")),
        )
