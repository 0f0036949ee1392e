"""What if the user had watched something else: the service scores, ranks and explains a history someone wrote
(``history=``), for a user of the data or a new one, and says in one sentence what it cannot do."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch

from recmodels import RecService
from recmodels.errors import EmptyHistoryError, InvalidArgumentError, UnknownItemError
from recmodels.models import model_info, registered_models

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
USER = "13"


@cache
def service(name: str) -> RecService:
    return RecService.from_checkpoint(CHECKPOINTS / name, device="cpu")


def recorded_window(svc: RecService, user: str) -> list[str]:
    return list(svc.history(user).item)[-svc.data.max_history :]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["din-ml100k", "nrms-ml100k", "two_tower-ml100k", "sasrec-ml100k", "ease-ml100k"])
def test_removing_an_item_through_history_is_exactly_its_leave_one_out(name):
    svc = service(name)
    window = recorded_window(svc, USER)
    item = svc.recommend(USER, k=1).item[0]
    explained = svc.explain(USER, item, history=window, perturbations=False, head_importance=False)
    for position in (0, len(window) // 2, len(window) - 1):
        without = window[:position] + window[position + 1 :]
        edited = svc.explain(USER, item, history=without, attributions=False, perturbations=False,
                             head_importance=False)  # fmt: skip
        change = explained.score - edited.score
        assert change == pytest.approx(explained.per_item.leave_one_out[position], abs=1e-5), (name, position)


@pytest.mark.slow
def test_the_recorded_window_written_out_scores_as_the_recorded_history():
    svc = service("din-ml100k")
    window = recorded_window(svc, USER)
    item = svc.recommend(USER, k=1).item[0]
    recorded = svc.explain(USER, item, attributions=False, perturbations=False, head_importance=False)
    written = svc.explain(USER, item, history=window, attributions=False, perturbations=False, head_importance=False)
    assert written.score == pytest.approx(recorded.score, abs=1e-6)
    # the recorded window written out changes nothing; an item dropped from it can come back
    assert svc.recommend(USER, k=50, history=window).equals(svc.recommend(USER, k=50))
    dropped = svc.recommend(USER, k=len(window) + 50, history=window[1:])
    assert window[0] in set(dropped.item) and set(dropped.item).isdisjoint(window[1:])
    assert set(dropped.item).isdisjoint(svc.history(USER).item[:-50]), "older interactions stay seen"


@pytest.mark.slow
def test_edits_move_the_recommendations_and_a_new_user_gets_some():
    svc = service("din-ml100k")
    window = recorded_window(svc, USER)
    before = svc.recommend(USER, k=10, history=window)
    after = svc.recommend(USER, k=10, history=window[:10])
    assert list(before.item) != list(after.item)
    new = svc.recommend(None, k=5, history=window[:5])
    assert len(new) == 5 and set(new.item).isdisjoint(window[:5])
    explained = svc.explain(None, new.item[0], history=window[:5], perturbations=False)
    assert explained.user == "a new user" and len(explained.per_item) == 5
    bpr = service("bpr-ml100k")
    assert not bpr.model.reads_history  # an edit changes nothing there, and the app says so
    scores = [bpr.recommend(USER, k=200, history=h).set_index("item").score for h in (window, window[:3])]
    common = scores[0].index.intersection(scores[1].index)
    assert len(common) > 100 and (scores[0][common] == scores[1][common]).all()  # the same scores, other seen items


@pytest.mark.slow
def test_every_bad_edit_is_one_sentence():
    svc = service("din-ml100k")
    window = recorded_window(svc, USER)
    with pytest.raises(UnknownItemError, match="Item 'no-such-film' is not in the ml-100k catalogue"):
        svc.recommend(USER, history=[*window[:3], "no-such-film"])
    with pytest.raises(InvalidArgumentError, match=f"history lists item '{window[0]}' twice"):
        svc.recommend(USER, history=[window[0], window[1], window[0]])
    long = list(svc.items().item[:51])
    with pytest.raises(InvalidArgumentError, match="history lists 51 items, but this model reads at most 50"):
        svc.recommend(USER, history=long)
    with pytest.raises(EmptyHistoryError, match="A new user with an empty history gives nothing to score from"):
        svc.recommend(None, history=[])
    with pytest.raises(InvalidArgumentError, match="Pass a user id, or history="):
        svc.recommend(None)
    with pytest.raises(InvalidArgumentError, match="history must be a list of item ids"):
        svc.recommend(USER, history="242")
    with pytest.raises(InvalidArgumentError, match="BPR-MF cannot take a new user"):
        service("bpr-ml100k").recommend(None, history=window[:3])
    with pytest.raises(EmptyHistoryError, match="EASE, which reads nothing but the history, with an empty history"):
        service("ease-ml100k").recommend(USER, history=[])
    with pytest.raises(EmptyHistoryError, match="The new user has no interactions before item"):
        svc.explain(None, window[0], history=window[:3])  # the first item of the history: nothing before it


def test_every_model_says_what_stands_in_for_a_new_user_or_that_it_cannot_take_one():
    for name in registered_models():
        cls = model_info(name).cls
        assert cls.new_user is None or (cls.new_user.endswith(".") and len(cls.new_user) < 300), name
    assert model_info("bpr").cls.new_user is None and not model_info("bpr").cls.reads_history
    assert {name for name in registered_models() if model_info(name).cls.needs_history} == {
        "ease",
        "sasrec",
        "bert4rec",
    }


def test_ranking_changes_name_what_entered_left_and_moved():
    import pandas as pd

    from recmodels.explain.what_if import ranking_changes, ranking_summary

    before = pd.DataFrame({"rank": [1, 2, 3], "item": ["a", "b", "c"], "title": ["A", "B", "C"], "score": [3, 2, 1.0]})
    after = pd.DataFrame({"rank": [1, 2, 3], "item": ["c", "d", "a"], "title": ["C", "D", "A"], "score": [5, 4, 3.0]})
    changes = ranking_changes(before, after)
    rows = changes.set_index("item")
    assert rows.loc["c", "moved"] == 2 and rows.loc["a", "moved"] == -2 and pd.isna(rows.loc["d", "was"])
    assert pd.isna(rows.loc["b", "rank"]) and rows.loc["b", "was"] == 2
    assert ranking_summary(changes) == (["D"], ["B"])


@pytest.mark.slow
def test_attention_and_head_changes_line_up_by_item():
    from recmodels.explain.what_if import attention_changes, head_changes

    svc = service("nrms-ml100k")
    window = recorded_window(svc, USER)
    item = svc.recommend(USER, k=1).item[0]
    edited_history = [*window[1:], svc.recommend(USER, k=5).item[4]]  # the oldest out, a new one in
    before = svc.explain(USER, item, perturbations=False, head_importance=False)
    after = svc.explain(USER, item, history=edited_history, perturbations=False, head_importance=False)
    changes = attention_changes(before, after).set_index("item")
    assert changes.status.value_counts().to_dict() == {"kept": len(window) - 1, "added": 1, "removed": 1}
    assert changes.loc[window[0], "after"] == 0 and changes.loc[window[0], "change"] < 0
    assert abs(changes.change.sum()) < 1e-5  # both sides are distributions: what one item loses, others gain
    moved = head_changes(before, after)["self_attention"]
    assert list(moved["head"]) == [f"head {h}" for h in range(1, 5)] and moved["moved"].between(0, 1).all()
    unchanged = head_changes(before, before)["self_attention"]
    assert (unchanged["moved"] < 1e-9).all()


def test_catalogue_scores_are_reused_until_the_weights_change():
    svc = RecService.from_checkpoint(CHECKPOINTS / "din-ml100k", device="cpu")  # its own: the weights change below
    first = svc.recommend(USER, k=5)
    item = first.item[0]
    assert svc.explain(USER, item, attributions=False).rank == 1, "the rank comes from the same scores"
    assert svc.recommend(USER, k=5).equals(first)
    with torch.no_grad():  # as an optimiser step does: the weights change in place
        next(svc.model.parameters()).mul_(-3.0)
    again = svc.recommend(USER, k=5)
    assert not again.score.equals(first.score), "the cached scores were not used for the new weights"
    direct = svc.model.score_items(torch.tensor([svc.lookup.user(USER)]), svc.subject(USER, None).window[None],
                                   torch.tensor([svc.lookup.item(i) for i in again.item]))[0]  # fmt: skip
    assert torch.allclose(direct.float(), torch.tensor(again.score.to_numpy(), dtype=torch.float32), atol=1e-5)
