"""The transformer encoder SASRec and BERT4Rec share, laid out as RecBole 1.2.0 lays out its ``TransformerEncoder``.

Each layer is post-norm, as in BERT and RecBole (``x = LN(x + Dropout(W_o MHA(x)))``, then
``x = LN(x + Dropout(W_2 GELU(W_1 x)))``), so a RecBole checkpoint maps onto it weight for weight
(:mod:`recmodels.checkpoint.recbole`). ``layer_norm=False`` removes every layer norm: the switch behind the shipped
collapsed example.

Attention is returned per layer as ``(B, H, T, T)``; a query row with no allowed key (the empty history) is all
0, never NaN. An ``attention_override`` named ``self_attention`` is called once per layer; an override that has an
``at_layer(layer)`` method (head masking, :mod:`recmodels.explain.heads`) is first narrowed to that layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recmodels.models.config import MAX_HEADS, MAX_LAYERS, MAX_POSITIONS, MAX_WIDTH, bounded, check_bounds
from recmodels.models.outputs import AttentionMap, RecOutput, apply_override

OBJECTIVES = ("ce", "bce")


@dataclass
class TransformerConfig:
    """The hyperparameters SASRec and BERT4Rec share (RecBole's names in brackets where they differ).

    Attributes:
        dim: hidden size d [hidden_size]; a multiple of ``heads``.
        heads: attention heads per layer [n_heads].
        layers: transformer layers L [n_layers].
        inner: size of the point-wise feed-forward layer [inner_size].
        hidden_dropout: dropout on embeddings and sublayer outputs [hidden_dropout_prob].
        attention_dropout: dropout on the attention weights [attn_dropout_prob].
        max_length: positions the model has [MAX_ITEM_LIST_LENGTH]; longer histories keep their end.
        objective: "ce" (full-softmax cross-entropy) or "bce" (one sampled negative per target).
        window_stride: train windows start every this many interactions (0: one window per ``max_history``, each
            target once per epoch); shorter strides overlap the windows.
        layer_norm: False removes every layer norm (the collapsed example).
        init_std: standard deviation of the weight initialisation [initializer_range].
        eps: layer-norm epsilon [layer_norm_eps].
    """

    dim: int = bounded(64, 1, MAX_WIDTH)
    heads: int = bounded(2, 1, MAX_HEADS)
    layers: int = bounded(2, 1, MAX_LAYERS)
    inner: int = bounded(256, 1, 4 * MAX_WIDTH)  # the feed-forward layer is usually 4 x dim
    hidden_dropout: float = bounded(0.2, 0.0, 1.0, high_open=True)
    attention_dropout: float = bounded(0.2, 0.0, 1.0, high_open=True)
    max_length: int = bounded(50, 1, MAX_POSITIONS)
    objective: str = "ce"
    window_stride: int = bounded(0, 0, MAX_POSITIONS)
    layer_norm: bool = True
    init_std: float = bounded(0.02, 0.0, 1.0, low_open=True)
    eps: float = bounded(1e-12, 0.0, 1.0, low_open=True)

    def __post_init__(self):
        check_bounds(self)
        if self.dim % self.heads:
            raise ValueError(f"dim must be a positive multiple of heads, got dim={self.dim}, heads={self.heads}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The erf GELU (RecBole's and BERT's), not the tanh approximation."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _norm(dim: int, eps: float, enabled: bool) -> nn.Module:
    return nn.LayerNorm(dim, eps=eps) if enabled else nn.Identity()


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention with its output projection, residual and layer norm."""

    def __init__(
        self, dim: int, heads: int, hidden_dropout: float, attention_dropout: float, eps: float, layer_norm: bool = True
    ):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.norm = _norm(dim, eps, layer_norm)
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.hidden_dropout = nn.Dropout(hidden_dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d_h)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, layer: int, attention_override=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``allowed`` (B, 1, T, T) bool: which keys each query may attend to. Returns (x', weights (B, H, T, T))."""
        q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        # the lowest finite value underflows masked keys to exactly 0; rows with no allowed key are zeroed after
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1) * allowed.any(-1, keepdim=True)
        weights = apply_override("self_attention", weights, allowed, attention_override, layer=layer)
        context = self.attention_dropout(weights) @ v  # (B, H, T, d_h)
        context = context.transpose(1, 2).reshape(x.shape)
        return self.norm(x + self.hidden_dropout(self.output(context))), weights


class FeedForwardBlock(nn.Module):
    """The point-wise feed-forward network with its residual and layer norm."""

    def __init__(self, dim: int, inner: int, dropout: float, eps: float, layer_norm: bool = True):
        super().__init__()
        self.inner = nn.Linear(dim, inner)
        self.outer = nn.Linear(inner, dim)
        self.norm = _norm(dim, eps, layer_norm)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.outer(gelu(self.inner(x)))))


