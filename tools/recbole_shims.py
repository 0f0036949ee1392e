"""In-process shims that let RecBole 1.2.0 run under this project's pinned NumPy, SciPy and PyTorch.

Used by ``tools/recbole_compare.py`` and ``tests/test_recbole_import.py`` only; ``recmodels`` never imports RecBole.
Each shim was found by running RecBole here and fixes one thing it reads that the pinned versions dropped:

1. NumPy 2 removed ``np.float_``, ``np.complex_`` and ``np.unicode_``; ``recbole.config.Config`` reads them in
   ``compatibility_settings`` (aliased here to ``float64``, ``complex128`` and ``str_``), where it also sets
   ``np.float``, ``np.int``, ... for its metrics; the shim sets those too, for a Config unpickled from a checkpoint.
2. ``recbole.model.general_recommender`` imports LDiffRec, which imports the uninstalled ``kmeans_pytorch``; a stub
   module lets the import succeed (calling its ``kmeans`` raises: no model used here needs it).
3. SciPy >= 1.15 dropped ``dok_matrix._update``, which LightGCN (and the other graph models) call to fill their
   adjacency matrix; the shim puts back the dict update it was.
4. pandas 3 changed ``Series.agg(len)`` to return the length of the Series instead of each element's length;
   RecBole's dataset code uses it to split remapped ``token_seq`` fields (the ``item_id_list`` of sequential
   benchmark files) and to count their lengths. Only calls made from RecBole's modules get the element-wise
   lengths back; pandas behaves as released for everyone else.
5. PyTorch >= 2.6 made ``torch.load`` default to ``weights_only=True``, which refuses the pickled ``Config`` in
   RecBole's own checkpoints when its trainer reloads the best model (``evaluate(load_best_model=True)``,
   ``resume_checkpoint``). Only RecBole's trainer module gets a ``torch`` whose ``load`` defaults to
   ``weights_only=False``; every other caller keeps PyTorch's default.
6. ``recbole.model.sequential_recommender.sine`` calls ``torch.autograd.set_detect_anomaly(True)`` when it is
   imported, which turns anomaly detection on for the whole process: every backward pass slows down, and a NaN in
   a branch that a mask discards later (a fully padded softmax row) raises. The shim imports RecBole's sequential
   models once and puts the mode back as it was.

Call :func:`install` before importing RecBole; it is idempotent.
"""

from __future__ import annotations

import sys
import types

_installed = False


def install() -> None:
    """Install every shim (idempotent)."""
    global _installed
    if _installed:
        return
    _numpy_aliases()
    _kmeans_stub()
    _dok_update()
    _series_agg_len()
    _trainer_torch_load()
    _keep_anomaly_mode()
    _installed = True


def _numpy_aliases() -> None:
    import numpy as np

    for name, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if name not in np.__dict__:
            setattr(np, name, value)
    # the aliases RecBole's Config sets when it is built (its metrics read np.float); set here as well, because a
    # Config unpickled from a checkpoint never runs that code
    for name, value in (
        ("bool", np.bool_),
        ("int", np.int_),
        ("float", np.float64),
        ("complex", np.complex128),
        ("object", np.object_),
        ("str", np.str_),
        ("long", np.int_),
        ("unicode", np.str_),
    ):
        if name not in np.__dict__:
            setattr(np, name, value)


def _kmeans_stub() -> None:
    if "kmeans_pytorch" in sys.modules:
        return
    try:
        import kmeans_pytorch  # noqa: F401  (the real package, when someone installed it)

        return
    except ImportError:
        pass
    stub = types.ModuleType("kmeans_pytorch")

    def kmeans(*args, **kwargs):
        raise RuntimeError("kmeans_pytorch is a stub here (tools/recbole_shims.py); install it to train LDiffRec")

    stub.kmeans = kmeans
    sys.modules["kmeans_pytorch"] = stub


def _dok_update() -> None:
    from scipy.sparse import dok_matrix

    if hasattr(dok_matrix, "_update"):
        return

    def _update(self, data) -> None:
        # what dok_matrix._update was before SciPy 1.15: a plain dict update of (row, col) -> value, unchecked
        dict.update(self._dict if hasattr(self, "_dict") else self, data)

    dok_matrix._update = _update


def _series_agg_len() -> None:
    import pandas as pd

    original = pd.Series.agg
    if getattr(original, "recbole_shim", False):
        return

    def agg(self, func=None, axis=0, *args, **kwargs):
        if func is len and sys._getframe(1).f_globals.get("__name__", "").startswith("recbole."):
            return self.map(len)  # what pandas < 3 returned, and what RecBole expects
        return original(self, func, axis, *args, **kwargs)

    agg.recbole_shim = True
    pd.Series.agg = agg


class _TorchForRecBole(types.ModuleType):
    """``torch`` as RecBole's trainer sees it: everything is torch's, except that ``load`` reads RecBole's own
    checkpoints (a pickled Config beside the state dict) as PyTorch < 2.6 did."""

    def __init__(self, torch_module):
        super().__init__("torch")
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, *args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return self._torch.load(*args, **kwargs)


def _trainer_torch_load() -> None:
    import recbole.trainer.trainer as trainer_module
    import torch

    if not isinstance(trainer_module.torch, _TorchForRecBole):
        trainer_module.torch = _TorchForRecBole(torch)


def _keep_anomaly_mode() -> None:
    import torch

    was = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine, which switches anomaly mode on)

    torch.autograd.set_detect_anomaly(was)
