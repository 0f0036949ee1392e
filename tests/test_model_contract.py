"""The contract every model keeps, tested once (as HF's ModelTesterMixin) for each registered model and for the
plugin example: declared facts, gradients, padding, short histories, input taps, attention overrides, the
ranking path, the training-time distinct-row path, a checkpoint round trip and the attention maps' declarations.
Each tests/test_model_*.py keeps only its paper's reference formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from recmodels.checkpoint.io import load_checkpoint, save_checkpoint
from recmodels.checkpoint.schema import check_hparams
from recmodels.errors import InvalidArgumentError, UnknownModelError
from recmodels.explain.collapse import epoch_summary
from recmodels.explain.faithfulness import uniform_override
from recmodels.models import AttentionMap, Batch, model_class, register_model, registered_models, registry
from recmodels.models.output_check import CONTRACT_TOLERANCE, check_output
from recmodels.train import NegativeSampler, TrainConfig
from recmodels.train.batches import training_batch, training_rows
from tests.helpers import ragged_batch
from tests.plugin_models.tiny_attention import TinyAttention

MODELS = [model_class(name) for name in registered_models()] + [TinyAttention]


def build(model_cls, data, dropout: float | None = None) -> nn.Module:
    """The model with its default config on ``data`` and random weights at a scale that keeps scores O(1) and
    attention far from uniform; padding rows stay 0, as training keeps them."""
    torch.manual_seed(0)
    model = model_cls.from_data(data)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            for parameter in module.parameters(recurse=False):
                std = (
                    0.5
                    if isinstance(module, nn.Embedding)
                    else (parameter.shape[-1] ** -0.5 if parameter.dim() >= 2 else 0.3)
                )
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
            if isinstance(module, nn.Dropout) and dropout is not None:
                module.p = dropout
    return model.eval()


def distribution_maps(out) -> dict[str, AttentionMap]:
    return {name: m for name, m in (out.attentions or {}).items() if m.normalised_over is not None and not m.derived}


@pytest.fixture
def registered(model_cls, monkeypatch):
    """The registry with the model in it: the plugin example joins it for this test only."""
    monkeypatch.setattr(registry, "_added", dict(registry._added))
    try:
        model_class(model_cls.name)
    except UnknownModelError:
        register_model(model_cls, {"module": model_cls.__module__})


@pytest.mark.parametrize("model_cls", MODELS, ids=[cls.name for cls in MODELS])
class TestModelContract:
    def test_declares_its_facts_and_a_typed_config(self, model_cls, tiny_data):
        assert model_cls.title and model_cls.task in ("implicit", "ctr")
        training = TrainConfig.for_model(model_cls)  # its default_training are real, well-typed settings
        assert training.samples == model_cls.task
        model = build(model_cls, tiny_data)
        stored = json.loads(json.dumps(model.hparams))
        check_hparams(model_cls, stored)  # what config.json will hold passes the checkpoint schema
        assert model_cls(tiny_data.tables.spec(), **stored).hparams == model.hparams
        assert isinstance(model.config, model_cls.config_class)
        with pytest.raises(InvalidArgumentError, match="is not a setting of model"):
            model_cls(tiny_data.tables.spec(), no_such_setting=1)

    def test_gradients_reach_every_parameter_through_its_own_loss(self, model_cls, tiny_data):
        model = build(model_cls, tiny_data).train()
        if not list(model.parameters()):
            pytest.skip(f"{model_cls.name} has nothing to learn")
        training = TrainConfig.for_model(model_cls, negatives=2)
        rows = training_rows(tiny_data, training)
        negatives = NegativeSampler(tiny_data).sample(rows.users, 2, np.random.default_rng(0))
        batch = training_batch(rows, np.arange(64), negatives, 2)
        loss = model.loss(model(batch), batch, training)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, f"no gradient reaches {name}"

    def test_padding_changes_nothing(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        wider = Batch(batch.users, batch.items, torch.cat([batch.history, torch.zeros(len(batch), 5).long()], 1))
        with torch.no_grad():
            torch.testing.assert_close(model(wider).scores, model(batch).scores, atol=1e-5, rtol=1e-5)
            items = torch.arange(1, tiny_data.dataset.n_items + 1)
            torch.testing.assert_close(
                model.score_items(wider.users, wider.history, items),
                model.score_items(batch.users, batch.history, items),
                atol=1e-5,
                rtol=1e-5,
            )

    @pytest.mark.parametrize("mode", ["eval", "train"])
    def test_empty_and_length_one_histories_are_finite(self, model_cls, tiny_data, mode):
        model = build(model_cls, tiny_data)
        model.train(mode == "train")
        batch = ragged_batch(tiny_data, lengths=(0, 1, 0, 1))
        out = model(batch, output_attentions=True)
        assert torch.isfinite(out.scores).all()
        assert all(torch.isfinite(m.values).all() for m in out.attentions.values())
        if out.scores.requires_grad:
            out.scores.sum().backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        with torch.no_grad():
            no_columns = Batch(batch.users, batch.items, batch.history[:, :0])
            assert torch.isfinite(model(no_columns).scores).all()
            assert torch.isfinite(model.score_items(batch.users, batch.history, torch.arange(1, 41))).all()

    def test_every_input_tap_fires_once_per_forward(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        taps = model.input_taps()
        seen = {name: [] for name in taps}
        handles = [
            tap.register_forward_hook(lambda module, args, out, name=name: seen[name].append(out.shape))
            for name, tap in taps.items()
        ]
        try:
            for output_attentions in (False, True):
                seen = {name: [] for name in taps}
                model(batch, output_attentions=output_attentions)
                assert all(len(shapes) == 1 for shapes in seen.values()), seen
        finally:
            for handle in handles:
                handle.remove()
        for name, tap in taps.items():
            shape = seen[name][0]
            assert len(shape) == 2 + len(tap.units) and shape[0] == len(batch), (name, shape)
            if tap.labels is not None:
                assert shape[-2] == len(tap.labels), name
            if tap.item_axis == "history":
                assert shape[1] == batch.history.shape[1], name

    def test_catalogue_attention_equals_each_pairs_forward(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data).eval(), ragged_batch(tiny_data)
        users, history, items = batch.users[:3], batch.history[:3], torch.tensor([1, 5, 9, 13])
        maps = model.catalogue_attention(users, history, items)
        with torch.no_grad():
            for row in range(3):
                for column, item in enumerate(items):
                    pair = Batch(users[row : row + 1], item.view(1), history[row : row + 1])
                    expected = model(pair, output_attentions=True).attentions or {}
                    assert maps.keys() == expected.keys()
                    for name, attention in expected.items():
                        assert torch.allclose(maps[name][row, column], attention.values[0], atol=1e-5), (
                            name,
                            row,
                            column,
                        )

    def test_attention_override_replaces_each_distribution_for_one_call(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        with torch.no_grad():
            plain = model(batch, output_attentions=True)
            for name in distribution_maps(plain):
                same = model(batch, attention_override={name: lambda weights, mask: weights}).scores
                torch.testing.assert_close(same, plain.scores)
                out = model(batch, output_attentions=True, attention_override={name: uniform_override})
                mask = out.attentions[name].full_mask()
                expected = mask / mask.sum(-1, keepdim=True).clamp(min=1)
                torch.testing.assert_close(out.attentions[name].values, expected.to(out.scores.dtype))
                assert not torch.allclose(out.scores, plain.scores, atol=1e-4), f"overriding {name} changed nothing"
                torch.testing.assert_close(model(batch).scores, plain.scores)  # nothing stays on the model

    def test_score_items_equals_forward_row_by_row(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        items = torch.arange(1, tiny_data.dataset.n_items + 1)
        n, c = len(batch), len(items)
        rows = Batch(batch.users.repeat_interleave(c), items.repeat(n), batch.history.repeat_interleave(c, 0))
        with torch.no_grad():
            torch.testing.assert_close(
                model.score_items(batch.users, batch.history, items),
                model(rows).scores.view(n, c),
                atol=1e-4,
                rtol=1e-5,
            )
            for name in distribution_maps(model(batch, output_attentions=True)):  # overrides reach ranking too
                override = {name: uniform_override}
                ranked = model.score_items(batch.users, batch.history, items, attention_override=override)
                torch.testing.assert_close(
                    ranked, model(rows, attention_override=override).scores.view(n, c), atol=1e-4, rtol=1e-5
                )

    def test_training_path_for_repeated_rows_equals_the_plain_path(self, model_cls, tiny_data):
        batch = ragged_batch(tiny_data)
        repeat = torch.tensor([0, 1, 2, 3, 4, 0, 0, 2, 3, 1])
        repeated = Batch(batch.users[repeat], torch.randint(1, 41, (len(repeat),)), batch.history[repeat])
        results = []
        for mode in ("train", "eval"):  # train mode encodes each distinct (user, history) once
            model = build(model_cls, tiny_data, dropout=0.0)
            model.train(mode == "train")
            scores = model(repeated).scores
            if scores.requires_grad:
                (scores * torch.arange(1.0, len(repeat) + 1)).sum().backward()
            results.append((scores.detach(), [p.grad for p in model.parameters()]))
        torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
        for trained, evaluated in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(trained, evaluated, rtol=1e-4, atol=1e-5)

    def test_checkpoint_round_trip_reproduces_scores_and_maps(self, model_cls, tiny_data, tmp_path, registered):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        save_checkpoint(tmp_path / "ck", model, tiny_data)
        loaded, config = load_checkpoint(tmp_path / "ck", data=tiny_data)
        assert type(loaded) is model_cls and config.model == model_cls.name and loaded.hparams == model.hparams
        with torch.no_grad():
            before, after = model(batch, output_attentions=True), loaded(batch, output_attentions=True)
        assert torch.equal(before.scores, after.scores)
        assert before.attentions.keys() == after.attentions.keys()
        for name in before.attentions:
            assert torch.equal(before.attentions[name].values, after.attentions[name].values), name

    def test_attention_maps_hold_their_declared_axes_mask_and_normalisation(self, model_cls, tiny_data):
        model, batch = build(model_cls, tiny_data), ragged_batch(tiny_data)
        with torch.no_grad():
            assert model(batch).attentions is None  # maps only when asked for
            out = model(batch, output_attentions=True)
        assert isinstance(out.attentions, dict)
        # the rules the service checks at run time (recmodels/models/output_check.py), here at float32's tolerance:
        # one finite float score per row; per map, one slice per row, ids and labels as long as their axes, no weight
        # on padding, and a distribution on the last axis, non-negative, summing to 1 (0 where nothing is valid)
        check_output(model, out, len(batch), maps=True, tolerance=CONTRACT_TOLERANCE)
        epoch_summary(out.attentions)  # the trainer's per-epoch attention statistics accept them
