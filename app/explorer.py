"""The attention explorer: `streamlit run app/explorer.py` (or `make app`)."""
from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `app` and `recmodels` from a plain clone

st.set_page_config(page_title="Attention explorer", page_icon=":material/visibility:", layout="wide")

pages = [
    st.Page("pages/explore.py", title="Explorer", icon=":material/travel_explore:", default=True),
    st.Page("pages/collapse.py", title="Collapse", icon=":material/compress:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]
st.navigation(pages).run()
