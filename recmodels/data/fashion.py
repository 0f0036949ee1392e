"""The fashion catalogue: 2,000 Fashion-MNIST images with simulated shoppers, shipped in ``data/fashion/``.

The images are real (Fashion-MNIST, Zalando Research, MIT licence); the shoppers and their interactions
are **simulated** by ``tools/build_fashion.py`` (seeded, deterministic). Each shopper has class affinities
and a small planted set of cells of the 7 x 7 image grid whose visual content drives their choices; the
planted cells are the ground truth that region-level attention can be checked against
(:func:`recmodels.explain.region_recovery.planted_region_recovery`).

Files (all under ``data/fashion/``):
    images/<item_id>.png      28 x 28 greyscale
    items.csv                 item_id, class, class_name, source_index (row in Fashion-MNIST t10k)
    users.csv                 user_id, segment
    interactions.csv          user_id, item_id, rating, timestamp
    planted_regions.json      {"grid": [7, 7], "users": {user_id: [cell, ...]}}, cells row-major 0..48
    small_cnn/                the Fashion-MNIST CNN backbone (model.safetensors + config.json)
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recmodels.errors import DataFormatError
from recmodels.data.schema import InteractionData, build_interaction_data
from recmodels.data.tables import numeric_column, read_delimited, read_text, required_text_column

FASHION_DIR = Path(__file__).resolve().parents[2] / "data" / "fashion"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")

FASHION_CITATION = (
    "Han Xiao, Kashif Rasul and Roland Vollgraf. 2017. Fashion-MNIST: a Novel Image Dataset for "
    "Benchmarking Machine Learning Algorithms. arXiv:1708.07747."
)
FASHION_LICENCE = "MIT"


def load_fashion(image_dir: str | Path | None = None, folder: str | Path | None = None, **meta) -> InteractionData:
    """Load the shipped fashion catalogue (simulated shoppers over real Fashion-MNIST images).

    Args:
        image_dir: where the item images are; defaults to the shipped ``images/`` folder.
        folder: the catalogue folder; defaults to the shipped ``data/fashion``.

    ``extras`` holds ``planted_regions`` ({user id: [cell, ...]}, cells 0..48 row-major), ``grid`` (7, 7),
    ``class_names``, ``region_backbone`` (the backbone to use for region features: ``"fashion-cnn"``) and
    ``simulation`` (the generator's settings).
    """
    folder = Path(folder) if folder is not None else FASHION_DIR
    if not folder.is_dir():
        raise DataFormatError(folder, "the fashion catalogue folder is missing; restore data/fashion from the "
                                      "repository or rebuild it with `python tools/build_fashion.py`")

    interactions = read_delimited(folder / "interactions.csv", read_text(folder / "interactions.csv"), ",",
                                  None, header_lines=1)
    _require_columns(interactions, folder / "interactions.csv", ("user_id", "item_id", "rating", "timestamp"))
    path = folder / "interactions.csv"
    interactions = pd.DataFrame({
        "user_id": required_text_column(interactions, "user_id", path, "user_id"),
        "item_id": required_text_column(interactions, "item_id", path, "item_id"),
        "rating": numeric_column(interactions, "rating", path, "rating"),
        "timestamp": numeric_column(interactions, "timestamp", path, "timestamp").astype(np.int64),
    })

    items = read_delimited(folder / "items.csv", read_text(folder / "items.csv"), ",", None, header_lines=1)
    _require_columns(items, folder / "items.csv", ("item_id", "class", "class_name"))
    items = items.set_index(items["item_id"].str.strip())
    item_table = pd.DataFrame({
        "title": [f"{name} #{item}" for item, name in zip(items.index, items["class_name"])],
        "genres": [(name,) for name in items["class_name"]],
    }, index=items.index)

    users = read_delimited(folder / "users.csv", read_text(folder / "users.csv"), ",", None, header_lines=1)
    _require_columns(users, folder / "users.csv", ("user_id",))
    users = users.set_index(users["user_id"].str.strip()).drop(columns=["user_id"])

    planted_path = folder / "planted_regions.json"
    try:
        planted = json.loads(read_text(planted_path))
        grid = tuple(int(v) for v in planted["grid"])
        planted_regions = {str(u): [int(c) for c in cells] for u, cells in planted["users"].items()}
    except (ValueError, KeyError, TypeError) as err:
        raise DataFormatError(planted_path, f"is not a planted-regions file ({err}); rebuild it with "
                                            "`python tools/build_fashion.py`") from None
    simulation = {}
    if (folder / "simulation.json").is_file():
        simulation = json.loads(read_text(folder / "simulation.json"))

    meta.setdefault("image_dir", Path(image_dir) if image_dir is not None else folder / "images")
    meta.setdefault("citation", FASHION_CITATION)
    meta.setdefault("licence_note", FASHION_LICENCE)
    meta["simulated"] = True
    extras = {
        "planted_regions": planted_regions,
        "grid": grid,
        "class_names": list(CLASS_NAMES),
        "region_backbone": "fashion-cnn",
        "simulation": simulation,
    }
    meta.setdefault("extras", {})
    meta["extras"] = {**extras, **meta["extras"]}
    return build_interaction_data("fashion", interactions, users, item_table, **meta)


def _require_columns(table: pd.DataFrame, path: Path, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataFormatError(path, f"has no {', '.join(missing)} column; its header must name "
                                    f"{', '.join(columns)}", 1)


# ---------------------------------------------------------------------- Fashion-MNIST source files
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) of unsigned bytes: images (N, 28, 28) or labels (N,)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found; install Debian's dataset-fashion-mnist package or pass "
                                    "the folder with the four Fashion-MNIST files")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFormatError(path, "is not an IDX file of unsigned bytes")
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(n_dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims)
    if body.size != int(np.prod(shape)):
        raise DataFormatError(path, f"holds {body.size} values but its header says {shape}")
    return body.reshape(shape)


def read_fashion_mnist(source: str | Path = DEBIAN_FASHION_MNIST, part: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of Fashion-MNIST's ``"train"`` or ``"t10k"`` part."""
    source = Path(source)
    prefix = {"train": "train", "test": "t10k", "t10k": "t10k"}[part]

    def find(stem: str) -> Path:
        for name in (f"{stem}.gz", stem):
            if (source / name).is_file():
                return source / name
        return source / f"{stem}.gz"

    images = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    if len(images) != len(labels):
        raise DataFormatError(source, f"{prefix}: {len(images)} images but {len(labels)} labels")
    return images, labels
