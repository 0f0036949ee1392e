"""Compare: two checkpoints, one user, side by side."""

from __future__ import annotations

import streamlit as st

from recmodels.viz import figures_for
from recmodels_explorer.services import explanation, figure_context, model_title, open_service, shipped_checkpoints
from recmodels_explorer.text import code, cut_cells, literal
from recmodels_explorer.ui import (
    checkpoint_picker,
    guarded,
    item_picker,
    show_error,
    show_figures,
    sidebar,
    user_picker,
)

sidebar("compare")
st.title("Compare two checkpoints")
entries = shipped_checkpoints()
first = st.session_state.get("checkpoint_resolved") or next((e.path for e in entries), None)
# by default the right side is the next other model on the left one's data (the same users exist on both); the
# checkpoint list puts models with attention first
first_entry = next((e for e in entries if e.path == first), None)
same_data = [
    e
    for e in entries
    if first_entry is not None
    and e.path != first
    and (e.dataset, e.global_split) == (first_entry.dataset, first_entry.global_split)
]
second = next((e.path for e in same_data if e.model != first_entry.model), next((e.path for e in same_data), None))
columns = st.columns(2, gap="large")
paths = [
    checkpoint_picker("Left", key="compare_left", default=first, container=columns[0], allow_path=False),
    checkpoint_picker("Right", key="compare_right", default=second, container=columns[1], allow_path=False),
]
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
    st.error(
        f"The two checkpoints were trained on different data ({literal(left.dataset_name, 60)} and "
        f"{literal(right.dataset_name, 60)}, or another split), so the same user cannot be compared; pick two "
        "checkpoints of one dataset."
    )
    st.stop()

user = user_picker(left, key="compare_user", default=st.session_state.get("_user"))  # the Explorer's user
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
    st.metric(
        "Overlap of the two top-k lists",
        f"{len(shared)} of {k}",
        help=f"Jaccard similarity {len(shared) / max(len(union), 1):.2f}",
    )
    if st.session_state.get("compare_for") != (*paths, user, k):  # new lists: start again from what they share
        st.session_state["compare_for"] = (*paths, user, k)
        st.session_state["compare_item"] = None
        st.session_state["compare_item_find"] = ""
    # the items both lists share, then the rest of each list, then any item of the catalogue through the search
    either = [*shared, *recommendations[0]["item"], *recommendations[1]["item"]]
    item = item_picker(
        left,
        either,
        key="compare_item",
        label="Attention for the item",
        help="Items both lists share come first, then the rest of the two lists; search above for any other item.",
    )
    if item is None:
        st.stop()
    for side, (column, _service, path) in enumerate(zip(st.columns(2, gap="large"), services, paths)):
        with column, guarded("explaining the item"):
            result = explanation(path, user, item, False, 50)
            st.caption(f"score {result.score:.3f} · rank {result.rank}")
            context = figure_context(path, user, result)
            for name, view in result.maps.items():
                st.markdown(f"**{literal(name, 60)}** · {code(' × '.join(view.axes))}")
                show_figures(figures_for(view, context), key=f"cmp_{side}_{name}", columns=3)
            if not result.maps:
                st.info("This model has no attention maps.")
