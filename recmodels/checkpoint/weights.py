"""The weights file of a checkpoint, checked before a single tensor is built.

Order of trust: the safetensors header is parsed by hand with a size cap and must describe exactly the bytes
of the file; the model is built on the ``meta`` device (no memory) to learn the names, shapes and dtypes it
declares; only when the header matches them are the tensors read, and then their values are checked (finite,
within range, feature tables equal to the data's). Pickle-based files are recognised and never opened.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from recmodels.errors import CheckpointError

MAX_HEADER_BYTES = 16 * 1024 * 1024  # our headers are a few kB
MAX_TENSORS = 100_000
MAX_UNSTORED_BYTES = 4 * 1024**3  # tables a model reads from its data at load (e.g. image regions)
MAX_ABS_WEIGHT = 1e6  # trained weights stay within a few units; beyond this a file is corrupt
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
RESTORE = "retrain or restore it"

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: str(dtype).removeprefix("torch.") for dtype in DTYPES.values()}

TensorInfo = tuple[tuple[int, ...], torch.dtype]  # (shape, dtype)


def refuse_pickle_files(folder: Path) -> None:
    """A pytorch_model.bin (or .pt, .pkl, ...) beside config.json would be a pickle: never open, never guess."""
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(
                f"{folder} holds {entry.name}, a pickle-based weights file that recmodels never "
                "opens (unpickling can run code); remove it and keep only model.safetensors, "
                "or convert it to safetensors yourself."
            )


# ---------------------------------------------------------------------------------------------- header
def read_header(path: Path) -> dict[str, TensorInfo]:
    """Names, shapes and dtypes of a safetensors file, read from its header alone (no tensor data)."""
    try:
        size, raw = _header_bytes(path)
    except OSError as err:
        raise CheckpointError(
            f"{path} could not be read ({err.strerror or err}); check its permissions or {RESTORE}."
        ) from None
    length = len(raw)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _corrupt(path, "its header is not valid JSON") from None
    if not isinstance(header, dict) or len(header) > MAX_TENSORS:
        raise _corrupt(path, "its header is not a table of tensors")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _corrupt(path, "its __metadata__ is not a table of text")
    return _tensor_table(path, header, data_bytes=size - 8 - length)


def _header_bytes(path: Path) -> tuple[int, bytes]:
    """(file size, header bytes); the announced header length is checked before anything more is read."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(9)
        length = int.from_bytes(prefix[:8], "little") if len(prefix) == 9 else -1
        plausible = 2 <= length <= min(MAX_HEADER_BYTES, size - 8)
        # a header of 1408 bytes starts 80 05, as a pickle does: only a header that cannot be one is refused as such
        if not (plausible and prefix[8:9] == b"{"):
            _refuse_pickle_bytes(path, prefix)
        handle.seek(8)
        if not plausible:
            raise CheckpointError(
                f"{path} is not a safetensors file or is truncated (its first 8 bytes announce "
                f"a {length}-byte header in a {size}-byte file); the file is corrupt or truncated, "
                f"so {RESTORE}."
            )
        return size, handle.read(length)


def _refuse_pickle_bytes(path: Path, prefix: bytes) -> None:
    if prefix.startswith(b"PK\x03\x04"):
        kind = "a zip archive (what torch.save writes, with pickled contents)"
    elif prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a Python pickle"
    else:
        return
    raise CheckpointError(
        f"{path} is {kind}, not safetensors; it was not opened because unpickling can run code, "
        "so save the weights with safetensors instead."
    )


def _tensor_table(path: Path, header: dict, data_bytes: int) -> dict[str, TensorInfo]:
    """Check every entry's dtype, shape and byte range; the ranges must tile the data exactly."""
    tensors, ranges = {}, []
    for name, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
            raise _corrupt(path, f"tensor {_name(name)} has no dtype this library reads")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not _whole_list(shape, max_len=8) or not _whole_list(offsets, max_len=2) or len(offsets) != 2:
            raise _corrupt(path, f"tensor {_name(name)} has a malformed shape or data_offsets")
        dtype = DTYPES[info["dtype"]]
        numel = 1
        for dim in shape:
            numel *= dim
        begin, end = offsets
        if end - begin != numel * torch.empty((), dtype=dtype, device="meta").element_size():
            raise _corrupt(path, f"tensor {_name(name)} claims shape {list(shape)} but {end - begin} bytes")
        tensors[name] = (tuple(shape), dtype)
        ranges.append((begin, end))
    position = 0
    for begin, end in sorted(ranges):
        if begin != position:
            raise _corrupt(path, "its tensors overlap or leave gaps")
        position = end
    if position != data_bytes:
        raise _corrupt(path, f"its header describes {position} bytes of tensors but the file holds {data_bytes}")
    return tensors


def _whole_list(value, max_len: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= max_len
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 for v in value)
    )


# ---------------------------------------------------------------------------------------------- model
def declared_tensors(config, folder: Path) -> dict[str, TensorInfo]:
    """What the model of ``config`` stores, from a build on the meta device (no memory is allocated)."""
    from recmodels.models import build_model

    try:
        with torch.device("meta"):
            model = build_model(config.model, config.spec, **config.hparams)
    except CheckpointError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        IndexError,
        AssertionError,
        ZeroDivisionError,
        OverflowError,
        RuntimeError,
        NotImplementedError,
    ) as err:
        raise CheckpointError(
            f"{folder / 'config.json'}: the hyperparameters and spec do not fit model "
            f"{config.model!r} ({_first_line(err)}); restore config.json from the original "
            "checkpoint or retrain."
        ) from None
    state = model.state_dict()
    unstored = sum(
        buffer.numel() * buffer.element_size() for name, buffer in model.named_buffers() if name not in state
    )
    if unstored > MAX_UNSTORED_BYTES:
        raise CheckpointError(
            f"{folder / 'config.json'}: model {config.model!r} as configured would need "
            f"{unstored / 1024**3:.1f} GB of tables beside its weights, more than the "
            f"{MAX_UNSTORED_BYTES // 1024**3} GB limit; restore config.json or retrain."
        )
    return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in state.items()}


