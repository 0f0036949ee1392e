"""diagnostics() over a seeded sample of users with bootstrap intervals (issue 13): the arguments, the sample, the
intervals against the textbook ones, the command, the Collapse page, and the sampled run against the full one at
ml-1m scale."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recmodels.cli.parser import main
from recmodels.errors import InvalidArgumentError
from recmodels.explain.diagnostics import summarise
from recmodels.models.sasrec import SASRec
from recmodels.serving.dataset_views import DatasetViews
from recmodels.serving.service import RecService
from recmodels.train import TrainConfig, seed_everything, train_model

pytestmark = pytest.mark.slow  # diagnostics over thousands of users

REPO = Path(__file__).resolve().parents[1]
UNIT = ["map", "layer", "head"]
MEANS = [
    "normalised_entropy_mean",
    "max_weight_mean",
    "effective_number_mean",
    "gini_mean",
    "share_near_uniform",
    "share_near_one_hot",
]


def _service(data) -> RecService:
    """An untrained two-layer, two-head SASRec: every kind of figure (per map, layer and head, and ranks)."""
    seed_everything(0)
    model = SASRec.from_data(data, dim=8, heads=2, layers=2, inner=16, max_length=12, positions="all")
    return RecService(model, data, device="cpu")


@pytest.fixture(scope="module")
def service(tiny_data) -> RecService:  # 30 users
    return _service(tiny_data)


def _rows(n_cases: int, seed: int = 0) -> pd.DataFrame:
    """Per-case rows of two units as diagnostics writes them: a 30% flag and a skewed statistic."""
    rng = np.random.default_rng(seed)
    frames = []
    for head in (0, 1):
        weight = rng.beta(2, 5, n_cases)
        frames.append(
            pd.DataFrame(
                {
                    "case": np.arange(n_cases).astype(str),
                    "map": "m",
                    "level": "head",
                    "layer": -1,
                    "head": head,
                    "normalised_entropy": 1 - weight,
                    "max_weight": weight,
                    "effective_number": 1 / (0.1 + weight),
                    "gini": weight,
                    "near_uniform": rng.random(n_cases) < 0.3,
                    "near_one_hot": weight > 0.9,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _width(summary: pd.DataFrame, column: str) -> np.ndarray:
    return (summary[f"{column}_high"] - summary[f"{column}_low"]).to_numpy()


# ---------------------------------------------------------------- arguments and the sample
@pytest.mark.parametrize("sample", [0, -3, 1.5, "10", True, np.float64(2.0)])
def test_a_bad_sample_is_one_sentence(service, sample):
    with pytest.raises(
        InvalidArgumentError, match="sample must be a whole number from 1 upwards, or None for every user, got "
    ) as error:
        service.diagnostics(sample=sample, head_users=0)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


def test_the_sample_is_seeded_and_none_covers_every_user(service):
    cases = lambda report: sorted(report.rows["case"].unique())  # noqa: E731
    first, again, other = (service.diagnostics(sample=10, seed=seed, head_users=0) for seed in (4, 4, 5))
    assert len(cases(first)) == 10 and cases(first) == cases(again) != cases(other)
    assert (first.users_sampled, first.users_total, first.seed, first.sampled) == (10, 30, 4, True)
    pd.testing.assert_frame_equal(first.summary, again.summary)  # the bootstrap is seeded too

    every = service.diagnostics(sample=None, head_users=0)
    assert len(cases(every)) == 30 and (every.users_sampled, every.users_total, every.sampled) == (30, 30, False)
    for covering in (30, 2000):  # a sample as large as the dataset is the dataset: the same figures
        pd.testing.assert_frame_equal(service.diagnostics(sample=covering, head_users=0).summary, every.summary)
    chosen = service.diagnostics(users=["1", "2", "3"], sample=1, head_users=0)  # given users are taken as given
    assert cases(chosen) == ["1", "2", "3"] and chosen.users_sampled == 3


# ---------------------------------------------------------------- the intervals
def test_intervals_hold_the_estimate_and_name_every_mean_and_share(service):
    report = service.diagnostics(sample=12, head_users=0)
    summary = report.summary
    assert (summary["rows"] == 12).all() and report.resamples == 1000 and report.confidence == 0.95
    for column in MEANS:
        assert (summary[f"{column}_low"] <= summary[column]).all(), column
        assert (summary[column] <= summary[f"{column}_high"]).all(), column
    assert (summary["normalised_entropy_mean_high"] > summary["normalised_entropy_mean_low"]).all()
    ranks = report.rank_summary
    assert ranks["layer"].tolist() == ["embeddings", "layer 1", "layer 2"] and (ranks["rows"] == 12).all()
    assert (
        (ranks["effective_rank_mean_low"] <= ranks["effective_rank_mean"])
        & (ranks["effective_rank_mean"] <= ranks["effective_rank_mean_high"])
    ).all()
    means = report.effective_rank.groupby("layer")["effective_rank"].mean()
    assert np.allclose(ranks.set_index("layer")["effective_rank_mean"], means[ranks["layer"]])


def test_intervals_match_the_textbook_ones_and_shrink_as_one_over_root_n():
    small, large = summarise(_rows(400)), summarise(_rows(6400))
    for summary, n in ((small, 400), (large, 6400)):
        share = summary["share_near_uniform"].to_numpy()  # the normal interval of a proportion
        assert _width(summary, "share_near_uniform") == pytest.approx(
            2 * 1.96 * np.sqrt(share * (1 - share) / n), rel=0.12
        )
    rows = _rows(400)
    spread = rows.groupby("head")["max_weight"].std().to_numpy()
    assert _width(small, "max_weight_mean") == pytest.approx(2 * 1.96 * spread / np.sqrt(400), rel=0.12)
    for column in MEANS[:5]:  # 16 times the users: intervals about 4 times narrower
        assert _width(small, column) / _width(large, column) == pytest.approx(4, rel=0.2), column


def test_a_constant_gives_a_point_and_a_missing_case_counts_for_nothing():
    rows = _rows(50)
    rows["max_weight"] = 0.3
    rows.loc[(rows["head"] == 1) & (rows["case"].astype(int) < 25), "gini"] = np.nan  # half the cases lack it
    summary = summarise(rows.drop(rows[(rows["head"] == 1) & (rows["case"] == "7")].index))
    assert _width(summary, "max_weight_mean") == pytest.approx([0, 0], abs=1e-12)  # round-off only
    assert summary["max_weight_mean_low"].to_numpy() == pytest.approx([0.3, 0.3])
    assert summary.loc[1, "rows"] == 49 and np.isfinite(summary[[c for c in summary if c.startswith("gini")]]).all(
        axis=None
    )
    assert _width(summary, "gini_mean")[1] > 1.2 * _width(summary, "gini_mean")[0]  # 25 cases against 50


def test_a_share_no_sampled_user_has_is_not_certain():
    summary = summarise(_rows(300))
    assert (summary["share_near_one_hot"] == 0).all()  # beta(2, 5) never exceeds 0.9 here
    assert (summary["share_near_one_hot_low"] == 0).all()
    z = NormalDist().inv_cdf(0.975)
    assert summary["share_near_one_hot_high"].to_numpy() == pytest.approx(z * z / (300 + z * z))  # Wilson's, at 0


# ---------------------------------------------------------------- the command and the page
def test_the_command_prints_the_sample_and_the_intervals(capsys):
    checkpoint = str(REPO / "checkpoints" / "nrms-ml100k")
    assert main(["diagnostics", checkpoint, "--sample", "50", "--seed", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nrms on ml-100k: a seeded sample of 50 of 943 users (seed 2)" in out
    assert "95% bootstrap intervals over users (1,000 resamples)" in out
    header = next(line for line in out.splitlines() if line.startswith("map · layer · head"))
    assert header.split()[:5] == ["map", "·", "layer", "·", "head"] and header.count("[low, high]") == 4
    assert "self_attention · head 1" in out and "flags (median user):" in out
    assert main(["diagnostics", checkpoint, "--all", "--quiet"]) == 0
    assert "every user (943)" in capsys.readouterr().out
    assert main(["diagnostics", str(REPO / "checkpoints"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit):
        main(["diagnostics", checkpoint, "--sample", "5", "--all"])
    with pytest.raises(SystemExit):
        main(["diagnostics", checkpoint, "--sample", "0"])
    assert "must be 1 or more (or --all for every user), got 0" in capsys.readouterr().err


def test_the_collapse_page_says_when_its_figures_are_a_sample(monkeypatch):
    from recmodels_explorer.services import diagnostics

    computed = DatasetViews.diagnostics
    monkeypatch.setattr(DatasetViews, "diagnostics", lambda self, **kwargs: computed(self, **{**kwargs, "sample": 100}))
    diagnostics.clear()  # the page's cache is process-wide: no report computed over every user
    try:
        at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=180).run()
        at.switch_page("pages/collapse.py").run()
        at.sidebar.selectbox(key="checkpoint_collapse").set_value(str(REPO / "checkpoints" / "nrms-ml100k")).run()
    finally:
        diagnostics.clear()
    assert not at.exception, [e.value for e in at.exception]
    left = at.columns[0]
    captions = " ".join(c.value for c in left.caption)
    assert "a seeded sample of 100 of 943 users (seed 0), with 95% bootstrap intervals" in captions
    table = left.dataframe[0].value
    assert "entropy mean, 95% interval" in table and "near one-hot, 95% interval" in table
    low, high = table["entropy mean, 95% interval"].iloc[0].split("–")
    assert float(low) <= table["normalised_entropy_mean"].iloc[0] <= float(high)


# ---------------------------------------------------------------- issue 13: sampled against full, at ml-1m scale
@pytest.mark.slow
def test_a_sample_of_2000_users_at_ml1m_scale_covers_the_full_run(tmp_path):
    """The ml-1m preset (6,040 users, 3,706 items, 1,000,209 interactions) and a small SASRec trained for one epoch.
    The figures: per (map, layer, head) the mean of every statistic and both flagged shares, and the mean effective
    rank per layer (33 in all). The check, for each of the seeds 0-4: the default sample of 2,000 users gives a
    95% interval per figure; we count how often the full run's figure (every user) lies inside it. At least 95%
    of the 5 x 33 checks must hold (nominal; the sample is a third of the population, so it is conservative and
    about 98.5% are expected), and no miss may lie further outside than half its interval's width (a wrong
    interval, e.g. one too narrow by half, fails this)."""
    from recmodels.data import RecData
    from recmodels.data.synth import PRESETS, generate

    data = RecData.load("synth", data_dir=generate(tmp_path / "ml-1m", PRESETS["ml-1m"], progress=False))
    assert data.dataset.n_users == 6040
    seed_everything(0)
    model = SASRec.from_data(data, dim=16, heads=2, layers=2, inner=32, max_length=20, positions="all")
    config = TrainConfig.for_model(SASRec, epochs=1, batch_size=1024, lr=1e-2, valid_users=200, attention_sample=64)
    service = RecService(train_model(model, data, config, device="cpu", progress=False).model, data, device="cpu")

    def figures(report) -> pd.DataFrame:  # one row per (figure, unit): value, low, high
        summary, ranks = report.summary, report.rank_summary
        units = summary[UNIT].astype(str).agg(" ".join, axis=1)
        parts = [
            pd.DataFrame(
                {
                    "figure": column,
                    "unit": units,
                    "value": summary[column],
                    "low": summary[f"{column}_low"],
                    "high": summary[f"{column}_high"],
                }
            )
            for column in MEANS
        ]
        parts.append(
            pd.DataFrame(
                {
                    "figure": "effective_rank_mean",
                    "unit": ranks["layer"],
                    "value": ranks["effective_rank_mean"],
                    "low": ranks["effective_rank_mean_low"],
                    "high": ranks["effective_rank_mean_high"],
                }
            )
        )
        return pd.concat(parts).set_index(["figure", "unit"])

    full = figures(service.diagnostics(sample=None, head_users=0))
    assert len(full) == 33
    checks = []
    for seed in range(5):
        report = service.diagnostics(seed=seed, head_users=0)
        assert (report.users_sampled, report.users_total) == (2000, 6040)
        sampled = figures(report).loc[full.index]
        outside = np.maximum(sampled["low"] - full["value"], full["value"] - sampled["high"])
        checks.append(
            pd.DataFrame(
                {"inside": outside <= 0, "outside": outside, "half_width": (sampled["high"] - sampled["low"]) / 2}
            )
        )
    checks = pd.concat(checks)
    assert checks["inside"].mean() >= 0.95, checks[~checks["inside"]]
    assert (checks["outside"] <= checks["half_width"]).all(), checks[~checks["inside"]]
