"""PipelineService: retrieve, then rank. One checkpoint (the retriever) scores the whole catalogue and keeps its top
N unseen items, the shortlist; another (the ranker) scores only those N and orders them.

It is a :class:`~recmodels.serving.service.RecService` over the ranker (``model``, ``config``, the dataset views),
so every caller of a service keeps working; the retriever is :attr:`PipelineService.retriever`, a service over the
same data object (the stages share the dataset fingerprint, so the data is loaded once). ``RecService.from_checkpoint``
opens a pipeline folder (:mod:`recmodels.checkpoint.pipeline`) as one of these.

Ranks: ``recommend`` is the shortlist ordered by the ranker, with each item's retriever rank and score. An
explanation's ``rank`` is the item's rank by the ranker among the shortlist; for an item the retriever left out it is
the rank the item would have had had it been shortlisted, and ``retrieval["final_rank"]`` is None (the pipeline never
shows it). Retriever ranks are among the items a recommendation may show (the unseen ones).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from recmodels.checkpoint.io import load_checkpoint
from recmodels.checkpoint.pipeline import Pipeline, is_pipeline, read_pipeline
from recmodels.errors import InvalidArgumentError
from recmodels.eval.metrics import top_k
from recmodels.explain.faithfulness import rank_among
from recmodels.explain.narrative import Sentence, ordinal, sentences
from recmodels.explain.views import Explanation
from recmodels.models.output_check import check_scores, users_and_items
from recmodels.serving.arguments import flag, whole_number
from recmodels.serving.concurrency import computes
from recmodels.serving.dataset_views import MAX_K
from recmodels.serving.service import RecService, Subject

__all__ = ["PipelineService"]


@dataclasses.dataclass(frozen=True)
class Shortlist:
    """The retriever's top N for a subject: item indices (0-based, retriever order) and every item's retriever
    score and rank among the candidates (0 where an item was not a candidate)."""

    indices: torch.Tensor
    retriever_scores: torch.Tensor
    retriever_ranks: np.ndarray

    def mask(self, n_items: int) -> torch.Tensor:
        kept = torch.zeros(n_items, dtype=torch.bool)
        kept[self.indices] = True
        return kept


class PipelineService(RecService):
    """A retriever's shortlist of N, ranked by a ranker: a RecService over the ranker plus :attr:`retriever`,
    :attr:`ranker` (services over each stage alone, sharing the data) and :attr:`shortlist` (N)."""

    def __init__(self, ranker: RecService, retriever: RecService, shortlist: int, pipeline: Pipeline | None = None):
        if retriever.data is not ranker.data:
            raise InvalidArgumentError(
                "The retriever and the ranker of a pipeline must be services over the same data object; open the "
                "retriever with the ranker's data (PipelineService.open does)."
            )
        super().__init__(ranker.model, ranker.data, ranker.config, ranker.device, ranker.path, ranker.thresholds)
        self.ranker, self.retriever = ranker, retriever
        self.shortlist = whole_number("shortlist", shortlist, 1, ranker.data.dataset.n_items)
        self.pipeline = pipeline
        if pipeline is not None:
            self.path = pipeline.path

    opens_folder = staticmethod(is_pipeline)  # RecService.from_checkpoint opens such a folder with open()

    @classmethod
    def open(cls, path, device="auto", data_dir=None, image_dir=None, model_module=None, roots=None):
        """The pipeline in the folder ``path`` (arguments as :meth:`RecService.from_checkpoint`'s): the ranker is
        loaded with its dataset, the retriever onto the same data (its fingerprint checked against it)."""
        pipeline = read_pipeline(path, roots)
        ranker = RecService.from_checkpoint(pipeline.ranker, device, data_dir, image_dir, model_module, roots)
        model, config = load_checkpoint(pipeline.retriever, device=ranker.device, data=ranker.data, roots=roots)
        retriever = RecService(model, ranker.data, config, ranker.device, pipeline.retriever, ranker.thresholds)
        return cls(ranker, retriever, pipeline.shortlist, pipeline)

    # ------------------------------------------------------------------ facts
    @property
    def title(self) -> str:
        """E.g. "Two-tower (MHA) → DIN (top 200)"."""
        return f"{self.retriever.model.title} → {self.model.title} (top {self.shortlist:,})"

    @property
    def model_name(self) -> str:
        return self.title

    # ------------------------------------------------------------------ the two stages
    def _shortlist(self, subject: Subject, excluded: torch.Tensor) -> Shortlist:
        """The retriever's top N among the items not ``excluded`` (fewer when fewer remain)."""
        scores = self.retriever._catalogue_scores(subject)
        candidates = scores.masked_fill(excluded, float("-inf"))
        n_candidates = int((~excluded).sum())
        _, order = top_k(candidates, n_candidates)
        ranks = np.zeros(len(scores), dtype=np.int64)
        ranks[order.numpy()] = np.arange(1, n_candidates + 1)
        return Shortlist(order[: min(self.shortlist, n_candidates)], scores, ranks)

    def _ranker_scores(self, subject: Subject, indices: torch.Tensor) -> torch.Tensor:
        """The ranker's scores of the items ``indices`` (0-based) alone: the N forwards that make a pipeline fast.
        Kept like the catalogue's scores (a recommendation and the explanation of one of its items score the same
        shortlist), under a key with the items and the ranker's weight versions."""
        key = ("shortlist", subject.index, subject.window.numpy().tobytes(), indices.numpy().tobytes(),
               *(p._version for p in self.model.parameters()))  # fmt: skip
        return self._kept(key, lambda: self._score_shortlist(subject, indices))

    @torch.no_grad()
    def _score_shortlist(self, subject: Subject, indices: torch.Tensor) -> torch.Tensor:
        users = torch.tensor([subject.index], device=self.device)
        history = subject.window.unsqueeze(0).to(self.device)
        n = len(indices)
        scores = self.model.score_items(users, history, (indices + 1).to(self.device))
        fix = "fix the model's score_items (or its forward)"
        check_scores(self.model, scores, (1, n), users_and_items(1, n), fix=fix)
        return scores[0].float().cpu()

    def _pipeline_vector(self, subject: Subject, shortlist: Shortlist) -> torch.Tensor:
        """The ranker's scores at the shortlisted items and -inf elsewhere (internal: -inf is never shown)."""
        vector = torch.full((self.data.dataset.n_items,), float("-inf"))
        if len(shortlist.indices):
            vector[shortlist.indices] = self._ranker_scores(subject, shortlist.indices)
        return vector

    def _catalogue_scores(self, subject: Subject) -> torch.Tensor:
        """The pipeline's catalogue: the ranker's scores on the shortlist of unseen items, -inf outside it."""
        return self._pipeline_vector(subject, self._shortlist(subject, subject.seen))

    def _subjects(self, user, history) -> Subject:
        """The subject, checked by both stages (a new user must suit the retriever too)."""
        self.retriever.subject(user, history)
        return self.subject(user, history)

    # ------------------------------------------------------------------ recommendations
    @computes
    def recommend(self, user, k: int = 10, exclude_seen: bool = True, history=None) -> pd.DataFrame:
        """The retriever's top N (seen items never take a place when ``exclude_seen``) ordered by the ranker's
        scores of those N alone; the columns of :meth:`RecService.recommend` plus ``retriever_rank`` (among the
        candidates) and ``retriever_score``."""
        k = whole_number("k", k, 1, MAX_K)
        exclude_seen = flag("exclude_seen", exclude_seen)
        subject = self._subjects(user, history)
        excluded = subject.seen if exclude_seen else torch.zeros_like(subject.seen)
        shortlist = self._shortlist(subject, excluded)
        values, indices = top_k(self._pipeline_vector(subject, shortlist), min(k, len(shortlist.indices)))
        frame = self._ranking_frame(values, indices)
        frame["retriever_rank"] = shortlist.retriever_ranks[indices.numpy()]
        frame["retriever_score"] = shortlist.retriever_scores[indices].numpy()
        return frame

    @computes
    def missed_by_retrieval(self, user, k: int = 10, history=None) -> pd.DataFrame:
        """The ranker's own top ``k`` unseen items (over the whole catalogue) that the shortlist left out: item,
        title, ``ranker_rank``, ``ranker_score``, ``retriever_rank`` and ``retriever_score``, in ranker order. An
        item here was never retrieved; one of the ranker's top ``k`` that is not here was retrieved and then
        placed by the ranker (see :meth:`recommend`)."""
        k = whole_number("k", k, 1, MAX_K)
        subject = self._subjects(user, history)
        shortlist = self._shortlist(subject, subject.seen)
        full = self.ranker._catalogue_scores(subject).masked_fill(subject.seen, float("-inf"))
        values, indices = top_k(full, min(k, int((~subject.seen).sum())))
        ranks = np.arange(1, len(indices) + 1)
        missed = ~shortlist.mask(len(full))[indices].numpy()
        chosen, items = indices.numpy()[missed], indices.numpy()[missed] + 1
        return pd.DataFrame(
            {
                "item": self.lookup.raw_items(items),
                "title": self._titles[items],
                "ranker_rank": ranks[missed],
                "ranker_score": values.numpy()[missed],
                "retriever_rank": shortlist.retriever_ranks[chosen],
                "retriever_score": shortlist.retriever_scores[chosen].numpy(),
            }
        )

    @computes
    def shortlist_recall(self, user, k: int = 10, history=None) -> float:
        """The share of the ranker's own top ``k`` unseen items (whole catalogue) that the shortlist kept: 1.0 when
        retrieval lost none of them. With fewer than ``k`` unseen items, over those."""
        k = whole_number("k", k, 1, MAX_K)
        subject = self._subjects(user, history)
        k = min(k, int((~subject.seen).sum()))
        if k == 0:
            return 1.0
        return 1.0 - len(self.missed_by_retrieval(user, k=k, history=history)) / k

    # ------------------------------------------------------------------ explanations
    @computes
    def explain(
        self,
        user,
        item,
        attributions: bool = True,
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        perturbations: bool = True,
        head_importance: bool = True,
        attribute_to=None,
        history=None,
    ) -> Explanation:
        """The ranker's explanation of the pair (:meth:`RecService.explain`) with ``stages`` (the ranker's and the
        retriever's explanations of the same pair) and ``retrieval``: the item's retriever rank and score, N,
        whether it made the shortlist, its final rank (None when it did not) and the ranker's score. ``rank`` is
        the item's rank by the ranker among the shortlist, or the rank it would have had there had it been
        retrieved."""
        subject = self._subjects(user, history)
        explanation = super().explain(
            user, item, attributions, n_steps, internal_batch_size, perturbations, head_importance, attribute_to,
            history,
        )  # fmt: skip
        retriever_explanation = self.retriever.explain(
            user, item, attributions, n_steps, internal_batch_size, perturbations, head_importance, None, history
        )
        item_index = self.lookup.item(item)
        written = subject.written is not None
        excluded = subject.seen.clone()
        excluded[item_index - 1] = False  # as in RecService.explain: the item itself is not counted as seen
        shortlist = self._shortlist(subject, excluded)
        retriever_rank = int(shortlist.retriever_ranks[item_index - 1])
        shortlisted = retriever_rank <= self.shortlist
        candidates = shortlist.indices
        if not shortlisted:
            candidates = torch.cat([candidates, torch.tensor([item_index - 1])])
        vector = self._pipeline_vector(subject, dataclasses.replace(shortlist, indices=candidates))
        rank = rank_among(vector, item_index - 1, ~torch.isfinite(vector))
        # the ranker alone: its rank over the whole catalogue, as RecService.explain on the ranker gives it
        ranker_view = dataclasses.replace(
            explanation, rank=rank_among(self.ranker._catalogue_scores(subject), item_index - 1, excluded)
        )
        ranker_view.sentences = sentences(ranker_view, self.model, self.data.dataset.n_items, subject.user, written)
        explanation.rank = rank
        explanation.stages = {"retriever": retriever_explanation, "ranker": ranker_view}
        explanation.retrieval = {
            "retriever": self.retriever.model.title,
            "ranker": self.model.title,
            "shortlist": self.shortlist,
            "retriever_rank": retriever_rank,
            "retriever_score": float(shortlist.retriever_scores[item_index - 1]),
            "in_shortlist": shortlisted,
            "final_rank": rank if shortlisted else None,
            "ranker_score": float(vector[item_index - 1]),
            "rank_if_shortlisted": rank,
        }
        explanation.sentences = [
            self._retrieval_sentence(explanation),
            *sentences(explanation, self.model, len(candidates), subject.user, written),
        ]
        return explanation

    @staticmethod
    def _retrieval_sentence(explanation: Explanation) -> Sentence:
        facts = dict(explanation.retrieval)
        for stage in ("retriever", "ranker"):  # model titles are ours, but never a format field
            facts[stage] = facts[stage].replace("{", "{{").replace("}", "}}")
        if facts["in_shortlist"]:
            template = (
                f"{facts['retriever']} retrieves {{0}} {ordinal(facts['retriever_rank'])}, inside its shortlist of "
                f"{facts['shortlist']:,}, and {facts['ranker']} ranks it {ordinal(facts['final_rank'])} there."
            )
        else:
            template = (
                f"{facts['retriever']} retrieves {{0}} only {ordinal(facts['retriever_rank'])}, outside its shortlist "
                f"of {facts['shortlist']:,}, so the pipeline never shows it; had it been shortlisted, "
                f"{facts['ranker']} would have ranked it {ordinal(facts['rank_if_shortlisted'])}."
            )
        return Sentence(template, (explanation.title or explanation.item,))
