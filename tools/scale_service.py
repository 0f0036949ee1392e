"""The service at scale: loading a checkpoint, ranking, maps and integrated gradients on the synthetic datasets.

    python tools/scale_service.py [--preset ml-20m | --users U --items I --interactions N] [--models din,nrms]
                                  [--checkpoints DIR ...] [--train-steps 5] [--repeats 7] [--threads T]
                                  [--root /tmp/recmodels-scale] [--write-docs docs/benchmarks.md]

Each checkpoint is opened in a fresh process, as the app opens it: ``RecService.from_checkpoint`` (seconds, and
the process's peak RSS once it returns), then, for a real user of the dataset with their own history (the user
whose number of interactions is the median), the median of ``--repeats`` calls of: ``recommend(user, k=10)``
over the whole catalogue; one forward with every attention map for (user, their top item); ``explain`` of that
pair without attributions (the maps labelled, plus the pair's rank in the catalogue, as the app asks for them);
``attribute_top(user, k=10)``, integrated gradients with 50 steps for the top 10 in one batched call (fewer
repeats). The checkpoints are tools/scale_train.py's CPU ones (ROOT/<scale>-checkpoints/<model>-cpu); a model
without one is trained here for ``--train-steps`` steps first, which is enough for timing (the figures depend on
the architecture and the catalogue, not on how well it learned), and the "trained" column says how far each went.
Targets (issue 13, ml-20m scale on a 2-core CPU) are printed beside the figures; a figure over its target is
bold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recmodels.checkpoint.io import read_config
from recmodels.errors import InvalidArgumentError, RecModelsError
from recmodels.formatting import markdown_table, text_table, write_between_markers
from tools.scale_train import (
    ScaleRunError,
    add_dataset_arguments,
    check_page,
    dataset_of,
    model_list,
    run_child,
    scale_flags,
    train_checkpoint,
)

MARKERS = ("<!-- scale-service:start -->", "<!-- scale-service:end -->")
FACTS_TAG = "SCALE_SERVICE_FACTS "
# figure: (header, target or None, digits)
FIGURES = {
    "load_s": ("from_checkpoint s", 30, 1),
    "load_peak_gb": ("peak RSS GB", 6, 2),
    "recommend_ms": ("recommend ms/user", 50, 1),
    "maps_ms": ("all maps ms (1 pair)", 20, 2),
    "explain_ms": ("explain ms (maps + rank)", None, 1),
    "ig_top10_ms": ("IG top-10 ms", 1000, 0),
}
COLUMNS = ["scale", "model", "items", "trained", *FIGURES]

_SERVICE = r"""
import json, resource, statistics, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from recmodels.models.outputs import Batch
from recmodels.serving.service import RecService
repeats = int(sys.argv[3])

def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux

def median_ms(call, times, warmup=1):
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)

started = time.perf_counter()
service = RecService.from_checkpoint(sys.argv[1], device="cpu")
facts = {"load_s": time.perf_counter() - started, "load_peak_gb": peak_gb(), "items": service.data.dataset.n_items}
users = service.users()
user = users["user"].iloc[int(np.argmin(np.abs(users["interactions"] - users["interactions"].median())))]
item = service.recommend(user, k=1)["item"].iloc[0]
dataset = service.data.dataset
index = dataset.user_index(user)
pair = Batch(torch.tensor([index]), torch.tensor([dataset.item_index(item)]),
             torch.as_tensor(service.data.full_history(np.array([index])))).to(service.device)
facts["user"], facts["history"] = str(user), int(users["interactions"][users["user"] == user].iloc[0])
facts["recommend_ms"] = median_ms(lambda: service.recommend(user, k=10), repeats)
with torch.no_grad():
    facts["maps_ms"] = median_ms(lambda: service.model(pair, output_attentions=True), repeats)
facts["explain_ms"] = median_ms(lambda: service.explain(user, item, attributions=False, perturbations=False,
                                                        head_importance=False), repeats)
