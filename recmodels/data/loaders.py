"""One entry point for every dataset: ``load_dataset(name, data_dir=None)``."""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from recmodels.errors import DataFormatError, UnknownDatasetError
from recmodels.data.atomic import inter_files, load_atomic, load_atomic_files
from recmodels.data.grouplens import LICENCE_NOTE, load_ml1m_folder, load_ml100k_folder
from recmodels.data.schema import GROUPLENS_CITATION, InteractionData
from recmodels.data.tables import shown

BUILTIN = ("ml-100k", "fashion")


def recbole_ml100k_folder():
    """The ml-100k copy that ships inside the ``recbole`` wheel (recbole's code is never run)."""
    try:
        root = importlib.resources.files("recbole")
    except ModuleNotFoundError:
        raise UnknownDatasetError(
            "ml-100k is read from the recbole wheel, which is not installed; run `pip install recmodels[movielens]` "
            "(or `pip install recbole==1.2.0`), or pass --data-dir with your own copy."
        ) from None
    return root / "dataset_example" / "ml-100k"


def load_dataset(name: str = "ml-100k", data_dir: str | Path | None = None,
                 image_dir: str | Path | None = None) -> InteractionData:
    """Load a dataset into the common schema.

    Args:
        name: ``"ml-100k"`` (offline, from the recbole wheel), ``"fashion"`` (the shipped Fashion-MNIST
            catalogue with simulated shoppers), or any label when ``data_dir`` is given.
        data_dir: a folder in GroupLens' ml-100k format (``u.data``), ml-1m format (``ratings.dat``) or
            RecBole atomic format (``<name>.inter``). The format is detected from the files present.
        image_dir: a folder of item images named ``<item_id>.jpg`` or ``.png``. Defaults to an ``images``
            folder inside ``data_dir`` when there is one.
    """
    folder = _data_folder(data_dir) if data_dir is not None else None
    data = _load(name, folder, image_dir)
    if folder is not None:
        data.extras["data_dir"] = str(folder)
    return data


def _data_folder(data_dir) -> Path:
    if not str(data_dir).strip():
        raise UnknownDatasetError("The data folder is an empty name; pass the folder that holds the dataset's "
                                  "files.")
    try:
        folder = Path(data_dir).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise DataFormatError(data_dir, "names the home folder of an unknown user; write the folder out in "
                                        "full") from None
    if not folder.is_dir():  # also a file, a broken link or a link loop
        raise DataFormatError(folder, "is not a folder; pass the folder that holds the dataset's files")
    return folder


def _load(name, folder: Path | None, image_dir) -> InteractionData:
    meta = {}
    if folder is not None:
        if image_dir is None and (folder / "images").is_dir():
            image_dir = folder / "images"
        if image_dir is not None:
            meta["image_dir"] = Path(image_dir).expanduser()
        if (folder / "ratings.dat").is_file():
            return load_ml1m_folder(folder, name=name if name not in BUILTIN else "ml-1m", **meta)
        if (folder / "u.data").is_file():
            return load_ml100k_folder(folder, name=name, **meta)
        if inter_files(folder):
            return load_atomic(folder, name=name, **meta)
        raise UnknownDatasetError(
            f"{folder} holds no dataset this library reads; it needs u.data (GroupLens ml-100k), "
            "ratings.dat (GroupLens ml-1m) or a <name>.inter file (RecBole atomic format).")
    if image_dir is not None:
        meta["image_dir"] = Path(image_dir).expanduser()
    if name == "ml-100k":
        with importlib.resources.as_file(recbole_ml100k_folder()) as path:
            return load_atomic_files("ml-100k", path / "ml-100k.inter", path / "ml-100k.user",
                                     path / "ml-100k.item", citation=GROUPLENS_CITATION,
                                     licence_note=LICENCE_NOTE, **meta)
    if name == "fashion":
        from recmodels.data.fashion import load_fashion
        return load_fashion(**meta)
    raise UnknownDatasetError(f"Unknown dataset {shown(name)}; use one of {', '.join(BUILTIN)} or pass --data-dir "
                              "with a GroupLens or RecBole atomic folder.")
