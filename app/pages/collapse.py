"""Collapse: is the attention informative across the dataset, and how did it evolve during training?"""
from __future__ import annotations

import streamlit as st

from app import plots
from app.services import diagnostics, model_title, open_service, shipped_checkpoints
from app.text import literal
from app.ui import checkpoint_picker, csv_button, figure, guarded, show_error, sidebar

sidebar("collapse")
st.title("Attention collapse")
st.caption("Per user, each map's weights over the valid positions: normalised entropy (1 = uniform, 0 = one-hot), "
           "max weight, effective number of positions and Gini. Computed for every user's most recent interaction "
           "with the history before it. Flags: near uniform when normalised entropy >= 0.98, near one-hot when the "
           "max weight >= 0.9 (recmodels.explain.CollapseThresholds).")

entries = shipped_checkpoints()
collapsed = next((e for e in entries if e.collapsed), None)
# by default the collapse example beside the healthy checkpoint of its model and data
def same_run(entry):
    return entry.model, entry.dataset, entry.global_split


healthy_default = next((e.path for e in entries if collapsed is not None and not e.collapsed
                        and same_run(e) == same_run(collapsed)), st.session_state.get("checkpoint_resolved"))
collapsed_default = collapsed.path if collapsed is not None else None
columns = st.columns(2, gap="large")
choices = [
    checkpoint_picker("Healthy checkpoint", key="collapse_left", default=healthy_default, container=columns[0],
                      allow_path=False),
    checkpoint_picker("Compare with (the shipped collapse example by default)", key="collapse_right",
                      default=collapsed_default, container=columns[1], allow_path=False),
]

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
                st.info(f"{literal(model_title(service.model_name), 40)} has no attention distributions, so there is "
                        "nothing to diagnose.")
                continue
            st.subheader(f"{literal(model_title(service.model_name), 40)} on {literal(service.dataset_name, 60)}",
                         anchor=False)
            summary = report.summary.copy()
            st.dataframe(summary[["map", "head", "normalised_entropy_mean", "max_weight_mean",
                                  "effective_number_mean", "share_near_uniform", "share_near_one_hot", "rows"]],
                         hide_index=True)
            csv_button(report.rows, f"collapse-{service.model_name}-per-user", key=f"csv_rows_{side}",
                       label="CSV (per user)")
            figure(plots.statistic_box(report.rows, "normalised_entropy", "Normalised entropy over users"),
                   key=f"fig_entropy_{side}")
            figure(plots.statistic_box(report.rows, "max_weight", "Max weight over users"), key=f"fig_max_{side}")
            for name, matrix in report.head_similarity.items():
                labels = [f"head {i + 1}" for i in range(matrix.shape[0])]
                figure(plots.js_figure(matrix, labels, f"{name}: mean JS divergence between heads"),
                       key=f"fig_js_{side}_{name}")
            history = service.training_history()
            figure(plots.epochs_figure(history, "normalised_entropy", "Mean normalised entropy per epoch"),
                   key=f"fig_epochs_{side}")
            figure(plots.epochs_figure(history, "max_weight", "Mean max weight per epoch"), key=f"fig_epochs_max_{side}")
            st.caption("Epoch 0 is the untrained model; the statistics come from the checkpoint's training history.")