if service.model.input_taps():
    facts["ig_top10_ms"] = median_ms(lambda: service.attribute_top(user, k=10, n_steps=50), max(1, repeats // 3))
facts["peak_gb"] = peak_gb()
print("SCALE_SERVICE_FACTS " + json.dumps(facts), flush=True)
"""


def measure_service(checkpoint: Path, threads: int, repeats: int) -> dict:
    """The figures of one checkpoint, from a fresh process."""
    stdout = run_child(
        [sys.executable, "-c", _SERVICE, str(checkpoint), str(threads), str(repeats)],
        f"measuring the service on {checkpoint}",
        {"OMP_NUM_THREADS": str(threads)},
    )
    lines = [line for line in stdout.splitlines() if line.startswith(FACTS_TAG)]
    if not lines:
        raise ScaleRunError(f"measuring the service on {checkpoint} printed no figures.")
    return json.loads(lines[-1][len(FACTS_TAG) :])


def trained_label(checkpoint: Path) -> str:
    """How far the checkpoint trained: steps of its last epoch and the epoch's share (a timing model is 1 step)."""
    config = json.loads((checkpoint / "config.json").read_text())
    if not config["history"]:  # a closed form (EASE, MostPopular) is solved from the data, never trained
        return "closed form"
    last, training = config["history"][-1], config["training"]
    if "rows" not in last:
        return f"{len(config['history']) - 1} epochs"
    steps = math.ceil(last["rows"] / training["batch_size"])
    return f"{steps} step{'s' if steps != 1 else ''}" + (
        f" x{training['world_size']}" if training["world_size"] > 1 else ""
    )


def checkpoint_for(model: str, scale: str, folder: Path, options) -> Path:
    """tools/scale_train.py's CPU checkpoint of the model, trained here for --train-steps steps when missing."""
    checkpoint = Path(options.root) / f"{scale}-checkpoints" / f"{model}-cpu"
    if not (checkpoint / "config.json").is_file():
        print(f"training {model} for {options.train_steps} steps ({checkpoint})", flush=True)
        train_checkpoint(
            model, folder, checkpoint, options.train_steps, options.valid_users, options.threads, seed=options.seed
        )
    return checkpoint


def _against(value: float, target, digits: int, bold: bool) -> str:
    text = f"{value:,.{digits}f}"
    return f"**{text}**" if bold and target is not None and value > target else text


def table_row(scale: str, model: str, checkpoint: Path, facts: dict, bold: bool = True) -> dict:
    row = {"scale": scale, "model": model, "items": f"{facts['items']:,}", "trained": trained_label(checkpoint)}
    for key, (_, target, digits) in FIGURES.items():
        row[key] = _against(facts[key], target, digits, bold) if key in facts else None
    return row


def headers() -> list[str]:
    """Each figure's header with its target beside it."""
    named = [header + (f" (target {target:,})" if target is not None else "") for header, target, _ in FIGURES.values()]
    return ["scale", "model", "items", "trained", *named]


def check_options(options) -> None:
    for flag, value in (
        ("--train-steps", options.train_steps),
        ("--repeats", options.repeats),
        ("--threads", options.threads),
        ("--valid-users", options.valid_users),
    ):
        if value < 1:
            raise InvalidArgumentError(f"{flag} must be at least 1, got {value}.")
    missing = [path for path in options.checkpoints or [] if not (Path(path) / "config.json").is_file()]
    if missing:
        raise InvalidArgumentError(
            f"{missing[0]} is not a checkpoint folder (it has no config.json); pass a folder "
            "that tools/scale_train.py or `python -m recmodels train` wrote."
        )
    if not options.checkpoints and not options.models:
        raise InvalidArgumentError("--models names no model; pass a comma-separated list such as din,nrms.")


def _plan(options) -> list[tuple[str, str, Path]]:
    """(scale, model, checkpoint) per row: the checkpoints given, or each model's on the options' dataset."""
    if options.checkpoints:
        plan = []
        for path in map(Path, options.checkpoints):
            config = read_config(path)  # a broken config.json: CheckpointError, one sentence
            plan.append((Path(config.dataset.data_dir or config.dataset.name).name, config.model, path))
        return plan
    from recmodels.models import model_info

    models = [model_info(name).name for name in options.models]  # an unknown name: one sentence, before any work
    scale, folder = dataset_of(options)
    return [(scale, model, checkpoint_for(model, scale, folder, options)) for model in models]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser)
    parser.add_argument("--models", type=model_list, default=["din", "nrms"], help="comma-separated model names")
    parser.add_argument("--checkpoints", nargs="+", metavar="DIR", help="measure these folders instead")
    parser.add_argument("--train-steps", type=int, default=5, help="steps to train a model that has no checkpoint")
    parser.add_argument("--valid-users", type=int, default=256, help="users ranked when a model is trained here")
    parser.add_argument("--repeats", type=int, default=7, help="calls per figure (the median is shown)")
    parser.add_argument(
        "--write-docs",
        metavar="PAGE",
        help="write the table between the scale-service markers of PAGE (docs/benchmarks.md)",
    )
    options = parser.parse_args(argv)
    try:
        check_options(options)
        check_page(options.write_docs, MARKERS)
        rows = []
        for scale, model, checkpoint in _plan(options):
            facts = measure_service(checkpoint, options.threads, options.repeats)
            rows.append((scale, model, checkpoint, facts))
    except RecModelsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    users = "; ".join(f"{model}: user {facts['user']} ({facts['history']} interactions)" for _, model, _, facts in rows)
    note = (
        f"Median of {options.repeats} calls ({max(1, options.repeats // 3)} for IG) after a warm-up, "
        f'{options.threads} torch threads, CPU, one fresh process per checkpoint; {users}. "all maps" is one '
        'forward with every attention map; "explain" is `explain(user, item, attributions=False)`, which also '
        "ranks the pair in the catalogue; IG top-10 is `attribute_top(user, k=10)` with 50 steps, its ranking "
        "included. A figure over its target is in bold."
    )
    print(text_table([table_row(*row) for row in rows], COLUMNS, headers()) + "\n\n" + note)
    if options.write_docs:
        command = (
            f"`python tools/scale_service.py {scale_flags(options)} --models {','.join(options.models)}`"
            if not options.checkpoints
            else "`python tools/scale_service.py --checkpoints ...`"
        )
        table = markdown_table([table_row(*row) for row in rows], COLUMNS, headers())
        write_between_markers(Path(options.write_docs), *MARKERS, f"{table}\n\n{command}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
