"""Convert a SASRec or BERT4Rec checkpoint saved by RecBole 1.2.0 into a recmodels checkpoint folder.

RecBole saves ``saved/<Model>-<date>.pth`` with ``torch.save``: a zip archive whose pickle holds ``{"config": Config,
"state_dict": ..., "epoch": ...}``. Unpickling can run code, so this is the only module of recmodels that unpickles,
only the file the user names, only when told to trust it, and through an unpickler whose ``find_class`` returns an
inert placeholder for every global but the torch functions that rebuild tensors: RecBole is never imported, and only
tensors and plain config values come out.

Weights map by name onto :mod:`recmodels.models.sasrec` / :mod:`~recmodels.models.bert4rec` (RecBole's layout),
hyperparameters come from the saved config. RecBole numbers items in the order it first meets them
(``Dataset._remap``: ``pd.factorize`` over the ``.inter`` item column, the ``.item`` file's, then ``alias_of_item_id``
fields, after its filters); :func:`recbole_item_tokens` rebuilds that order from the atomic files, and the item rows
(BERT4Rec: and the output bias; its ``[mask]`` row, RecBole's index ``n_items``, goes last) are permuted into this
project's indices. Every item of the data must be in RecBole's list and every item RecBole met in interactions in the
data, else the datasets differ and the conversion is refused; items only in RecBole's ``.item`` file are dropped.
Settings that change the numbering and are not rebuilt here (k-core, value filters, duplicate removal) are refused.
"""

from __future__ import annotations

import codecs
import importlib.resources
import math
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recmodels.checkpoint.io import MAX_HISTORY, save_checkpoint
from recmodels.checkpoint.weights import PICKLE_SUFFIXES, check_values
from recmodels.data import RecData
from recmodels.data.loaders import recbole_ml100k_folder
from recmodels.errors import CheckpointError, DataFormatError, InvalidArgumentError, quote
from recmodels.models import model_class, model_info

MODELS = {"SASRec": "sasrec", "BERT4Rec": "bert4rec"}
MAX_IMPORT_BYTES = 4 * 2**30  # RecBole's transformers on ml-20m-sized catalogues need well under 1 GiB
TRUST_HINT = (
    "RecBole saves checkpoints with pickle, which can run any code while loading, so recmodels opens one "
    "only with --trust-pickle (trust_pickle=True) for a file you trust"
)
SETTINGS = (
    "n_layers",
    "n_heads",
    "hidden_size",
    "inner_size",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
    "MAX_ITEM_LIST_LENGTH",
    "loss_type",
    "mask_ratio",
    "ft_ratio",
    "dataset",
    "benchmark_filename",
)
HPARAMS = (
    ("dim", "hidden_size", int),
    ("heads", "n_heads", int),
    ("layers", "n_layers", int),
    ("inner", "inner_size", int),
    ("hidden_dropout", "hidden_dropout_prob", float),
    ("attention_dropout", "attn_dropout_prob", float),
    ("max_length", "MAX_ITEM_LIST_LENGTH", int),
    ("init_std", "initializer_range", float),
    ("eps", "layer_norm_eps", float),
)  # (ours, RecBole's, type)
BERT4REC_HPARAMS = (("mask_prob", "mask_ratio", float), ("last_only", "ft_ratio", float))  # ft_ratio: last-only batches
_REBUILD = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("collections", "OrderedDict"),
}


class RecBoleImportError(CheckpointError):
    """A RecBole checkpoint or dataset that cannot be converted."""


# ---------------------------------------------------------------------------------------------- unpickling
class Inert:
    """What every global of a RecBole pickle becomes (Config, enums, yaml loaders, torch.device, ...): it records
    its arguments and state and does nothing else (an object that needs more makes the file unreadable)."""

    recbole_global = "?"

    def __init__(self, *args, **kwargs):
        self.__dict__["_args"] = args

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def state(self) -> dict:
        state = self.__dict__.get("_state")
        state = state[0] if isinstance(state, tuple) and state else state  # (dict, slots)
        return state if isinstance(state, dict) else {}


