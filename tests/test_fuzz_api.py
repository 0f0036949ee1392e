"""Fuzz the service boundary: every argument of every type ends in a result or one RecModelsError sentence.

Bounded: Hypothesis with a fixed budget and derandomised, on the tiny synthetic dataset.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from recmodels.device import resolve_device
from recmodels.errors import InvalidArgumentError, RecModelsError, UnknownUserError
from recmodels.models import model_class
from recmodels.serving.service import RecService
from recmodels.train import seed_everything
from recmodels.vision.images import ImageWarning, load_image

FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(float("nan")),
    st.just("1" * 1_000_000),
    st.just(np.int64(3)),
    st.just(np.float32(2.0)),
    st.just(torch.tensor(3)),
    st.just(object()),
)


class Hostile:
    """An id whose __str__ and __repr__ raise: messages must not fall over it."""

    def __str__(self):
        raise RuntimeError("boom")

    __repr__ = __str__


@pytest.fixture(scope="module")
def service(tiny_data) -> RecService:
    seed_everything(0)
    model = model_class("din").from_data(tiny_data).eval()
    return RecService(model, tiny_data, device="cpu")


def assert_one_sentence(error: BaseException) -> None:
    assert isinstance(error, RecModelsError), f"untyped {type(error).__name__}: {error}"
    message = str(error)
    assert message and "\n" not in message and len(message) < 400, message
    assert "Traceback" not in message


def call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the property under test is what is raised
        assert_one_sentence(error)
        return None


@FUZZ
@given(user=ANYTHING)
def test_any_user_id_gives_a_result_or_one_sentence(service, user):
    for method in (service.history, service.recommend, service.planted_regions):
        call(method, user)


# a written history: the tiny catalogue's ids (1..40), strangers, repeats, and anything at all
HISTORIES = st.one_of(
    ANYTHING,
    st.lists(st.one_of(st.integers(-3, 45).map(str), st.integers(0, 45), st.sampled_from(["", "x", "1 ", None])),
             max_size=16),
)  # fmt: skip


@FUZZ
@given(user=st.one_of(st.none(), st.sampled_from(["1", "2", "30"]), ANYTHING), history=HISTORIES)
def test_any_written_history_gives_a_result_or_one_sentence(service, user, history):
    recommended = call(service.recommend, user, k=5, history=history)
    if recommended is not None:
        assert recommended.score.map(math.isfinite).all()
        written = {str(item) for item in history} if history is not None else set()
        assert written.isdisjoint(recommended.item), "the written history's items count as seen"
        explained = call(service.explain, user, recommended.item[0], history=history, perturbations=False)
        if explained is not None:
            assert math.isfinite(explained.score)
    call(service.attribute_top, user, k=2, n_steps=4, history=history)
    call(service.catalogue_attention, user, k=2, history=history)


def test_ids_are_named_as_given_and_cut(service):
    assert len(service.history(3)) == len(service.history("3"))  # whole numbers are the dataset's string ids
    assert service.recommend(np.int64(3), k=2)["item"].tolist() == service.recommend("3", k=2)["item"].tolist()
    with pytest.raises(UnknownUserError) as caught:
        service.recommend("x" * 1_000_000)
    assert len(str(caught.value)) < 200 and "…" in str(caught.value)
    for bad in (3.0, True, [3], b"3", Hostile()):
        with pytest.raises(InvalidArgumentError, match="user ids are strings or whole numbers"):
            service.recommend(bad)
    with pytest.raises(InvalidArgumentError, match="Pass a user id, or history="):  # None is a new user's
        service.recommend(None)


@FUZZ
@given(k=ANYTHING, exclude_seen=ANYTHING)
def test_any_k_and_flag_give_a_ranking_or_one_sentence(service, k, exclude_seen):
    frame = call(service.recommend, "3", k=k, exclude_seen=exclude_seen)
    if frame is not None:
        assert isinstance(frame, pd.DataFrame)
        assert 0 < len(frame) <= int(k)
        assert np.isfinite(frame["score"]).all() and frame["score"].is_monotonic_decreasing


@FUZZ
@given(n_steps=ANYTHING, internal_batch_size=ANYTHING, attributions=st.sampled_from([True, False, 1, "yes"]))
def test_any_explain_arguments_give_an_explanation_or_one_sentence(service, n_steps, internal_batch_size, attributions):
    if isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps > 64:
        n_steps = 64  # valid but slow; the bound itself is tested below
    result = call(
        service.explain,
        "3",
        "7",
        attributions=attributions,
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
        perturbations=False,
    )
    if result is not None:
        assert math.isfinite(result.score)
        if attributions is True:
            assert result.delta is not None and math.isfinite(result.delta)


@pytest.mark.parametrize(
    "n_steps, accepted",
    [(0, False), (-1, False), (1, True), (2_000, True), (2_001, False), (2.0, False), ("50", False), (True, False)],
)
@pytest.mark.slow
def test_n_steps_bounds(service, n_steps, accepted):
    if accepted:
        assert service.explain("3", "7", n_steps=n_steps, perturbations=False).n_steps == n_steps
    else:
        with pytest.raises(InvalidArgumentError, match="n_steps must be a whole number from 1 to 2000"):
            service.explain("3", "7", n_steps=n_steps)


@FUZZ
@given(
    users=st.one_of(ANYTHING, st.lists(st.sampled_from(["1", "2", 3, "nobody", None]), max_size=4)), batch_size=ANYTHING
)
def test_diagnostics_arguments(service, users, batch_size):
    report = call(service.diagnostics, users=users, batch_size=batch_size)
    if report is not None:
        assert report.rows["normalised_entropy"].between(0, 1 + 1e-6).all()


@pytest.mark.parametrize("users", [torch.tensor(3), np.int64(3), np.array("1")])
def test_a_single_id_that_claims_to_iterate_is_one_sentence(service, users):
    # found by the ci profile: a 0-d tensor has __iter__ but iterating it raises TypeError
    with pytest.raises(InvalidArgumentError, match="users must be a list of user ids"):
        service.diagnostics(users=users)


@pytest.fixture(scope="module")
def headed_service(tiny_data) -> RecService:
    """A model with heads (NRMS), so that head importance runs."""
    seed_everything(0)
    model = model_class("nrms").from_data(tiny_data, dim=16, heads=2).eval()
    return RecService(model, tiny_data, device="cpu")


@settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    head_users=st.one_of(st.integers(-2, 5), ANYTHING),
    head_pairs=st.one_of(st.sampled_from(["top1", "test"]), ANYTHING),
    tiny=st.one_of(st.floats(-1, 1), ANYTHING),
    seed=st.one_of(st.integers(-2, 3), ANYTHING),
)
def test_head_importance_arguments(headed_service, head_users, head_pairs, tiny, seed):
    report = call(
        headed_service.diagnostics,
        users=["1", "2", "3"],
        head_users=head_users,
        head_pairs=head_pairs,
        tiny=tiny,
        seed=seed,
    )
    if report is not None and report.head_importance is not None:
        assert np.isfinite(report.head_importance.rows["change"]).all()


@FUZZ
@given(flag=ANYTHING)
def test_explain_head_importance_flag(headed_service, flag):
    explanation = call(headed_service.explain, "3", "7", head_importance=flag, attributions=False, perturbations=False)
    if explanation is not None and flag is True:
        assert "self_attention" in explanation.head_importance


@FUZZ
@given(k=ANYTHING, n_steps=st.one_of(st.integers(-3, 12), ANYTHING))
def test_attribute_top_arguments(service, k, n_steps):
    if isinstance(k, int) and not isinstance(k, bool) and k > 5:
        k = 5
    frame = call(service.attribute_top, "3", k=k, n_steps=n_steps)
    if frame is not None:
        assert np.isfinite(frame["attribution"]).all()


@FUZZ
@given(
    attribute_to=st.one_of(ANYTHING, st.lists(st.sampled_from(["history_tap", "user_tap", "nope", "", 3]), max_size=3))
)
def test_attribute_to_names_taps_or_is_one_sentence(service, attribute_to):
    frame = call(service.attribute_top, "3", k=2, n_steps=4, attribute_to=attribute_to)
    if frame is not None:
        assert np.isfinite(frame["attribution"]).all()
        if attribute_to is not None:
            assert set(frame["tap"]) == set(attribute_to)
    explanation = call(
        service.explain, "3", "7", n_steps=4, perturbations=False, head_importance=False, attribute_to=attribute_to
    )
    if explanation is not None and attribute_to is not None:
        assert set(explanation.attributions) == set(attribute_to)


@FUZZ
@given(
    k=st.one_of(st.integers(-2, 6), ANYTHING),
    map_name=st.one_of(st.none(), st.sampled_from(["history", "nope"]), ANYTHING),
)
def test_catalogue_attention_arguments(service, k, map_name):
    frame = call(service.catalogue_attention, "3", k=k, map_name=map_name)
    if frame is not None:
        explained = service.explain("3", frame["item"].iloc[0], attributions=False, head_importance=False)
        first = frame[frame["rank"] == 1]
        # the batched weights are the ones the pair's own explanation shows
        history = explained.maps["history"]
        shown = history.values[history.mask]
        assert np.allclose(first["weight"].to_numpy(), shown, atol=1e-5)
        assert list(first["history_item"]) == list(explained.history["item"])


@pytest.fixture(scope="module")
def popular_service(tiny_data) -> RecService:
    """MostPopular: no embeddings, so nothing for integrated gradients to attribute to."""
    return RecService(model_class("mostpop").from_data(tiny_data).eval(), tiny_data, device="cpu")


@FUZZ
@given(k=ANYTHING, n_steps=ANYTHING, attribute_to=st.one_of(st.none(), ANYTHING))
def test_attribute_top_on_a_model_without_taps_is_one_sentence(popular_service, k, n_steps, attribute_to):
    with pytest.raises(RecModelsError) as caught:
        popular_service.attribute_top("3", k=k, n_steps=n_steps, attribute_to=attribute_to)
    assert_one_sentence(caught.value)
    with pytest.raises(InvalidArgumentError, match="MostPopular has no input embeddings .input taps. for integrated"):
        popular_service.attribute_top("3", k=2)


CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "din-ml100k"
NOT_A_PATH = ANYTHING.filter(lambda value: value is not None and not isinstance(value, str)) | st.sampled_from(
    ["", "   ", "\x00", "a\x00b"]
)


@FUZZ
@given(path=st.one_of(st.none(), ANYTHING), data_dir=NOT_A_PATH, image_dir=NOT_A_PATH)
def test_from_checkpoint_arguments_are_one_sentence(path, data_dir, image_dir):
    # nothing is read before the arguments are checked: these cost no data load
    for arguments in (
        {"path": path},
        {"path": CHECKPOINT, "data_dir": data_dir},
        {"path": CHECKPOINT, "image_dir": image_dir},
    ):
        with pytest.raises(RecModelsError) as caught:
            RecService.from_checkpoint(**arguments)
        assert_one_sentence(caught.value)
    for bad in (None, 5, b"checkpoints/din-ml100k", ""):
        with pytest.raises(InvalidArgumentError, match="^path must (be|name) a folder"):
            RecService.from_checkpoint(bad)
    with pytest.raises(
        InvalidArgumentError, match="^image_dir must be a folder, as a str or pathlib.Path .or None., got int '5'."
    ):
        RecService.from_checkpoint(CHECKPOINT, image_dir=5)


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "", "meta", 3, None, "cpu:0:1"])
def test_bad_devices_are_one_sentence(device):
    with pytest.raises(RecModelsError) as caught:
        resolve_device(device)
    assert_one_sentence(caught.value)


# ---------------------------------------------------------------- images: only allow-listed decoders run
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"


@pytest.mark.parametrize(
    "name, payload",
    [
        ("poster.png", EPS),  # an EPS named .png must never reach Ghostscript
        ("poster.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\n"),
        ("poster.png", b"\x00" * 10),
        ("poster.png", b""),
    ],
)
def test_images_outside_the_allow_list_are_refused_with_one_warning(tmp_path, monkeypatch, name, payload):
    from PIL import EpsImagePlugin

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Pillow's Ghostscript plugin was reached")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript, raising=False)
    path = tmp_path / name
    path.write_bytes(payload)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_image(path) is None
    assert [w.category for w in caught] == [ImageWarning]


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_real_images_in_other_formats_are_refused(tmp_path, fmt):
    path = tmp_path / "poster.png"
    Image.new("RGB", (16, 16), "red").save(path, format=fmt)
    with pytest.warns(ImageWarning, match="not a PNG, JPEG, GIF, WEBP or BMP image"):
        assert load_image(path) is None


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_allowed_formats_open_whatever_the_extension(tmp_path, fmt):
    path = tmp_path / "poster.jpg"
    Image.new("RGB", (16, 12), "red").save(path, format=fmt)
    image = load_image(path)
    assert image is not None and image.size == (16, 12) and image.mode == "RGB"
