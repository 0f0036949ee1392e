"""Non-attention baselines on the same split and metrics: MostPopular and BPR-MF (Rendle et al., 2009).

EASE, the closed-form baseline, has its own file (ease.py)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_WIDTH, bounded, check_bounds
from recmodels.models.outputs import Batch, InputTap, RecOutput


class MostPopular(RecModel):
    """Scores each item by how often it was interacted with in train; the same list for everyone."""

    name = "mostpop"
    title = "MostPopular"
    order = 10
    new_user = "MostPopular ranks every user alike, by the train part's popularity: a new user gets the same list."
    reads_history = False
    default_training = {"epochs": 0}

    def forward(self, batch: Batch, output_attentions: bool = False, attention_override=None) -> RecOutput:
        return RecOutput(scores=self.item_popularity[batch.items], attentions={} if output_attentions else None)

    def score_items(self, users, history, items, chunk_rows: int = 65536, attention_override=None):
        return self.item_popularity[items].unsqueeze(0).expand(users.shape[0], -1).clone()


@dataclass
class BPRConfig:
    dim: int = bounded(64, 1, MAX_WIDTH)  # size of the user and item factors

    def __post_init__(self):
        check_bounds(self)


class BPRMF(RecModel):
    """Matrix factorisation trained with the BPR pairwise loss; score = <p_u, q_i> + b_i."""

    name = "bpr"
    title = "BPR-MF"
    order = 20
    # new_user stays None: the score is a learned vector per user against the item's, and a new user has none
    reads_history = False
    config_class = BPRConfig
    # the shipped checkpoints were chosen on valid with --grid lr=0.001,0.003 --grid weight_decay=0,1e-5
    # --grid dim=64,128 and patience 10 (ml-100k: lr 1e-3, no decay, dim 64 at epoch 67; fashion: lr 1e-3,
    # weight_decay 1e-5, dim 128); these defaults are ml-100k's choice, with room to converge
    default_training = {
        "loss": "bpr",
        "epochs": 300,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 1024,
        "patience": 10,
        "monitor": "ndcg@10",
    }

    def __init__(self, spec: dict, config: BPRConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        dim = self.config.dim
        self.user_embedding = nn.Embedding(self.n_users + 1, dim, padding_idx=0)
        self.item_embedding = nn.Embedding(self.n_items + 1, dim, padding_idx=0)
        self.item_bias = nn.Embedding(self.n_items + 1, 1, padding_idx=0)
        nn.init.normal_(self.user_embedding.weight, std=0.05)
        nn.init.normal_(self.item_embedding.weight, std=0.05)
        nn.init.zeros_(self.item_bias.weight)
        self.user_tap = InputTap(("user_feature",), labels=["user id"], description="user embedding")
        self.candidate_tap = InputTap(
            ("item_feature",), labels=["item id"], description="candidate item embedding (its bias is held fixed)"
        )

    def forward(self, batch: Batch, output_attentions: bool = False, attention_override=None) -> RecOutput:
        user = self.user_tap(self.user_embedding(batch.users).unsqueeze(1)).squeeze(1)
        item = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        scores = (user * item).sum(-1) + self.item_bias(batch.items).squeeze(-1)
        return RecOutput(scores=scores, attentions={} if output_attentions else None)

    def score_items(self, users, history, items, chunk_rows: int = 65536, attention_override=None):
        return self.user_embedding(users) @ self.item_embedding(items).T + self.item_bias(items).T
