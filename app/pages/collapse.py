"""Collapse: is the attention informative across the dataset, and how did it evolve during training?"""

from __future__ import annotations

import streamlit as st

from recmodels import viz
from recmodels.checkpoint.runs import history_axis, read_run
from recmodels.explain.collapse import CollapseThresholds
from recmodels.explain.diagnostics import (
    collapse_findings,
    history_frame,
    layer_head_history,
    rank_history,
    unit_label,
)
from recmodels_explorer.services import (
    checkpoint_roots,
    diagnostics,
    model_title,
    open_service,
    resolve_run,
    shipped_checkpoints,
    training_runs,
)
from recmodels_explorer.text import code, literal, plain
from recmodels_explorer.ui import checkpoint_picker, csv_button, figure, guarded, show_error, sidebar

MAX_LISTED = 8  # units named in one finding; the rest are counted
REFRESH_SECONDS = 2  # how often a followed run's records are read again
NOT_A_RUN = (
    "That is not a training run inside the checkpoint roots: type the name of a folder with history.jsonl (written "
    "by AttentionMonitor or train --log-dir) in one of the roots."
)
SUMMARY_FORMATS = {
    "normalised_entropy_median": "%.3f",
    "max_weight_median": "%.3f",
    "normalised_entropy_mean": "%.3f",
    "max_weight_mean": "%.3f",
    "effective_number_mean": "%.1f",
    "share_near_uniform": "percent",
    "share_near_one_hot": "percent",
    "rows": "%d",
}
# shown beside them when the figures cover a sample of the users: each mean's or share's 95% bootstrap interval
INTERVALS = {
    "normalised_entropy_mean": "entropy mean, 95% interval",
    "max_weight_mean": "max weight mean, 95% interval",
    "share_near_uniform": "near uniform, 95% interval",
    "share_near_one_hot": "near one-hot, 95% interval",
}

sidebar("collapse")
st.title("Attention collapse")
THRESHOLDS = CollapseThresholds()  # the ones every service uses unless given others
st.caption(
    "Per user, each map's weights over the valid positions, per layer and head where the map has them: "
    "normalised entropy (1 = uniform, 0 = one-hot), max weight, effective number of positions and Gini. "
    "Computed for each user's most recent interaction with the history before it. Flags: near uniform when "
    f"normalised entropy >= {THRESHOLDS.near_uniform:g}, near one-hot when the max weight >= "
    f"{THRESHOLDS.near_one_hot:g}; a map, layer and head is flagged below when the median user crosses the line. "
    "For the sequence transformers, the effective rank of the hidden states after each layer (exp of the entropy of "
    f"the normalised singular values over the history's positions): rank collapse when the median is below "
    f"{THRESHOLDS.rank_collapse:g} (recmodels.CollapseThresholds)."
)


def run_picker() -> str | None:
    """A training run to follow: one found in the checkpoint roots, or a folder typed inside one."""
    runs = training_runs()
    with st.expander("Follow a training run", expanded=bool(st.session_state.get("_run"))):
        st.caption(
            "A run folder gets one record per epoch (or every N steps) while a model trains: "
            "`python -m recmodels train --log-dir DIR`, or `recmodels.AttentionMonitor(model, data, log_dir=DIR)` "
            f"in your own loop. The curves below read it again every {REFRESH_SECONDS} s."
        )
        chosen = st.selectbox(
            "Run",
            runs,
            index=None,
            key="run_choice",
            format_func=lambda path: plain(path, 80),
            placeholder="no run folder in the checkpoint roots" if not runs else "pick a run",
        )
        typed = st.text_input("…or a run folder", key="run_path", placeholder="runs/my-model", max_chars=4096)
        if typed.strip():
            chosen = resolve_run(typed)
            if chosen is None:
                st.error(NOT_A_RUN)
    st.session_state["_run"] = chosen
    return chosen