class _InertPickleModule:
    """``torch.load``'s pickle_module: torch resolves its storage types, every other global goes to find_class."""

    class Unpickler(pickle.Unpickler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.placeholders = {}

        def find_class(self, module, name):
            if (module, name) in _REBUILD:
                return super().find_class(module, name)
            key = (str(module), str(name))
            if key not in self.placeholders:
                self.placeholders[key] = type(str(name)[:60] or "Inert", (Inert,), {"recbole_global": ".".join(key)})
            return self.placeholders[key]


@dataclass
class RecBoleCheckpoint:
    model: str  # "SASRec" or "BERT4Rec"
    config: dict  # RecBole's final_config_dict (plain values; others are Inert)
    state: dict[str, torch.Tensor]
    epoch: int | None  # the epoch RecBole saved it at (its best on valid), from 0


def read_recbole_checkpoint(path, trust_pickle: bool = False) -> RecBoleCheckpoint:
    """Open a RecBole 1.2.0 ``.pth``; refuses (before reading a byte) unless ``trust_pickle``."""
    if not trust_pickle:
        raise InvalidArgumentError(f"{path} was not opened: {TRUST_HINT}.")
    path = Path(path)
    if not path.is_file():
        raise RecBoleImportError(f"{path} is not a file; pass the .pth file RecBole saved (under saved/).")
    if not zipfile.is_zipfile(path):  # a raw pickle, text, ...: refused unread
        raise RecBoleImportError(
            f"{path} is not a checkpoint saved by RecBole 1.2.0 (torch.save's zip archive); "
            "pass the .pth file RecBole saved under saved/."
        )
    try:
        saved = torch.load(path, map_location="cpu", pickle_module=_InertPickleModule, weights_only=False)
    except Exception as err:  # noqa: BLE001 - a corrupt or hostile archive: one sentence, whatever broke
        raise RecBoleImportError(
            f"{path} could not be read as a RecBole checkpoint ({type(err).__name__}); the "
            "file is corrupt or was not saved by RecBole 1.2.0."
        ) from None
    config = saved.get("config") if isinstance(saved, dict) else None
    config = config.state().get("final_config_dict") if isinstance(config, Inert) else None
    state = saved.get("state_dict") if isinstance(saved, dict) else None
    if (
        not isinstance(config, dict)
        or not isinstance(state, dict)
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise RecBoleImportError(
            f"{path} is not a RecBole checkpoint (no RecBole config and state dict inside); "
            "pass the .pth file RecBole saved under saved/."
        )
    model, epoch = config.get("model"), saved.get("epoch")
    if not isinstance(model, str) or model not in MODELS:
        raise RecBoleImportError(f"{path} holds a RecBole {quote(model)} model; only SASRec and BERT4Rec convert.")
    return RecBoleCheckpoint(model, config, state, epoch if isinstance(epoch, int) else None)


# ---------------------------------------------------------------------------------------------- hyperparameters
def recbole_hparams(saved: RecBoleCheckpoint, where) -> dict:
    """This project's hyperparameters for the RecBole model (names as :class:`SASRecConfig` / BERT4RecConfig)."""
    bert = saved.model == "BERT4Rec"
    config = {"ft_ratio": 0.0, **saved.config} if bert else saved.config
    if config.get("hidden_act") != "gelu":
        raise RecBoleImportError(
            f"{where} uses hidden_act {quote(config.get('hidden_act'))}; only RecBole's default "
            "'gelu' converts, as this project's transformer uses the erf GELU."
        )
    hparams = {}
    for ours, theirs, kind in HPARAMS + BERT4REC_HPARAMS * bert:
        value = config.get(theirs)
        if isinstance(value, bool) or not isinstance(value, (int,) if kind is int else (int, float)):
            raise RecBoleImportError(
                f"{where}: RecBole setting {theirs} is {quote(value)}, not a "
                f"{'whole ' * (kind is int)}number; the checkpoint is not from RecBole 1.2.0."
            )
        hparams[ours] = kind(value)
    # RecBole's BPR is closest to the one-sampled-negative BCE; the objective only matters for further training
    hparams["objective"] = "ce" if config.get("loss_type") == "CE" else "bce"
    return hparams


# ---------------------------------------------------------------------------------------------- weights
def _weight_table(model: str, hp: dict, n_tokens: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{RecBole's name: (our name, shape)} for every weight; ``n_tokens`` counts RecBole's items and padding."""
    d, inner = hp["dim"], hp["inner"]
    bert = model == "BERT4Rec"
    table = {
        "item_embedding.weight": ("item_embedding.weight", (n_tokens + bert, d)),  # BERT4Rec: [mask] last
        "position_embedding.weight": ("position_embedding.weight", (hp["max_length"], d)),
    }
    linear = [("LayerNorm", "input_norm", None)]
    for i in range(hp["layers"]):
        theirs, ours = f"trm_encoder.layer.{i}", f"encoder.layers.{i}"
        linear += [
            (f"{theirs}.multi_head_attention.{a}", f"{ours}.attention.{b}", d)
            for a, b in (("query", "query"), ("key", "key"), ("value", "value"), ("dense", "output"))
        ]
        linear += [
            (f"{theirs}.multi_head_attention.LayerNorm", f"{ours}.attention.norm", None),
            (f"{theirs}.feed_forward.dense_1", f"{ours}.feed_forward.inner", (inner, d)),
            (f"{theirs}.feed_forward.dense_2", f"{ours}.feed_forward.outer", (d, inner)),
            (f"{theirs}.feed_forward.LayerNorm", f"{ours}.feed_forward.norm", None),
        ]
    if bert:
        linear += [("output_ffn", "output_projection", d), ("output_ln", "output_norm", None)]
        table["output_bias"] = ("output_bias", (n_tokens,))
    for theirs, ours, shape in linear:  # shape None: a layer norm; an int: a square linear layer
        shape = (shape, shape) if isinstance(shape, int) else shape
        table[f"{theirs}.weight"] = (f"{ours}.weight", shape or (d,))
        table[f"{theirs}.bias"] = (f"{ours}.bias", (shape[0],) if shape else (d,))
    return table


def map_weights(saved: RecBoleCheckpoint, hparams: dict, n_tokens: int, where) -> dict[str, torch.Tensor]:
    """RecBole's weights under this project's names, every name, shape and value checked; item rows still in
    RecBole's order (see :func:`permute_items`)."""
    table = _weight_table(saved.model, hparams, n_tokens)
    declared = sum(math.prod(shape) for _, shape in table.values()) * 4  # float32 bytes once converted
    if declared > MAX_IMPORT_BYTES:
        raise RecBoleImportError(
            f"{where}: its settings declare {declared / 2**30:.1f} GiB of weights, more than the "
            f"{MAX_IMPORT_BYTES / 2**30:.0f} GiB this import converts; the settings are not a real RecBole model's."
        )
    unexpected, missing = sorted(set(saved.state) - set(table)), sorted(set(table) - set(saved.state))
    if missing or unexpected:
        raise RecBoleImportError(
            f"{where}: the state dict {'lacks ' + quote(missing[0]) if missing else 'holds '}"
            f"{'' if missing else quote(unexpected[0])}, which RecBole 1.2.0's {saved.model} with "
            f"n_layers={hparams['layers']} {'has' if missing else 'does not have'}; the file is "
            "not an unmodified RecBole checkpoint."
        )
    rows = saved.state["item_embedding.weight"]
    if rows.ndim == 2 and rows.shape[0] != table["item_embedding.weight"][1][0]:
        raise RecBoleImportError(
            f"{where} has {rows.shape[0]} item-embedding rows, but the item list rebuilt from "
            f"its atomic files gives {table['item_embedding.weight'][1][0]}; pass the folder "
            "RecBole was trained on."
        )
    for theirs, (_, shape) in table.items():
        tensor = saved.state[theirs]
        if tensor.numel() > 1 and not tensor.is_contiguous():  # stride 0 or overlapping: a small file posing as big
            raise RecBoleImportError(
                f"{where}: weight {quote(theirs)} repeats its values through its strides "
                f"{list(tensor.stride())} rather than storing them, as no RecBole checkpoint does; it is refused "
                f"before it is expanded to {tensor.numel() * 4 / 2**20:,.0f} MB."
            )
        if tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise RecBoleImportError(
                f"{where}: weight {quote(theirs)} is a {str(tensor.dtype)[6:]} tensor of shape "
                f"{list(tensor.shape)}, but the settings saved with it give float {list(shape)}; "
                "the checkpoint is inconsistent."
            )
    state = {ours: saved.state[theirs].detach().to(torch.float32) for theirs, (ours, _) in table.items()}
    check_values(Path(str(where)), state)
    return state


def permute_items(state: dict, order: np.ndarray, n_tokens: int) -> dict[str, torch.Tensor]:
    """Item rows in this project's order: ``order[j]`` is RecBole's index of our item ``j`` (``order[0] = 0``)."""
    index = torch.as_tensor(order, dtype=torch.long)
    items = state["item_embedding.weight"]
    state = {**state, "item_embedding.weight": torch.cat([items[index], items[n_tokens:]])}  # [mask] stays last
    if "output_bias" in state:
        state["output_bias"] = state["output_bias"][index]
    return state


# ---------------------------------------------------------------------------------------------- items
def _refuse_unreproduced(config: dict, where) -> None:
    for key in ("rm_dup_inter", "val_interval", "preload_weight", "user_inter_num_interval", "item_inter_num_interval"):
        value = config.get(key)
        if value and str(value).replace(" ", "") != "[0,inf)":  # the interval that keeps everything
            raise RecBoleImportError(
                f"{where} was trained with RecBole setting {key}={quote(value)} (a k-core or "
                "value filter, or duplicate removal), which changes RecBole's item numbering in a "
                "way this import does not rebuild; retrain without it, or apply it to the atomic "
                "files first."
            )


def _atomic_format(config: dict, path: Path) -> tuple[str, str]:
    """RecBole's ``field_separator`` and ``encoding``, checked before a file is opened: a separator longer than one
    character is a regular expression to pandas, and an encoding must be one Python knows."""
    sep, encoding = config.get("field_separator") or "\t", config.get("encoding") or "utf-8"
    if not isinstance(sep, str) or len(sep) > 16:
        raise DataFormatError(path, f"cannot be read with RecBole's field_separator {quote(sep)}, which is not text")
    if len(sep) > 1:
        try:
            re.compile(sep)
        except re.error:
            raise DataFormatError(
                path, f"cannot be read with RecBole's field_separator {quote(sep)}, which is not a valid pattern"
            ) from None
    try:
        codecs.lookup(encoding) if isinstance(encoding, str) else None
    except LookupError:
        encoding = None
    if not isinstance(encoding, str):
        raise DataFormatError(
            path, f"cannot be read with RecBole's encoding {quote(config.get('encoding'))}, which Python does not know"
        )
    return sep, encoding


def _read_columns(path: Path, fields: list[str], config: dict) -> pd.DataFrame | None:
    """The named fields of one atomic file, read as RecBole reads them (tokens as text, its NaN rules); fields
    missing from the header are left out, and ``None`` when none is there."""
    sep, encoding = _atomic_format(config, path)
    try:
        with open(path, encoding=encoding) as handle:
            header = handle.readline().rstrip("\n").split(sep)
        wanted = [column for column in header if column.split(":")[0] in fields]
        if not wanted:
            return None
        table = pd.read_csv(
            path, delimiter=sep, usecols=wanted, dtype=str, encoding=encoding, engine="c" if len(sep) == 1 else "python"
        )
    except (OSError, UnicodeError, ValueError, pd.errors.ParserError) as err:
        raise DataFormatError(
            path,
            f"could not be read as RecBole reads it ({type(err).__name__}); check that it "
            "is the atomic file RecBole was trained on",
        ) from None
    table.columns = [column.split(":")[0] for column in wanted]
    return table


def _loaded(config: dict, suffix: str, field: str) -> bool:
    """Whether RecBole's load_col / unload_col let it load ``field`` from the ``.suffix`` file."""
    load, unload = config.get("load_col"), config.get("unload_col")
    if isinstance(unload, dict) and field in (unload.get(suffix) or []):
        return False
    chosen = load.get(suffix) if isinstance(load, dict) else "*"
    return chosen == "*" or (isinstance(chosen, list) and field in chosen)


def recbole_item_tokens(folder, config: dict, where="the RecBole checkpoint") -> tuple[np.ndarray, np.ndarray]:
    """(tokens, interacted): RecBole's item list rebuilt from the atomic files in ``folder`` (``tokens[i]`` is the
    raw id of RecBole's item ``i``, ``tokens[0]`` its padding), and whether each was met in an interaction file."""
    folder, name = Path(folder), str(config.get("dataset"))
    _refuse_unreproduced(config, where)
    iid, uid = str(config.get("ITEM_ID_FIELD")), str(config.get("USER_ID_FIELD"))
    list_field = iid + str(config.get("LIST_SUFFIX") or "_list")
    aliases = [a for a in dict.fromkeys(config.get("alias_of_item_id") or []) if a != iid]
    if any(alias != list_field for alias in aliases):
        raise RecBoleImportError(
            f"{where} was trained with alias_of_item_id={quote(aliases)}; only the sequence "
            f"field {quote(list_field)} of RecBole's sequential benchmark files is rebuilt here."
        )
    benchmark = config.get("benchmark_filename")
    files = [folder / f"{name}.{part}.inter" for part in benchmark] if benchmark else [folder / f"{name}.inter"]
    for path in files:
        if not path.is_file():
            raise DataFormatError(
                path,
                f"does not exist, but RecBole read it to number its items; pass the folder "
                f"RecBole loaded {quote(name)} from",
            )
    inter = [_read_columns(path, [uid, iid] + aliases, config) for path in files]
    if any(table is None or iid not in table for table in inter):
        raise DataFormatError(files[0], f"has no {iid} field, which RecBole numbered items by")
    inter = pd.concat(inter, ignore_index=True)
    item_path, user_path = folder / f"{name}.item", folder / f"{name}.user"
    items = _read_columns(item_path, [iid], config) if item_path.is_file() and _loaded(config, "item", iid) else None
    items = items if items is not None and iid in items else None
    if not benchmark:  # RecBole filters only when it splits the data itself
        loads_users = user_path.is_file() and _loaded(config, "user", uid)
        users = _read_columns(user_path, [uid], config) if loads_users else None
        inter = inter[inter[iid].notna() & (inter[uid].notna() if uid in inter else True)]
        items = items[items[iid].notna()] if items is not None else None
        if config.get("filter_inter_by_user_or_item", True):
            if users is not None and uid in users and uid in inter:
                inter = inter[inter[uid].isin(users[uid])]
            if items is not None:
                inter = inter[inter[iid].isin(items[iid])]
    parts = [(inter[iid].to_numpy(dtype=object), True)]  # (tokens, met in an interaction file)
    if items is not None:
        parts.append((items[iid].to_numpy(dtype=object), False))
    if aliases and list_field in inter:
        seq_sep, cut = str(config.get("seq_separator") or " "), (config.get("seq_len") or {}).get(list_field)
        sequences = [[t for t in v.split(seq_sep) if t] if isinstance(v, str) else [] for v in inter[list_field]]
        parts.append((np.array([t for s in sequences for t in (s[:cut] if cut else s)], dtype=object), True))
    codes, uniques = pd.factorize(np.concatenate([values for values, _ in parts]))
    interacted, start = np.zeros(len(uniques) + 1, dtype=bool), 0
    for values, from_interactions in parts:
        chunk, start = codes[start : start + len(values)], start + len(values)
        if from_interactions:
            interacted[chunk[chunk >= 0] + 1] = True  # factorize leaves NaN out (-1); RecBole maps it to padding
    return np.array(["[PAD]", *map(str, uniques)], dtype=object), interacted


def item_order(tokens: np.ndarray, interacted: np.ndarray, data, where) -> tuple[np.ndarray, int]:
    """(order, dropped): RecBole's index of each of this project's items (``order[0] = 0``) and how many items
    RecBole read only from its ``.item`` file; refuses when the two item sets differ otherwise."""
    position = {token: i for i, token in enumerate(tokens) if i > 0}
    ours = [str(raw) for raw in data.dataset.item_ids[1:]]
    missing = [raw for raw in ours if raw not in position]
    if missing:
        raise RecBoleImportError(
            f"{len(missing)} of the {len(ours)} items of {data.dataset.name} (e.g. "
            f"{quote(missing[0])}) are not in the item list RecBole built for {where}; convert "
            "with the dataset RecBole was trained on."
        )
    order = np.array([0] + [position[raw] for raw in ours], dtype=np.int64)
    known = np.zeros(len(tokens), dtype=bool)
    known[order] = True
    extra = np.flatnonzero(~known & interacted)
    if len(extra):
        raise RecBoleImportError(
            f"RecBole met {len(extra)} items in interactions for {where} (e.g. "
            f"{quote(tokens[extra[0]])}) that {data.dataset.name} does not have; convert with "
            "the dataset RecBole was trained on."
        )
    return order, int((~known).sum())


# ---------------------------------------------------------------------------------------------- conversion
def history_items(saved: RecBoleCheckpoint):
    """How many history items the converted model reads (BERT4Rec spends one position on [mask])."""
    length = saved.config.get("MAX_ITEM_LIST_LENGTH")
    return length - (saved.model == "BERT4Rec") if isinstance(length, int) and not isinstance(length, bool) else None


@dataclass
class Prepared:
    """A RecBole checkpoint checked against the atomic files it was trained on, ready for this project's data."""

    saved: RecBoleCheckpoint
    hparams: dict
    tokens: np.ndarray
    interacted: np.ndarray
    state: dict[str, torch.Tensor]
    where: str


def prepare(saved: RecBoleCheckpoint, recbole_folder, where="the RecBole checkpoint") -> Prepared:
    """Settings, RecBole's item list (from the atomic files in ``recbole_folder``) and the renamed weights, each
    checked; nothing here needs this project's data, so a bad file is refused before the data loads."""
    hparams = recbole_hparams(saved, where)
    try:
        model_info(MODELS[saved.model]).config_class(**hparams)
    except (TypeError, ValueError) as err:
        raise RecBoleImportError(
            f"{where}: its settings do not build this project's {saved.model} ({' '.join(str(err).split())})."
        ) from None
    try:
        tokens, interacted = recbole_item_tokens(recbole_folder, saved.config, where)
    except (TypeError, AttributeError) as err:  # a setting of the wrong type (seq_len not a dict, ...)
        raise RecBoleImportError(
            f"{where}: its data settings are malformed ({type(err).__name__}); the checkpoint is "
            "not from RecBole 1.2.0."
        ) from None
    return Prepared(saved, hparams, tokens, interacted, map_weights(saved, hparams, len(tokens), where), str(where))


def convert(prepared: Prepared, data, out) -> dict:
    """Write the converted model for ``data`` (a :class:`~recmodels.data.RecData`) to the checkpoint folder ``out``;
    returns a summary of the conversion (also stored in config.json as "recbole_import")."""
    saved, where = prepared.saved, prepared.where
    if data.max_history < history_items(saved):
        raise InvalidArgumentError(
            f"the data's max_history {data.max_history} is shorter than the "
            f"{history_items(saved)} history items {where} reads; load it with that many."
        )
    order, dropped = item_order(prepared.tokens, prepared.interacted, data, where)
    model = model_class(MODELS[saved.model]).from_data(data, **prepared.hparams)
    model.load_state_dict({**model.state_dict(), **permute_items(prepared.state, order, len(prepared.tokens))})
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(p.suffix.lower() in PICKLE_SUFFIXES for p in out.iterdir())):
        raise InvalidArgumentError(
            f"{out} is a file or holds pickle files (the RecBole checkpoint?), where a "
            "checkpoint folder holds only config.json and model.safetensors; pass another "
            "--out."
        )
    settings = {k: saved.config[k] for k in SETTINGS if isinstance(saved.config.get(k), (int, float, str, list))}
    summary = {
        "model": saved.model,
        "epoch": saved.epoch,
        "items": int(len(order) - 1),
        "recbole_items": int(len(prepared.tokens) - 1),
        "dropped_item_file_only": dropped,
        "settings": settings,
    }
    try:
        save_checkpoint(out, model, data, training={"source": "recbole-1.2.0"}, extra={"recbole_import": summary})
    except OSError as err:
        raise CheckpointError(
            f"{out} could not be written ({err.strerror or type(err).__name__}); pass a writable --out folder."
        ) from None
    return summary


def import_recbole(saved_path, out, data_dir=None, dataset: str | None = None, trust_pickle: bool = False) -> dict:
    """``python -m recmodels import-recbole``: read the checkpoint, load its dataset from ``data_dir`` (the folder
    RecBole read; for ml-100k the recbole wheel's copy by default) and write the converted checkpoint to ``out``."""
    saved = read_recbole_checkpoint(saved_path, trust_pickle)
    name = dataset or saved.config.get("dataset")
    if not isinstance(name, str) or not name:
        raise RecBoleImportError(f"{saved_path} names no dataset; pass --dataset.")
    length = history_items(saved)
    if length is None or not 1 <= length <= MAX_HISTORY:
        raise RecBoleImportError(
            f"{saved_path}: MAX_ITEM_LIST_LENGTH {quote(saved.config.get('MAX_ITEM_LIST_LENGTH'))}"
            f" is outside what this project reads (history of 1 to {MAX_HISTORY} items)."
        )
    if data_dir is not None:
        prepared = prepare(saved, data_dir, saved_path)
    elif saved.config.get("dataset") == "ml-100k":  # RecBole 1.2.0 always reads "ml-100k" from its bundled copy
        with importlib.resources.as_file(recbole_ml100k_folder()) as wheel_copy:
            prepared = prepare(saved, wheel_copy, saved_path)
    else:
        raise InvalidArgumentError(
            f"{saved_path} was trained on {quote(saved.config.get('dataset'))}; pass --data-dir "
            "with the folder of atomic files RecBole read it from."
        )
    return convert(prepared, RecData.load(name, data_dir, max_history=length), out)
