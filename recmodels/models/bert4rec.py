"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer over the sequence, trained as a cloze task.

    tokens    = h_1 .. h_n, [mask]                                 the history, then a mask token at position n
    x_t       = LN(E_item[tokens_t] + E_pos[t]),  dropout
    X^{l+1}   = Transformer layer l (post-norm, bidirectional over the real tokens)
    o         = LN(GELU(W X^L[n] + b))                              the output head at the mask position
    score(i)  = <o, E_item[i]> + b_i

The layers and the output head are RecBole 1.2.0's (:mod:`.transformer`), so a RecBole BERT4Rec converts weight
for weight. The model has ``max_length`` positions, so it reads the most recent ``max_length - 1`` history items
before the mask. (RecBole's own inference always drops the first item of the sequence it is given, so it reads a
history of ``max_length - 1`` items as one item shorter; this implementation keeps every item, as the paper does.)

Training masks each token of a training window (the row's history followed by its item) with probability
``mask_prob`` and predicts the masked ones (at least one per window); a share ``last_only`` of the windows mask only
their last token instead, the paper's samples that match inference. By default there is one window per train
interaction (``window_stride=1``, RecBole's rows), each ending at that interaction with its full history before it.
The loss is the full-softmax cross-entropy (``objective="ce"``) or BCE against one sampled negative per masked token
(``objective="bce"``).

Maps (``output_attentions=True``): ``self_attention`` (layer, head, query_position, key_position) over the history
and the ``[mask]`` position, and ``rollout`` (history,): which history items the mask position, which scores every
item, draws on through every layer (its own share, the mask token's, left out and the rest renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recmodels.models.base import RecModel
from recmodels.models.config import MAX_POSITIONS, bounded
from recmodels.models.outputs import AttentionOverride, Batch, InputTap
from recmodels.models.transformer import (
    SequenceOutput,
    TransformerConfig,
    TransformerEncoder,
    gelu,
    init_like_recbole,
    last_window,
    next_item_loss,
    rollout_map,
    self_attention_map,
    take_window,
    window_index,
)


@dataclass
class BERT4RecConfig(TransformerConfig):
    """BERT4Rec's hyperparameters: those of :class:`~.transformer.TransformerConfig` (``max_length`` counts the
    mask token's position, so 51 reads 50 history items), and

    Attributes:
        mask_prob: probability that a training token is masked [mask_ratio].
        last_only: share of training windows that mask only their last token [ft_ratio].
    """

    max_length: int = bounded(51, 2, MAX_POSITIONS)  # at least one history item and the mask token
    window_stride: int = bounded(1, 0, MAX_POSITIONS)
    mask_prob: float = bounded(0.2, 0.0, 1.0, low_open=True)
    last_only: float = bounded(0.5, 0.0, 1.0)

    def __post_init__(self):
        super().__post_init__()  # checks every bound, these included


class BERT4Rec(RecModel):
    """Bidirectional sequential recommendation with a cloze objective, RecBole's layout."""

    name = "bert4rec"
    title = "BERT4Rec"
    order = 100
    new_user = "BERT4Rec reads nothing but the sequence of the history: a new user is their history, in its order."
    needs_history = True
    config_class = BERT4RecConfig
    maps_ignore_candidate = True  # every map is the user tower's
    sequence_training = True
    # chosen on ml-100k's valid NDCG@10 (docs/sequential.md, "Settings"): one window per train interaction
    # (RecBole's rows) with half of them masking only their last item gave 0.1362, ahead of 10% (0.1275) and of
    # windows every 50 items (0.1168). The trainer's ``loss`` and ``negatives`` are not used: :meth:`loss` is the
    # model's own (``objective``).
    default_training = {
        "loss": "bce",
        "negatives": 0,
        "epochs": 30,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "batch_size": 128,
        "patience": 10,
        "monitor": "ndcg@10",
        "valid_ctr": False,
    }

    @property
    def window_stride(self) -> int | None:
        return self.config.window_stride or None

    def __init__(self, spec: dict, config: BERT4RecConfig | None = None, **hparams):
        super().__init__(spec, config, **hparams)
        config = self.config
        self.mask_token = self.n_items + 1
        self.item_embedding = nn.Embedding(self.n_items + 2, config.dim, padding_idx=0)  # the last row: [mask]
        self.position_embedding = nn.Embedding(config.max_length, config.dim)
        self.input_norm = nn.LayerNorm(config.dim, eps=config.eps) if config.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.encoder = TransformerEncoder.from_config(config)
        self.output_projection = nn.Linear(config.dim, config.dim)
        self.output_norm = nn.LayerNorm(config.dim, eps=config.eps) if config.layer_norm else nn.Identity()
        self.output_bias = nn.Parameter(torch.zeros(self.n_items + 1))
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
        tokens: torch.Tensor,
        embedded: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> SequenceOutput:
        """Encode right-padded ``tokens`` (B, T) (items, ``mask_token``, 0 for padding); ``states`` are the output
        head's vectors at every position. ``embedded`` replaces the tokens' embeddings (inference passes them
        through the history tap); ``history`` (B, T - 1), the history before the mask, is what the maps show."""
        _n_rows, length = tokens.shape
        valid = tokens != 0
        embedded = self.item_embedding(tokens) if embedded is None else embedded
        x = embedded + self.position_embedding(torch.arange(length, device=tokens.device))
        x = self.dropout(self.input_norm(x))
        allowed = (valid[:, :, None] & valid[:, None, :]).unsqueeze(1)  # (B, 1, T, T)
        states, weights = self.encoder(x, allowed, attention_override)
        head = self.output_norm(gelu(self.output_projection(states[-1])))
        positions = torch.where(tokens == self.mask_token, torch.full_like(tokens, -1), tokens)
        out = SequenceOutput(scores=torch.empty(0), states=head, positions=positions)
        if output_attentions:
            scoring = (valid.sum(1) - 1).clamp(min=0)
            out.attentions = {
                "self_attention": self_attention_map(
                    weights,
                    allowed,
                    positions,
                    "For each layer and head, how much each position (row), the [mask] that scores included, draws "
                    "on every other position (columns); bidirectional.",
                ),
                "rollout": rollout_map(
                    weights,
                    allowed,
                    positions=positions,
                    scoring=scoring,
                    history=history if history is not None else positions.clamp(min=0)[:, :-1],
                    description="Attention rollout: how much the [mask] position, which scores every item, draws "
                    "on each history item through all layers (residual counted as half of each layer; "
                    "the mask token's own share left out).",
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
        """The output head at the [mask] appended after the most recent ``max_length - 1`` history items."""
        index = window_index(history, self.config.max_length - 1)
        seq = take_window(history, history, index)
        embedded = take_window(self.history_tap(self.item_embedding(history)), history, index)
        rows, lengths = torch.arange(len(seq), device=seq.device), (seq != 0).sum(1)
        tokens = torch.cat([seq, seq.new_zeros(len(seq), 1)], 1)
        tokens[rows, lengths] = self.mask_token
        embedded = torch.cat([embedded, embedded.new_zeros(len(seq), 1, embedded.shape[-1])], 1)
        embedded = torch.where(
            (tokens == self.mask_token).unsqueeze(-1), self.item_embedding.weight[self.mask_token], embedded
        )
        out = self.encode(tokens, embedded, seq, output_attentions, attention_override)
        return out.states[rows, lengths], out

    # ------------------------------------------------------------------ scores
    def forward(
        self,
        batch: Batch,
        output_attentions: bool = False,
        attention_override: dict[str, AttentionOverride] | None = None,
    ) -> SequenceOutput:
        if self.training and batch.labels is not None and not output_attentions and not attention_override:
            return self._cloze(batch)  # the trainer's batches carry labels: mask them for the cloze loss
        user, out = self.user_vectors(batch.history, output_attentions, attention_override)
        candidate = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        out.scores = (user * candidate).sum(-1) + self.output_bias[batch.items]
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
        return user @ self.item_embedding(items).T + self.output_bias[items]

    # ------------------------------------------------------------------ training
    def _cloze(self, batch: Batch) -> SequenceOutput:
        """Mask the training windows (history, then the row's item) and encode them; ``positions`` keeps the
        original tokens and ``hidden_mask`` the masked positions, for :meth:`loss`."""
        rows = torch.arange(len(batch), device=batch.items.device)
        full = torch.cat([batch.history, torch.zeros_like(batch.items[:, None])], 1)
        full[rows, (batch.history != 0).sum(1)] = batch.items
        original = last_window(full, self.config.max_length)
        lengths = (original != 0).sum(1) - 1  # the row's item
        valid = original != 0
        masked = (torch.rand(original.shape, device=original.device) < self.config.mask_prob) & valid
        last_only = torch.rand(len(original), device=original.device) < self.config.last_only
        at_last = torch.zeros_like(masked)
        at_last[rows, lengths] = True
        none = ~masked.any(1)
        masked = torch.where((last_only | none).unsqueeze(1), at_last, masked)
        tokens = original.masked_fill(masked, self.mask_token)
        out = self.encode(tokens)
        out.positions, out.hidden_mask, out.scores = original, masked, torch.empty(0, device=original.device)
        return out

    def loss(self, output: SequenceOutput, batch: Batch, training) -> torch.Tensor:
        """Cloze loss over the masked tokens (the trainer's sampled negatives are not used)."""
        masked = output.hidden_mask
        return next_item_loss(
            output.states[masked],
            output.positions[masked],
            self.item_embedding.weight,
            self.config.objective,
            self.n_items,
            bias=self.output_bias,
        )