class TransformerLayer(nn.Module):
    def __init__(self, dim, heads, inner, hidden_dropout, attention_dropout, eps, layer_norm=True):
        super().__init__()
        self.attention = SelfAttentionBlock(dim, heads, hidden_dropout, attention_dropout, eps, layer_norm)
        self.feed_forward = FeedForwardBlock(dim, inner, hidden_dropout, eps, layer_norm)

    def forward(self, x, allowed, layer, attention_override=None):
        x, weights = self.attention(x, allowed, layer, attention_override)
        return self.feed_forward(x), weights


class TransformerEncoder(nn.Module):
    """L layers; returns the hidden states after each (the input first) and the attention of each layer."""

    @classmethod
    def from_config(cls, config: TransformerConfig) -> TransformerEncoder:
        return cls(
            config.layers,
            config.dim,
            config.heads,
            config.inner,
            config.hidden_dropout,
            config.attention_dropout,
            config.eps,
            config.layer_norm,
        )

    def __init__(
        self,
        layers: int,
        dim: int,
        heads: int,
        inner: int,
        hidden_dropout: float,
        attention_dropout: float,
        eps: float,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, inner, hidden_dropout, attention_dropout, eps, layer_norm)
            for _ in range(layers)
        )

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, attention_override=None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        states, weights = [x], []
        for number, layer in enumerate(self.layers):
            x, w = layer(x, allowed, number, attention_override)
            states.append(x)
            weights.append(w)
        return states, weights


