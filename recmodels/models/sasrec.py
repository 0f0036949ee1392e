"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence, next-item prediction.

    x_t      = LN(E_item[h_t] + E_pos[t]),  dropout                 the history, right-padded, t = 0 .. n-1
    X^{l+1}  = Transformer layer l (post-norm, causal: position t attends to positions <= t that are real)
    u        = X^L[n - 1]                                          the state at the last history position
    score(i) = <u, E_item[i]>                                      one dot product per candidate

The layers are RecBole 1.2.0's (:mod:`.transformer`), so a RecBole SASRec converts weight for weight
(``python -m recmodels import-recbole``). Histories longer than ``max_length`` keep their most recent items.

Training has two forms. By default (``positions="last"``, RecBole's) the trainer hands it one row per train
interaction with the full history before it, and the last position predicts the row's item. With
``positions="all"`` (the paper's) every position of each training window predicts the next item (the window's last
position predicts the row's own item), one window per ``max_history`` train interactions (``sequence_training``),
so each train interaction is a target once per epoch. The loss is the paper's BCE against one sampled negative per
target (``objective="bce"``) or the full-softmax cross-entropy over the catalogue (``objective="ce"``).

Maps (``output_attentions=True``): ``self_attention`` (layer, head, query_position, key_position), causal-masked,
and ``rollout`` (history,), which history items the scoring position draws on through every layer. An empty
history scores from the state of position 0 of an empty sequence: every weight is 0 there.

The user side never sees the candidate, so :meth:`score_items` encodes each history once and ranks with one
matrix product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.outputs import AttentionOverride, Batch, InputTap
from recmodels.models.transformer import (
    SequenceOutput,
    TransformerConfig,
    TransformerEncoder,
    init_like_recbole,
    next_item_loss,
    rollout_map,
    self_attention_map,
    take_window,
    window_index,
)


@dataclass
class SASRecConfig(TransformerConfig):
    """SASRec's hyperparameters: those of :class:`~.transformer.TransformerConfig`, and

    Attributes:
        positions: "last" (RecBole's: one row per train interaction, its last position predicts it) or "all" (the
            paper's: every position of a window predicts its next item).
    """

    positions: str = "last"

    def __post_init__(self):
        super().__post_init__()
        if self.positions not in ("all", "last"):
            raise ValueError(f"positions must be 'all' or 'last', got {self.positions!r}")


class SASRec(RecModel):
    """Self-attentive sequential recommendation, RecBole's layout."""

    name = "sasrec"
    title = "SASRec"
    order = 90
    new_user = "SASRec reads nothing but the sequence of the history: a new user is their history, in its order."
    needs_history = True
    config_class = SASRecConfig
    maps_ignore_candidate = True  # every map is the user tower's
    # chosen on ml-100k's valid NDCG@10 (docs/sequential.md, "Settings"): RecBole's rows with the CE objective,
    # dropout 0.2 at lr 1e-3 gave 0.1300, ahead of windows of 50 with every position a target (0.1289), BCE with one
    # negative (0.1275) and RecBole's dropout 0.5 (0.1291). The trainer's ``loss`` and ``negatives`` are not used:
    # :meth:`loss` is the model's own (``objective``).
    default_training = {
        "loss": "bce",
        "negatives": 0,
        "epochs": 30,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 128,
        "patience": 8,
        "monitor": "ndcg@10",
        "valid_ctr": False,
    }

    @property
    def sequence_training(self) -> bool:
        return self.config.positions == "all"

    @property
    def window_stride(self) -> int | None:
        return self.config.window_stride or None

    def __init__(self, spec: dict, config: SASRecConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        self.item_embedding = nn.Embedding(self.n_items + 1, config.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_length, config.dim)
        self.input_norm = nn.LayerNorm(config.dim, eps=config.eps) if config.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.encoder = TransformerEncoder.from_config(config)
        self.history_tap = InputTap(
            ("history",), item_axis="history", description="each history item's embedding, before its position is added"
        )
        self.candidate_tap = InputTap(
            ("item_feature",), labels=["item id"], description="the candidate's item embedding"
        )
        init_like_recbole(self, config.init_std)

    # ------------------------------------------------------------------ encoder
    def encode(
        self,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> SequenceOutput:
        """Run the encoder over the (windowed) histories; ``states`` (B, T, d) and, when asked, the maps."""
        if history.shape[1] == 0:  # no history column at all: one padded position keeps every shape valid
            history = history.new_zeros(history.shape[0], 1)
        index = window_index(history, self.config.max_length)
        seq = take_window(history, history, index)
        embedded = take_window(self.history_tap(self.item_embedding(history)), history, index)
        _n_rows, length = seq.shape
        valid = seq != 0
        positions = torch.arange(length, device=seq.device)
        x = embedded + self.position_embedding(positions)
        x = self.dropout(self.input_norm(x))
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        # real queries attend to real keys at or before them; padded query rows are all 0 (they never reach the
        # scoring position, so RecBole's choice to let them attend changes no score)
        allowed = (valid[:, :, None] & valid[:, None, :] & causal).unsqueeze(1)  # (B, 1, T, T)
        states, weights = self.encoder(x, allowed, attention_override)
        out = SequenceOutput(scores=torch.empty(0), states=states[-1], positions=seq)
        if output_attentions:
            last = (valid.sum(1) - 1).clamp(min=0)
            out.attentions = {
                "self_attention": self_attention_map(
                    weights,
                    allowed,
                    seq,
                    "For each layer and head, how much each history position (row) draws on the earlier ones "
                    "(columns); causal, so nothing above the diagonal.",
                ),
                "rollout": rollout_map(
                    weights,
                    allowed,
                    positions=seq,
                    scoring=last,
                    history=seq,
                    description="Attention rollout: how much the last position, which scores every item, draws "
                    "on each history item through all layers (residual counted as half of each layer).",
                ),
            }
            out.hidden_states, out.hidden_mask = tuple(states), valid
        return out

    def user_vectors(
        self,
        history: torch.Tensor,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> tuple[torch.Tensor, SequenceOutput]:
        out = self.encode(history, output_attentions, attention_override)
        last = ((out.positions != 0).sum(1) - 1).clamp(min=0)
        return out.states[torch.arange(out.states.shape[0], device=last.device), last], out

    # ------------------------------------------------------------------ scores
    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> SequenceOutput:
        user, out = self.user_vectors(batch.history, output_attentions, attention_override)
        candidate = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        out.scores = (user * candidate).sum(-1)
        return out

    def score_items(
        self,
        users: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        chunk_rows: int = 65536,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> torch.Tensor:
        user, _ = self.user_vectors(history, attention_override=attention_override)
        return user @ self.item_embedding(items).T

    # ------------------------------------------------------------------ training
    def loss(self, output: SequenceOutput, batch: Batch, training) -> torch.Tensor:
        """Next-item loss at every real position of each window (the trainer's sampled negatives are not used:
        the "bce" objective draws one negative per position itself)."""
        seq = output.positions
        valid = seq != 0
        lengths = valid.sum(1)
        targets = torch.cat([seq[:, 1:], torch.zeros_like(seq[:, :1])], 1)
        rows = torch.arange(len(seq), device=seq.device)
        has_history = lengths > 0
        targets[rows[has_history], lengths[has_history] - 1] = batch.items[has_history]
        if self.config.positions == "last":
            valid = torch.zeros_like(valid)
            valid[rows[has_history], lengths[has_history] - 1] = True
        return next_item_loss(
            output.states[valid], targets[valid], self.item_embedding.weight, self.config.objective, self.n_items
        )