def compare_with_model(
    path: Path, stored: dict[str, TensorInfo], declared: dict[str, TensorInfo], model_name: str
) -> None:
    """Every tensor the model declares, with its shape and dtype, and nothing else."""
    for name, (shape, dtype) in declared.items():
        if name not in stored:
            raise CheckpointError(
                f"{path} lacks tensor {_name(name)}, so it does not match model {model_name!r}; "
                f"the file is incomplete or from another model, so {RESTORE}."
            )
        stored_shape, stored_dtype = stored[name]
        if stored_shape != shape:
            raise CheckpointError(
                f"{path}: tensor {_name(name)} has shape {list(stored_shape)}, which does not match "
                f"model {model_name!r} as config.json describes it ({list(shape)}); the config and "
                "the weights do not belong together, so restore both from one checkpoint."
            )
        if stored_dtype != dtype:
            raise CheckpointError(
                f"{path}: tensor {_name(name)} is stored as {DTYPE_NAMES[stored_dtype]}, but model "
                f"{model_name!r} declares {DTYPE_NAMES.get(dtype, dtype)}; the weights were "
                f"converted or corrupted, so {RESTORE}."
            )
    extra = sorted(set(stored) - set(declared))
    if extra:
        raise CheckpointError(
            f"{path} holds tensor {_name(extra[0])}, which model {model_name!r} does not declare; "
            f"the file is from another model or version, so {RESTORE}."
        )


# ---------------------------------------------------------------------------------------------- values
def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise _corrupt(path, _first_line(err)) from None


def check_values(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Floating tensors must be finite and within ±MAX_ABS_WEIGHT, so every score is a finite number."""
    for name, tensor in state.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        low, high = _value_range(tensor)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise CheckpointError(
                f"{path}: tensor {_name(name)} holds NaN or infinite values; the weights are "
                f"corrupt (or training diverged), so {RESTORE}."
            )
        largest = max(-low, high)
        if largest > MAX_ABS_WEIGHT:
            raise CheckpointError(
                f"{path}: tensor {_name(name)} holds a value of {largest:.3g}, beyond the "
                f"±{MAX_ABS_WEIGHT:g} that trained weights stay within; the file is corrupt, so "
                f"{RESTORE}."
            )


VALUE_CHUNK = 1 << 24  # elements per pass of the range check: a 64 MB float32 slice, not a copy of the tensor


def _value_range(tensor: torch.Tensor) -> tuple[float, float]:
    """(min, max) over the tensor, NaN if it holds one, read in slices so that no full-size temporary is made."""
    flat, low, high = tensor.reshape(-1), math.inf, -math.inf
    for start in range(0, flat.numel(), VALUE_CHUNK):
        part_low, part_high = torch.aminmax(flat[start : start + VALUE_CHUNK])
        part_low, part_high = float(part_low), float(part_high)
        if math.isnan(part_low) or math.isnan(part_high):
            return math.nan, math.nan
        low, high = min(low, part_low), max(high, part_high)
    return low, high


def check_feature_tables(path: Path, state: dict[str, torch.Tensor], data) -> None:
    """The stored feature tables are not learned: they must be the ones the (same-fingerprint) data gives."""
    for name, table in data.tables.tensors().items():
        if name not in state:
            continue
        stored, given = state[name], torch.as_tensor(table)
        if stored.shape == given.shape:
            given = given.to(stored.dtype)
            if stored.is_floating_point() and torch.allclose(stored, given, rtol=1e-5, atol=1e-5):
                continue
            if not stored.is_floating_point() and torch.equal(stored, given):
                continue
        raise CheckpointError(
            f"{path}: feature table {_name(name)} differs from the one {data.dataset.name} gives "
            f"although the fingerprints match; the file is corrupt, so {RESTORE}."
        )


def check_index_tables(path: Path, state: dict[str, torch.Tensor], spec: dict) -> None:
    """Without the data, at least every stored feature index must point inside its embedding table."""
    limits = {"item_year": [spec["n_years"]]}
    if "user_field_sizes" in spec:
        limits["user_fields"] = list(spec["user_field_sizes"])
    for name, sizes in limits.items():
        table = state.get(name)
        if table is None or table.numel() == 0 or table.is_floating_point():
            continue
        columns = table.reshape(table.shape[0], -1)
        if (
            columns.shape[1] != len(sizes)
            or bool((columns < 0).any())
            or bool((columns >= torch.tensor(sizes, dtype=columns.dtype)).any())
        ):
            raise CheckpointError(
                f"{path}: feature table {_name(name)} holds indices outside the sizes in "
                f"config.json's spec; the file is corrupt, so {RESTORE}."
            )


# ---------------------------------------------------------------------------------------------- wording
def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path} could not be read ({why}); the file is corrupt or truncated, so {RESTORE}.")


def _name(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else err.__class__.__name__
    return text if len(text) <= 100 else text[:97] + "..."