@st.fragment(run_every=REFRESH_SECONDS)
def follow_run(folder: str) -> None:
    """The statistics of a run folder's records so far, read again on every refresh (only this part reruns)."""
    with guarded("reading the training run"):
        run = read_run(folder, checkpoint_roots())  # history.jsonl and run.json must resolve inside a root
        title = run.run.get("title") or run.run.get("model") or "model"
        x = run.x_axis
        state = "finished: a checkpoint was saved here" if run.finished else "refreshing while it trains"
        last = f"; the last at {x} {run.history[-1]['epoch' if x == 'epoch' else 'step']}" if run.history else ""
        st.subheader(f"Training run: {literal(title, 40)}", anchor=False)
        st.caption(
            f"{code(folder, 200)} · {len(run.history)} record{'s' if len(run.history) != 1 else ''}{last} · {state} "
            f"(every {REFRESH_SECONDS} s)" + (f" · {run.refused} malformed lines left out" if run.refused else "")
        )
        if not run.history:
            st.info("No record yet: the first arrives when the run records its untrained model.")
            return
        history = run.plotted_history()
        per_map, thresholds = history_frame(history), THRESHOLDS
        figure(viz.epochs_figure(per_map, "normalised_entropy", "Mean normalised entropy", x), key="fig_run_entropy")
        figure(viz.epochs_figure(per_map, "max_weight", "Mean max weight", x), key="fig_run_max")
        per_unit = layer_head_history(history)
        for name in per_unit["map"].unique():
            figure(
                viz.layer_head_epochs(
                    per_unit,
                    name,
                    "normalised_entropy",
                    thresholds.near_uniform,
                    f"{name}: normalised entropy per layer and head",
                    x,
                ),
                key=f"fig_run_units_{name}",
            )
        ranks = rank_history(history)
        if not ranks.empty:
            figure(
                viz.rank_epochs(ranks, thresholds.rank_collapse, "Effective rank of the hidden states per layer", x),
                key="fig_run_rank",
            )


followed = run_picker()
if followed:
    follow_run(followed)
    st.divider()

# the chosen checkpoint (the sidebar's, every page's) on the left; the shipped collapse example beside it, preferring
# one of the same model and data
entries = shipped_checkpoints()
chosen_path = st.session_state.get("checkpoint_resolved")
chosen = next((e for e in entries if e.path == chosen_path), None)


def same_model_and_data(entry) -> bool:
    return chosen is not None and (entry.model, entry.fingerprint) == (chosen.model, chosen.fingerprint)


if chosen is not None and chosen.collapsed:  # a collapse example: its healthy twin beside it
    others = [e for e in entries if not e.collapsed and e.path != chosen_path]
    beside_label = "Beside it (the healthy checkpoint of the same model and data by default)"
else:
    others = [e for e in entries if e.collapsed and e.path != chosen_path]
    beside_label = "Beside it (the shipped collapse example by default)"
beside = next((e for e in others if same_model_and_data(e)), next(iter(others), None))
if st.session_state.get("_collapse_right_for") != chosen_path:  # a new choice: its own default beside it
    st.session_state["_collapse_right_for"] = chosen_path
    st.session_state["_collapse_right"] = None
columns = st.columns(2, gap="large")
columns[0].markdown("**The chosen checkpoint** (choose it in the sidebar; every page follows it)")
choices = [
    chosen_path,
    checkpoint_picker(
        beside_label,
        key="collapse_right",
        default=beside.path if beside is not None else None,
        container=columns[1],
        allow_path=False,
    ),
]


def listed(units: list[str]) -> str:
    shown = "; ".join(units[:MAX_LISTED])
    return shown + (f" and {len(units) - MAX_LISTED} more" if len(units) > MAX_LISTED else "")


def show_findings(report, declared) -> None:
    """The checkpoint's collapse flags, from the statistics over the users (not from its name or config)."""
    found = collapse_findings(report)
    thresholds = report.thresholds
    if declared:
        st.info(
            "Declared a collapse example when it was trained"
            + (f": {literal(declared, 400)}" if isinstance(declared, str) else ".")
        )
    if found["near_one_hot"]:
        st.warning(
            literal(
                f"Collapsed to one-hot (entropy collapse) in {listed(found['near_one_hot'])}: the median "
                f"user puts at least {thresholds.near_one_hot:g} of the weight on a single position.",
                900,
            ),
            icon=":material/warning:",
        )
    if found["rank_collapse"]:
        st.warning(
            literal(
                f"Rank collapse after {listed(found['rank_collapse'])}: the median user's hidden states "
                f"have an effective rank below {thresholds.rank_collapse:g}, so every position carries "
                "nearly the same direction.",
                900,
            ),
            icon=":material/warning:",
        )
    if found["near_uniform"]:
        st.info(
            literal(
                f"Near uniform in {listed(found['near_uniform'])}: the median user's weights are within "
                f"{1 - thresholds.near_uniform:.0%} of the uniform entropy, so the attention there is close "
                "to a plain average.",
                900,
            ),
            icon=":material/info:",
        )
    if not any(found.values()):
        st.success(
            "No collapse flag: no map, layer or head is near uniform or near one-hot for the median user"
            + (", and no layer has lost its rank." if not report.effective_rank.empty else ".")
        )


