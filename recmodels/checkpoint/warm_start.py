"""A warm start (``train --init-from CHECKPOINT``): a new model begins from the parameters it shares with a
checkpoint trained on the same data, e.g. VECF's CF part (user and item embeddings, item bias) from BPR-MF's.

Parameters are shared by name: every parameter of the new model that the source also has is copied, and each must
have the source's shape. The rest keep their seeded initialisation. The new checkpoint records the source (path,
model, fingerprint, the parameters copied) and holds every weight itself, so loading it never needs the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from recmodels.checkpoint.io import check_fingerprint, load_checkpoint, read_config
from recmodels.errors import CheckpointError


@dataclass
class WarmStart:
    """The source checkpoint's parameters, checked against the data; :meth:`apply` copies them into a model."""

    path: Path
    model: str
    fingerprint: str
    state: dict[str, torch.Tensor]

    @classmethod
    def open(cls, path, data) -> WarmStart:
        """Read the source ``path``: a checkpoint folder (else :class:`CheckpointError`) trained on ``data`` (else
        :class:`FingerprintMismatchError`), whose weights load (else :class:`CheckpointError`)."""
        folder = Path(path)
        config = read_config(folder)
        check_fingerprint(config, data.fingerprint, f"the --init-from checkpoint {folder}")
        source, _ = load_checkpoint(folder, data=data)
        state = {name: p.detach().clone() for name, p in source.named_parameters()}
        return cls(folder, config.model, config.dataset.fingerprint, state)

    def apply(self, model) -> list[str]:
        """Copy the shared parameters into ``model``; their names. None shared, or one of another shape, is a
        :class:`CheckpointError` that names it."""
        target = dict(model.named_parameters())
        shared = [name for name in target if name in self.state]
        if not shared:
            raise CheckpointError(
                f"the --init-from checkpoint {self.path} ({self.model}) shares no parameter with "
                f"{model.title or model.name}; start from a checkpoint of a model with the same parameter names "
                "(e.g. BPR-MF's user_embedding, item_embedding and item_bias for VECF)."
            )
        for name in shared:
            have, want = tuple(self.state[name].shape), tuple(target[name].shape)
            if have != want:
                raise CheckpointError(
                    f"the --init-from checkpoint {self.path} ({self.model}) has {name} of shape "
                    f"{'x'.join(map(str, have))}, but {model.title or model.name} needs "
                    f"{'x'.join(map(str, want))}; set the new model's sizes to the source's (e.g. its dim)."
                )
        with torch.no_grad():
            for name in shared:
                target[name].copy_(self.state[name].to(target[name].device, target[name].dtype))
        return shared

    def record(self, parameters: list[str]) -> dict:
        """What the new checkpoint's training settings keep under ``init_from``."""
        return {
            "path": str(self.path),
            "model": self.model,
            "fingerprint": self.fingerprint,
            "parameters": parameters,
        }


__all__ = ["WarmStart"]
