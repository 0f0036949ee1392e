"""RecService: the one API the app calls. Users and items are named by the dataset's own ids.

A thin facade: it turns ids into indices and back, checks every argument at this boundary, and hands the
work to the parts that do it: :mod:`recmodels.explain` (the explanation pipeline and its views),
:mod:`recmodels.data.cache` (one dataset per process) and :mod:`recmodels.vision.region_report`; the dataset-level
calls live in :mod:`recmodels.service_dataset`.

One instance is safe to share across threads and Streamlit sessions: the model stays in eval mode and is never
modified after loading, attention perturbations are passed per call, and Captum's hooks go on a private copy
of the module tree (see :mod:`recmodels.explain.attributions`). Everything precomputed is built in the
constructor and only read afterwards.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .arguments import flag, identifier, optional_whole_number, whole_number
from .checkpoint import dataset_location, load_checkpoint, read_config
from .data import PART_NAMES, RecData
from .data.cache import load_data_cached
from .concurrency import computes
from .data.features import IDENTIFYING_USER_FIELDS
from .device import describe_device, resolve_device
from .errors import EmptyHistoryError, InvalidArgumentError, UnknownItemError, UnknownUserError, quote
from .eval.metrics import top_k
from .explain.attributions import chosen_taps
from .explain.collapse import CollapseThresholds
from .explain.explainers import IntegratedGradients, LeaveOneOut, PerturbationTests
from .explain.faithfulness import rank_among
from .explain.heads import pair_head_importance
from .explain.pipeline import PairExplainer
from .explain.views import AttributionView, Explanation, ItemNames, MapView
from .models import import_model_module
from .models.base import Batch
from .service_dataset import MAX_BATCH, MAX_K, DatasetViews

__all__ = ["RecService", "MapView", "AttributionView", "Explanation", "load_data_cached"]

PART_LABELS = {v: k for k, v in PART_NAMES.items()}
MAX_IG_STEPS = 2_000        # integrated-gradients steps per explanation


class RecService(DatasetViews):
    """Recommendations and explanations for one checkpoint on its dataset; the dataset-level figures
    (diagnostics, recovery, training history) come from :class:`~recmodels.service_dataset.DatasetViews`."""

    def __init__(self, model, config: dict, data: RecData, device: torch.device, path: Path | None = None,
                 thresholds: CollapseThresholds = CollapseThresholds()):
        self.model = model.eval()
        self.config = config
        self.data = data
        self.device = device
        self.path = path
        self.thresholds = thresholds
        dataset = data.dataset
        genres = [", ".join(g) for g in dataset.item_features["genres"]]
        self._names = ItemNames(
            raw_ids=dataset.item_ids,
            titles=np.array([""] + dataset.item_features["title"].astype(str).tolist(), dtype=object),
            genres=np.array([""] + genres, dtype=object))
        self._titles, self._genres = self._names.titles, self._names.genres
        self._all_items = torch.arange(1, dataset.n_items + 1, device=device)
        self._full_history = torch.as_tensor(data.full_history(np.arange(dataset.n_users + 1)))
        frame = dataset.interactions
        self._user_start = np.searchsorted(frame["user"].to_numpy(), np.arange(dataset.n_users + 2))
        self._image_paths = self._find_images()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path, device="auto", data_dir=None, image_dir=None, model_module=None) -> "RecService":
        """Load a checkpoint folder with its dataset; ``model_module`` names a module that registers the model
        first (a model kept in a plain file rather than an installed plugin)."""
        if model_module is not None:
            import_model_module(model_module)
        path = Path(path)
        config = read_config(path)
        dataset = config["dataset"]
        stored_data_dir, stored_image_dir = dataset_location(config, path)
        data = load_data_cached(dataset["name"], data_dir or stored_data_dir, image_dir or stored_image_dir,
                                dataset["split"], dataset["max_history"])
        device = resolve_device(device)
        model, config = load_checkpoint(path, device=device, data=data)
        return cls(model, config, data, device, path)

    # ------------------------------------------------------------------ facts
    @property
    def model_name(self) -> str:
        return self.config["model"]

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
        return self.config.get("metrics", {})

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
        return {"train": 1.0 - split.valid_fraction - split.test_fraction, "valid": split.valid_fraction,
                "test": split.test_fraction}

    @property
    def split_description(self) -> str:
        """The split as percentages, train/valid/test, e.g. "70/10/20 per user" or "70/10/20, global time cuts"."""
        shares = "/".join(f"{100 * share:.3g}" for share in self.split_fractions.values())
        return f"{shares}, global time cuts" if getattr(self.data.split, "mode", "per_user") == "global" \
            else f"{shares} per user"

    # ------------------------------------------------------------------ ids
    def _user(self, user) -> int:
        index = self.data.dataset.user_index(identifier("user", user))
        if index is None:
            raise UnknownUserError(f"User {quote(user)} is not in {self.dataset_name}; pick one from the user list.")
        return index

    def _item(self, item) -> int:
        index = self.data.dataset.item_index(identifier("item", item))
        if index is None:
            raise UnknownItemError(f"Item {quote(item)} is not in the {self.dataset_name} catalogue; pick an item "
                                   "from the recommendations or the history.")
        return index

    def _raw_items(self, indices) -> list[str]:
        return self._names.raw(indices)

    def _find_images(self) -> dict[int, Path]:
        folder = self.data.dataset.image_dir
        if folder is None or not Path(folder).is_dir():
            return {}
        from .vision.images import find_item_image
        found = {}
        for index, raw in enumerate(self.data.dataset.item_ids[1:], start=1):
            path = find_item_image(folder, raw)
            if path is not None:
                found[index] = path
        return found

    def _last_interactions(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each user's most recent item and the history strictly before it (the view training used)."""
        last_rows = self._user_start[users + 1] - 1
        return self.data.dataset.interactions["item"].to_numpy()[last_rows], self.data.histories(last_rows)

    # ------------------------------------------------------------------ browsing
    def users(self) -> pd.DataFrame:
        """Every user with the number of interactions and their features."""
        dataset = self.data.dataset
        counts = np.diff(self._user_start)[1:dataset.n_users + 1]
        frame = pd.DataFrame({"user": dataset.user_ids[1:], "interactions": counts})
        for column in dataset.user_features.columns:
            frame[column] = dataset.user_features[column].to_numpy()
        return frame

    def items(self) -> pd.DataFrame:
        """The catalogue: every item's own id, title and genres, in index order."""
        return pd.DataFrame({"item": self.data.dataset.item_ids[1:], "title": self._titles[1:],
                             "genres": self._genres[1:]})

    def history(self, user) -> pd.DataFrame:
        """The user's interactions in time order: item metadata, rating, time, split part and image."""
        index = self._user(user)
        start, stop = self._user_start[index], self._user_start[index + 1]
        frame = self.data.dataset.interactions.iloc[start:stop]
        items = frame["item"].to_numpy()
        return pd.DataFrame({
            "item": self._raw_items(items),
            "title": self._titles[items],
            "genres": self._genres[items],
            "rating": frame["rating"].to_numpy(),
            # timestamps are read as Unix seconds; one outside pandas' datetime range shows as NaT, not an error
            "time": pd.to_datetime(frame["timestamp"].to_numpy(), unit="s", utc=True, errors="coerce"),
            "part": [PART_LABELS[p] for p in self.data.part[start:stop]],
            "image": pd.Series([str(self._image_paths[i]) if i in self._image_paths else None for i in items],
                               dtype=object),  # None, not NaN, where an item has no image
        })

    def item_image(self, item):
        """The item's image as a PIL image, or None when it has none (or it cannot be read)."""
        path = self._image_paths.get(self._item(item))
        if path is None:
            return None
        from .vision.images import load_image
        return load_image(path)

    def planted_regions(self, user) -> list[int] | None:
        """Ground-truth grid cells a simulated shopper was planted to care about (None for real data)."""
        planted = self.data.dataset.extras.get("planted_regions")
        if not planted:
            return None
        return planted.get(str(user))

    def item_info(self, item) -> dict:
        index = self._item(item)
        return {"item": self.data.dataset.item_ids[index], "title": self._titles[index],
                "genres": self._genres[index], "image": str(self._image_paths[index]) if index in self._image_paths
                else None}

    # ------------------------------------------------------------------ recommendations
    def _seen_mask(self, user_index: int) -> torch.Tensor:
        start, stop = self._user_start[user_index], self._user_start[user_index + 1]
        seen = torch.zeros(self.data.dataset.n_items, dtype=torch.bool)
        items = self.data.dataset.interactions["item"].to_numpy()[start:stop]
        seen[torch.tensor(items) - 1] = True
        return seen

    @torch.no_grad()
    def _catalogue_scores(self, user_index: int) -> torch.Tensor:
        users = torch.tensor([user_index], device=self.device)
        history = self._full_history[user_index:user_index + 1].to(self.device)
        return self.model.score_items(users, history, self._all_items)[0].float().cpu()

    @computes
    def recommend(self, user, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` items for the user, scored with their full history, as rank, item, title, score."""
        k = whole_number("k", k, 1, MAX_K)
        exclude_seen = flag("exclude_seen", exclude_seen)
        index = self._user(user)
        scores = self._catalogue_scores(index)
        if exclude_seen:
            scores = scores.masked_fill(self._seen_mask(index), float("-inf"))
        k = min(int(k), int(torch.isfinite(scores).sum()))
        values, indices = top_k(scores, k)  # ties: lower item index first, as in evaluation
        items = (indices + 1).numpy()
        frame = pd.DataFrame({"rank": np.arange(1, k + 1), "item": self._raw_items(items),
                              "title": self._titles[items], "genres": self._genres[items],
                              "score": values.numpy()})
        if self.model.predicts_probability:
            frame["probability"] = torch.sigmoid(values).numpy()
        return frame

    @computes
    def catalogue_attention(self, user, k: int = 10, map_name: str | None = None) -> pd.DataFrame:
        """How the user's history is weighed for each of their top-``k`` recommendations, from one batched call
        (the model's ranking path where it has one): one row per (candidate, history item) with the weight of the
        map ``map_name`` (default: the first map over the history alone)."""
        recommended = self.recommend(user, k=k)
        index = self._user(user)
        history = self._full_history[index:index + 1].to(self.device)
        items = torch.as_tensor([self._item(i) for i in recommended["item"]], device=self.device)
        maps = self.model.catalogue_attention(torch.tensor([index], device=self.device), history, items)
        over_history = [name for name, values in maps.items() if values.dim() == 3]
        if map_name is None and over_history:
            map_name = over_history[0]
        if map_name not in over_history:
            raise InvalidArgumentError(f"{self.model_name} has no attention map over the history alone named "
                                       f"{quote(map_name)}; its maps over the history: {', '.join(over_history) or 'none'}.")
        weights = maps[map_name][0].float().cpu().numpy()                                  # (k, T)
        positions = np.flatnonzero(history[0].cpu().numpy() != 0)
        past = history[0].cpu().numpy()[positions]
        return pd.DataFrame({
            "rank": np.repeat(recommended["rank"].to_numpy(), len(positions)),
            "item": np.repeat(recommended["item"].to_numpy(), len(positions)),
            "history_position": np.tile(positions, len(items)),
            "history_item": np.tile(self._raw_items(past), len(items)),
            "history_title": np.tile(self._titles[past], len(items)),
            "weight": weights[:, positions].ravel()})

    # ------------------------------------------------------------------ explanations
    def _history_for(self, user_index: int, item_index: int) -> torch.Tensor:
        """The full history, or for an item the user has, the history strictly before that interaction."""
        start, stop = self._user_start[user_index], self._user_start[user_index + 1]
        items = self.data.dataset.interactions["item"].to_numpy()[start:stop]
        match = np.flatnonzero(items == item_index)
        if match.size:
            return torch.as_tensor(self.data.histories(np.array([start + match[-1]]))[0])
        return self._full_history[user_index].clone()

    @computes
    def explain(self, user, item, attributions: bool = True, n_steps: int = 50, internal_batch_size: int | None = None,
                perturbations: bool = True, head_importance: bool = True, attribute_to=None) -> Explanation:
        """Every attention map of the pair, labelled; with ``attributions`` also integrated gradients, exact
        leave-one-out occlusion, agreement between attention and attributions, and the perturbation tests; with
        ``head_importance`` the score change when each head is masked (:mod:`recmodels.explain.heads`).
        ``attribute_to`` names the input taps IG moves (e.g. the history's alone); the others keep their values."""
        attributions, perturbations = flag("attributions", attributions), flag("perturbations", perturbations)
        head_importance = flag("head_importance", head_importance)
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        taps = None if attribute_to is None else list(chosen_taps(self.model, attribute_to))
        started = time.perf_counter()
        user_index, item_index = self._user(user), self._item(item)
        history = self._history_for(user_index, item_index)
        if int((history != 0).sum()) == 0:
            raise EmptyHistoryError(f"User {quote(user)} has no interactions before item {quote(item)}, so there is no "
                                    "history to explain; pick an item they have not seen or one from later on.")
        # the pair's rank among the user's recommendations, the item itself not counted as seen
        excluded = self._seen_mask(user_index)
        excluded[item_index - 1] = False
        catalogue = self._catalogue_scores(user_index)
        rank = rank_among(catalogue, item_index - 1, excluded)
        lookup = time.perf_counter() - started

        pipeline = PairExplainer(
            self._names, self.thresholds,
            integrated_gradients=IntegratedGradients(n_steps, internal_batch_size, taps=taps) if attributions else None,
            leave_one_out=LeaveOneOut() if attributions else None,
            perturbations=PerturbationTests() if attributions and perturbations else None)
        batch = Batch(torch.tensor([user_index]), torch.tensor([item_index]), history.unsqueeze(0)).to(self.device)
        explanation = pipeline.explain(self.model, batch, user=str(user), item=str(item), rank=rank, excluded=excluded)
        explanation.timings["maps"] += lookup
        if head_importance:
            started = time.perf_counter()
            explanation.head_importance = pair_head_importance(self.model, batch)
            explanation.timings["head_importance"] = time.perf_counter() - started
        return explanation

    @computes
    def attribute_top(self, user, k: int = 10, n_steps: int = 50, internal_batch_size: int | None = None,
                      attribute_to=None) -> pd.DataFrame:
        """Integrated gradients for the user's top-``k`` recommendations in one batched call (to the taps named in
        ``attribute_to``, the others held, or to all). One row per (item, tap unit) with the attribution, plus
        each item's delta."""
        n_steps = whole_number("n_steps", n_steps, 1, MAX_IG_STEPS)
        internal_batch_size = optional_whole_number("internal_batch_size", internal_batch_size, 1, MAX_BATCH)
        taps = None if attribute_to is None else list(chosen_taps(self.model, attribute_to))
        user_index = self._user(user)
        top = self.recommend(user, k=whole_number("k", k, 1, 1_000))
        items = torch.as_tensor([self._item(i) for i in top["item"]])
        history = self._full_history[user_index].unsqueeze(0).expand(len(items), -1)
        batch = Batch(torch.full((len(items),), user_index), items, history).to(self.device)
        return IntegratedGradients(n_steps, internal_batch_size, taps=taps).attribute(self.model, batch).to_frame(
            list(top["item"]))
