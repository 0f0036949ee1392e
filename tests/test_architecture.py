"""The shape of the code: no import circles, the public API at the top, one place for the environment variables, and a
light ``import recmodels``. The layers themselves are import-linter's contracts (pyproject.toml), which ``make lint``
checks in CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import grimp

import recmodels
from recmodels import settings

REPO = Path(__file__).resolve().parents[1]


def strongly_connected(graph) -> list[list[str]]:
    """Tarjan's components of more than one module (import circles), without recursion."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_has_no_circle():
    graph = grimp.build_graph("recmodels", "app")
    assert len(graph.modules) > 100
    assert strongly_connected(graph) == []


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    graph.add_import(importer="c", imported="d")
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_the_public_api_is_importable_from_the_top():
    from recmodels import AttentionMap, RecModel, RecService, load_checkpoint, save_checkpoint, viz

    assert RecService.__module__ == "recmodels.serving.service" and RecModel.__module__ == "recmodels.models.base"
    assert AttentionMap.__module__ == "recmodels.models.outputs" and callable(viz.figure)
    assert load_checkpoint.__module__ == save_checkpoint.__module__ == "recmodels.checkpoint.io"
    for name in recmodels.__all__:
        assert getattr(recmodels, name) is not None, name
    assert set(recmodels.__all__) == {"__version__", *recmodels._PUBLIC, *recmodels._SUBMODULES}


def test_importing_recmodels_or_its_settings_loads_no_torch():
    code = "import sys, recmodels, recmodels.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_every_environment_variable_is_a_setting_read_through_settings():
    code_files = [*REPO.glob("recmodels/**/*.py"), *REPO.glob("app/**/*.py"), *REPO.glob("tools/*.py")]
    named = {name for path in code_files for name in re.findall(r"\bRECMODELS_[A-Z0-9_]+", path.read_text())}
    assert named == set(settings.SETTINGS), "every RECMODELS_* variable is declared in recmodels/settings.py"
    for path in code_files:
        if path.name != "settings.py":
            assert not re.search(r"environ(\.get)?\(?\[?[\"']RECMODELS_", path.read_text()), path
    documented = Path(settings.__file__).read_text().split('"""')[1]
    assert all(f"``{name}``" in documented for name in settings.SETTINGS)
