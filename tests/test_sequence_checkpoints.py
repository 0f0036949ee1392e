"""The shipped SASRec checkpoints: the collapse figures of docs/sequential.md, re-measured from the files.

The collapse example (no layer norm, lr 0.1) must show what docs/sequential.md says: every head of both layers one-hot
for every user, the effective rank of the hidden states falling layer by layer, and head importance in the
thousands of logits; the healthy SASRec beside it must show none of that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recmodels.checkpoint.io import read_config
from recmodels.serving.service import RecService

pytestmark = pytest.mark.slow  # the shipped transformers' diagnostics

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture(scope="module")
def reports():
    return {
        name: RecService.from_checkpoint(CHECKPOINTS / name, device="cpu").diagnostics()
        for name in ("sasrec-ml100k", "sasrec-collapsed-ml100k")
    }


def heads(report):
    summary = report.summary
    return summary[summary["map"] == "self_attention"]


def median_rank(report):
    return report.effective_rank.groupby("layer")["effective_rank"].median()


def test_collapse_example_records_its_setting():
    config = read_config(CHECKPOINTS / "sasrec-collapsed-ml100k")
    assert config.collapse_example and config.hparams["layer_norm"] is False and config.training["lr"] == 0.1


def test_collapsed_sasrec_is_one_hot_in_every_head_and_loses_rank(reports):
    collapsed = reports["sasrec-collapsed-ml100k"]
    assert len(heads(collapsed)) == 4 and (heads(collapsed)["share_near_one_hot"] == 1.0).all()
    rank = median_rank(collapsed)
    assert rank["embeddings"] > 30 and rank["layer 1"] < 8 and rank["layer 2"] < 4
    assert (collapsed.head_importance.summary["mean_abs_change"] > 1000).all()
    # the collapse table of docs/sequential.md
    assert heads(collapsed)["normalised_entropy_mean"].max() < 0.001
    assert list(rank) == pytest.approx([37.7, 5.5, 2.9], abs=0.05)
    change = collapsed.head_importance.summary["mean_abs_change"]
    assert (change.min(), change.max()) == pytest.approx((1540, 2800), rel=0.01)


def test_healthy_sasrec_keeps_soft_heads_and_rank(reports):
    healthy = reports["sasrec-ml100k"]
    assert (heads(healthy)["share_near_one_hot"] < 0.01).all()
    assert heads(healthy)["normalised_entropy_mean"].between(0.7, 0.97).all()
    rank = median_rank(healthy)
    assert rank["layer 2"] > 15 and rank["embeddings"] > rank["layer 1"] > rank["layer 2"]
    assert (healthy.head_importance.summary["mean_abs_change"] < 1).all()
    # the collapse table of docs/sequential.md
    entropy = heads(healthy)["normalised_entropy_mean"]
    assert (entropy.min(), entropy.max()) == pytest.approx((0.82, 0.91), abs=0.005)
    assert list(rank) == pytest.approx([37.7, 32.7, 24.8], abs=0.05)
    change = healthy.head_importance.summary["mean_abs_change"]
    assert (change.min(), change.max()) == pytest.approx((0.24, 0.34), abs=0.005)


def test_docs_history_breakdown_reproduces():
    import re
    import sys

    sys.path.insert(0, str(CHECKPOINTS.parent / "tools"))
    from history_length_breakdown import END, START, breakdown

    page = (CHECKPOINTS.parent / "docs" / "sequential.md").read_text()
    block = page.split(START, 1)[1].split(END, 1)[0]
    recorded = {
        m.group(1): [float(x) for x in m.groups()[1:]]
        for m in re.finditer(r"\| `([^`]+)` \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", block)
    }
    assert {"sasrec-ml100k", "bert4rec-ml100k", "nrms-ml100k"} <= set(recorded)
    for row in breakdown([CHECKPOINTS / name for name in recorded]):
        assert [row["all"], row["short"], row["long"]] == pytest.approx(recorded[row["checkpoint"]], abs=2e-3)