def show_history(service, side: str, report) -> None:
    """The statistics over the training epochs, from the checkpoint's history; older histories have only the
    per-map means."""
    history, x = history_axis(service.config.history)
    if not history:
        st.caption("This checkpoint records no training history, so there are no curves over training.")
        return
    per_map, thresholds = history_frame(history), report.thresholds
    figure(
        viz.epochs_figure(per_map, "normalised_entropy", f"Mean normalised entropy per {x}", x),
        key=f"fig_epochs_{side}",
    )
    figure(viz.epochs_figure(per_map, "max_weight", f"Mean max weight per {x}", x), key=f"fig_epochs_max_{side}")
    per_unit = layer_head_history(history)
    for name in per_unit["map"].unique():
        figure(
            viz.layer_head_epochs(
                per_unit,
                name,
                "normalised_entropy",
                thresholds.near_uniform,
                f"{name}: normalised entropy per layer and head over the {x}s",
                x,
            ),
            key=f"fig_units_{side}_{name}",
        )
    ranks = rank_history(history)
    if not ranks.empty:
        figure(
            viz.rank_epochs(
                ranks, thresholds.rank_collapse, f"Effective rank of the hidden states per layer over the {x}s", x
            ),
            key=f"fig_rank_epochs_{side}",
        )
    has_units = bool(((report.rows["layer"] >= 0) | (report.rows["head"] >= 0)).any())
    missing = [
        what
        for what, absent in (
            ("statistics per layer and head", has_units and per_unit.empty),
            ("the effective rank", not report.effective_rank.empty and ranks.empty),
        )
        if absent
    ]
    if missing:
        st.caption(
            f"This checkpoint's history has only the per-map means: it was written before {' and '.join(missing)}"
            " were recorded."
        )
    st.caption(
        "Epoch 0 is the untrained model; the statistics come from the checkpoint's training history (a "
        "fixed sample of valid rows; the band is its middle 80%)."
    )


for column, path, side in zip(columns, choices, ("left", "right")):
    with column:
        if not path:
            st.info("No checkpoint to show.")
            continue
        service, error = open_service(path)
        if error:
            show_error(error)
            continue
        with guarded("computing the collapse diagnostics"):
            report = diagnostics(path)
            if report.rows.empty:
                st.info(
                    f"{literal(model_title(service.model_name), 40)} has no attention distributions, so there is "
                    "nothing to diagnose."
                )
                continue
            st.subheader(
                f"{literal(model_title(service.model_name), 40)} on {literal(service.dataset_name, 60)}", anchor=False
            )
            if report.sampled:
                st.caption(
                    f"These figures cover a seeded sample of {report.users_sampled:,} of "
                    f"{report.users_total:,} users (seed {report.seed}), with {report.confidence:.0%} bootstrap "
                    "intervals over users for the means and shares in the table."
                )
            show_findings(report, service.config.collapse_example)
            summary = report.summary.copy()
            summary.insert(
                0,
                "map / layer / head",
                [unit_label(*unit) for unit in zip(summary["map"], summary["layer"], summary["head"])],
            )
            intervals = INTERVALS if report.sampled else {}
            for column, label in intervals.items():
                shown = "{:.1%}" if column.startswith("share") else "{:.3f}"  # as the column beside it
                summary[label] = [
                    f"{shown.format(low)}–{shown.format(high)}"
                    for low, high in zip(summary[f"{column}_low"], summary[f"{column}_high"])
                ]
            st.dataframe(
                summary[["map / layer / head", *SUMMARY_FORMATS, *intervals.values()]],
                hide_index=True,
                column_config={
                    "map / layer / head": st.column_config.TextColumn(width="medium"),
                    **{column: st.column_config.NumberColumn(format=fmt) for column, fmt in SUMMARY_FORMATS.items()},
                },
            )
            csv_button(
                report.rows, f"collapse-{service.model_name}-per-user", key=f"csv_rows_{side}", label="CSV (per user)"
            )
            thresholds = report.thresholds
            figure(
                viz.statistic_box(
                    report.rows, "normalised_entropy", "Normalised entropy over users", thresholds.near_uniform
                ),
                key=f"fig_entropy_{side}",
            )
            figure(
                viz.statistic_box(report.rows, "max_weight", "Max weight over users", thresholds.near_one_hot),
                key=f"fig_max_{side}",
            )
            if not report.effective_rank.empty:
                figure(
                    viz.rank_box(
                        report.effective_rank,
                        thresholds.rank_collapse,
                        "Effective rank of the hidden states over users",
                    ),
                    key=f"fig_rank_{side}",
                )
            for name, matrix in report.head_similarity.items():
                labels = [f"head {i + 1}" for i in range(matrix.shape[0])]
                figure(
                    viz.js_figure(matrix, labels, f"{name}: mean JS divergence between heads"),
                    key=f"fig_js_{side}_{name}",
                )
            show_history(service, side, report)
