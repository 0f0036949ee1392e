"""Every code block in the README and the docs runs, as written (issue 21), and the generated tables are where the
tools write them.

- ```python blocks run in order per page in one namespace, as cells of a notebook; ```bash blocks run line by line
  through bash, with this environment's ``python`` first on PATH; both in the page's order, in one scratch folder
  per page that links to the repository's ``checkpoints/`` (one link per checkpoint) and ``data/``, so that
  nothing is written into the repository (checked).
- ```toml blocks are parsed, and the entry-point example must name the plugin model in tests/plugin_models.
- ```text blocks are output or diagrams: shown, not run. A block with any other language fails here, so a new
  one is labelled on purpose.
- The README's quickstart block (`make app`, `make test`) is not run: it would install into .venv and run this
  suite inside itself. It is checked instead to be exactly the two Makefile targets that `.ci/run` calls
  (`make test`) and that the browser tests start the same way (`make app` runs `python -m recmodels explore`, as
  tools/app_browser.serve_app does).

A command that needs data this machine lacks (ml-1m, ml-20m), a GPU, a long run or a server is written as inline
code in the prose, not as a block.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
RUN = {"python", "bash"}
PARSED = {"toml"}
SHOWN = {"text"}  # output and diagrams
PLUGIN = REPO / "tests" / "plugin_models" / "tiny_attention.py"
QUICKSTART = ["make app", "make test"]
PAGE_TIMEOUT = 600
OWN_LOOP = "docs/own-loop.md"

pytestmark = pytest.mark.slow


@dataclass
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    blocks, opened, lang, lines = [], None, "", []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^```\s*([\w+-]*)\s*$", line)
        if opened is None and line.startswith("```"):
            opened, lang, lines = number, fence.group(1) if fence else line[3:].strip(), []
        elif opened is not None and line.strip() == "```":
            blocks.append(Block(str(path.relative_to(REPO)), opened, lang, "\n".join(lines) + "\n"))
            opened = None
        elif opened is not None:
            lines.append(line)
    assert opened is None, f"{path.relative_to(REPO)}:{opened}: a code block is never closed"
    return blocks


def commands(code: str) -> list[str]:
    """The commands of a bash block: one a line (a trailing backslash continues it), blank lines and comments out."""
    out, pending = [], ""
    for line in code.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command, pending = (pending + line).strip(), ""
        if command and not command.startswith("#"):
            out.append(command)
    return out


def is_quickstart(block: Block) -> bool:
    return block.lang == "bash" and all(command.startswith("make ") for command in commands(block.code))


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
RUNNABLE_PAGES = sorted({b.page for b in ALL_BLOCKS if b.lang in RUN and not is_quickstart(b)})

# Run as `python DRIVER blocks.json` in the scratch folder: python blocks are exec'd in one namespace, bash blocks'
# commands run one by one; the first failure names its page and line and ends the run.
DRIVER = r"""
import json, subprocess, sys, traceback
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1])):
    where = f"{block['page']}:{block['line']}"
    print(f"--- {where} ({block['lang']})", flush=True)
    if block["lang"] == "python":
        try:
            exec(compile(block["code"], where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(f"FAILED: the python block at {where}")
        continue
    for command in block["commands"]:
        print(f"$ {command}", flush=True)
        done = subprocess.run(["bash", "-c", command], stdout=sys.stdout, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            sys.exit(f"FAILED ({done.returncode}): `{command}` in the bash block at {where}")
"""


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def scratch_folder(tmp_path: Path) -> Path:
    """A working folder like a fresh clone's root as far as the docs' commands go: ``checkpoints/`` holds a link to
    each shipped checkpoint (a new checkpoint lands in the scratch folder), ``data`` links to the repository's."""
    work = tmp_path / "work"
    (work / "checkpoints").mkdir(parents=True)
    for checkpoint in sorted((REPO / "checkpoints").iterdir()):
        (work / "checkpoints" / checkpoint.name).symlink_to(checkpoint, target_is_directory=True)
    (work / "data").symlink_to(REPO / "data", target_is_directory=True)
    return work


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_every_block_of_the_page_runs(page, tmp_path):
    blocks = [b for b in ALL_BLOCKS if b.page == page and b.lang in RUN and not is_quickstart(b)]
    work = scratch_folder(tmp_path)
    plan = tmp_path / "blocks.json"
    plan.write_text(json.dumps([{**asdict(b), "commands": commands(b.code)} for b in blocks]))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RECMODELS_CACHE": str(tmp_path / "cache"),  # region features are computed here, not in the repository
        "MPLBACKEND": "Agg",
    }
    env.pop("PYTHONPATH", None)  # the installed package, as a reader has it
    before = {name: snapshot(REPO / name) for name in ("checkpoints", "data")}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(plan)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
    )
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n--- output\n{done.stdout[-6000:]}"
    for name, files in before.items():
        assert snapshot(REPO / name) == files, f"a code block of {page} wrote into {name}/"
    if page == OWN_LOOP:
        the_app_opens_the_own_loop_model(work)


def the_app_opens_the_own_loop_model(work: Path) -> None:
    """What docs/own-loop.md promises: the Explorer shows the saved model's maps with integrated gradients, and the
    Collapse page draws its records by step, from the checkpoint and from the run folder it follows."""
    from streamlit.testing.v1 import AppTest

    checkpoint, run = (work / "checkpoints" / "nrms-own-loop").resolve(), (work / "runs" / "nrms-own-loop").resolve()
    assert list(run.glob("events.out.tfevents.*")), "the monitor wrote TensorBoard's event file"
    steps = json.loads((checkpoint / "config.json").read_text())["training"]["steps"]
    assert steps > 200 and len((run / "history.jsonl").read_text().splitlines()) == 1 + steps // 50  # and untrained
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECMODELS_CHECKPOINT_ROOTS", os.pathsep.join([str(checkpoint.parent), str(run.parent)]))
        at = AppTest.from_file(str(REPO / "app" / "explorer.py"), default_timeout=300).run()
        at.sidebar.selectbox(key="checkpoint_explore").set_value(str(checkpoint)).run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        assert [tab.label for tab in at.tabs] == ["Heads", "Items", "Attributions"]
        at.session_state["explain_tab"] = "Attributions"  # what clicking the tab does
        at.run()
        assert "**history\\_tap**" in " ".join(m.value for m in at.markdown) and not at.exception  # markdown-escaped
        at.switch_page("pages/collapse.py").run()
        at.sidebar.selectbox(key="checkpoint_collapse").set_value(str(checkpoint)).run()
        assert not at.exception, [e.value for e in at.exception]
        titles = " ".join(json.loads(c.proto.spec).get("layout", {}).get("title", {}).get("text", "") or ""
                          for c in at.get("plotly_chart"))  # fmt: skip
        assert "Mean normalised entropy per step" in titles
        at.selectbox(key="run_choice").set_value(str(run)).run()
        assert any("records; the last at step" in c.value for c in at.caption), [c.value for c in at.caption]


def test_every_block_is_labelled_with_a_language_this_test_knows():
    unknown = [f"{b.where} ({b.lang or 'no language'})" for b in ALL_BLOCKS if b.lang not in RUN | PARSED | SHOWN]
    assert not unknown, f"label these blocks python, bash, toml or text: {unknown}"
    assert RUNNABLE_PAGES, "no runnable block found: is the parser broken?"


def test_the_quickstart_is_the_make_targets_ci_and_the_browser_tests_run():
    quickstart = [b for b in ALL_BLOCKS if is_quickstart(b)]
    assert [b.page for b in quickstart] == ["README.md"], "only the README's quickstart block may be `make` lines"
    assert [command.split("#")[0].strip() for command in commands(quickstart[0].code)] == QUICKSTART
    makefile = (REPO / "Makefile").read_text()
    recipes = dict(re.findall(r"^([\w-]+):[^\n]*\n((?:\t[^\n]*\n?)*)", makefile, re.M))
    assert "-m recmodels explore" in recipes["app"]  # make app starts the server as the browser tests do:
    from tools.app_browser import serve_app

    source = inspect.getsource(serve_app)
    assert '(sys.executable, "-m", "recmodels")' in source and '"explore"' in source
    assert "pytest" in recipes["test"]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "make test" in [line.strip() for line in ci]  # CI runs the README's test command itself


def test_make_targets_named_in_the_readme_and_docs_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    named = {}
    for page in PAGES:
        for target in re.findall(r"`make ([\w-]+)", page.read_text()):
            named.setdefault(target, str(page.relative_to(REPO)))
    missing = {target: page for target, page in named.items() if target not in targets}
    assert not missing, f"the Makefile has no target for {missing}"


def test_toml_blocks_parse_and_the_entry_point_names_the_plugin_model():
    import importlib.util

    blocks = [b for b in ALL_BLOCKS if b.lang == "toml"]
    assert blocks
    for block in blocks:
        config = tomllib.loads(block.code)
        entries = config.get("project", {}).get("entry-points", {}).get("recmodels.models", {})
        for name, target in entries.items():
            module, _, cls = target.partition(":")
            path = PLUGIN.parent / f"{module.rsplit('.', 1)[-1]}.py"
            assert path.is_file(), f"{block.where}: {target} names no module in {PLUGIN.parent}"
            spec = importlib.util.spec_from_file_location(f"docs_plugin_{name}", path)
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
            assert getattr(loaded, cls).name == name, f"{block.where}: {cls}.name is not {name!r}"


def test_the_own_model_example_is_the_plugin_file():
    code = PLUGIN.read_text().split('"""\n\n', 1)[1]  # the file without its docstring
    shown = {b.page for b in ALL_BLOCKS if b.lang == "python" and "class TinyAttention(RecModel)" in b.code}
    assert shown == {"README.md", "docs/extending.md"}
    for block in ALL_BLOCKS:
        if block.page in shown and "class TinyAttention(RecModel)" in block.code:
            assert block.code == code, f"{block.where} differs from {PLUGIN.relative_to(REPO)}"


def generated_block(page: Path, name: str) -> str:
    text = page.read_text()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"{page.name} needs one {start} ... {end}"
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def test_results_blocks_equal_what_results_markdown_regenerates():
    from recmodels.cli.results import RESULTS_END, RESULTS_START, results_markdown

    assert (RESULTS_START, RESULTS_END) == ("<!-- results:start -->", "<!-- results:end -->")
    checkpoints = REPO / "checkpoints"
    assert generated_block(REPO / "README.md", "results") == results_markdown(checkpoints, ["ml-100k"], "per_user")
    assert generated_block(REPO / "docs" / "results.md", "results") == results_markdown(checkpoints)


def test_each_generated_table_is_in_the_page_its_tool_writes():
    from recmodels.cli.bench import BENCH_PIPELINES
    from tools import (
        app_browser,
        bench_peer,
        gpu_check,
        history_length_breakdown,
        next_item_breakdown,
        recbole_compare,
        scale_load,
        scale_service,
        scale_train,
        sequential_synth,
    )

    pages = {
        "results": ["README.md", "docs/results.md"],
        "history-breakdown": ["docs/sequential.md"],
        "recbole-comparison": ["docs/sequential.md"],
        "synthetic-sequential": ["docs/sequential.md"],
        "recbole-next-item": ["docs/sequential.md"],
        "next-item-breakdown": ["docs/sequential.md"],
        "recovery": ["docs/images.md"],
        "app-timings": ["docs/benchmarks.md"],
        "bench-peer": ["docs/benchmarks.md"],
        "scale-load": ["docs/benchmarks.md"],
        "scale-service": ["docs/benchmarks.md"],
        "scale-train": ["docs/benchmarks.md"],
        "gpu-check": ["docs/benchmarks.md"],
        "bench-pipelines": ["docs/benchmarks.md"],
    }
    markers = {
        "history-breakdown": (history_length_breakdown.START, history_length_breakdown.END),
        "recbole-comparison": (recbole_compare.START, recbole_compare.END),
        "synthetic-sequential": (sequential_synth.START, sequential_synth.END),
        "recbole-next-item": (recbole_compare.NEXT_START, recbole_compare.NEXT_END),
        "next-item-breakdown": (next_item_breakdown.START, next_item_breakdown.END),
        "app-timings": app_browser.MARKERS,
        "bench-peer": (bench_peer.START, bench_peer.END),
        "scale-load": scale_load.MARKERS,
        "scale-service": scale_service.MARKERS,
        "scale-train": scale_train.MARKERS,
        "gpu-check": (gpu_check.START, gpu_check.END),
        "bench-pipelines": BENCH_PIPELINES,
    }
    for name, (start, end) in markers.items():  # the tools write the markers this test looks for
        assert (start, end) == (f"<!-- {name}:start -->", f"<!-- {name}:end -->")
    for name, expected in pages.items():
        holding = sorted(str(p.relative_to(REPO)) for p in PAGES if f"<!-- {name}:start -->" in p.read_text())
        assert holding == sorted(expected), f"the {name} table is in {holding}, expected {expected}"
        for page in expected:
            assert generated_block(REPO / page, name).strip(), f"the {name} block of {page} is empty"


def test_the_paths_the_docs_name_exist():
    """A backticked path into the repository (`recmodels/...`, `tests/...`, `tools/...`, `app/...`, ...) is there."""
    prefixes = ("recmodels/", "app/", "tests/", "tools/", "docs/", "data/", "checkpoints/", ".ci/")
    missing = []
    for page in PAGES:
        for span in re.findall(r"`([^`\s]+)`", page.read_text()):
            path = span.rstrip(".,;:")
            if path.startswith(prefixes) and not re.search(r"[<>*|{}\[\]]", path) and not (REPO / path).exists():
                missing.append(f"{page.relative_to(REPO)}: {path}")
    assert not missing, f"named but not in the repository: {missing}"


def test_the_dotted_names_the_docs_give_resolve():
    """`recmodels.x.y` in a page names a module, or an attribute of one, that is there (modules move; names stay)."""
    import importlib

    unresolved = []
    for page in PAGES:
        for name in sorted(set(re.findall(r"\brecmodels(?:\.\w+)+", page.read_text()))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                    break
                except ImportError:
                    continue
            try:
                for part in parts[cut:]:
                    found = getattr(found, part)
            except AttributeError:
                unresolved.append(f"{page.relative_to(REPO)}: {name}")
    assert not unresolved, f"no such module or attribute: {unresolved}"


def test_the_notebook_runs_and_the_built_site_shows_its_figures(tmp_path):
    """docs/notebook.ipynb runs at every build (mkdocs-jupyter, execute: true) and its page carries its outputs: the
    seven figures it draws (heads, history pooling, attributions, agreement, the candidate's regions with IG, the
    collapse boxes), each with its plotly data."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=PAGE_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    page = (site / "notebook" / "index.html").read_text()
    assert page.count('class="plotly-graph-div"') == 7
    assert "Traceback" not in page and "Error" not in re.sub(r"<[^>]+>", "", page).split("Collapse")[0][-2000:]
    notebook = json.loads((REPO / "docs" / "notebook.ipynb").read_text())
    assert not any(cell.get("outputs") for cell in notebook["cells"]), "the notebook is kept without outputs"
