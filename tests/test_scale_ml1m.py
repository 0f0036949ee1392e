"""Issue 13's CI run at ml-1m scale: the synthetic ml-1m preset (6,040 users, 3,706 items, 1,000,209 interactions)
through loading and the temporal split, two optimiser steps of a small DIN, a saved checkpoint, the service
(recommend, explain with IG) and the app, whose pickers send the browser a page of users and of items, never all
of them. One dataset and checkpoint, made once for the module; about a minute in all."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from recmodels.checkpoint.io import save_checkpoint
from recmodels.data import RecData
from recmodels.data.split import TEST, TRAIN, VALID
from recmodels.data.synth import PRESETS, generate
from recmodels.models.din import DIN
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig, seed_everything, train_model
from recmodels_explorer.search import MAX_SHOWN

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ENTRY = str(REPO / "app" / "explorer.py")
ML_1M = PRESETS["ml-1m"]
STEPS, BATCH = 2, 1024


@pytest.fixture(scope="module")
def ml1m(tmp_path_factory) -> SimpleNamespace:
    """The generated dataset, loaded and split, and a DIN trained for two steps, saved in a checkpoint root."""
    folder = tmp_path_factory.mktemp("ml1m")
    data = RecData.load("synth", data_dir=generate(folder / "data", ML_1M, seed=0, progress=False))
    seed_everything(0)
    model = DIN.from_data(data, dim=8)
    before = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    config = TrainConfig.for_model(DIN, epochs=1, max_steps=STEPS, batch_size=BATCH, valid_users=200)
    result = train_model(model, data, config, device="cpu", progress=False)
    checkpoint = save_checkpoint(folder / "root" / "din-ml1m", result.model, data, history=result.history)
    return SimpleNamespace(data=data, before=before, result=result, checkpoint=checkpoint, root=folder / "root")


@pytest.fixture(scope="module")
def service(ml1m) -> RecService:
    return RecService.from_checkpoint(ml1m.checkpoint, device="cpu")


def test_the_preset_loads_with_its_shape_and_splits_each_user_by_time(ml1m):
    data = ml1m.data
    assert (data.dataset.n_users, data.dataset.n_items) == (ML_1M.users, ML_1M.items)
    interactions = data.dataset.interactions
    assert len(interactions) == ML_1M.interactions == len(data.part)
    frame = pd.DataFrame(
        {"user": interactions["user"].to_numpy(), "time": interactions["timestamp"].to_numpy(), "part": data.part}
    )
    assert set(np.unique(data.part)) == {TRAIN, VALID, TEST}
    spans = frame.groupby(["user", "part"])["time"].agg(["min", "max"]).unstack("part")
    # a user's valid interactions come no earlier than their train ones, and test no earlier than valid
    for earlier, later in ((TRAIN, VALID), (VALID, TEST), (TRAIN, TEST)):
        both = spans[("max", earlier)].notna() & spans[("min", later)].notna()
        assert both.sum() > ML_1M.users // 2
        assert (spans.loc[both, ("max", earlier)] <= spans.loc[both, ("min", later)]).all(), (earlier, later)


def test_two_steps_move_the_weights_and_the_checkpoint_opens(ml1m, service):
    last = ml1m.result.history[-1]
    assert last["rows"] == STEPS * BATCH and np.isfinite(last["train_loss"]), "max_steps stops the epoch"
    after = ml1m.result.model.state_dict()
    assert any(not torch.equal(ml1m.before[name], after[name]) for name in after), "the optimiser stepped"
    assert service.model_name == "din" and service.data.fingerprint == ml1m.data.fingerprint
    assert len(service.users()) == ML_1M.users and len(service.items()) == ML_1M.items


def test_recommend_excludes_seen_items_and_explain_covers_the_history(service):
    users = service.users()
    user = users.sort_values("interactions", kind="stable")["user"].iloc[len(users) // 2]  # a typical user
    seen = set(service.history(user)["item"])
    recommendations = service.recommend(user, k=10)
    assert len(recommendations) == 10 and not seen & set(recommendations["item"])
    assert recommendations["score"].is_monotonic_decreasing and list(recommendations["rank"]) == list(range(1, 11))

    item = recommendations["item"].iloc[0]
    result = service.explain(user, item, attributions=True, n_steps=16)
    assert result.rank == 1 and result.score == pytest.approx(recommendations["score"].iloc[0], abs=1e-4)
    history = len(result.history)
    assert 0 < history <= service.data.max_history
    assert result.maps and all(
        view.values.shape[view.axes.index("history")] == history
        for view in result.maps.values()
        if "history" in view.axes
    )
    assert result.attributions and result.delta is not None and np.isfinite(result.delta)
    assert len(result.per_item) == history, "attention, IG and leave-one-out for every history item"


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_the_app_opens_it_and_lists_a_page_of_users_and_of_items(ml1m, service, monkeypatch):
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(ml1m.root))
    at = AppTest.from_file(ENTRY, default_timeout=180).run()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str(ml1m.checkpoint.resolve())).run()
    _no_errors(at)
    assert at.subheader[0].value == "User 1"
    users, items = at.sidebar.selectbox(key="user"), at.selectbox(key="explain_item")
    assert len(users.options) == MAX_SHOWN and len(items.options) == MAX_SHOWN, "pages, not 6,040 and 3,706"
    assert any(f"of {ML_1M.users:,} users" in c.value for c in at.sidebar.caption)
    assert any(f"of {ML_1M.items:,} items" in c.value for c in at.caption)
    assert {"Score (logit)", "Rank among unseen items"} <= {m.label for m in at.metric}

    at.sidebar.text_input(key="user_find").input("60").run()  # 60, 600-609 and 6000-6040
    _no_errors(at)
    listed = [option.split(" · ")[0] for option in at.sidebar.selectbox(key="user").options]
    assert at.subheader[0].value == "User 60" and len(listed) <= MAX_SHOWN
    assert listed[:3] == ["user 60", "user 600", "user 601"] and all(u.startswith("user 60") for u in listed)

    titles = pd.Series(service.items()["title"], dtype=object)
    matching = int(titles.str.casefold().str.contains("comedy 2", regex=False).sum())  # Comedy 2, 20-29, 200-299...
    assert matching > MAX_SHOWN
    at.text_input(key="explain_item_find").input("COMEDY 2").run()  # titles in any case; the first match is picked
    _no_errors(at)
    options = at.selectbox(key="explain_item").options
    assert len(options) == MAX_SHOWN and all("comedy 2" in option.lower() for option in options)
    assert any(c.value.startswith(f"{MAX_SHOWN} of {matching:,} items whose") for c in at.caption)
    assert options[0].endswith(f"({at.selectbox(key='explain_item').value})"), "the first match is explained"
    assert at.subheader[-1].value.startswith("Why Synthetic Comedy 2") and at.subheader[-1].value.endswith(
        " for user 60"
    )
