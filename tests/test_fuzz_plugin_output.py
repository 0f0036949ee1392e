"""A plugin model's output is checked where it is read (recmodels/models/output_check.py): scores of the wrong shape,
an extra row, a bare tensor, integer or NaN scores, a map whose shape does not match its axes, or a map declared a
distribution that is not one all end in one ModelOutputError sentence naming the model and its module, in the
service (recommend, explain, attribute_top, catalogue_attention, diagnostics), the evaluator and the training loss;
never a torch error from deep inside, a NaN score, or a map drawn as attention. Seeded and bounded: Hypothesis,
derandomised, on the tiny synthetic dataset."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recmodels.errors import ModelOutputError, RecModelsError
from recmodels.eval.evaluate import evaluate_ctr, evaluate_topk
from recmodels.models import RecOutput, register_model, registry
from recmodels.models.output_check import CONTRACT_TOLERANCE, RUNTIME_TOLERANCE, check_output
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig
from tests.helpers import ragged_batch
from tests.plugin_models.tiny_attention import TinyAttention

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WHO = f"Model 'nanny' (from {__name__})"


class Nanny(TinyAttention):
    """The plugin example, whose output passes through ``corrupt(output, batch, output_attentions)`` on its way out:
    each test sets the corruption it needs on the instance."""

    name = "nanny"
    title = "Nanny"

    def forward(self, batch, output_attentions=False, attention_override=None):
        out = super().forward(batch, True, attention_override)
        corrupt = getattr(self, "corrupt", None)
        if corrupt is not None:
            return corrupt(out, batch, output_attentions)
        return RecOutput(out.scores, out.attentions if output_attentions else None)


@pytest.fixture(scope="module")
def service(tiny_data):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_added", dict(registry._added))
        register_model(Nanny, {"module": __name__})
        torch.manual_seed(0)
        yield RecService(Nanny.from_data(tiny_data).eval(), tiny_data, device="cpu")


@pytest.fixture
def nanny(service):
    """The service with a clean model; the corruption a test sets is gone afterwards."""
    yield service
    service.model.corrupt = None
    service._scores_cache.clear()  # corrupting changes no weight, so the cached rankings would outlive it


def corrupted(service, corruption):
    service.model.corrupt = corruption
    service._scores_cache.clear()
    return service


def with_scores(function):
    """A corruption of the scores alone (maps as asked for)."""
    return lambda out, batch, maps: RecOutput(function(out.scores), out.attentions if maps else None)


def with_map(function):
    """A corruption of the "history" map alone (the scores as they are)."""

    def corrupt(out, batch, maps):
        if not maps:
            return RecOutput(out.scores)
        return RecOutput(out.scores, {"history": function(out.attentions["history"])})

    return corrupt


def shift_weight(attention, amount: float):
    """Move ``amount`` of weight from the second valid position to the first in every row: the sums stay 1, and the
    first weight turns negative when ``amount`` is below minus its value."""
    values = attention.values.clone()
    values[:, 0] += amount
    values[:, 1] -= amount
    return replace(attention, values=values)


def changed(attention, **fields):
    """A copy with ``fields`` set after it was built, as a plugin that edits its map in place would."""
    copy = replace(attention)
    for name, value in fields.items():
        setattr(copy, name, value)
    return copy


# user 3's fourth item: explained with the three before it, so the window holds padding
SERVICE_CALLS = {
    "recommend": lambda s: s.recommend("3", k=3),
    "explain": lambda s: s.explain(
        "3", s.history("3")["item"].iloc[3], n_steps=2, perturbations=False, head_importance=False
    ),
    "attribute_top": lambda s: s.attribute_top("3", k=2, n_steps=2),
    "catalogue_attention": lambda s: s.catalogue_attention("3", k=2),
    "diagnostics": lambda s: s.diagnostics(users=["1", "2"], head_users=0, sample=None),
}

# the reproductions: (corruption, the calls that read what it breaks, the sentence's telling part)
CASES = {
    "scores of the wrong shape": (
        with_scores(lambda s: s.unsqueeze(1).expand(-1, 2)),
        ["recommend", "explain", "attribute_top", "catalogue_attention"],
        r"returned scores of shape \(40, 2\) for a batch of 40 \(user, item\) rows, where one value each is shape "
        r"\(40,\)",
    ),
    "an extra row": (
        with_scores(lambda s: torch.cat([s, s[:1]])),
        ["recommend", "explain", "attribute_top", "catalogue_attention"],
        r"returned scores of shape \(41,\) for a batch of 40",
    ),
    "a bare tensor": (
        lambda out, batch, maps: out.scores,
        ["recommend", "explain", "attribute_top", "catalogue_attention", "diagnostics"],
        "returned a Tensor from forward, not a RecOutput",
    ),
    "integer scores": (
        with_scores(lambda s: (10 * s).long()),
        ["recommend", "explain", "attribute_top", "catalogue_attention"],
        "returned scores of dtype int64; they must be floating-point",
    ),
    "NaN scores": (
        with_scores(lambda s: s.masked_fill(torch.arange(len(s)) % 2 == 0, float("nan"))),
        ["recommend", "explain", "attribute_top", "catalogue_attention"],
        r"returned 20 NaN scores of 40 for a batch of 40",
    ),
    "a map shorter than its axis": (
        with_map(lambda m: replace(m, values=m.values[:, :-1], mask=m.mask[:, :-1])),
        ["explain", "catalogue_attention", "diagnostics"],
        r"attention map 'history' with item ids of shape \(\d+, 12\) for its axis 'history' of 11 positions",
    ),
    "a map that sums to 3.5": (
        with_map(lambda m: replace(m, values=3.5 * m.values)),
        ["explain", "catalogue_attention", "diagnostics"],
        r"declared normalised over 'history' whose weights sum to 3.5 where they should sum to 1 \(within 0.001\)",
    ),
    "a map with a negative weight": (
        with_map(lambda m: shift_weight(m, -2.0)),
        ["explain", "catalogue_attention", "diagnostics"],
        r"declared normalised over 'history' with a negative weight \(-1\.\d+\)",
    ),
    "a map holding NaN": (
        with_map(lambda m: replace(m, values=m.values.index_fill(1, torch.tensor([0]), math.nan))),
        ["explain", "catalogue_attention", "diagnostics"],
        "attention map 'history' with NaN or infinite weights",
    ),
}


def assert_names_the_model(error: BaseException) -> None:
    assert isinstance(error, ModelOutputError), f"untyped {type(error).__name__}: {error}"
    message = str(error)
    assert message.startswith(WHO), message
    assert "\n" not in message and len(message) < 400 and message.endswith("."), message


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_bad_output_is_one_sentence_naming_the_model(nanny, case):
    corruption, calls, telling = CASES[case]
    corrupted(nanny, corruption)
    for name in calls:
        with pytest.raises(ModelOutputError, match=telling) as caught:
            SERVICE_CALLS[name](nanny)
        assert_names_the_model(caught.value)


def test_the_clean_plugin_and_a_map_within_tolerance_pass(nanny):
    for call in SERVICE_CALLS.values():
        call(nanny)
    # float16 or a long history sums to 1 only so closely: within the run-time tolerance, beyond the contract's
    corrupted(nanny, with_map(lambda m: replace(m, values=m.values * (1 + RUNTIME_TOLERANCE / 2))))
    assert math.isfinite(SERVICE_CALLS["explain"](nanny).score)
    out = nanny.model(ragged_batch(nanny.data), output_attentions=True)
    with pytest.raises(ModelOutputError, match="sum to 1.0005"):
        check_output(nanny.model, out, 5, maps=True, tolerance=CONTRACT_TOLERANCE)


def test_a_ranking_path_or_catalogue_attention_of_its_own_is_checked_too(nanny, monkeypatch):
    monkeypatch.setattr(Nanny, "score_items", lambda self, users, history, items, **kw: torch.zeros(len(users), 3))
    with pytest.raises(
        ModelOutputError, match=r"returned scores of shape \(1, 3\) for 1 user and 40 items.*score_items"
    ):
        nanny.recommend("3", k=2)
    monkeypatch.undo()
    monkeypatch.setattr(
        Nanny,
        "catalogue_attention",
        lambda self, users, history, items, **kw: {"history": torch.full((len(users), len(items), 12), 0.5)},
    )
    with pytest.raises(ModelOutputError, match="attention 'history' with weights that are negative or do not sum to 1"):
        nanny.catalogue_attention("3", k=2)


@pytest.mark.parametrize("case", ["scores of the wrong shape", "a bare tensor", "integer scores", "NaN scores"])
def test_the_evaluator_and_the_training_loss_refuse_the_same_outputs(nanny, case):
    model, data = nanny.model, nanny.data
    corrupted(nanny, CASES[case][0])
    for evaluate in (evaluate_topk, evaluate_ctr):
        with pytest.raises(ModelOutputError) as caught:
            evaluate(model, data)
        assert_names_the_model(caught.value)
    batch = ragged_batch(data)
    batch.labels = torch.ones(len(batch))
    if case == "NaN scores":  # NaN in training is the optimiser's; the epoch's evaluation refuses it (above)
        assert torch.isnan(model.loss(model(batch), batch, TrainConfig.for_model(Nanny)))
        return
    with pytest.raises(ModelOutputError) as caught:
        model.loss(model(batch), batch, TrainConfig.for_model(Nanny))
    assert_names_the_model(caught.value)


# ---------------------------------------------------------------- fuzz: any corruption, every call
SCORE_CORRUPTIONS = st.one_of(
    st.integers(1, 3).map(lambda n: with_scores(lambda s: torch.cat([s] + [s[:1]] * n))),
    st.integers(1, 2).map(lambda n: with_scores(lambda s: s[:-n])),
    st.integers(2, 3).map(lambda n: with_scores(lambda s: s.unsqueeze(-1).expand(-1, n))),
    st.just(with_scores(lambda s: s.sum())),
    st.sampled_from([torch.int64, torch.int32, torch.bool, torch.complex64]).map(
        lambda dtype: with_scores(lambda s: s.to(dtype))
    ),
    st.tuples(st.integers(0, 39), st.sampled_from([math.nan, math.inf, -math.inf])).map(
        lambda at: with_scores(lambda s: s.index_fill(0, torch.tensor([min(at[0], len(s) - 1)]), at[1]))
    ),
    st.sampled_from([None, (), "scores", 3.0]).map(lambda bad: lambda out, batch, maps: bad),
    st.just(lambda out, batch, maps: (out.scores, out.attentions)),
    st.just(lambda out, batch, maps: with_scores(lambda s: s.tolist())(out, batch, maps)),
)
MAP_CORRUPTIONS = st.one_of(
    st.floats(0.05, 20)
    .filter(lambda f: abs(f - 1) > 0.01)
    .map(lambda f: with_map(lambda m: replace(m, values=f * m.values))),
    st.floats(-3, -1.01).map(lambda amount: with_map(lambda m: shift_weight(m, amount))),
    st.sampled_from([math.nan, math.inf]).map(
        lambda bad: with_map(lambda m: replace(m, values=m.values.index_fill(1, torch.tensor([0]), bad)))
    ),
    st.integers(1, 3).map(lambda n: with_map(lambda m: replace(m, values=m.values[:, :-n], mask=m.mask[:, :-n]))),
    st.just(with_map(lambda m: changed(m, values=m.values.unsqueeze(-1)))),  # past AttentionMap's own check
    st.just(with_map(lambda m: replace(m, values=torch.cat([m.values, m.values[:1]]), mask=None, axis_items={}))),
    st.just(with_map(lambda m: replace(m, mask=m.mask.long()))),
    st.just(with_map(lambda m: replace(m, mask=m.mask[:, :3]))),
    st.just(with_map(lambda m: replace(m, values=m.values.half().long()))),
    st.just(with_map(lambda m: replace(m, axis_items={"history": m.axis_items["history"][:, :4]}))),
    st.just(with_map(lambda m: replace(m, labels={"history": ["one"]}))),
    st.just(with_map(lambda m: replace(m, values=m.values.masked_fill(~m.mask, 0.25)))),
    st.just(with_map(lambda m: m.values)),
    st.just(lambda out, batch, maps: RecOutput(out.scores, [out.attentions["history"]] if maps else None)),
)


@FUZZ
@given(corruption=st.one_of(SCORE_CORRUPTIONS, MAP_CORRUPTIONS))
def test_any_corrupted_output_is_a_result_or_one_sentence(nanny, corruption):
    corrupted(nanny, corruption)
    failed = set()
    for name, call in SERVICE_CALLS.items():
        try:
            result = call(nanny)
        except RecModelsError as error:
            assert_names_the_model(error)
            failed.add(name)
            continue
        if name == "recommend":
            assert np.isfinite(result["score"]).all()
        if name == "explain":
            assert math.isfinite(result.score)
            assert all(np.isfinite(view.values).all() for view in result.maps.values())
        if name == "catalogue_attention":
            assert np.isfinite(result["weight"]).all() and (result["weight"] >= 0).all()
    # every corruption reaches a call that reads it: the explanation reads both the scores and the maps
    assert "explain" in failed


class BrokenUnderOverride(TinyAttention):
    """Keeps every rule on a plain forward, and returns one score too many when its attention is overridden (the
    perturbation tests' forward): the check must hold there too, not only on the first forward."""

    name = "broken_under_override"

    def forward(self, batch, output_attentions=False, attention_override=None):
        out = super().forward(batch, output_attentions, attention_override)
        if attention_override:
            return RecOutput(torch.cat([out.scores, out.scores[:1]]), out.attentions)
        return out


def test_a_model_that_breaks_only_under_an_attention_override_is_named(tiny_data):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "_added", dict(registry._added))
        register_model(BrokenUnderOverride, {"module": __name__})
        torch.manual_seed(0)
        service = RecService(BrokenUnderOverride.from_data(tiny_data).eval(), tiny_data, device="cpu")
        item = service.recommend("3", k=1)["item"].iloc[0]  # the plain forward is fine
        assert service.explain("3", item, n_steps=2, perturbations=False, head_importance=False).score == (
            pytest.approx(float(service.recommend("3", k=1)["score"].iloc[0]), abs=1e-5)
        )
        with pytest.raises(ModelOutputError) as caught:
            service.explain("3", item, n_steps=2, perturbations=True, head_importance=False)
    message = str(caught.value)
    assert message.startswith(f"Model 'broken_under_override' (from {__name__}) returned scores of shape"), message
    assert "(41,) for a batch of 40" in message and "\n" not in message
