"""Explorer: a user's history, their recommendations, and the explanation of any (user, item) pair; what if the
history were different (or a new user's); and a presentation mode that shows the plain-language sentences and one
figure per explanation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recmodels import viz
from recmodels.errors import EmptyHistoryError, RecModelsError
from recmodels.viz import choices_for, figures_for, maps_by_tab
from recmodels_explorer import what_if_panel
from recmodels_explorer.html_report import explanation_html
from recmodels_explorer.services import (
    explanation,
    figure_context,
    missed_by_retrieval,
    model_title,
    recommendations,
    thumbnail_uri,
    users_of,
)
from recmodels_explorer.state import PRESENT, write_url
from recmodels_explorer.text import STAGE_TITLES, code, cut_cells, filename, literal, plain
from recmodels_explorer.ui import (
    collapse_badges,
    csv_button,
    dataset_caption,
    figure,
    guarded,
    item_picker,
    show_error,
    show_figures,
    sidebar,
    user_picker,
)

service = sidebar("explore")
if service is None:
    st.stop()
path = str(service.path)
user = user_picker(service, url_param="user")
st.sidebar.button("Start a new user", key="new_user", icon=":material/person_add:",
                  on_click=what_if_panel.start_new_user,
                  help="A user with no history: add a few items and see what the model makes of them.")  # fmt: skip
present = st.sidebar.toggle("Presentation mode", value=bool(st.session_state.get(PRESENT)), key="present_toggle",
                            help="The user, the recommendations, the sentences and one figure per explanation, for "
                            "showing on a projector; the controls and the diagnostic tables are hidden.")  # fmt: skip
st.session_state[PRESENT] = present
st.sidebar.caption(f"Device: **{service.device_label}**")
dataset_caption(service)
if user is None:
    st.stop()
what_if = what_if_panel.active_what_if(service, user)
recorded = what_if_panel.recorded_window(service, user)
write_url(recorded)
subject = user if what_if is None else what_if.user  # None: a new user
edited = None if what_if is None else what_if.items  # the history the model is given instead of the real one
who = f"user {user}" if subject is not None else "a new user"
# in file names: whose history it was, and that it was edited
whose = "new-user" if subject is None else f"user-{filename(user)}" + ("-what-if" if what_if is not None else "")

st.title(f"{literal(model_title(service.model_name), 40)} on {literal(service.dataset_name, 60)}", anchor=False)


def image_path(value) -> str | None:
    """None, NaN and "" all mean "no image"."""
    return value if isinstance(value, str) and value.strip() else None


def with_thumbnails(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Turn the image path column into small inline thumbnails (or drop it when nothing has an image); a cell
    without an image is "" (an empty cell; None would show the word None)."""
    paths = [image_path(p) for p in frame["image"]] if "image" in frame else []
    if not any(paths):
        return frame.drop(columns=["image"], errors="ignore"), {}
    frame = frame.copy()
    frame["image"] = [(thumbnail_uri(p) if p else None) or "" for p in paths]
    return frame, {"image": st.column_config.ImageColumn("image", width="small")}


def edited_history_frame(items: tuple[str, ...]) -> pd.DataFrame:
    """The edited history as the tables show it: item metadata, oldest first, with the items' images."""
    info = [service.item_info(item) for item in items]
    return pd.DataFrame({"item": [i["item"] for i in info], "title": [i["title"] for i in info],
                         "genres": [i["genres"] for i in info], "image": [i["image"] for i in info]})  # fmt: skip


# ---------------------------------------------------------------- a pipeline: retrieve, then rank
pipeline = getattr(service, "retriever", None) is not None  # a PipelineService: its explanations have two stages
PIPELINE_COLUMNS = {
    "rank": st.column_config.NumberColumn("final rank", help="The ranker's order of the retriever's shortlist."),
    "retriever_rank": st.column_config.NumberColumn(
        "retriever rank", help="Where the retriever put the item among the unseen ones (it passes on its top N)."
    ),
}


def picked_from(table: str):
    """A table's on_select: remember which table was clicked last, so the pair explained is that table's row."""

    def remember() -> None:
        st.session_state["picked_from"] = table

    return remember


