"""A model from outside recmodels (the example in the README and docs/extending.md): the user's embedding attends
over the history.

tests/test_plugin.py installs it through the ``recmodels.models`` entry point, or loads it with
``--model-module``; tests/test_model_contract.py holds it to the contract every model keeps.
"""

from dataclasses import dataclass

from torch import nn

from recmodels import AttentionMap, InputTap, RecModel, RecOutput, apply_override, masked_softmax


@dataclass
class TinyConfig:
    dim: int = 16


class TinyAttention(RecModel):
    name = "tiny_attention"
    title = "Tiny attention"
    config_class = TinyConfig

    def __init__(self, spec, config=None, **hparams):
        super().__init__(spec, config, **hparams)
        self.user_embedding = nn.Embedding(self.n_users + 1, self.config.dim, padding_idx=0)
        self.item_embedding = nn.Embedding(self.n_items + 1, self.config.dim, padding_idx=0)
        self.history_tap = InputTap(("history",), item_axis="history", description="each history item's vector")
        self.candidate_tap = InputTap(("item_feature",), labels=["item id"], description="the candidate's vector")
        self.init_embeddings(self.user_embedding, self.item_embedding, std=0.1)

    def forward(self, batch, output_attentions=False, attention_override=None):
        user = self.user_embedding(batch.users)  # (B, d)
        keys = self.history_tap(self.item_embedding(batch.history))  # (B, T, d)
        mask = batch.history_mask
        weights = masked_softmax((keys @ user.unsqueeze(-1)).squeeze(-1), mask)  # (B, T)
        weights = apply_override("history", weights, mask, attention_override)
        profile = user + (weights.unsqueeze(-1) * keys).sum(1)
        item = self.candidate_tap(self.item_embedding(batch.items).unsqueeze(1)).squeeze(1)
        maps = {
            "history": AttentionMap(
                weights,
                ("history",),
                "item",
                mask=mask,
                normalised_over="history",
                axis_items={"history": batch.history},
                description="How much each history item adds to the user's vector.",
            )
        }
        return RecOutput((profile * item).sum(-1), maps if output_attentions else None)
