"""EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): a closed-form linear baseline.

With X the binary train user-item matrix and P = (X^T X + lambda I)^-1, the item-item weights are
B = I - P diag(1 / diag(P)), whose diagonal is zero (an item never recommends itself). A user's scores are
x_u B, where x_u is the multi-hot of the items in the history the model is given, so the protocol's history
rule holds exactly as for the other models. There is nothing to learn by gradient: B is solved from the train
part of the data when the model is built for it (``epochs=0``).

Whether a checkpoint stores B depends on the catalogue. Solving costs n^3: 0.3 s at 1,682 items but 9 minutes at
26,744 (a Gram matrix, a Cholesky factor and an inverse in float64). Storing costs n^2 floats: 11 MB against
2.9 GB. ``store_weights`` (by default: above :data:`STORE_ABOVE_ITEMS` items) saves B with the checkpoint, which
then loads in seconds; otherwise B is solved again whenever a checkpoint loads with its data, and the data
fingerprint guarantees the same train part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recmodels.data import TRAIN
from recmodels.errors import InvalidArgumentError
from recmodels.models.base import RecModel
from recmodels.models.config import bounded, check_bounds
from recmodels.models.outputs import Batch, InputTap, RecOutput

STORE_ABOVE_ITEMS = 8192  # B is 268 MB there, and solving it takes tens of seconds on 2 cores


@dataclass
class EASEConfig:
    """EASE's hyperparameters.

    Attributes:
        l2: lambda, the L2 weight on B; chosen on valid with ``--grid l2=...``.
        store_weights: save B with the checkpoint (True) or solve it again at every load (False); None decides by
            the catalogue (stored above STORE_ABOVE_ITEMS items) and the model records the decision.
    """

    # lambda 0 leaves the Gram matrix singular (an item without train interactions is a zero row), and one near
    # 1e-177 is lost beside it in float64
    l2: float = bounded(500.0, 1e-3, 1e8)
    store_weights: bool | None = None

    def __post_init__(self):
        check_bounds(self)


class EASE(RecModel):
    """Item-item linear autoencoder; score(u, i) = sum over the distinct history items j of B[j, i]."""

    name = "ease"
    title = "EASE"
    order = 80  # after the attention models; the first seven keep their places
    new_user = "EASE reads nothing but the history: a new user is their history, and nothing needs to stand in."
    needs_history = True
    config_class = EASEConfig
    default_training = {"epochs": 0, "monitor": "ndcg@10"}

    def __init__(self, spec: dict, config: EASEConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        if self.config.store_weights is None:
            self.config.store_weights = self.n_items > STORE_ABOVE_ITEMS
        self.needs_data = not self.config.store_weights  # an unstored B is solved from the train part
        # row and column 0 (padding) stay zero, so padded history positions add nothing
        self.register_buffer("item_weights", _untouched_zeros(self.n_items + 1), persistent=self.config.store_weights)
        self.history_tap = InputTap(
            ("history",), item_axis="history", description="each history item's weight B[j, i] towards the candidate"
        )

    @classmethod
    def from_data(cls, data, config: EASEConfig | None = None, **hparams) -> EASE:
        model = super().from_data(data, config, **hparams)
        if model.config.store_weights:  # attach_data left it to the checkpoint, which is yet to be written
            model.solve(data)
        return model

    def attach_data(self, data) -> None:
        if not self.config.store_weights:  # a stored B comes with the checkpoint
            self.solve(data)

    def solve(self, data) -> None:
        """B from the train part of ``data``."""
        indptr, items = data.seen_matrix_rows((TRAIN,))
        self.item_weights.copy_(torch.as_tensor(closed_form(indptr, items, self.n_items, self.config.l2)))

    def forward(self, batch: Batch, output_attentions: bool = False, attention_override=None) -> RecOutput:
        weights = self.item_weights[batch.history, batch.items.unsqueeze(1)] * first_occurrence(batch.history)
        scores = self.history_tap(weights.unsqueeze(-1)).squeeze(-1).sum(-1)
        return RecOutput(scores=scores, attentions={} if output_attentions else None)

    @torch.no_grad()
    def score_items(self, users, history, items, chunk_rows: int = 65536, attention_override=None):
        """x_u B for the candidates: the rows of B of each user's distinct history items, summed. Only those rows
        are read: indexing B's columns by the candidates copied all of B (2.9 GB at 26,744 items) per call."""
        distinct = first_occurrence(history)  # (B, T); padding's row is 0
        out = torch.empty(history.shape[0], len(items), device=history.device)
        users_per_chunk = max(1, chunk_rows // max(len(items), 1))
        for start in range(0, history.shape[0], users_per_chunk):
            part = slice(start, start + users_per_chunk)
            rows = self.item_weights[history[part]] * distinct[part].unsqueeze(-1)  # (b, T, N + 1)
            out[part] = rows.sum(1)[:, items]
        return out


def _untouched_zeros(size: int) -> torch.Tensor:
    """(size, size) float32 zeros. On the CPU they come from calloc, whose pages cost memory only once written: a
    checkpoint load replaces them unwritten, so a stored B is never held twice. torch.zeros writes every page."""
    if torch.empty(0).device.type != "cpu":  # e.g. the meta device, where the checkpoint reader builds models
        return torch.zeros(size, size)
    return torch.from_numpy(np.zeros((size, size), dtype=np.float32))


def first_occurrence(history: torch.Tensor) -> torch.Tensor:
    """(B, T) float: 1 where a history position holds an item not seen earlier in the row (x_u is binary)."""
    same = history.unsqueeze(2) == history.unsqueeze(1)  # (B, T, T): position t equals position s
    earlier = torch.ones(history.shape[1], history.shape[1], dtype=torch.bool, device=history.device).tril(-1)
    return (~(same & earlier).any(-1)).to(torch.float32)


GRAM_BLOCK = 2048  # item columns per sparse product: each block's dense result is n_items x 2048 float64


def closed_form(indptr: np.ndarray, items: np.ndarray, n_items: int, l2: float) -> np.ndarray:
    """B (n_items + 1, n_items + 1) with padding row and column 0, solved in float64 from the train matrix in CSR
    form (user u's items are ``items[indptr[u]:indptr[u + 1]]``; repeats count once).

    At most two n_items^2 float64 matrices are alive at once: the Gram matrix comes from sparse products, and
    P = (X^T X + lambda I)^-1 from its Cholesky factor (the matrix is symmetric positive definite), through torch:
    the LAPACK that SciPy ships crashes on a Cholesky factor above 16,384 items. At ml-20m scale a dense X alone
    would be 138,493 x 26,744 float64, 30 GB."""
    gram = torch.from_numpy(_gram(indptr, items, n_items))
    gram.diagonal().add_(l2)
    factor, info = torch.linalg.cholesky_ex(gram)
    del gram
    if int(info) != 0:  # in exact arithmetic never for lambda > 0; says so rather than returning garbage
        raise InvalidArgumentError(
            f"EASE: the Gram matrix plus {l2:g} I is not positive definite in float64 (order {int(info)}); raise l2."
        )
    precision = torch.cholesky_inverse(factor)
    del factor
    out = np.zeros((n_items + 1, n_items + 1), dtype=np.float32)
    diagonal = precision.diagonal().clone()
    for lo in range(0, n_items, GRAM_BLOCK):  # B = I - P diag(1/diag(P)); its diagonal is 1 - 1 = 0
        hi = min(lo + GRAM_BLOCK, n_items)
        out[1 + lo : 1 + hi, 1:] = (-precision[lo:hi] / diagonal).numpy()
    np.fill_diagonal(out, 0.0)
    return out


def _gram(indptr: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """X^T X (float64, dense) of the binary user-item matrix, a block of item columns at a time."""
    from scipy.sparse import csr_matrix

    n_users = len(indptr) - 1
    users = np.repeat(np.arange(n_users), np.diff(indptr))
    x = csr_matrix((np.ones(len(items)), (users, np.asarray(items) - 1)), shape=(n_users, n_items))
    x.sum_duplicates()
    x.data[:] = 1.0  # an item seen twice counts once
    by_item, by_column = x.T.tocsr(), x.tocsc()
    gram = np.empty((n_items, n_items))
    for lo in range(0, n_items, GRAM_BLOCK):
        hi = min(lo + GRAM_BLOCK, n_items)
        gram[:, lo:hi] = (by_item @ by_column[:, lo:hi]).toarray()
    return gram
