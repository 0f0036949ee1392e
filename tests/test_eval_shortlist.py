"""Evaluating retrieve-then-rank (issue 24): the pipeline's order is the shortlist by the ranker, then the rest by the
retriever. Checked on hand-made scores, and on the shipped ml-100k checkpoints at the two sizes whose answer is known
without the pipeline: N = the whole catalogue is the ranker alone, N = 1 is the retriever alone. The ``pipeline``,
``evaluate``, ``results`` and ``list`` commands record and read the same figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recmodels.checkpoint.pipeline import read_pipeline
from recmodels.cli.parser import main
from recmodels.data import TEST
from recmodels.errors import InvalidArgumentError
from recmodels.eval import evaluate_topk
from recmodels.eval.shortlist import SHORTLIST_RECALL, evaluate_pipeline, pipeline_order_keys
from recmodels.serving.service import RecService

REPO = Path(__file__).resolve().parents[1]
RETRIEVER = REPO / "checkpoints" / "mostpop-ml100k"  # cheap stages: these tests rank the test part many times
RANKER = REPO / "checkpoints" / "two_tower-ml100k"
INF = float("-inf")


def order_of(keys: torch.Tensor) -> list[list[int]]:
    """Each row's candidates (finite keys) from first to last."""
    return [[i for i in torch.argsort(row, descending=True, stable=True).tolist() if row[i] > INF] for row in keys]


def test_the_shortlist_comes_first_in_the_rankers_order_then_the_rest_in_the_retrievers():
    retriever = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, INF], [0.0, 0.0, 0.0, 1.0, INF, 2.0]])
    ranker = torch.tensor([[0.0, 1.0, 2.0, 9.0, 9.0, 9.0], [3.0, 1.0, 2.0, 0.0, 9.0, 0.0]])
    keys, shortlisted = pipeline_order_keys(retriever, ranker, 3)
    # row 0: the retriever keeps items 0, 1, 2; the ranker puts 2 first; 3 and 4 follow by the retriever; 5 excluded
    # row 1: kept 5, 3 and 0 (of three tied at 0.0, the lower index); the ranker ties 3 and 5: lower index first
    assert order_of(keys) == [[2, 1, 0, 3, 4], [0, 3, 5, 1, 2]]
    assert shortlisted.tolist() == [[True, True, True, False, False, False], [True, False, False, True, False, True]]
    keys, shortlisted = pipeline_order_keys(retriever, ranker, 10)  # more than the candidates: all of them
    assert order_of(keys)[0] == [3, 4, 2, 1, 0] and not shortlisted[0, 5]


def test_shortlist_sizes_are_whole_numbers_from_one_to_the_catalogue(tiny_data):
    from recmodels.models import model_info

    model = model_info("mostpop").cls.from_data(tiny_data)
    for bad in ([], [0], [tiny_data.dataset.n_items + 1], [2.5], [True], ["10"]):
        with pytest.raises(InvalidArgumentError, match="shortlist"):
            evaluate_pipeline(model, model, tiny_data, bad)


@pytest.fixture(scope="module")
def stages():
    ranker = RecService.from_checkpoint(RANKER, device="cpu")
    retriever = RecService.from_checkpoint(RETRIEVER, device="cpu")
    return retriever, ranker


def test_the_whole_catalogue_is_the_ranker_alone_and_one_item_is_the_retriever_alone(stages):
    retriever, ranker = stages
    data, n_items = ranker.data, ranker.data.dataset.n_items
    measured = evaluate_pipeline(retriever.model, ranker.model, data, [1, 50, n_items], TEST)
    assert measured[n_items].pop(SHORTLIST_RECALL) == 1.0
    assert measured[n_items] == pytest.approx(evaluate_topk(ranker.model, data, TEST), abs=1e-9)
    assert measured[1].pop(SHORTLIST_RECALL) <= 0.1
    assert measured[1] == pytest.approx(evaluate_topk(retriever.model, data, TEST), abs=1e-9)
    assert 0 < measured[50][SHORTLIST_RECALL] < 1


def test_the_command_records_the_sweep_and_evaluate_results_and_list_read_it(tmp_path, capsys):
    root = tmp_path / "checkpoints"
    root.mkdir()
    for stage in (RETRIEVER, RANKER):
        (root / stage.name).symlink_to(stage, target_is_directory=True)
    out = root / "pop-tt"
    argv = ["pipeline", "--retriever", str(root / RETRIEVER.name), "--ranker", str(root / RANKER.name)]
    assert main([*argv, "--shortlist", "1682", "--sweep", "1,20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Ranker's top 10 kept" in printed
    pipeline = read_pipeline(out)
    assert sorted(pipeline.metrics) == [1, 20, 1682]
    ranker_test = json.loads((RANKER / "config.json").read_text())["metrics"]["test"]
    for name in ("ndcg@10", "recall@20", "hr@10"):  # N = the catalogue: the ranker's own recorded figures
        assert pipeline.part_metrics("test")[name] == pytest.approx(ranker_test[name], abs=2e-3)
    assert set(pipeline.part_metrics("valid", 20)) == set(pipeline.part_metrics("test", 20))

    assert main(["evaluate", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Most popular" in printed or "MostPopular" in printed
    measured = [line for line in printed.splitlines() if " measured " in line]
    recorded = [line for line in printed.splitlines() if " recorded " in line]
    assert len(measured) == len(recorded) == 3
    assert [line.replace("measured", "") for line in measured] == [line.replace("recorded", "") for line in recorded]

    assert main(["results", "--root", str(root)]) == 0
    table = capsys.readouterr().out
    assert "| Ranker's top 10 kept |" in table.splitlines()[2]
    rows = [line for line in table.splitlines() if "`pop-tt`" in line]
    assert len(rows) == 3 and rows[-1].endswith("| 1.0000 |"), rows
    assert sum("(N swept)" in row for row in rows) == 2

    assert main(["list", str(root)]) == 0
    listed = capsys.readouterr().out
    assert f"{out}: pipeline, mostpop top 1,682 ranked by two_tower on ml-100k" in listed
