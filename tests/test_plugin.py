"""A model from outside the repository (tests/plugin_models/tiny_attention.py): found through a real
``recmodels.models`` entry point (a ``.dist-info`` folder on the path, as pip writes it, without installing
anything) or loaded with ``--model-module``; trained, evaluated and benchmarked with the CLI and opened by
RecService. It also passes the model contract (tests/test_model_contract.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_and_checkpoint import write_atomic

from recmodels.checkpoint.io import read_config, save_checkpoint
from recmodels.cli import parser as cli
from recmodels.errors import CheckpointError, InvalidArgumentError, UnknownModelError
from recmodels.models import import_model_module, model_info, registered_models, registry
from recmodels.serving.service import RecService

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "tests" / "plugin_models"
ENTRY_POINT = "tiny_attention = tiny_attention:TinyAttention"


def install(site: Path, entry_point: str = ENTRY_POINT, name: str = "recmodels-tiny-attention") -> Path:
    """What ``pip install`` leaves for importlib.metadata: a dist-info folder with METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[recmodels.models]\n{entry_point}\n")
    return site


@pytest.fixture
def fresh_registry(monkeypatch):
    """Plugins registered in a test leave with it; entry points are read again from the test's path."""
    monkeypatch.setattr(registry, "_added", dict(registry._added))
    monkeypatch.setattr(registry, "_failed", {})
    monkeypatch.setattr(registry, "_entry_points", None)


