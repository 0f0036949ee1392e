"""The attention explorer: `recmodels explore` or `make app` (or `streamlit run app/explorer.py --server.address
127.0.0.1` where recmodels is installed)."""

from __future__ import annotations

import streamlit as st
from PIL import Image, ImageDraw

from recmodels import settings
from recmodels.errors import RecModelsError
from recmodels_explorer.safety import REFUSAL, address_chosen, apply_safe_options


def icon() -> Image.Image:
    """A magnifier, drawn here: a :material/...: or emoji page icon makes the browser fetch it from Google's CDN."""
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.line((38, 38, 58, 58), fill="#1f4e79", width=10)
    draw.ellipse((6, 6, 44, 44), fill="#dbeafe", outline="#1f4e79", width=7)
    return image


apply_safe_options()  # before anything can fail: no tracebacks in the browser however the app was started
st.set_page_config(page_title="Attention explorer", page_icon=icon(), layout="wide")


def refuse() -> None:
    st.error(REFUSAL, icon=":material/lan:")


if not address_chosen():
    # one page for every URL: without st.navigation, Streamlit would serve the files in pages/ on their own
    st.navigation([st.Page(refuse, title="Attention explorer", url_path="refused")], position="hidden").run()
    st.stop()

try:  # a root list with an empty entry would mean the current folder: refuse it here, once, for every page
    settings.paths(settings.CHECKPOINT_ROOTS)
except RecModelsError as err:
    from recmodels_explorer.text import literal  # loads plotly and torch: only on this path

    message = literal(str(err), 400)
    st.navigation(
        [st.Page(lambda: st.error(message), title="Attention explorer", url_path="roots")], position="hidden"
    ).run()
    st.stop()

pages = [
    st.Page("pages/explore.py", title="Explorer", icon=":material/travel_explore:", default=True),
    st.Page("pages/collapse.py", title="Collapse", icon=":material/compress:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]
st.navigation(pages).run()
