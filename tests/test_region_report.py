"""Dataset-level recovery of planted cells: the measure per shopper, its control and intervals, the deletion test,
and the figures recorded in the shipped fashion checkpoints, re-measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recmodels.checkpoint.folders import model_checkpoint_folders
from recmodels.checkpoint.io import read_config, record_in_config
from recmodels.cli.parser import main as cli_main
from recmodels.data import VALID
from recmodels.errors import CheckpointError, InvalidArgumentError
from recmodels.explain.region_report import deletion_changes, interaction_recovery, shopper_means
from recmodels.serving.service import RecService

REPO = Path(__file__).resolve().parents[1]
FASHION_CHECKPOINTS = sorted(
    p
    for p in model_checkpoint_folders(REPO / "checkpoints")
    if read_config(p).dataset.name == "fashion" and read_config(p).recovery
)


def planted_cells(rows: list[list[int]], n_regions: int = 9) -> np.ndarray:
    out = np.zeros((len(rows), n_regions), dtype=bool)
    for shopper, cells in enumerate(rows):
        out[shopper, cells] = True
    return out


def test_shopper_means_give_every_shopper_one_vote():
    values = np.array([1.0, 0.0, 0.0, np.nan, 0.5])
    shoppers = np.array([0, 1, 1, 2, 1])
    assert shopper_means(values, shoppers, 4) == pytest.approx([1.0, 1 / 6, np.nan, np.nan], nan_ok=True)


def test_attention_on_own_cells_is_recovered_and_beats_other_shoppers():
    planted = planted_cells([[0, 1], [7, 8], [3, 4], [5, 2]])
    shoppers = np.array([0, 0, 1, 2, 3, 3, 3])
    # every interaction puts all of its attention on its own shopper's cells, evenly
    attention = planted[shoppers][:, None, :] / planted[shoppers].sum(-1)[:, None, None]
    result = interaction_recovery(attention, shoppers, planted, n_boot=200)
    assert result["share"] == pytest.approx(1.0)
    assert result["uniform"] == pytest.approx(2 / 9) and result["lift"] == pytest.approx(4.5)
    assert result["other_shoppers_share"] == pytest.approx(0.0)  # the planted sets do not overlap
    assert result["shoppers"] == 4 and result["interactions"] == 7
    assert result["lift_interval"] == pytest.approx([4.5, 4.5])


def test_attention_that_ignores_the_shopper_is_matched_by_the_control():
    rng = np.random.default_rng(0)
    planted = planted_cells([list(rng.choice(9, 3, replace=False)) for _ in range(30)])
    shoppers = np.repeat(np.arange(30), 3)
    shared = np.tile(rng.dirichlet(np.ones(9)), (len(shoppers), 1, 1))  # the same map for everyone
    result = interaction_recovery(shared, shoppers, planted, n_boot=300, seed=1)
    low, high = result["own_over_other_shoppers_interval"]
    assert low < 1 < high
    assert result["lift_interval"][0] < result["lift"] < result["lift_interval"][1]


def test_masked_regions_count_for_neither_share_nor_uniform():
    planted = planted_cells([[0], [8]])
    attention = np.full((2, 1, 9), 0.0)
    attention[:, 0, :3] = 1 / 3
    mask = np.zeros((2, 1, 9), dtype=bool)
    mask[:, 0, :3] = True  # an image with three regions
    result = interaction_recovery(attention, np.array([0, 1]), planted, mask, n_boot=50)
    # shopper 0: 1/3 on its cell, uniform 1/3; shopper 1's cell is not in the image: 0 and 0
    assert result["share"] == pytest.approx(1 / 6) and result["uniform"] == pytest.approx(1 / 6)


@pytest.fixture(scope="module")
def acf():
    return RecService.from_checkpoint(REPO / "checkpoints" / "acf-fashion", device="cpu")


@pytest.mark.slow
def test_deletion_zeroes_exactly_the_chosen_regions_at_the_tap(acf):
    model, data = acf.model, acf.data
    rows = data.interaction_rows(2)
    from recmodels.models.outputs import Batch

    batch = Batch.from_numpy(rows.users[:4], rows.items[:4], rows.history[:4])
    maps = model(batch, output_attentions=True).attentions
    beta, mask = maps["components"].values, maps["components"].full_mask()
    top, random = deletion_changes(model, batch, "component_tap", beta, mask, np.random.default_rng(0))
    assert top.shape == random.shape == (4,) and np.isfinite(top).all() and (top != 0).any()
    # zeroing nothing changes nothing: the hook is gone afterwards and the shared model is untouched
    assert not model.component_tap._forward_hooks
    assert torch.equal(model(batch).scores, acf.model(batch).scores)


@pytest.mark.slow
@pytest.mark.parametrize("path", FASHION_CHECKPOINTS, ids=[p.name for p in FASHION_CHECKPOINTS])
def test_recorded_recovery_reproduces(path):
    recorded = read_config(path).recovery
    service = RecService.from_checkpoint(path, device="cpu")
    measured = json.loads(json.dumps(service.planted_region_recovery()))
    assert measured.keys() == recorded.keys()
    for key, figures in recorded.items():
        if isinstance(figures, dict):
            for name, value in figures.items():
                assert measured[key][name] == pytest.approx(value, abs=2e-3), f"{key}.{name}"
        else:
            assert measured[key] == figures


def test_docs_recovery_table_shows_the_recorded_figures():
    page = (REPO / "docs" / "images.md").read_text()
    block = page.split("<!-- recovery:start -->", 1)[1].split("<!-- recovery:end -->", 1)[0]
    assert FASHION_CHECKPOINTS
    for path in FASHION_CHECKPOINTS:  # every checkpoint that records recovery is in the table, with its figures
        attention = read_config(path).recovery["attention"]
        assert (
            f"| {path.name} | {read_config(path).recovery['over']} | attention | {attention['share']:.4f} |" in block
            and f"x{attention['own_over_other_shoppers']:.2f}" in block
        ), path.name


def test_record_in_config_adds_one_checked_entry_and_refuses_a_bad_one(tmp_path, acf):
    folder = tmp_path / "acf"
    shutil.copytree(REPO / "checkpoints" / "acf-fashion", folder)
    weights = (folder / "model.safetensors").read_bytes()
    record_in_config(folder, "recovery", {"map": "components", "attention": {"lift": 1.5, "lift_interval": [1, 2]}})
    assert read_config(folder).recovery["attention"]["lift_interval"] == [1, 2]
    assert (folder / "model.safetensors").read_bytes() == weights
    for bad, field in [
        ({"attention": {"lift": "high"}}, "recovery.attention.lift"),
        ({"attention": {"lift_interval": [1, 2, 3]}}, "recovery.attention.lift_interval"),
        ({"grid": [7]}, "recovery.grid"),
        ({"map": 7}, "recovery.map"),
        ([1, 2], "recovery"),
    ]:
        with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
            record_in_config(folder, "recovery", bad)
    assert read_config(folder).recovery["attention"]["lift"] == 1.5  # a refused entry leaves the file as it was


@pytest.mark.slow
def test_recovery_command_prints_records_and_writes_docs(tmp_path, capsys, acf):
    folder = tmp_path / "acf"
    shutil.copytree(REPO / "checkpoints" / "acf-fashion", folder)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- recovery:start -->\nold\n<!-- recovery:end -->\nafter\n")
    assert (
        cli_main(
            [
                "recovery",
                str(folder),
                "--record",
                "--quiet",
                "--write-docs",
                str(readme),
                "--device",
                "cpu",
                "--ig-rows",
                "16",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "own / other shoppers" in out and "Kendall tau" in out
    recorded = read_config(folder).recovery
    assert recorded["over"] == "profile" and recorded["attention"]["shoppers"] == 500
    assert recorded["deletion"]["rows"] == recorded["integrated_gradients"]["rows"] == 16
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert f"x{recorded['attention']['lift']:.2f}" in text


def test_docs_vecf_comparison_quotes_the_recorded_figures():
    page = (REPO / "docs" / "images.md").read_text()
    table = page.split("| figure (target) | `vecf-fashion` | `vecf-fashion-contrast` |", 1)[1].split("\n\n", 1)[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    for path in (REPO / "checkpoints" / "vecf-fashion", REPO / "checkpoints" / "vecf-fashion-contrast"):
        config = read_config(path)
        attention, ig = config.recovery["attention"], config.recovery["integrated_gradients"]
        assert f"x{attention['lift']:.2f} [{attention['lift_interval'][0]:.2f}, " in rows["lift over uniform (>= x3)"]
        assert f"x{attention['own_over_other_shoppers']:.2f}" in rows["own / other shoppers (>= x2)"]
        assert f"{config.metrics['test']['ndcg@10']:.4f}" in rows["NDCG@10 (above BPR-MF 0.0815 and EASE 0.0885)"]
        assert f"x{ig['lift']:.2f}, x{ig['own_over_other_shoppers']:.2f}" in rows["IG positive part: lift, own / other"]
        assert f"{ig['kendall_tau']:.2f}" in rows["Kendall tau (attention, IG)"]
        assert (
            f"{config.recovery['deletion']['top_attended_change']:+.3f}"
            in rows["score change, top-3 attended zeroed / 3 random"]
        )


@pytest.mark.parametrize("extra", [["--record"], ["--write-docs", "docs/images.md"]])
def test_valid_figures_are_printed_never_recorded_or_written(tmp_path, capsys, extra):
    """--part valid is for choosing settings: neither config.json nor the docs ever get its figures."""
    folder = tmp_path / "acf"
    shutil.copytree(REPO / "checkpoints" / "acf-fashion", folder)
    before = (folder / "config.json").read_bytes()
    assert cli_main(["recovery", str(folder), "--part", "valid", *extra]) != 0
    assert "leave out --part valid" in capsys.readouterr().err
    assert (folder / "config.json").read_bytes() == before


@pytest.mark.slow
def test_recovery_over_the_valid_part_is_measured_on_valid_rows(acf, capsys):
    valid = acf.planted_region_recovery(part="valid", ig_rows=8)
    rows = acf.data.interaction_rows(VALID)
    assert valid["part"] == "valid" and valid["attention"]["interactions"] == len(rows.users)
    assert valid["attention"]["interactions"] != acf.recorded_recovery["attention"]["interactions"]
    for part in ("train", "", None, 2, ["valid"]):
        with pytest.raises(InvalidArgumentError, match="part must be 'valid' or 'test'"):
            acf.planted_region_recovery(part=part)
    assert cli_main(["recovery", str(REPO / "checkpoints" / "acf-fashion"), "--part", "valid", "--ig-rows", "8",
                     "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    assert "planted-cell recovery on the valid interactions" in capsys.readouterr().out
