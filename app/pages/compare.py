"""Compare: two checkpoints, one user, side by side."""
from __future__ import annotations

import streamlit as st

from app import plots
from app.services import explanation, model_title, open_service, shipped_checkpoints
from app.text import code, cut_cells, literal, plain
from app.ui import checkpoint_picker, figure, guarded, show_error, sidebar, user_picker

sidebar("compare")
st.title("Compare two checkpoints")
entries = shipped_checkpoints()
first = st.session_state.get("checkpoint_resolved")
# by default the right side is another model on the left one's data, so the same user exists on both
first_dataset = next((e.dataset for e in entries if e.path == first), "ml-100k")
second = next((e.path for e in entries if e.path != first and e.dataset == first_dataset and e.model != "mostpop"),
              None)
columns = st.columns(2, gap="large")
paths = [checkpoint_picker("Left", key="compare_left", default=first, container=columns[0], allow_path=False),
         checkpoint_picker("Right", key="compare_right", default=second, container=columns[1], allow_path=False)]
services = []
for column, path in zip(columns, paths):
    service, error = open_service(path) if path else (None, "Pick a checkpoint.")
    if error:
        show_error(error, column)
    services.append(service)
if None in services:
    st.stop()
left, right = services
if left.data.fingerprint != right.data.fingerprint:
    st.error(f"The two checkpoints were trained on different data ({literal(left.dataset_name, 60)} and "
             f"{literal(right.dataset_name, 60)}, or another split), so the same user cannot be compared; pick two "
             "checkpoints of one dataset.")
    st.stop()

user = user_picker(left, key="compare_user")
k = st.slider("Recommendations", 5, 50, 10, key="compare_k")
recommendations = []
for column, service in zip(st.columns(2, gap="large"), services):  # a row below the pickers and the slider
    with column, guarded("ranking the catalogue"):
        frame = service.recommend(user, k=k)
        recommendations.append(frame)
        st.subheader(literal(model_title(service.model_name), 40), anchor=False)
        st.dataframe(cut_cells(frame[["rank", "title", "score"]]), hide_index=True, height=300)
if len(recommendations) == 2:
    shared = [item for item in recommendations[0]["item"] if item in set(recommendations[1]["item"])]
    union = set(recommendations[0]["item"]) | set(recommendations[1]["item"])
    st.metric("Overlap of the two top-k lists", f"{len(shared)} of {k}",
              help=f"Jaccard similarity {len(shared) / max(len(union), 1):.2f}")
    catalogue = left.data.dataset
    titles = {raw: f"{plain(title, 60)} ({plain(raw, 30)})"
              for raw, title in zip(catalogue.item_ids[1:], catalogue.item_features["title"])}
    options = shared + [i for i in recommendations[0]["item"] if i not in shared]
    item = st.selectbox("Attention for the item", options, format_func=titles.get, key="compare_item",
                        help="Items both lists share come first.")
    for side, (column, service, path) in enumerate(zip(st.columns(2, gap="large"), services, paths)):
        with column, guarded("explaining the item"):
            result = explanation(path, user, item, False, 50)
            st.caption(f"score {result.score:.3f} · rank {result.rank}")
            for name, view in result.maps.items():
                st.markdown(f"**{literal(name, 60)}** · {code(' × '.join(view.axes))}")
                if view.level == "item":
                    figure(plots.item_attention_figure(view), key=f"cmp_{side}_{name}")
                elif view.level == "head" and "head" in view.axes:
                    figure(plots.heads_figure(view), key=f"cmp_{side}_{name}")
                elif view.level == "field":
                    figure(plots.field_figure(view), key=f"cmp_{side}_{name}")
                elif view.level == "head":
                    figure(plots.interaction_figure(view), key=f"cmp_{side}_{name}")
                elif view.level == "component":
                    figure(plots.component_figure(view, view.meta.get("component_labels")) if not view.meta.get(
                        "grid") else plots.matrix_figure(view), key=f"cmp_{side}_{name}")
            if not result.maps:
                st.info("This model has no attention maps.")
