"""Our DIN against DeepCTR-Torch 0.3.0's DIN, side by side in one run (issue 15).

The peer has the shipped DIN's sizes and reads the same ml-100k ids and features where DeepCTR can take them
(history items carry their id and first genre: DeepCTR's history takes one id per field, not a multi-hot); its
weights are random, as only its speed is measured. Rounds alternate ours, the peer and a plain torch DIN (the
floor) on the most active user with their own history, and the table gives medians and ratios:

    python tools/bench_peer.py [--rounds 15] [--threads 2] [--write-docs docs/benchmarks.md]

Needs the bench extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import itertools

from recmodels.checkpoint.io import dataset_location, load_checkpoint, read_config
from recmodels.data.cache import load_data_cached
from recmodels.errors import RecModelsError
from recmodels.explain.attributions import integrated_gradients
from recmodels.formatting import markdown_table, text_table, write_between_markers
from recmodels.models import Batch

START, END = "<!-- bench-peer:start -->", "<!-- bench-peer:end -->"
CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so a connection is refused at once
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy")


class PeerMissingError(RecModelsError, ImportError):
    """deepctr-torch (or what it imports) is not installed."""


# ---------------------------------------------------------------------------------------------- the peer package
def closed_proxy():
    """A context in which every HTTP(S) request goes to a closed local port, and so fails at once."""
    return mock.patch.dict(
        os.environ, {name: "" if name.lower() == "no_proxy" else CLOSED_PORT_PROXY for name in PROXY_VARIABLES}
    )


def import_deepctr():
    """deepctr_torch, imported without waiting on the network: on import it starts a non-daemon thread that asks
    PyPI for a newer version, which through the closed proxy fails at once; the thread is joined before the proxy
    goes, and its "check manually" line is dropped."""
    before = set(threading.enumerate())
    try:
        with closed_proxy(), contextlib.redirect_stdout(io.StringIO()):
            module = importlib.import_module("deepctr_torch")
            for thread in set(threading.enumerate()) - before:
                if not thread.daemon:
                    thread.join(timeout=10)
    except ImportError as error:
        raise PeerMissingError(
            f"deepctr-torch is not installed ({error.name or 'deepctr_torch'} is missing), so "
            "there is no peer to compare with; install the bench extra: pip install -e .[bench]"
        ) from None
    return module


# ---------------------------------------------------------------------------------------------- building the peer
class HistoryTap(nn.Module):
    """Identity on the history vectors, unless ``fed`` holds vectors to use in their place (Captum's inputs).
    DeepCTR's candidate and history share one embedding table and its attention takes an integer ``keys_length``,
    so Captum can reach the history's vectors alone only here."""

    def __init__(self):
        super().__init__()
        self.fed: torch.Tensor | None = None

    def forward(self, keys: torch.Tensor) -> torch.Tensor:
        return keys if self.fed is None else self.fed


class TappedAttention(nn.Module):
    """DeepCTR's attention layer with the history vectors (its keys) passing through a :class:`HistoryTap`."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.inner, self.tap = attention, HistoryTap()

    def forward(self, query, keys, keys_length):
        return self.inner(query, self.tap(keys), keys_length)


def peer_columns(deepctr, spec: dict, dim: int, history_length: int, genres_per_item: int) -> list:
    """DeepCTR feature columns for our DIN's features; history items share the candidate's id and genre tables."""
    DenseFeat, SparseFeat, VarLenSparseFeat = (
        deepctr.inputs.DenseFeat,
        deepctr.inputs.SparseFeat,
        deepctr.inputs.VarLenSparseFeat,
    )
    n_genres = len(spec["genre_names"]) + 1  # 0 is padding
    user = [SparseFeat("user", spec["n_users"] + 1, dim)] + [
        SparseFeat(name, size, dim) for name, size in zip(spec["user_field_names"], spec["user_field_sizes"])
    ]
    item = [
        SparseFeat("item_id", spec["n_items"] + 1, dim),
        SparseFeat("genre", n_genres, dim),
        SparseFeat("decade", spec["n_years"], dim),
        VarLenSparseFeat(SparseFeat("genres", n_genres, dim, embedding_name="genre"), genres_per_item, "mean"),
    ]
    dense = [DenseFeat(name, 1) for name in ("user_mean_rating", "item_mean_rating", "item_popularity")]
    history = [
        VarLenSparseFeat(
            SparseFeat(f"hist_{name}", size, dim, embedding_name=name), history_length, length_name="seq_length"
        )
        for name, size in (("item_id", spec["n_items"] + 1), ("genre", n_genres))
    ]
    return user + item + dense + history


def build_peer(deepctr, ours, config: dict, history_length: int, seed: int = 0) -> nn.Module:
    """DeepCTR's DIN at our DIN's sizes, random weights (normal embeddings at our init_std, default Linear init:
    DeepCTR's own 1e-4 init would make every score and attention weight nearly constant)."""
    hparams = config.hparams
    if hparams.get("attention", "softmax") != "softmax":
        raise RecModelsError("bench_peer compares softmax attention only; pick a DIN checkpoint that has it.")
    columns = peer_columns(deepctr, config.spec, hparams["dim"], history_length, int(ours.item_genres.sum(1).max()))
    peer = deepctr.models.DIN(
        columns,
        ["item_id", "genre"],
        dnn_hidden_units=tuple(hparams["hidden"]),
        dnn_activation="prelu",
        att_hidden_size=(hparams["attention_hidden"],),
        att_activation="relu",
        att_weight_normalization=True,
        seed=seed,
    )
    torch.manual_seed(seed)
    for module in peer.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=hparams["init_std"])
        elif isinstance(module, nn.Linear):
            module.reset_parameters()
    peer.attention = TappedAttention(peer.attention)
    return peer.eval()


def first_genres(multi_hot: torch.Tensor, width: int) -> torch.Tensor:
    """(N, width) genre ids (1-based, 0-padded) from (N, G) multi-hot rows, in genre order."""
    order = torch.sort(multi_hot, dim=1, descending=True, stable=True)
    return ((order.indices[:, :width] + 1) * (order.values[:, :width] > 0)).float()


def peer_inputs(peer, ours, user: int, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """DeepCTR's input matrix, one row per candidate, for ``user`` with ``history`` (T,) from our model's tables."""
    rows = len(items)
    genres_per_item = peer.feature_index["genres"][1] - peer.feature_index["genres"][0]
    user_fields = ours.user_fields[user].float()
    values = {
        "user": torch.full((rows, 1), float(user)),
        "item_id": items.float().unsqueeze(1),
        "genre": first_genres(ours.item_genres[items], 1),
        "decade": ours.item_year[items].float().unsqueeze(1),
        "genres": first_genres(ours.item_genres[items], genres_per_item),
        "user_mean_rating": ours.user_mean_rating[user].expand(rows, 1),
        "item_mean_rating": ours.item_mean_rating[items].unsqueeze(1),
        "item_popularity": ours.item_popularity[items].unsqueeze(1),
        "hist_item_id": history.float().expand(rows, -1),
        "hist_genre": first_genres(ours.item_genres[history], 1).T.expand(rows, -1),
        "seq_length": torch.full((rows, 1), float((history != 0).sum())),
        **{name: user_fields[i].expand(rows, 1) for i, name in enumerate(ours.user_field_labels[1:])},
    }
    return torch.cat([values[name] for name in peer.feature_index], 1)  # DeepCTR's columns follow this order


# ---------------------------------------------------------------------------------------------- the peer's operations
@torch.no_grad()
def peer_rank(peer, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The peer's score of every row: one forward, or forwards of ``batch_size`` rows."""
    step = batch_size or len(x)
    return torch.cat([peer(x[start : start + step]) for start in range(0, len(x), step)]).squeeze(-1)


@torch.no_grad()
def output_of(module: nn.Module, peer, x: torch.Tensor) -> torch.Tensor:
    """What ``module`` returns during the peer's forward over ``x``, caught by a forward hook removed after."""
    captured = []
    handle = module.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        peer(x)
    finally:
        handle.remove()
    return captured[0]


def peer_attention(peer, x: torch.Tensor) -> torch.Tensor:
    """(rows, T) attention weights of every row: the scores of the peer's activation unit, masked and normalised
    as its attention layer does (positions past ``keys_length`` get no weight)."""
    scores = output_of(peer.attention.inner.local_att, peer, x).squeeze(-1)
    start = peer.feature_index["seq_length"][0]
    valid = torch.arange(scores.shape[1]) < x[:, start : start + 1].long()
    return torch.softmax(scores.masked_fill(~valid, -(2**32) + 1), -1)


def history_vectors(peer, x: torch.Tensor) -> torch.Tensor:
    """The history vectors the tap sees for each row, (rows, T, E)."""
    return output_of(peer.attention.tap, peer, x)


def scores_with_history(peer, vectors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The peer's scores of the rows ``x`` with ``vectors`` in place of their history vectors."""
    peer.attention.tap.fed = vectors
    try:
        return peer(x).squeeze(-1)
    finally:
        peer.attention.tap.fed = None


def peer_integrated_gradients(peer, x: torch.Tensor, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum IG of each row's score to its history vectors (baseline: zero vectors, the rest held):
    (attributions (rows, T), completeness delta (rows,))."""
    from captum.attr import IntegratedGradients

    vectors = history_vectors(peer, x)
    explainer = IntegratedGradients(lambda v, rows: scores_with_history(peer, v, rows))
    attributions, delta = explainer.attribute(
        vectors,
        baselines=torch.zeros_like(vectors),
        n_steps=n_steps,
        additional_forward_args=(x,),
        method="gausslegendre",
        return_convergence_delta=True,
    )
    return attributions.sum(-1).detach(), delta.detach()


# ---------------------------------------------------------------------------------------------- the floor
class PlainDIN(nn.Module):
    """The floor: DIN's arithmetic over already embedded rows and nothing else: [q, k, q - k, q * k] -> H -> 1 on
    every (row, history) pair, softmax over the valid history, the weighted sum, the MLP on [context; interest; q]."""

    def __init__(self, item_dim: int, attention_hidden: int, hidden: tuple[int, ...], context: int):
        super().__init__()
        self.activation = nn.Sequential(
            nn.Linear(4 * item_dim, attention_hidden), nn.ReLU(), nn.Linear(attention_hidden, 1, bias=False)
        )
        widths = [context + 2 * item_dim, *hidden]
        layers = [m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.PReLU(b))]
        self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, query, keys, mask, context) -> tuple[torch.Tensor, torch.Tensor]:
        q = query.unsqueeze(1).expand_as(keys)
        scores = self.activation(torch.cat([q, keys, q - keys, q * keys], -1)).squeeze(-1)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
        interest = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
        return self.mlp(torch.cat([context, interest, query], -1)).squeeze(-1), weights


def floor_rows(ours, history: torch.Tensor, rows: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(query, keys, mask, context): random embedded rows of our DIN's widths, each with the user's history mask."""
    generator = torch.Generator().manual_seed(seed)
    context = ours.mlp[0].in_features - 2 * ours.item_dim
    return (
        torch.randn(rows, ours.item_dim, generator=generator),
        torch.randn(rows, history.shape[0], ours.item_dim, generator=generator),
        (history != 0).expand(rows, -1),
        torch.randn(rows, context, generator=generator),
    )


@torch.no_grad()
def floor_forward(floor: PlainDIN, rows: tuple[torch.Tensor, ...]):
    return floor(*rows)


def floor_forward_backward(floor: PlainDIN, rows: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Forward and backward to the history vectors, as IG does for every interpolated row."""
    keys = rows[1].detach().requires_grad_(True)
    floor(rows[0], keys, *rows[2:])[0].sum().backward()
    return keys.grad


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class Setup:
    ours: nn.Module
    peer: nn.Module
    floor: PlainDIN
    user: int
    history: torch.Tensor  # (T,)
    items: torch.Tensor  # (C,) the catalogue ranked


def load_setup(deepctr, checkpoint: Path, n_items: int | None = None) -> Setup:
    """Our DIN and the peer at its sizes, and the most active user of the checkpoint's data with their own history
    (as ``python -m recmodels bench`` picks them)."""
    config = read_config(checkpoint)
    data = load_data_cached(
        config.dataset.name, *dataset_location(config, checkpoint), config.dataset.split, config.dataset.max_history
    )
    ours, _ = load_checkpoint(checkpoint, data=data)
    counts = np.bincount(data.dataset.interactions["user"].to_numpy(), minlength=data.dataset.n_users + 1)
    user = int(np.argmax(counts[1:])) + 1
    history = torch.as_tensor(data.full_history(np.array([user]))[0])
    peer = build_peer(deepctr, ours, config, len(history))
    floor = PlainDIN(
        ours.item_dim,
        config.hparams["attention_hidden"],
        tuple(config.hparams["hidden"]),
        ours.mlp[0].in_features - 2 * ours.item_dim,
    )
    items = torch.arange(1, (n_items or data.dataset.n_items) + 1)
    return Setup(ours.eval(), peer, floor.eval(), user, history, items)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def operations(setup: Setup, n_steps: int, peer_batches: list[int]) -> dict[str, dict]:
    """Each table row's callables by system; rows without ours or a floor share those of the first row."""
    ours, peer, floor, history, items = setup.ours, setup.peer, setup.floor, setup.history, setup.items
    user = torch.tensor([setup.user])
    with torch.no_grad():
        top = items[torch.topk(ours.score_items(user, history.unsqueeze(0), items)[0], min(10, len(items))).indices]
    top_batch = Batch(user.expand(len(top)), top, history.expand(len(top), -1))
    x_all, x_top = (peer_inputs(peer, ours, setup.user, history, rows) for rows in (items, top))
    catalogue_rows, ig_rows = floor_rows(ours, history, len(items)), floor_rows(ours, history, n_steps * len(top))
    rank = f"rank {len(items)} items"
    return {
        rank: {
            "ours": lambda: ours.score_items(user, history.unsqueeze(0), items),
            "peer": lambda: peer_rank(peer, x_all),
            "floor": lambda: floor_forward(floor, catalogue_rows),
        },
        **{
            f"{rank} (peer in batches of {size})": {"peer": lambda size=size: peer_rank(peer, x_all, size)}
            for size in peer_batches
            if size < len(items)
        },
        f"attention maps, {len(items)} items": {
            "ours": lambda: ours.catalogue_attention(user, history.unsqueeze(0), items),
            "peer": lambda: peer_attention(peer, x_all),
            "floor": lambda: floor_forward(floor, catalogue_rows),
        },
        f"IG top-{len(top)}, history (n_steps={n_steps})": {
            "ours": lambda: integrated_gradients(ours, top_batch, n_steps=n_steps, taps=["history_tap"]),
            "peer": lambda: peer_integrated_gradients(peer, x_top, n_steps),
            "floor": lambda: floor_forward_backward(floor, ig_rows),
        },
    }


def interleaved_medians(table: dict[str, dict], rounds: int) -> dict[str, dict[str, float]]:
    """Median ms of every callable; each round runs every row once, ours and the peer taking turns to go first
    so that neither always meets a warm (or a cold) cache."""
    for systems in table.values():  # warm-up: first calls allocate and pick kernels
        for fn in systems.values():
            fn()
    samples = {row: {name: [] for name in systems} for row, systems in table.items()}
    for round_index in range(rounds):
        for row, systems in table.items():
            first_two = ("ours", "peer") if round_index % 2 == 0 else ("peer", "ours")
            for name in (name for name in (*first_two, "floor") if name in systems):
                start = time.perf_counter()
                systems[name]()
                samples[row][name].append((time.perf_counter() - start) * 1000)
    return {
        row: {name: statistics.median(values) for name, values in by_name.items()} for row, by_name in samples.items()
    }


def result_rows(medians: dict[str, dict[str, float]]) -> list[dict]:
    """One row per operation with ms and ratios, formatted (rows without ours or a floor take the first row's)."""
    first = next(iter(medians.values()))
    rows = []
    for operation, ms in medians.items():
        ours, peer, floor = ms.get("ours", first["ours"]), ms["peer"], ms.get("floor", first["floor"])
        rows.append(
            {
                "operation": operation,
                "ours": f"{ours:.2f}",
                "peer": f"{peer:.2f}",
                "floor": f"{floor:.2f}",
                "peer_vs_ours": f"x{peer / ours:.1f}",
                "ours_vs_floor": f"x{ours / floor:.2f}",
                "peer_vs_floor": f"x{peer / floor:.2f}",
            }
        )
    return rows


COLUMNS = ["operation", "ours", "peer", "floor", "peer_vs_ours", "ours_vs_floor", "peer_vs_floor"]
HEADERS = ["operation", "ours ms", "DeepCTR-Torch ms", "floor ms", "peer / ours", "ours / floor", "peer / floor"]


def notes(setup: Setup, args, command: str) -> str:
    return (
        f"`{command}`: torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.rounds} interleaved "
        f"rounds, medians; user {setup.user} (the most active) with their own history of "
        f"{int((setup.history != 0).sum())} items. Ours: `{args.checkpoint.name}` ({parameter_count(setup.ours):,} "
        "parameters). Peer: DeepCTR-Torch 0.3.0's DIN at the same sizes "
        f"({parameter_count(setup.peer):,} parameters, random weights: timings only); maps by a forward hook, IG "
        "by Captum through an identity tap on the history vectors. Floor: a plain torch DIN over the same rows, "
        "already embedded, one batched forward (forward+backward over every IG step's rows); it runs the "
        "activation unit on every (candidate, history item) pair, where ours splits its first layer, so ours can "
        "go below it."
    )


def command_line(argv: list[str]) -> str:
    """The command as run, without where it wrote (the docs page names itself)."""
    shown = list(argv)
    if "--write-docs" in shown:
        at = shown.index("--write-docs")
        del shown[at : at + 2]
    return " ".join(["python tools/bench_peer.py", *shown])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=REPO / "checkpoints" / "din-ml100k")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--n-steps", type=int, default=50, help="IG steps, the same for both")
    parser.add_argument("--peer-batches", default="256,1024", help="comma-separated batch sizes for the peer's ranking")
    parser.add_argument("--items", type=int, help="rank only the first N items (default: all)")
    parser.add_argument(
        "--write-docs",
        type=Path,
        metavar="PAGE",
        help="write the table between the bench-peer markers of PAGE (docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        deepctr = import_deepctr()
    except PeerMissingError as error:
        raise SystemExit(str(error)) from None
    setup = load_setup(deepctr, args.checkpoint, args.items)
    batches = [int(size) for size in args.peer_batches.split(",") if size.strip()]
    rows = result_rows(interleaved_medians(operations(setup, args.n_steps, batches), args.rounds))
    about = notes(setup, args, command_line(sys.argv[1:] if argv is None else argv))
    print("\n" + text_table(rows, COLUMNS, HEADERS) + "\n\n" + about)
    if args.write_docs:
        write_between_markers(args.write_docs, START, END, markdown_table(rows, COLUMNS, HEADERS) + "\n\n" + about)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
