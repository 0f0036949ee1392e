"""RecService: the one API the app calls. Users and items are named by the dataset's own ids.

A thin facade: it turns ids into indices and back, checks every argument at this boundary, and hands the
work to the parts that do it: :mod:`recmodels.explain` (the explanation pipeline and its views),
:mod:`recmodels.data.cache` (one dataset per process) and :mod:`recmodels.explain.region_report`; the dataset-level
calls are :class:`~recmodels.serving.dataset_views.DatasetViews`'s, and the ids
:class:`~recmodels.serving.lookup.DatasetLookup`'s.

One instance is safe to share across threads and Streamlit sessions: the model stays in eval mode and is never
modified after loading, attention perturbations are passed per call, and Captum's hooks go on a private copy
of the module tree (see :mod:`recmodels.explain.attributions`). Everything precomputed is built in the
constructor and only read afterwards.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from recmodels.checkpoint.config import CheckpointConfig
from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data import PART_NAMES, TEST, TRAIN, VALID, RecData
from recmodels.data.cache import load_data_cached
from recmodels.data.features import IDENTIFYING_USER_FIELDS
from recmodels.device import describe_device, resolve_device
from recmodels.errors import EmptyHistoryError, InvalidArgumentError, quote
from recmodels.eval.metrics import top_k
from recmodels.explain.attributions import chosen_taps
from recmodels.explain.collapse import CollapseThresholds
from recmodels.explain.diagnostics import DiagnosticsReport
from recmodels.explain.explainers import IntegratedGradients, LeaveOneOut, PerturbationTests
from recmodels.explain.faithfulness import rank_among
from recmodels.explain.heads import pair_head_importance
from recmodels.explain.narrative import sentences
from recmodels.explain.pipeline import PairExplainer
from recmodels.explain.views import AttributionView, Explanation, MapView
from recmodels.models import import_model_module
from recmodels.models.output_check import check_catalogue_maps, check_output, check_scores, users_and_items
from recmodels.models.outputs import Batch
from recmodels.serving.arguments import flag, folder_path, folder_paths, optional_whole_number, whole_number
from recmodels.serving.concurrency import computes
from recmodels.serving.dataset_views import DEFAULT_SAMPLE, MAX_BATCH, MAX_K, DatasetViews
from recmodels.serving.lookup import DatasetLookup

__all__ = ["AttributionView", "Explanation", "MapView", "RecService", "load_data_cached"]

PART_LABELS = {v: k for k, v in PART_NAMES.items()}
MAX_IG_STEPS = 2_000  # integrated-gradients steps per explanation
SCORES_KEPT = 16  # catalogue score vectors kept per service (26,744 items: about 100 kB each)
NEW_USER = "a new user"  # how an explanation names a user the dataset does not have


@dataclass(frozen=True)
class Subject:
    """Whose scores a call computes: a user of the dataset with their recorded history, the same user with a history
    someone wrote (a what-if), or a new user, who is only their history.

    Attributes:
        user: the dataset's user id, or None for a new user.
        index: the model's user index (0, the padding row, for a new user).
        window: the history as the model reads it, (max_history,), oldest first, right-padded with 0.
        seen: (n_items,) True at the items counted as seen: the recorded interactions; for a written history, its
            items, and for a user of the data also their other interactions, less those dropped from the window.
        written: the item indices of a written history, oldest first; None for the recorded one.
    """

    user: str | None
    index: int
    window: torch.Tensor
    seen: torch.Tensor
    written: np.ndarray | None = None

    @property
    def label(self) -> str:
        return NEW_USER if self.user is None else self.user


class RecService:
    """Recommendations and explanations for one checkpoint on its dataset, and the dataset-level figures
    (diagnostics, recovery, training history) through :class:`~recmodels.serving.dataset_views.DatasetViews`."""

    # subclasses that open another kind of folder (``opens_folder(path, roots)`` and ``open(...)``, as
    # PipelineService does) are listed here when defined; this module cannot import them (they import it), so the
    # package, recmodels.serving, imports each of them
    _folder_kinds: ClassVar[list[type[RecService]]] = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "opens_folder" in cls.__dict__:
            RecService._folder_kinds.append(cls)

    def __init__(
        self,
        model,
        data: RecData,
        config: CheckpointConfig | None = None,
        device=None,
        path: Path | None = None,
        thresholds: CollapseThresholds = CollapseThresholds(),
    ):
        """A service over ``model`` trained on ``data``. ``config`` is its checkpoint's record (for a model that was
        never saved, :meth:`CheckpointConfig.describe` makes one: no metrics and no training history); ``device``
        is where the model is (its own device by default)."""
        self.model = model.eval()
        self.config = config if config is not None else CheckpointConfig.describe(model, data)
        self.data = data
        self.device = resolve_device(device) if device is not None else model.device
        self.path = path
        self.thresholds = thresholds
        self.lookup = DatasetLookup(data)
        self.views = DatasetViews(self.model, data, self.config, self.lookup, thresholds)
        self._titles, self._genres = self.lookup.titles, self.lookup.genres
        self._all_items = torch.arange(1, data.dataset.n_items + 1, device=device)
        self._scores_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._scores_lock = threading.Lock()
        self._image_paths = self._find_images()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls, path, device="auto", data_dir=None, image_dir=None, model_module=None, roots=None
    ) -> RecService:
        """Load a checkpoint folder with its dataset; ``model_module`` names a module that registers the model
        first (a model kept in a plain file rather than an installed plugin). With ``roots`` (folders: the app's
        checkpoint roots), every file of the checkpoint must resolve inside one of them, links followed. A pipeline
        folder (:mod:`recmodels.checkpoint.pipeline`) opens as a
        :class:`~recmodels.serving.pipeline.PipelineService`."""
        path = folder_path("path", path)
        data_dir = folder_path("data_dir", data_dir, optional=True)
        image_dir = folder_path("image_dir", image_dir, optional=True)
        roots = None if roots is None else folder_paths("roots", roots)
        for kind in RecService._folder_kinds:  # a pipeline folder: PipelineService
            if kind.opens_folder(path, roots):
                return kind.open(path, device, data_dir, image_dir, model_module, roots)
        if model_module is not None:
            import_model_module(model_module)
        config = read_config(path, roots)
        dataset = config.dataset
        stored_data_dir, stored_image_dir = dataset_location(config, path)
        data = load_data_cached(
            dataset.name, data_dir or stored_data_dir, image_dir or stored_image_dir, dataset.split, dataset.max_history
        )
        device = resolve_device(device)
        model, config = load_checkpoint(path, device=device, data=data, roots=roots)
        return cls(model, data, config, device, path)

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def dataset_name(self) -> str:
        return self.data.dataset.name

    @property
    def device_label(self) -> str:
        return describe_device(self.device)

    @property
    def citation(self) -> str:
        return self.data.dataset.citation

    @property
    def licence_note(self) -> str:
        return self.data.dataset.licence_note

    @property
    def simulated(self) -> bool:
        return self.data.dataset.simulated

    @property
    def metrics(self) -> dict:
        return self.config.metrics

    @property
    def identifying_user_fields(self) -> list[str]:
        """Columns of :meth:`users` that identify a person rather than describe them (e.g. a zip code): no
        model is fed them, and a page should not show them."""
        return [c for c in self.data.dataset.user_features.columns if c in IDENTIFYING_USER_FIELDS]

    @property
    def split_fractions(self) -> dict[str, float]:
        """Shares of the interactions in train, valid and test, in time order: of each user's (the per-user split)
        or of all of them (the global split, see :attr:`split_description`). The checkpoint's split: the data was
        loaded with it, and its fingerprint matched the model's."""
        split = self.data.split
        if split.mode == "next_item":  # one interaction per user each: the shares are measured, not chosen
            counts = np.bincount(self.data.part, minlength=3) / max(len(self.data.part), 1)
            return {"train": float(counts[TRAIN]), "valid": float(counts[VALID]), "test": float(counts[TEST])}
        return {
            "train": 1.0 - split.valid_fraction - split.test_fraction,
            "valid": split.valid_fraction,
            "test": split.test_fraction,
        }

    @property
    def split_description(self) -> str:
        """The split as percentages, train/valid/test, e.g. "70/10/20 per user" or "70/10/20, global time cuts"."""
        shares = "/".join(f"{100 * share:.3g}" for share in self.split_fractions.values())
        if getattr(self.data.split, "mode", "per_user") == "next_item":
            return f"{shares}, next item (each user's last interaction is test, the one before it valid)"
        return (
            f"{shares}, global time cuts"
            if getattr(self.data.split, "mode", "per_user") == "global"
            else f"{shares} per user"
        )

    # ------------------------------------------------------------------ images
    def _find_images(self) -> dict[int, Path]:
        folder = self.data.dataset.image_dir
        if folder is None or not Path(folder).is_dir():
            return {}
        from recmodels.vision.images import find_item_image

        found = {}
        for index, raw in enumerate(self.data.dataset.item_ids[1:], start=1):
            path = find_item_image(folder, raw)
            if path is not None:
                found[index] = path
        return found

    # ------------------------------------------------------------------ browsing
    def users(self) -> pd.DataFrame:
        """Every user with the number of interactions and their features."""
        dataset = self.data.dataset
        counts = self.lookup.interactions_per_user()
        frame = pd.DataFrame({"user": dataset.user_ids[1:], "interactions": counts})
        for column in dataset.user_features.columns:
            frame[column] = dataset.user_features[column].to_numpy()
        return frame

    def items(self) -> pd.DataFrame:
        """The catalogue: every item's own id, title and genres, in index order."""
        return pd.DataFrame(
            {"item": self.data.dataset.item_ids[1:], "title": self._titles[1:], "genres": self._genres[1:]}
        )

    def history(self, user) -> pd.DataFrame:
        """The user's interactions in time order: item metadata, rating, time, split part and image."""
        rows = self.lookup.rows(self.lookup.user(user))
        frame = self.data.dataset.interactions.iloc[rows]
        items = frame["item"].to_numpy()
        return pd.DataFrame(
            {
                "item": self.lookup.raw_items(items),
                "title": self._titles[items],
                "genres": self._genres[items],
                "rating": frame["rating"].to_numpy(),
                # timestamps are read as Unix seconds; one outside pandas' datetime range shows as NaT, not an error
                "time": pd.to_datetime(frame["timestamp"].to_numpy(), unit="s", utc=True, errors="coerce"),
                "part": [PART_LABELS[p] for p in self.data.part[rows]],
                "image": pd.Series(
                    [str(self._image_paths[i]) if i in self._image_paths else None for i in items], dtype=object
                ),  # None, not NaN, where an item has no image
            }
        )

    def item_image(self, item):
        """The item's image as a PIL image, or None when it has none (or it cannot be read)."""
        path = self._image_paths.get(self.lookup.item(item))
        if path is None:
            return None
        from recmodels.vision.images import load_image

        return load_image(path)

    def planted_regions(self, user) -> list[int] | None:
        """Ground-truth grid cells a simulated shopper was planted to care about (None for real data)."""
        planted = self.data.dataset.extras.get("planted_regions")
        if not planted:
            return None
        return planted.get(str(user))

    def item_info(self, item) -> dict:
        index = self.lookup.item(item)
        return {
            "item": self.data.dataset.item_ids[index],
            "title": self._titles[index],
            "genres": self._genres[index],
            "image": str(self._image_paths[index]) if index in self._image_paths else None,
        }

    # ------------------------------------------------------------------ whose scores
    def subject(self, user, history=None) -> Subject:
        """A user (the dataset's id) with their recorded history; with ``history`` (item ids, oldest first), the
        same user with that history instead; with ``user`` None and a ``history``, a new user. Every bad argument is
        one sentence: an unknown or repeated item, a history longer than the model reads, a new user on a model that
        cannot take one, an empty history where the model needs one."""
        if user is None and history is None:
            raise InvalidArgumentError("Pass a user id, or history= (item ids, oldest first) for a new user.")
        if user is None and self.model.new_user is None:
            raise InvalidArgumentError(
                f"{self.model.title} cannot take a new user: it learned a vector for each user of the data and names "
                "nothing to stand in for one it never saw; pick a user of the dataset."
            )
        index = 0 if user is None else self.lookup.user(user)
        if history is None:
            return Subject(str(user), index, self.lookup.full_history[index], self.lookup.seen_mask(index))
        written = self.lookup.written_history(history)
        if not len(written) and (user is None or self.model.needs_history):
            who = "A new user" if user is None else f"{self.model.title}, which reads nothing but the history,"
            raise EmptyHistoryError(f"{who} with an empty history gives nothing to score from; add at least one item.")
        seen = self.lookup.seen_of(written)
        if user is not None:  # the user's other interactions stay seen; those dropped from the window do not
            recorded = self.lookup.full_history[index]
            dropped = np.setdiff1d(recorded[recorded != 0].numpy(), written)
            seen |= self.lookup.seen_mask(index)
            seen[torch.as_tensor(dropped, dtype=torch.long) - 1] = False
        return Subject(None if user is None else str(user), index, self.lookup.window(written), seen, written)

    def _history_before(self, subject: Subject, item_index: int) -> torch.Tensor:
        """The history an explanation reads: for an item in the history, what came before it; else all of it."""
        if subject.written is None:
            return self.lookup.history_for(subject.index, item_index)
        where = np.flatnonzero(subject.written == item_index)
        return self.lookup.window(subject.written[: where[-1]]) if where.size else subject.window.clone()

    # ------------------------------------------------------------------ recommendations
    @torch.no_grad()
    def _catalogue_scores(self, subject: Subject) -> torch.Tensor:
        """The whole catalogue's scores for the subject's window. Ranking a pair and recommending both need them, so
        the last few are kept; the key holds every parameter's version counter, so a model that trains on (an
        optimiser step changes its weights in place) is scored afresh."""
        key = (subject.index, subject.window.numpy().tobytes(), *(p._version for p in self.model.parameters()))
        return self._kept(key, lambda: self._score_catalogue(subject))

    def _score_catalogue(self, subject: Subject) -> torch.Tensor:
        users = torch.tensor([subject.index], device=self.device)
        history = subject.window.unsqueeze(0).to(self.device)
        n_items = len(self._all_items)
        scores = self.model.score_items(users, history, self._all_items)
        # a plugin's ranking path is checked here, at the boundary: a wrong shape, integers or NaN never rank
        fix = "fix the model's score_items (or its forward)"
        check_scores(self.model, scores, (1, n_items), users_and_items(1, n_items), fix=fix)
        return scores[0].float().cpu()

    def _kept(self, key: tuple, compute) -> torch.Tensor:
        """The score vector kept under ``key``, or ``compute()`` kept there (the last :data:`SCORES_KEPT`)."""
        with self._scores_lock:
            if key in self._scores_cache:
                self._scores_cache.move_to_end(key)
                return self._scores_cache[key]
        scores = compute()
        with self._scores_lock:
            self._scores_cache[key] = scores
            while len(self._scores_cache) > SCORES_KEPT:
                self._scores_cache.popitem(last=False)
        return scores

    @computes
    def recommend(self, user, k: int = 10, exclude_seen: bool = True, history=None) -> pd.DataFrame:
        """Top-``k`` items for the user, scored with their full history, as rank, item, title, score.

        ``history`` (item ids, oldest first) scores them with that history instead (a what-if); with ``user`` None it
        is a new user's. Seen items are the history's, and a user's other interactions outside the window the model
        reads (an item dropped from the window is unseen, so it can be recommended)."""
        k = whole_number("k", k, 1, MAX_K)
        exclude_seen = flag("exclude_seen", exclude_seen)
        subject = self.subject(user, history)
        scores = self._catalogue_scores(subject)
        if exclude_seen:
            scores = scores.masked_fill(subject.seen, float("-inf"))
        k = min(int(k), int(torch.isfinite(scores).sum()))
        values, indices = top_k(scores, k)  # ties: lower item index first, as in evaluation
        return self._ranking_frame(values, indices)

    def _ranking_frame(self, values: torch.Tensor, indices: torch.Tensor) -> pd.DataFrame:
        """A ranking as :meth:`recommend` shows it: rank, item, title, genres, score (and probability) for the
        catalogue ``indices`` (0-based, best first) and their scores ``values``."""
        items = (indices + 1).numpy()
        frame = pd.DataFrame(
            {
                "rank": np.arange(1, len(items) + 1),
                "item": self.lookup.raw_items(items),
                "title": self._titles[items],
                "genres": self._genres[items],
                "score": values.numpy(),
            }
        )
        if self.model.predicts_probability:
            frame["probability"] = torch.sigmoid(values).numpy()
        return frame

    @computes
    def catalogue_attention(self, user, k: int = 10, map_name: str | None = None, history=None) -> pd.DataFrame:
        """How the user's history is weighed for each of their top-``k`` recommendations, from one batched call
        (the model's ranking path where it has one): one row per (candidate, history item) with the weight of the
        map ``map_name`` (default: the first map over the history alone). ``history`` as in :meth:`recommend`."""
        recommended = self.recommend(user, k=k, history=history)
        subject = self.subject(user, history)
        window = subject.window.unsqueeze(0).to(self.device)
        items = torch.as_tensor([self.lookup.item(i) for i in recommended["item"]], device=self.device)
        user = torch.tensor([subject.index], device=self.device)
        maps = self.model.catalogue_attention(user, window, items)
        if len(items):  # one pair's forward declares the maps (names, shapes, which are distributions)
            with torch.no_grad():
                probe = self.model(Batch(user, items[:1], window), output_attentions=True)
            declared = check_output(self.model, probe, 1, maps=True).attentions or {}
            check_catalogue_maps(self.model, maps, declared, 1, len(items))
        over_history = [name for name, values in maps.items() if values.dim() == 3]
        if map_name is None and over_history:
            map_name = over_history[0]
        if map_name not in over_history:
            raise InvalidArgumentError(
                f"{self.model_name} has no attention map over the history alone named "
                f"{quote(map_name)}; its maps over the history: {', '.join(over_history) or 'none'}."
            )
        weights = maps[map_name][0].float().cpu().numpy()  # (k, T)
        positions = np.flatnonzero(window[0].cpu().numpy() != 0)
        past = window[0].cpu().numpy()[positions]
        return pd.DataFrame(
            {
                "rank": np.repeat(recommended["rank"].to_numpy(), len(positions)),
                "item": np.repeat(recommended["item"].to_numpy(), len(positions)),
                "history_position": np.tile(positions, len(items)),
                "history_item": np.tile(self.lookup.raw_items(past), len(items)),
                "history_title": np.tile(self._titles[past], len(items)),
                "weight": weights[:, positions].ravel(),
            }
        )

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
        """Every attention map of the pair, labelled; with ``attributions`` also integrated gradients, exact
        leave-one-out occlusion, agreement between attention and attributions, and the perturbation tests; with
        ``head_importance`` the score change when each head is masked (:mod:`recmodels.explain.heads`).
        ``attribute_to`` names the input taps IG moves (e.g. the history's alone); the others keep their values.
        ``history`` (item ids, oldest first) explains the pair with that history instead (a what-if; ``user`` None: a
        new user); for an item in it, the history is what came before the item."""
        attributions, perturbations = flag("attributions", attributions), flag("perturbations", perturbations)
        head_importance = flag("head_importance", head_importance)
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        taps = None if attribute_to is None else list(chosen_taps(self.model, attribute_to))
        started = time.perf_counter()
        subject, item_index = self.subject(user, history), self.lookup.item(item)
        before = self._history_before(subject, item_index)
        if int((before != 0).sum()) == 0:
            who = "The new user" if subject.user is None else f"User {quote(user)}"
            raise EmptyHistoryError(
                f"{who} has no interactions before item {quote(item)}, so there is no history to explain; pick an "
                "item they have not seen or one from later on."
            )
        # the pair's rank among the user's recommendations, the item itself not counted as seen
        excluded = subject.seen.clone()
        excluded[item_index - 1] = False
        catalogue = self._catalogue_scores(subject)
        rank = rank_among(catalogue, item_index - 1, excluded)
        lookup = time.perf_counter() - started

        pipeline = PairExplainer(
            self.lookup.names,
            self.thresholds,
            integrated_gradients=IntegratedGradients(n_steps, internal_batch_size, taps=taps) if attributions else None,
            leave_one_out=LeaveOneOut() if attributions else None,
            perturbations=PerturbationTests() if attributions and perturbations else None,
        )
        batch = Batch(torch.tensor([subject.index]), torch.tensor([item_index]), before.unsqueeze(0)).to(self.device)
        explanation = pipeline.explain(
            self.model, batch, user=subject.label, item=str(item), rank=rank, excluded=excluded
        )
        explanation.timings["maps"] += lookup
        if head_importance:
            started = time.perf_counter()
            explanation.head_importance = pair_head_importance(self.model, batch)
            explanation.timings["head_importance"] = time.perf_counter() - started
        explanation.sentences = sentences(
            explanation, self.model, self.data.dataset.n_items, subject.user, written=subject.written is not None
        )
        return explanation

    @computes
    def attribute_top(
        self,
        user,
        k: int = 10,
        n_steps: int = 50,
        internal_batch_size: int | None = None,
        attribute_to=None,
        history=None,
    ) -> pd.DataFrame:
        """Integrated gradients for the user's top-``k`` recommendations in one batched call (to the taps named in
        ``attribute_to``, the others held, or to all). One row per (item, tap unit) with the attribution, plus
        each item's delta. ``history`` as in :meth:`recommend`."""
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        if not self.model.input_taps():
            raise InvalidArgumentError(
                f"{self.model.title} has no input embeddings (input taps) for integrated gradients to attribute its "
                "scores to; attribute the recommendations of a model that reads embeddings, such as DIN or SASRec."
            )
        taps = None if attribute_to is None else list(chosen_taps(self.model, attribute_to))
        subject = self.subject(user, history)
        top = self.recommend(user, k=whole_number("k", k, 1, 1_000), history=history)
        items = torch.as_tensor([self.lookup.item(i) for i in top["item"]])
        window = subject.window.unsqueeze(0).expand(len(items), -1)
        batch = Batch(torch.full((len(items),), subject.index), items, window).to(self.device)
        return (
            IntegratedGradients(n_steps, internal_batch_size, taps=taps)
            .attribute(self.model, batch)
            .to_frame(list(top["item"]))
        )

    # ------------------------------------------------------------------ over many users (DatasetViews)
    def diagnostics(
        self,
        users=None,
        batch_size: int = 256,
        progress: bool = False,
        head_users: int = 200,
        head_pairs: str = "top1",
        tiny: float = 1e-3,
        seed: int = 0,
        sample: int | None = DEFAULT_SAMPLE,
    ) -> DiagnosticsReport:
        """Collapse statistics over users with bootstrap intervals; see :meth:`DatasetViews.diagnostics`."""
        return self.views.diagnostics(
            users=users,
            batch_size=batch_size,
            progress=progress,
            head_users=head_users,
            head_pairs=head_pairs,
            tiny=tiny,
            seed=seed,
            sample=sample,
        )

    def planted_region_recovery(
        self,
        map_name: str | None = None,
        batch_size: int = 256,
        ig_rows: int = 256,
        progress: bool = False,
        part: str = "test",
    ) -> dict:
        """Region attention and IG against each simulated shopper's planted cells (the test interactions, or the
        valid ones with ``part="valid"``); see :meth:`DatasetViews.planted_region_recovery`."""
        return self.views.planted_region_recovery(
            map_name=map_name, batch_size=batch_size, ig_rows=ig_rows, progress=progress, part=part
        )

    @property
    def recorded_recovery(self) -> dict | None:
        """The planted-cell recovery written into the checkpoint when it was trained (None if none)."""
        return self.views.recorded_recovery

    def training_history(self) -> pd.DataFrame:
        """Per-epoch loss, valid metrics and attention statistics, from the checkpoint, in long format."""
        return self.views.training_history()
