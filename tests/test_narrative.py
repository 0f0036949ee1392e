"""The plain-language sentences of an explanation: built from its own numbers, saying where attention and the
attributions disagree, and keeping strings from data apart from the template."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recmodels.explain.narrative import Sentence, ordinal, sentences
from recmodels.explain.views import Explanation, HeadImportanceView, MapView

MODEL = SimpleNamespace(title="DIN", reads_history=True)


def explanation(attention, ig, titles=None, flags=None, maps=None, heads=None) -> Explanation:
    n = len(attention)
    titles = titles or [f"Film {i}" for i in range(n)]
    per_item = pd.DataFrame({"position": range(n), "item": [str(i) for i in range(n)], "title": titles,
                             "attention": attention, "integrated_gradients": ig, "leave_one_out": ig})  # fmt: skip
    view = MapView("history", "item", ("history",), np.asarray(attention, float), np.ones(n, bool), "history",
                   {"history": titles}, {"history": [str(i) for i in range(n)]}, "", {},
                   statistics={"normalised_entropy": np.array(0.5), "max_weight": np.array(max(attention))},
                   flags=flags or {"near_uniform": np.array(False), "near_one_hot": np.array(False)})  # fmt: skip
    return Explanation("13", "50", "The Firm", 0.3, None, 1, pd.DataFrame(), {"history": view, **(maps or {})},
                       per_item=per_item, agreement_map="history", head_importance=heads or {})  # fmt: skip


def text(explained, model=MODEL) -> str:
    return " ".join(s.text for s in sentences(explained, model, 1682, "13"))


def test_the_rank_the_leading_items_and_agreement_come_from_the_numbers():
    said = text(explanation([0.1, 0.16, 0.5, 0.24], [0.0, 0.3, 0.2, -0.1]))
    assert said == ("DIN ranks “The Firm” 1st of 1,682 for user “13”, mostly because of “Film 2” (50% of the "
                    "attention), “Film 3” and “Film 1”; integrated gradients agree on 2 of these 3.")  # fmt: skip


def test_disagreement_is_said_not_hidden():
    said = text(explanation([0.4, 0.3, 0.2, 0.1, 0.0, 0.0], [-1, -1, -1, 0.1, 0.5, 0.9]))
    assert "integrated gradients disagree: they weigh “Film 5”, “Film 4” and “Film 3” most" in said


def test_spread_and_one_hot_attention_are_named_as_such():
    even = [0.1] * 10
    said = text(explanation(even, list(range(10)), flags={"near_uniform": np.array(True),
                                                          "near_one_hot": np.array(False)}))  # fmt: skip
    assert "with its attention spread over the history" in said and "near uniform" in said
    said = text(explanation([0.0, 0.99, 0.01], [0.1, 0.9, 0.0], flags={"near_uniform": np.array(False),
                                                                       "near_one_hot": np.array(True)}))  # fmt: skip
    assert "mostly because of “Film 1” (99% of the attention); integrated gradients agree." in said
    assert said.endswith("The attention sits almost entirely on one item (99% of it).")


def test_models_without_item_attention_or_history_say_so():
    said = text(explanation([np.nan] * 4, [0.1, 0.5, 0.2, 0.3]), SimpleNamespace(title="EASE", reads_history=True))
    assert said.endswith("; by integrated gradients, “Film 1”, “Film 3” and “Film 2” weigh most for the score.")
    said = text(explanation([np.nan] * 4, [np.nan] * 4), SimpleNamespace(title="BPR-MF", reads_history=False))
    expected = "BPR-MF ranks “The Firm” 1st of 1,682 for user “13”; it does not read the history, so no item of it"
    assert said == expected + " explains the score."


def test_regions_and_heads_get_their_sentences():
    grid = np.zeros(49)
    grid[[8, 20, 40]] = [0.3, 0.2, 0.1]
    regions = MapView("candidate_regions", "component", ("region",), grid, np.ones(49, bool), "region", {}, {}, "",
                      {"grid": (7, 7)})  # fmt: skip
    heads = HeadImportanceView("self_attention", 0.3, ["layer 1", "layer 2"], ["head 1", "head 2"],
                               np.array([[0.1, -0.7], [0.2, np.nan]]))  # fmt: skip
    said = text(explanation([0.6, 0.4], [1.0, 0.0], maps={"candidate_regions": regions},
                            heads={"self_attention": heads}))  # fmt: skip
    assert ("looks most at (row 2, column 2), (row 3, column 7) and (row 6, column 6) of the 7 x 7 grid (100% of the "
            "region attention)") in said  # fmt: skip
    assert (
        "The head that matters most is “head 2 of layer 1” of “self_attention”: masking it lowers the score by 0.7."
        in said
    )


def test_data_strings_stay_apart_from_the_template():
    hostile = "*{0}* <b>$x$</b>"
    (first,) = sentences(explanation([0.9, 0.1], [1, 0], titles=[hostile, "B"]), MODEL, 10, "13")[:1]
    assert first.values[1] == hostile and hostile not in first.template
    assert first.render(lambda value: "X").count("X") >= len(first.values)
    assert hostile in first.text  # the plain text quotes it as it is; a page escapes it through render()


ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 1001: "1,001st"}


@pytest.mark.parametrize(("n", "expected"), ORDINALS.items())
def test_ordinals(n, expected):
    assert ordinal(n) == expected


def test_a_sentence_renders_through_any_escaper():
    sentence = Sentence("{0} and {1}", ("a*", "b"))
    assert sentence.render(lambda v: f"[{v}]") == "[a*] and [b]" and sentence.text == "“a*” and “b”"


def test_the_user_id_is_data_and_a_new_user_is_said_so():
    explained = explanation([0.9, 0.1], [1, 0])
    (first,) = sentences(explained, MODEL, 10, "*u1* {0}", written=True)[:1]
    assert first.values[-1] == "*u1* {0}" and "*u1*" not in first.template
    assert "for user “*u1* {0}” with the history given" in first.text
    (new,) = sentences(explained, MODEL, 10, None)[:1]
    assert "for a new user" in new.text and len(new.values) == len(first.values) - 1
