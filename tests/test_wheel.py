"""The package as a user installs it: a wheel built from this repository, installed outside it, serves the explorer
with its `recmodels` command from another folder, and a page renders in Chromium.

The wheel goes into a folder of its own (``pip install --no-deps --target``). Its Python runs with ``-S``, which
reads no ``.pth`` file, so this repository's editable install cannot answer for it; the dependencies come from this
environment's site-packages on ``PYTHONPATH``, after the wheel's folder.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tools.app_browser import browser_page, page_text, serve_app, visible_errors, wait_for_charts

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    (built,) = out.glob("recmodels-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return target


def outside_env(target: Path) -> dict:
    """The environment of a Python that sees the installed wheel first and this repository not at all."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])
    return env


def test_the_wheel_has_the_command_the_app_and_ranges_not_pins(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(info).decode())
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "recmodels = recmodels.cli.parser:main" in entry_points
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"recmodels", "recmodels_explorer"}, "no top-level module with a generic name such as app"
    assert {"recmodels_explorer/explorer.py", "recmodels_explorer/pages/explore.py",
            "recmodels_explorer/.streamlit/config.toml"} <= set(names)  # fmt: skip
    requires = metadata.get_all("Requires-Dist")
    torch = next(r for r in requires if re.match(r"torch\b", r) and not r.startswith("torchvision"))
    assert "==" not in torch and ">=" in torch, torch
    recbole = [r for r in requires if r.startswith("recbole")]
    assert recbole and all('extra == "movielens"' in r for r in recbole), "RecBole only with the movielens extra"
    assert not [r for r in requires if "==" in r and "extra ==" not in r], "no exact pin on a dependency"


def test_installed_outside_the_repository_it_serves_the_explorer_from_another_folder(installed, tmp_path):
    env = outside_env(installed)
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import recmodels, recmodels_explorer; print(recmodels.__file__); "
         "print(recmodels_explorer.__file__); import app"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = where.stdout.split()
    assert all(Path(line).is_relative_to(installed) for line in lines) and len(lines) == 2, where.stdout
    assert "No module named 'app'" in where.stderr
    command = (sys.executable, "-S", str(installed / "bin" / "recmodels"))
    with serve_app(args=("--checkpoint-root", str(REPO / "checkpoints")), command=command, cwd=tmp_path, env=env) \
            as url, browser_page() as page:  # fmt: skip
        page.goto(url)
        wait_for_charts(page)
        text = page_text(page)
        assert "Recommendations for user" in text or "Why " in text, text[:1500]
        assert not visible_errors(page)
