"""Model card: what the checkpoint is, how it was trained, how well it does, on which data."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from recmodels import viz
from recmodels.explain.region_report import faithfulness_row, recovery_rows
from recmodels.formatting import METRIC_LABELS
from recmodels_explorer.services import model_title
from recmodels_explorer.text import code, literal
from recmodels_explorer.ui import csv_button, dataset_caption, figure, sidebar

service = sidebar("card")
if service is None:
    st.stop()
config = service.config
st.title(f"Model card: {literal(model_title(service.model_name), 40)}", anchor=False)
if config.collapse_example:
    st.warning(f"This is the deliberately collapsed example: {literal(config.collapse_example, 400)}")
st.caption(
    f"Checkpoint {code(service.path, 200)} · library {literal(config.library_version, 20)} · "
    f"written {literal(config.created, 30)} · device now: {literal(service.device_label, 60)}"
)

pipeline = getattr(service, "pipeline", None)  # a PipelineService's: a retriever's top N ranked by this ranker
if pipeline is not None:
    st.subheader("Pipeline", anchor=False)
    retriever_title, ranker_title = (
        literal(model_title(s.model.title), 40) for s in (service.retriever, service.ranker)
    )
    st.markdown(
        f"{retriever_title} ({code(pipeline.retriever, 200)}) shortlists its top {pipeline.shortlist:,} of the "
        f"{pipeline.n_items:,} items; {ranker_title} ({code(pipeline.ranker, 200)}) ranks them. The rest of this card "
        "is the ranker's."
    )
    staged = [
        {"N": size, "part": part, **{METRIC_LABELS.get(k, k): v for k, v in pipeline.part_metrics(part, size).items()}}
        for size in sorted(pipeline.metrics)
        for part in ("valid", "test")
    ]
    if staged:
        table = pd.DataFrame(staged)
        st.dataframe(table, hide_index=True)
        csv_button(table, f"pipeline-metrics-{service.model_name}", key="csv_pipeline_metrics")
        st.caption(
            "The pipeline's order: the shortlist by the ranker, then the rest by the retriever, on the same protocol "
            "as every model. Ranker's top 10 kept: the share of the ranker's own top 10 over the whole catalogue "
            "that the shortlist kept."
        )
    else:
        st.info("No metrics were recorded with this pipeline: `python -m recmodels evaluate` measures them.")

metrics = config.metrics
rows = [{"part": part, **{METRIC_LABELS.get(k, k): v for k, v in values.items()}} for part, values in metrics.items()]
if rows:
    st.subheader("Metrics" if pipeline is None else "The ranker's metrics")
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True)
    csv_button(table, f"metrics-{service.model_name}", key="csv_metrics")
    st.caption(
        "Top-K: full ranking over every item the user has not interacted with; positives are ratings >= 4 in "
        "the part. CTR: label rating > 3, rating 3 dropped. Temporal split, train/valid/test "
        f"{literal(service.split_description, 40)}."
    )
else:
    st.info(
        "No metrics were recorded with this checkpoint. `python -m recmodels evaluate` measures them; a model trained "
        "in your own loop records them with save_checkpoint(..., metrics=...)."
    )

recovery = service.recorded_recovery
if recovery:
    st.subheader("Planted-cell recovery")
    table = pd.DataFrame(recovery_rows(service.model_name, recovery)).drop(columns=["checkpoint"])
    st.dataframe(table, hide_index=True)
    csv_button(table, f"recovery-{service.model_name}", key="csv_recovery")
    where = "the candidate's own image" if recovery.get("over") == "candidate" else "each profile item's image"
    st.caption(
        f"Measured when the model was trained, on the {literal(recovery.get('part'), 10)} interactions of the "
        f"simulated shoppers: the share of the region attention on {where} that falls on the shopper's planted "
        "cells, against uniform attention (lift, with a 95% bootstrap interval over shoppers) and against other "
        "shoppers' planted cells. A lift the other-shoppers control matches is attention to generally "
        "informative cells, not to this shopper's taste."
    )
    faithfulness = faithfulness_row(service.model_name, recovery)
    if faithfulness:
        st.caption(
            f"Attention against integrated gradients over the same regions ({faithfulness['rows']} rows): "
            f"Kendall tau {faithfulness['kendall_tau']:.3f}. Zeroing the 3 most attended regions changes the "
            f"score by {faithfulness['top_attended_change']:+.4f} on average, 3 random ones by "
            f"{faithfulness['random_change']:+.4f}."
        )

history = service.training_history()
if not history.empty:
    st.subheader("Training")
    monitor = config.monitor
    figure(viz.training_curves(history, [monitor, "ndcg@10", "auc"]), key="fig_training")
    if "normalised_entropy" in history:
        figure(
            viz.epochs_figure(history, "normalised_entropy", "Mean normalised attention entropy per epoch"),
            key="fig_card_entropy",
        )
    csv_button(history, f"training-history-{service.model_name}", key="csv_history")
else:
    st.info(
        "No training history was recorded with this checkpoint, so there are no curves over training: "
        "save_checkpoint(..., history=monitor.history) keeps an AttentionMonitor's records."
    )

left, right = st.columns(2)
with left:
    st.subheader("Hyperparameters")
    st.json(config.hparams)
    st.subheader("Training settings")
    if config.training:
        st.json(config.training, expanded=False)
    else:
        st.caption("None recorded: the model was saved without its training settings.")
with right:
    st.subheader("Data")
    dataset = config.dataset
    st.json(
        {
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "split": dataset.split,
            "max_history": dataset.max_history,
            **dataset.summary,
        }
    )
    dataset_caption(service, container=st)
st.download_button(
    "config.json",
    data=json.dumps(config.to_json(), indent=2),
    file_name="config.json",
    mime="application/json",
    key="config_json",
    on_click="ignore",  # a download changes nothing on the page: no rerun
    icon=":material/download:",
)