def missed_list():
    """The ranker's own favourites that the retriever's shortlist dropped: the items a pipeline never shows."""
    st.markdown(f"**Missed by retrieval** · the ranker's own top 10 over the whole catalogue that "
                f"{literal(model_title(service.retriever.model.title), 40)} left outside its top "
                f"{service.shortlist:,}")  # fmt: skip
    with guarded("finding what retrieval missed"):
        missed = missed_by_retrieval(path, subject, 10, edited)
        if missed.empty:
            st.caption("None: the shortlist kept every one of the ranker's top 10.")
            return None
        chosen = st.dataframe(cut_cells(missed), hide_index=True, key="missed_rows",
                              on_select=picked_from("missed_rows"), selection_mode="single-row",
                              column_order=["ranker_rank", "retriever_rank", "title", "ranker_score", "item"],
                              column_config={"ranker_rank": st.column_config.NumberColumn("ranker rank"),
                                             "retriever_rank": st.column_config.NumberColumn("retriever rank"),
                                             "ranker_score": st.column_config.NumberColumn("ranker score",
                                                                                           format="%.3f")})  # fmt: skip
        st.caption(f"{len(missed)} of the ranker's top 10 were never retrieved. Select a row to explain it: why it "
                   "missed the shortlist, and what the ranker would have made of it.")  # fmt: skip
        csv_button(missed, f"missed-by-retrieval-{whose}", key="missed_csv")
        return chosen, missed
    return None


# ---------------------------------------------------------------- history and recommendations
left, right = st.columns(2, gap="large")
history = pd.DataFrame()
with left:
    heading = f"User {literal(user, 60)}" if what_if is None else (
        f"User {literal(user, 60)}: what if" if what_if.user is not None else "A new user")  # fmt: skip
    st.subheader(heading, anchor=False)
    if subject is not None:
        profile = users_of(service).row(user)
        hidden = set(service.identifying_user_fields)  # e.g. a zip code: it names a person, it does not describe them
        st.caption(" · ".join(f"{literal(k, 30)}: {literal(v, 60)}" for k, v in profile.items()
                              if k not in hidden and k != "user"))  # fmt: skip
    with guarded("loading the history"):
        history = service.history(user)
        if edited is None:
            shown, config = with_thumbnails(history)
            shown["time"] = shown["time"].dt.strftime("%Y-%m-%d %H:%M")
            columns = ["image", "title", "genres", "rating", "time", "part", "item"]
            caption = f"{len(history)} interactions, newest first. Part = where the temporal split put each one."
        else:
            shown, config = with_thumbnails(edited_history_frame(edited))
            columns = ["image", "title", "genres", "item"]
            caption = (f"{len(edited)} items, newest first, instead of the real history. The model reads at most "
                       f"{service.data.max_history}.")  # fmt: skip
        st.dataframe(cut_cells(shown.iloc[::-1]), hide_index=True, height=300 if present else 360,
                     column_config=config, column_order=[c for c in columns if c in shown],
                     on_select="ignore" if present else "rerun", selection_mode="multi-row",
                     key="history_rows" if edited is None else what_if_panel.EDITED_ROWS)  # fmt: skip
        st.caption(caption)
        if not present:
            what_if_panel.editor(service, user, what_if, recorded)
            exported = history if edited is None else edited_history_frame(edited)  # what the table shows
            csv_button(exported.drop(columns=["image"], errors="ignore"), f"history-{whose}", key="history_csv")
    what_if_panel.notes(service, what_if)

if what_if is not None and what_if.user is None and not what_if.items:
    right.info("A new user starts with no history: add a few items with the search under it, and the "
               "recommendations and their explanation appear here.", icon=":material/person_add:")  # fmt: skip
    st.stop()
