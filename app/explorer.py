"""The attention explorer: `streamlit run app/explorer.py` (or `make app`)."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app` and `recmodels` from a plain clone

from app.ui import checkpoint_picker  # noqa: E402

st.set_page_config(page_title="Attention explorer", page_icon=":material/visibility:", layout="wide")

pages = [
    st.Page("pages/explore.py", title="Explorer", icon=":material/travel_explore:", default=True),
    st.Page("pages/collapse.py", title="Collapse", icon=":material/compress:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]
navigation = st.navigation(pages)

with st.sidebar:
    st.session_state["checkpoint_resolved"] = checkpoint_picker()
    st.radio("Figure download format", ["png", "svg"], key="figure_format", horizontal=True,
             help="What the camera button in each chart's toolbar saves.")

navigation.run()
