"""Compare: the chosen checkpoint (the sidebar's, every page's) beside another one trained on the same data, for
one user."""

from __future__ import annotations

import streamlit as st

from recmodels.viz import figures_for
from recmodels_explorer.services import explanation, figure_context, model_title, open_service, shipped_checkpoints
from recmodels_explorer.state import USER, linked_user
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

first = sidebar("compare")
st.title("Compare two checkpoints")
if first is None:
    st.stop()
left_path = st.session_state["checkpoint_resolved"]
# the right side is another checkpoint on the same data (the same users and items), another model first; the list
# puts models with attention first
same_data = [e for e in shipped_checkpoints() if e.path != left_path and e.fingerprint == first.data.fingerprint]
same_model = first.model_name
default = next((e.path for e in same_data if e.model != same_model), next((e.path for e in same_data), None))
columns = st.columns(2, gap="large")
columns[0].markdown(
    f"**Left: the chosen checkpoint** · {literal(model_title(first.model_name), 40)} on "
    f"{literal(first.dataset_name, 60)}"
)
columns[0].caption("Choose it in the sidebar; every page follows it.")
if not same_data:
    columns[1].info(
        f"No other checkpoint in the checkpoint roots was trained on this data ({literal(first.dataset_name, 60)}, "
        f"with this split), so there is nothing to compare it with: train another model on it with "
        f"{code('python -m recmodels train', 40)}, or choose another checkpoint in the sidebar."
    )
    st.stop()
right_path = checkpoint_picker(
    "Right: another checkpoint on the same data",
    key="compare_right",
    default=default,
    container=columns[1],
    allow_path=False,
    among=same_data,
)
second, error = open_service(right_path) if right_path else (None, "Pick a checkpoint.")
if error:
    show_error(error, columns[1])
    st.stop()
paths, services = [left_path, right_path], [first, second]
left, right = services
if left.data.fingerprint != right.data.fingerprint:  # the list holds only same-data checkpoints; a race, say so
    st.error(
        f"The two checkpoints were trained on different data ({literal(left.dataset_name, 60)} and "
        f"{literal(right.dataset_name, 60)}, or another split), so the same user cannot be compared; pick two "
        "checkpoints of one dataset."
    )
    st.stop()

user = user_picker(left, key="compare_user", default=st.session_state.get(USER) or linked_user())  # the Explorer's
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