with right:
    st.subheader("Recommendations" if what_if is None else "Recommendations for the new user" if subject is None
                 else "Recommendations for the edited history", anchor=False)  # fmt: skip
    if present:
        exclude_seen, k = True, 10
    else:
        controls = st.columns([1, 1])
        exclude_seen = controls[0].toggle("Exclude seen", value=True, key="exclude_seen")
        k = controls[1].number_input("How many", min_value=1, max_value=100, value=10, key="k")
    ranked = pd.DataFrame()
    selection = None  # defined whatever happens below: the pair picker reads it
    with guarded("ranking the catalogue"):
        ranked = recommendations(path, subject, int(k), exclude_seen, edited)
        compared = what_if is not None and subject is not None  # the ranking with the real history beside it
        real = recommendations(path, user, int(k), exclude_seen) if compared else None
        listed = ranked if real is None else what_if_panel.with_ranking_changes(real, ranked)
        shown, config = with_thumbnails(listed.assign(image=[service.item_info(i)["image"] for i in listed["item"]]))
        config |= what_if_panel.RANKING_COLUMNS if real is not None else {}
        config |= PIPELINE_COLUMNS if pipeline else {}
        selection = st.dataframe(cut_cells(shown), hide_index=True, height=300 if present else 360,
                                 on_select=picked_from("recommendations"), selection_mode="single-row",
                                 key="recommendations", column_config=config,
                                 column_order=[c for c in ["rank", "retriever_rank", "was", "moved", "image", "title",
                                                           "genres", "score", "probability", "item"]
                                               if c in shown])  # fmt: skip
        if real is not None:
            what_if_panel.say_ranking_changes(real, ranked)
        if not present:
            st.caption("Select a row to explain it, or pick any item below.")
            csv_button(ranked, f"recommendations-{whose}", key="recs_csv")
    missed_selection = missed_list() if pipeline and not present and not ranked.empty else None
if ranked.empty:  # the ranking said why it could not be made; explaining would say it again
    st.stop()

# ---------------------------------------------------------------- which pair to explain
selected_rows = list(selection.selection.rows) if selection is not None and not ranked.empty else []
default_item = (
    ranked["item"].iloc[selected_rows[0]] if selected_rows else ranked["item"].iloc[0] if not ranked.empty else None
)
if pipeline and missed_selection is not None and st.session_state.get("picked_from") == "missed_rows":
    missed_rows = list(missed_selection[0].selection.rows)
    if missed_rows:
        default_item = missed_selection[1]["item"].iloc[missed_rows[0]]
if st.session_state.get("explain_for") != (path, user, edited, default_item):  # another user, row, edit or checkpoint
    st.session_state["explain_for"] = (path, user, edited, default_item)
    st.session_state["explain_item"] = default_item
    st.session_state["explain_item_find"] = ""

st.divider()
if present:
    item, with_attributions, n_steps = default_item, True, 50
else:
    header = st.columns([2, 3, 1, 1])
    # the picker lists the user's recommendations, then their history (newest first), then the rest of the catalogue
    yours = [*ranked.get("item", []), *reversed(list(edited or history.get("item", [])))]
    item = item_picker(
        service,
        yours,
        key="explain_item",
        label="Explain the score of",
        container=header[1],
        find_container=header[0],
        help="The recommendations, then the history, then the rest of the catalogue; search on the left for any "
        "item. Items from the history are explained with the history before that interaction.",
    )
    with_attributions = header[2].toggle("Attributions (Captum IG)", value=True, key="with_ig")
    n_steps = header[3].number_input(
        "IG steps", min_value=8, max_value=300, value=50, step=8, key="n_steps", disabled=not with_attributions
    )
if item is None:
    st.stop()

try:
    result = explanation(path, subject, item, with_attributions, int(n_steps), history=edited)
except EmptyHistoryError as err:
    st.info(literal(err.public_message(), 600))
    st.stop()
except RecModelsError as err:
    show_error(err.public_message())
    st.stop()

seen_before = item in set(edited if edited is not None else history.get("item", []))
st.subheader(f"Why {literal(result.title, 80)} for {literal(who, 60)}", anchor=False)
st.markdown(" ".join(s.render(lambda value: f"*{literal(value, 80)}*") for s in result.sentences))
if seen_before and not present:
    st.caption("The history holds this item, so the model sees only the interactions before it.")
if present:
    view = result.maps.get(result.agreement_map or "") or next(iter(result.maps.values()), None)
    drawn = None if view is None else viz.figure(view, figure_context(path, subject, result, scale="data"))
    if drawn is not None:
        figure(drawn, key="fig_present")
    st.stop()