def init_like_recbole(module: nn.Module, std: float) -> None:
    """RecBole's ``_init_weights``: Normal(0, std) for linear and embedding weights (padding rows included,
    as there; they never reach a score), zero biases, unit layer norms."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Embedding)):
            nn.init.normal_(sub.weight, std=std)
        if isinstance(sub, nn.Linear) and sub.bias is not None:
            nn.init.zeros_(sub.bias)
        if isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


def window_index(history: torch.Tensor, length: int) -> torch.Tensor | None:
    """Where the most recent ``length`` items of right-padded histories ``(B, T)`` sit, ``(B, length)`` (positions
    past a row's end point at its last column, which is then padding or masked by :func:`take_window`); None
    when every history already fits. Histories longer than the model's positions keep their end, as the data's
    window does."""
    if history.shape[1] <= length:
        return None
    counts = (history != 0).sum(1, keepdim=True)
    return (counts - length).clamp(min=0) + torch.arange(length, device=history.device)


def take_window(values: torch.Tensor, history: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """``values`` (B, T, ...) aligned with ``history``, cut to the window of :func:`window_index` (0 past a row's
    end)."""
    if index is None:
        return values
    inside = index < (history != 0).sum(1, keepdim=True)
    picked = index.clamp(max=history.shape[1] - 1)
    if values.dim() == 2:
        return values.gather(1, picked) * inside
    gathered = values.gather(1, picked.unsqueeze(-1).expand(*picked.shape, values.shape[-1]))
    return gathered * inside.unsqueeze(-1)


def last_window(history: torch.Tensor, length: int) -> torch.Tensor:
    """The most recent ``length`` items of right-padded histories ``(B, T)``, still right-padded."""
    return take_window(history, history, window_index(history, length))


def rollout(weights: list[torch.Tensor], allowed: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): ``R = prod_l (0.5 mean_h A_l + 0.5 I)`` with rows renormalised,
    ``(B, T, T)``. Row q says how much position q draws on each position through every layer, counting the
    residual stream as half of each layer."""
    n = weights[0].shape[-1]
    eye = torch.eye(n, device=weights[0].device, dtype=weights[0].dtype)
    valid_query = allowed.any(-1).squeeze(1)  # (B, T)
    result = None
    for layer_weights in weights:
        mixed = 0.5 * layer_weights.mean(1) + 0.5 * eye * valid_query.unsqueeze(-1)
        mixed = mixed / mixed.sum(-1, keepdim=True).clamp(min=1e-12)
        result = mixed if result is None else mixed @ result
    return result


def self_attention_map(
    weights: list[torch.Tensor], mask: torch.Tensor, positions: torch.Tensor, description: str
) -> AttentionMap:
    """The ``self_attention`` map ``(layer, head, query_position, key_position)`` from per-layer weights.

    ``mask`` (B, 1, T, T) is True where a real query may attend to a key; ``positions`` (B, T) gives the item at
    each position (the service titles both axes from it; -1 marks a mask token)."""
    values = torch.stack(weights, 1)  # (B, L, H, T, T)
    labels = {
        "layer": [f"layer {i + 1}" for i in range(values.shape[1])],
        "head": [f"head {h + 1}" for h in range(values.shape[2])],
    }
    return AttentionMap(
        values=values,
        axes=("layer", "head", "query_position", "key_position"),
        level="head",
        mask=mask.unsqueeze(1),
        normalised_over="key_position",
        axis_items={"query_position": positions, "key_position": positions},
        labels=labels,
        description=description,
    )


def rollout_map(
    weights: list[torch.Tensor],
    allowed: torch.Tensor,
    positions: torch.Tensor,
    scoring: torch.Tensor,
    history: torch.Tensor,
    description: str,
) -> AttentionMap:
    """The ``rollout`` map ``(history,)``: the rollout row of each row's scoring position (``scoring`` (B,)) over
    the history positions (the first ``history.shape[1]`` positions), renormalised over the history items."""
    rolled = rollout(weights, allowed)  # (B, T, T)
    row = rolled[torch.arange(rolled.shape[0], device=rolled.device), scoring]  # (B, T)
    valid = history != 0
    share = row[:, : history.shape[1]] * valid
    share = share / share.sum(-1, keepdim=True).clamp(min=1e-12)
    return AttentionMap(
        values=share,
        axes=("history",),
        level="item",
        mask=valid,
        normalised_over="history",
        axis_items={"history": history},
        description=description,
        derived=True,
    )


@dataclass
class SequenceOutput(RecOutput):
    """A sequence model's output: besides the scores, the last layer's state at every position (training reads
    it) and, with ``output_attentions``, the hidden states after each layer for rank-collapse statistics."""

    states: torch.Tensor | None = None  # (B, T, d)
    positions: torch.Tensor | None = None  # (B, T) the item at each position (-1: mask token)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    hidden_mask: torch.Tensor | None = None  # (B, T) real positions


def next_item_loss(
    states: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    objective: str,
    n_items: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss of predicting ``targets`` (N,) from ``states`` (N, d) against item vectors ``item_weight`` (rows 1 ..
    n_items are items): full-softmax cross-entropy, or BCE of the target against one uniformly drawn other item."""
    if states.shape[0] == 0:
        return item_weight.sum() * 0.0  # a batch with no target still yields a differentiable zero
    if objective == "ce":
        logits = states @ item_weight[1 : n_items + 1].T
        if bias is not None:
            logits = logits + bias[1 : n_items + 1]
        return F.cross_entropy(logits, targets - 1)
    negatives = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
    clash = negatives == targets
    negatives[clash] = negatives[clash] % n_items + 1  # the next item: still uniform over the others
    positive = (states * item_weight[targets]).sum(-1)
    negative = (states * item_weight[negatives]).sum(-1)
    if bias is not None:
        positive, negative = positive + bias[targets], negative + bias[negatives]
    return F.binary_cross_entropy_with_logits(
        torch.cat([positive, negative]), torch.cat([torch.ones_like(positive), torch.zeros_like(negative)])
    )
