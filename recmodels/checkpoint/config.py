"""A checkpoint's ``config.json`` as a typed object: what every reader (the service, the CLI, the bench, the app)
gets from :func:`~recmodels.checkpoint.io.read_config`, after :mod:`~recmodels.checkpoint.schema` has checked the
file field by field.

Fields a reader needs are attributes with their types; anything else a config holds (a RecBole import's record,
keys written by a later version) is kept in ``extra`` and written back as it was.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from recmodels.checkpoint.schema import FORMAT_VERSION

# the order save_checkpoint writes; keys outside it follow in the order they came
TOP_LEVEL = (
    "format_version",
    "library_version",
    "created",
    "model",
    "hparams",
    "spec",
    "dataset",
    "model_source",
    "training",
    "metrics",
    "history",
)
DATASET_KEYS = (
    "name",
    "data_dir",
    "image_dir",
    "fingerprint",
    "split",
    "max_history",
    "summary",
    "citation",
    "simulated",
)


@dataclass(frozen=True)
class DatasetRecord:
    """The data a checkpoint was trained on: its name and fingerprint, where it lies, the split and the history
    window, and the summary, citation and simulated flag that the app shows."""

    name: str
    fingerprint: str
    split: dict
    max_history: int
    data_dir: str | None = None
    image_dir: str | None = None
    summary: dict = field(default_factory=dict)
    citation: str | None = None
    simulated: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def split_mode(self) -> str:
        """ "per_user", "global" or "next_item" (the per-user split is written without a mode)."""
        return self.split.get("mode", "per_user")

    @classmethod
    def from_json(cls, raw: dict) -> DatasetRecord:
        known = {key: raw[key] for key in DATASET_KEYS if key in raw}
        return cls(**known, extra={key: value for key, value in raw.items() if key not in DATASET_KEYS})

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "data_dir": self.data_dir,
            "image_dir": self.image_dir,
            "fingerprint": self.fingerprint,
            "split": self.split,
            "max_history": self.max_history,
            "summary": self.summary,
            "citation": self.citation,
            "simulated": self.simulated,
            **self.extra,
        }


@dataclass(frozen=True)
class CheckpointConfig:
    """One checkpoint's ``config.json``: the model and its hyperparameters, the data spec, the dataset, how it was
    trained and what it measured.

    Attributes:
        model: the registry name of the model.
        hparams: the model's hyperparameters, as its ``config_class`` names them.
        spec: the data's sizes and names the model was built for (users, items, fields, genres).
        dataset: the data it was trained on (:class:`DatasetRecord`).
        training: the training settings, the best epoch, the device and the world size.
        metrics: ``{"valid": {...}, "test": {...}}``, measured when it was trained.
        history: one entry per epoch: loss, valid metrics, attention statistics, throughput.
        recovery: planted-cell recovery (region-attention models on simulated shoppers), or None.
        collapse_example: why a deliberately collapsed example was made so, or None.
        evaluated_users: the users the final metrics cover when training capped them (``--eval-users``), or None.
        model_source: where a plugin model came from, or None for a built-in.
        selection: every point of a ``--grid`` run with its valid metrics, and the one chosen; or None.
        extra: every other top-level entry, kept as written (e.g. ``recbole_import``).
    """

    model: str
    hparams: dict
    spec: dict
    dataset: DatasetRecord
    format_version: int = FORMAT_VERSION
    library_version: str | None = None
    created: str | None = None
    model_source: dict | None = None
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    recovery: dict | None = None
    collapse_example: str | bool | None = None
    evaluated_users: int | None = None
    selection: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def monitor(self) -> str:
        """The valid metric training watched (early stopping, model selection)."""
        return self.training.get("monitor", "ndcg@10")

    @property
    def records_attention(self) -> bool:
        """Whether training recorded attention statistics: a model without attention maps has none."""
        return any(isinstance(epoch, dict) and epoch.get("attention") for epoch in self.history)

    def part_metrics(self, part: str) -> dict:
        """The recorded metrics of "valid" or "test" ({} when none were recorded)."""
        return dict(self.metrics.get(part) or {})

    def replace(self, **changes) -> CheckpointConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(
        cls,
        model,
        data,
        training: dict | None = None,
        metrics: dict | None = None,
        history: list | None = None,
        extra: dict | None = None,
    ) -> CheckpointConfig:
        """The record of ``model`` on ``data`` (a :class:`~recmodels.data.RecData`): what
        :func:`~recmodels.checkpoint.io.save_checkpoint` writes, and what a service over a model that was never
        saved describes it with. ``extra`` holds optional entries (``collapse_example``, ``selection``, ...)."""
        from recmodels.models import model_info
        from recmodels.version import __version__

        source = model_info(model.name).source  # a plugin's origin, so a machine without it says what to install
        dataset = DatasetRecord(
            name=data.dataset.name,
            fingerprint=data.fingerprint,
            split=data.split.to_dict(),
            max_history=data.max_history,
            summary=data.summary(),
            citation=data.dataset.citation,
            simulated=data.dataset.simulated,
            **stored_locations(data),
        )
        return cls.from_json(
            {
                "format_version": FORMAT_VERSION,
                "library_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model": model.name,
                "hparams": model.hparams,
                "spec": model.spec,
                "dataset": dataset.to_json(),
                **({"model_source": source} if source else {}),
                "training": training or {},
                "metrics": metrics or {},
                "history": history or [],
                **(extra or {}),
            }
        )

    @classmethod
    def from_json(cls, raw: dict) -> CheckpointConfig:
        """From the parsed JSON of a file that :func:`~recmodels.checkpoint.schema.validate_config` accepted."""
        named = {f.name for f in dataclasses.fields(cls)} - {"extra", "dataset"}
        known = {key: raw[key] for key in named if raw.get(key) is not None}
        extra = {key: value for key, value in raw.items() if key not in named and key != "dataset"}
        return cls(**known, dataset=DatasetRecord.from_json(raw["dataset"]), extra=extra)

    def to_json(self) -> dict:
        """The JSON object ``config.json`` holds, in the order :func:`~recmodels.checkpoint.io.save_checkpoint`
        writes; optional entries that are unset are left out."""
        out = {
            "format_version": self.format_version,
            "library_version": self.library_version,
            "created": self.created,
            "model": self.model,
            "hparams": self.hparams,
            "spec": self.spec,
            "dataset": self.dataset.to_json(),
        }
        if self.model_source is not None:
            out["model_source"] = self.model_source
        out.update(training=self.training, metrics=self.metrics, history=self.history)
        for key in ("collapse_example", "evaluated_users", "selection", "recovery"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}


def stored_locations(data) -> dict:
    """``data_dir`` and ``image_dir`` as absolute paths, so the checkpoint opens from any working directory.

    An image folder the loader finds by itself (``<data_dir>/images``, the shipped fashion images) is left out:
    the loader finds it again, also after the repository or the dataset has moved.
    """
    from recmodels.data.fashion import FASHION_DIR

    data_dir = data.dataset.extras.get("data_dir")
    data_dir = None if data_dir is None else Path(data_dir).expanduser().resolve()
    image_dir = data.dataset.image_dir
    image_dir = None if image_dir is None else Path(image_dir).expanduser().resolve()
    default_images = (
        data_dir / "images"
        if data_dir is not None
        else (FASHION_DIR.resolve() / "images" if data.dataset.name == "fashion" else None)
    )
    if image_dir == default_images:
        image_dir = None
    return {
        "data_dir": None if data_dir is None else str(data_dir),
        "image_dir": None if image_dir is None else str(image_dir),
    }