facts = st.columns(5)
facts[0].metric("Ranker score (logit)" if result.retrieval else "Score (logit)", f"{result.score:.3f}")
facts[1].metric(
    "Probability",
    f"{result.probability:.3f}" if result.probability is not None else "–",
    help="Only models trained on click labels output a probability.",
)
if result.retrieval:  # a pipeline: where each stage put the item
    retrieval = result.retrieval
    facts[2].metric("Final rank", f"{retrieval['final_rank']:,}" if retrieval["in_shortlist"] else "not shown",
                    help="The ranker's order of the shortlist; an item outside the shortlist is never shown (it "
                    f"would have been {retrieval['rank_if_shortlisted']:,} had it been retrieved).")  # fmt: skip
    passed_on = f"Among the unseen items; the retriever passes on its top {retrieval['shortlist']:,}."
    facts[3].metric("Retriever rank", f"{retrieval['retriever_rank']:,}", help=passed_on)
else:
    facts[2].metric("Rank among unseen items", f"{result.rank}")
    facts[3].metric("History items seen", f"{len(result.history)}")
original = None  # the pair explained with the real history, beside a what-if's
if what_if is not None and subject is not None:
    with guarded("comparing with the real history"):
        original = explanation(path, user, item, with_attributions, int(n_steps))
        what_if_panel.show_explanation_changes(original, result)


def csv_name(what: str) -> str:
    return f"{what}-{whose}-item-{filename(item)}"


def nothing_to_draw(result) -> bool:
    return not result.maps and not result.attributions


def show_choice(choices: list[str], key: str) -> str | None:
    """A way of showing a map: segments when there are a few, a drop-down for a transformer's many heads."""
    if not choices:
        return None
    if len(choices) <= 8:
        return st.segmented_control("Show", choices, default=choices[0], key=key, format_func=lambda c: literal(c, 40))
    return st.selectbox("Show", choices, key=key, format_func=lambda c: plain(c, 60))


def head_importance(importance, name: str, prefix: str = "") -> None:
    """The score change when each head of the map is masked out, as a layer x head grid, with its CSV."""
    st.markdown("**Head importance** · score change when each head is masked out")
    st.caption(
        "Red: masking the head lowers this score (the head supports it); blue: masking it raises the score; "
        f"near 0: the head does little for this pair. Full score {importance.score:.3f}."
    )
    figure(viz.head_grid_figure(importance.table()), key=f"{prefix}fig_importance_{name}")
    csv_button(importance.to_frame(), csv_name(f"{prefix}head-importance-{name}"), key=f"{prefix}csv_importance_{name}")


def with_perturbations(result, stage: str | None = None):
    """The explanation (a pipeline's ``stage``'s) with its perturbation tests, computed only where they are shown."""
    if not result.attributions:
        return result
    full = explanation(path, subject, item, True, result.n_steps, perturbations=True, history=edited)
    return full if stage is None else full.stages[stage]


def draw_maps(maps, result, context, prefix: str = "") -> None:
    for name, view in maps:
        st.markdown(f"**{literal(name, 60)}** · {code(' × '.join(view.axes))}")
        if view.description:
            st.caption(literal(view.description, 400))
        choice = show_choice(choices_for(view), key=f"{prefix}show_{name}")
        drawn = figures_for(view, context, choice)
        importance = result.head_importance.get(name)
        if importance is None:
            show_figures([d for d in drawn if not d.derived], key=f"{prefix}fig_{name}")
        else:  # the heads' importance for this score beside their attention
            maps_column, importance_column = st.columns([3, 2], gap="medium")
            with maps_column:
                show_figures([d for d in drawn if not d.derived], key=f"{prefix}fig_{name}")
            with importance_column:
                head_importance(importance, name, prefix)
        collapse_badges(view)
        show_figures([d for d in drawn if d.derived], key=f"{prefix}fig_about_{name}")
        csv_button(view.to_frame(), csv_name(f"{prefix}{name}"), key=f"{prefix}csv_{name}")