def run(*args: str, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [REPO, *pythonpath])}
    return subprocess.run(
        [sys.executable, "-m", "recmodels", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_an_installed_entry_point_is_loaded_when_first_asked_for(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(install(tmp_path)))
    info = model_info("tiny_attention")
    assert info.cls.__name__ == "TinyAttention" and info.title == "Tiny attention" and info.task == "implicit"
    assert info.source == {"entry_point": ENTRY_POINT, "distribution": "recmodels-tiny-attention"}
    assert registered_models()[-1] == "tiny_attention"  # after the built-ins, whose order it has not
    assert registered_models()[:7] == ["mostpop", "bpr", "din", "nrms", "two_tower", "inttower", "acf"]


def test_a_broken_plugin_costs_one_sentence_not_a_traceback(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.syspath_prepend(str(install(tmp_path, "broken = no_such_package.model:Model", "broken-plugin")))
    with pytest.warns(
        RuntimeWarning,
        match=r"Model 'broken' could not be loaded from the plugin entry point 'broken "
        r"= no_such_package.model:Model' of broken-plugin \(ModuleNotFound",
    ):
        names = registered_models()
    assert "broken" not in names and "din" in names  # the built-ins are unaffected
    with pytest.raises(UnknownModelError, match="reinstall or fix that plugin") as error:
        model_info("broken")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_the_cli_trains_and_evaluates_an_entry_point_model_that_the_service_opens(
    tiny_data, tmp_path, monkeypatch, fresh_registry
):
    data = write_atomic(tiny_data.dataset, tmp_path / "data")
    site = install(tmp_path / "site")
    train = run(
        "train",
        "--model",
        "tiny_attention",
        "--dataset",
        "tiny",
        "--data-dir",
        str(data),
        "--epochs",
        "1",
        "--out",
        "ck",
        "--quiet",
        "--max-history",
        "12",
        "--set",
        "dim=8",
        cwd=tmp_path,
        pythonpath=[PLUGIN_DIR, site],
    )
    assert train.returncode == 0, train.stderr
    config = json.loads((tmp_path / "ck" / "config.json").read_text())  # the plugin is not installed here
    assert config["model"] == "tiny_attention" and config["hparams"] == {"dim": 8}
    assert config["model_source"] == {"entry_point": ENTRY_POINT, "distribution": "recmodels-tiny-attention"}
    assert set(config["history"][1]["attention"]) == {"history"}  # its map is tracked while training

    evaluate = run("evaluate", "ck", "--quiet", cwd=tmp_path, pythonpath=[PLUGIN_DIR, site])
    assert evaluate.returncode == 0, evaluate.stderr
    lines = evaluate.stdout.splitlines()
    measured = next(line for line in lines if line.startswith("measured"))
    assert measured.split()[1:] == next(line for line in lines if line.startswith("recorded")).split()[1:]

    # without the plugin installed, the checkpoint says what to install; nothing is imported from its config
    with pytest.raises(
        CheckpointError,
        match="model 'tiny_attention' is not installed here; it was trained with "
        "the plugin entry point .* install the package 'recmodels-tiny-"
        "attention' that provides it",
    ):
        read_config(tmp_path / "ck")
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(site))
    service = RecService.from_checkpoint(tmp_path / "ck", device="cpu")
    user = service.users()["user"].iloc[0]
    top = service.recommend(user, k=3)
    assert service.model_name == "tiny_attention" and len(top) == 3
    explanation = service.explain(user, top["item"].iloc[0], n_steps=8)
    assert set(explanation.maps) == {"history"}


@pytest.mark.slow
def test_model_module_trains_evaluates_and_benchmarks_a_model_in_a_plain_file(
    tiny_data, tmp_path, monkeypatch, capsys, fresh_registry
):
    data = write_atomic(tiny_data.dataset, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    source = str(PLUGIN_DIR / "tiny_attention.py")
    assert (
        cli.main(
            [
                "train",
                "--model-module",
                source,
                "--model",
                "tiny_attention",
                "--dataset",
                "tiny",
                "--data-dir",
                str(data),
                "--epochs",
                "1",
                "--out",
                "ck",
                "--quiet",
                "--max-history",
                "12",
            ]
        )
        == 0
    )
    assert read_config("ck").model_source == {"module": source}
    capsys.readouterr()

    monkeypatch.setattr(registry, "_added", {})  # a new process: the module is not imported until it is passed
    assert cli.main(["evaluate", "ck", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"trained with --model-module '{source}': pass the same --model-module" in error
    assert error.count("\n") == 1
    assert cli.main(["evaluate", "ck", "--quiet", "--model-module", source]) == 0
    assert (
        cli.main(
            [
                "bench",
                "--checkpoints",
                "ck",
                "--model-module",
                source,
                "--device",
                "cpu",
                "--repeats",
                "1",
                "--scales",
                "ml-100k",
                "--no-naive",
            ]
        )
        == 0
    )
    assert "ck " in capsys.readouterr().out


def test_model_module_errors_are_one_sentence(tmp_path, fresh_registry):
    (tmp_path / "empty.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    cases = {
        "no_such_module_anywhere": "No module named 'no_such_module_anywhere'",
        str(tmp_path / "empty.py"): "defines no model: a model is a RecModel subclass that sets `name`",
        str(tmp_path / "broken.py"): "failed \\(SyntaxError",
        str(tmp_path / "missing.py"): "is not a .py file",
    }
    for spec, message in cases.items():
        with pytest.raises(UnknownModelError, match=message) as error:
            import_model_module(spec)
        assert "\n" not in str(error.value)
    with pytest.raises(InvalidArgumentError, match="model_module must be a module name"):
        import_model_module(3)


def test_a_plugin_name_that_is_taken_is_refused(fresh_registry):
    from tests.plugin_models.tiny_attention import TinyAttention

    class Impostor(TinyAttention):
        name = "din"

    with pytest.raises(UnknownModelError, match="model name 'din' .* is already taken by recmodels.models.din.DIN"):
        registry.register_model(Impostor)


def test_model_source_in_a_config_is_checked_and_never_imported(tiny_data, tmp_path, fresh_registry):
    from recmodels.models.baselines import BPRMF

    folder = save_checkpoint(tmp_path / "ck", BPRMF.from_data(tiny_data, dim=4), tiny_data)
    config = json.loads((folder / "config.json").read_text())
    config["model_source"] = {"module": "os"}  # a known model: the record is not used, nothing is imported
    (folder / "config.json").write_text(json.dumps(config))
    assert read_config(folder).model == "bpr"
    config["model"], config["model_source"] = "gone", {"module": "evil_module_that_must_not_be_imported"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="pass the same --model-module"):
        read_config(folder)
    assert "evil_module_that_must_not_be_imported" not in sys.modules
    config["model_source"] = ["not", "an", "object"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_source must be an object"):
        read_config(folder)


@pytest.mark.slow
def test_the_explorer_opens_an_entry_point_model_and_draws_its_maps(tiny_data, tmp_path, monkeypatch, fresh_registry):
    from streamlit.testing.v1 import AppTest

    data = write_atomic(tiny_data.dataset, tmp_path / "data")
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.syspath_prepend(str(install(tmp_path / "site")))
    root = tmp_path / "root"
    assert (
        cli.main(
            [
                "train",
                "--model",
                "tiny_attention",
                "--dataset",
                "tiny",
                "--data-dir",
                str(data),
                "--epochs",
                "1",
                "--out",
                str(root / "tiny-ck"),
                "--quiet",
                "--max-history",
                "12",
            ]
        )
        == 0
    )
    monkeypatch.setenv("RECMODELS_CHECKPOINT_ROOTS", str(root))

    at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=120).run()
    at.sidebar.selectbox(key="checkpoint_explore").set_value(str((root / "tiny-ck").resolve())).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.title[0].value.startswith("Tiny attention")  # the title comes from the plugin's registry entry
    assert {tab.label for tab in at.tabs} == {"Items", "Attributions"}
    items = next(tab for tab in at.tabs if tab.label == "Items")
    specs = [json.loads(chart.proto.spec) for chart in items.get("plotly_chart")]
    assert specs and specs[0]["data"][0]["type"] == "bar"  # its history map, drawn from the map's axes alone
    assert len(specs[0]["data"][0]["y"]) == int((tiny_data.dataset.interactions["user"] == 1).sum().clip(max=12))