def draw_attributions(result, stage: str | None = None) -> None:
    prefix = f"{stage}_" if stage else ""
    cols = st.columns(4)
    cols[0].metric("Score", f"{result.score:.4f}")
    cols[1].metric(
        "Baseline score",
        f"{result.baseline_score:.4f}",
        help="Every attributed embedding at its padding baseline; the history mask is held fixed.",
    )
    cols[2].metric("Sum of attributions", f"{result.score - result.baseline_score + result.delta:.4f}")
    cols[3].metric("Convergence delta", f"{result.delta:+.2e}", help=f"Gauss-Legendre, {result.n_steps} steps")
    if result.agreement_map:
        st.markdown(f"**Attention ({literal(result.agreement_map, 60)}) against attributions over history items**")
        metric_cols = st.columns(4)
        for index, (label, value) in enumerate(result.agreement.items()):
            metric_cols[index % 4].metric(
                label,
                "–" if value is None or np.isnan(value) else f"{value:.2f}",
                help="Kendall τ: rank agreement over history items (1 = same order, "
                "0 = unrelated). Top-k overlap: share of the most-attended items "
                "that are also the most attributed.",
            )
        agreed_on = result.maps.get(result.agreement_map)
        if agreed_on is not None and agreed_on.flags is not None and np.any(agreed_on.flags["near_uniform"]):
            st.caption("This attention is near uniform, so Kendall's τ here ranks weights that barely differ: it "
                       "measures noise more than agreement.")  # fmt: skip
        figure(viz.agreement_figure(result.per_item), key=f"{prefix}fig_agreement")
        csv_button(result.per_item, csv_name(f"{prefix}attention-vs-attributions"), key=f"{prefix}csv_per_item")
    for name, view in result.attributions.items():
        st.markdown(f"**{literal(name, 60)}** · {literal(view.description, 400)}")
        figure(viz.attribution_figure(view), key=f"{prefix}fig_attr_{name}")
        csv_button(view.to_frame(), csv_name(f"{prefix}ig-{name}"), key=f"{prefix}csv_attr_{name}")
    perturbations = with_perturbations(result, stage).perturbations
    if perturbations is not None:
        st.markdown("**Perturbations** · change in score and in rank among all items")
        st.dataframe(cut_cells(perturbations), hide_index=True)
        csv_button(perturbations, csv_name(f"{prefix}perturbations"), key=f"{prefix}csv_perturbations")


@st.fragment
def explanation_tabs(result, context, stage: str | None = None) -> None:
    """Only the open tab is drawn: a browser draws every figure it is sent, hidden tabs' too, and that made
    switching user slow. Choosing a tab, or how a map is shown, reruns this fragment alone. ``stage`` names a
    pipeline's stage (its widgets get their own keys)."""
    prefix = f"{stage}_" if stage else ""
    by_tab = maps_by_tab(result.maps)
    tab_names = [*by_tab, *(["Attributions"] if result.attributions else [])]
    for name, tab in zip(tab_names, st.tabs(tab_names, key=f"{prefix}explain_tab", on_change="rerun")):
        if not tab.open:
            continue
        with tab, guarded(f"drawing the {name.lower()}"):
            if name in by_tab:
                draw_maps(by_tab[name], result, context, prefix)
            else:
                draw_attributions(result, stage)


SCALES = {"follows the data": "data", "fixed, 0 to 1": "fixed"}
scale = st.segmented_control(
    "Attention colour scale", list(SCALES), default="follows the data", key="attention_scale",
    help="A diffuse map (fifty weights near 1/50) looks empty on a fixed 0 to 1 scale; on a scale that follows the "
    "data it shows its shape. Each figure says which it is on.",
)  # fmt: skip
for stage, staged in (result.stages or {None: result}).items():  # a pipeline: the retriever's first
    title = literal(model_title(service.model_name) if stage is None else result.retrieval[stage], 40)
    if stage is not None:
        st.subheader(f"{STAGE_TITLES.get(stage, stage)}: {title}", anchor=False)
        st.markdown(" ".join(s.render(lambda value: f"*{literal(value, 80)}*") for s in staged.sentences))
    if nothing_to_draw(staged):
        st.info(f"{title} has no attention maps and no attribution inputs: there is nothing to explain beyond the "
                "score.")  # fmt: skip
        continue
    context = figure_context(path, subject, staged, scale=SCALES.get(scale, "data"))
    explanation_tabs(staged, context, stage)


def report() -> bytes:
    """The HTML report; for a what-if, the real history's results beside the edited ones first."""
    rankings = None
    if original is not None:
        rankings = (recommendations(path, user, int(k), exclude_seen), ranked)
    return explanation_html(service, with_perturbations(result), original=original, rankings=rankings).encode()


st.download_button(
    "Download this explanation as a self-contained HTML report",
    data=report,
    file_name=f"{filename(csv_name(f'explanation-{service.model_name}'), 120)}.html",
    mime="text/html",
    key="html_report",
    on_click="ignore",  # a download changes nothing on the page: no rerun
    icon=":material/summarize:",
)
