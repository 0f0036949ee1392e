"""tools/bench_peer.py: the DeepCTR-Torch DIN it builds, its tap, hook and IG, and the command (issue 15).

No timings are asserted: the tool prints them. Tests that need deepctr-torch skip without it (the bench extra).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from tools import bench_peer

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "din-ml100k"


@pytest.fixture(scope="module")
def deepctr():
    """pytest.importorskip("deepctr_torch") through the tool's import, which keeps its version check offline."""
    try:
        return bench_peer.import_deepctr()
    except bench_peer.PeerMissingError:
        pytest.skip("deepctr-torch is not installed (pip install -e .[bench])")


@pytest.fixture(scope="module")
def setup(deepctr):
    return bench_peer.load_setup(deepctr, CHECKPOINT, n_items=60)


def rows_for(setup, items, history=None):
    history = setup.history if history is None else history
    return bench_peer.peer_inputs(setup.peer, setup.ours, setup.user, history, items)


def test_missing_package_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepctr_torch", None)  # makes the import raise ImportError
    with pytest.raises(bench_peer.PeerMissingError) as caught:
        bench_peer.import_deepctr()
    message = str(caught.value)
    assert "\n" not in message and not re.search(r"[.!?]\s+[A-Z]", message)
    assert message.endswith("install the bench extra: pip install -e .[bench]")
    with pytest.raises(SystemExit) as exited:
        bench_peer.main(["--rounds", "1"])
    assert str(exited.value.code) == message


def test_closed_proxy_is_set_only_inside(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("http_proxy", raising=False)
    with bench_peer.closed_proxy():
        import os

        assert os.environ["HTTPS_PROXY"] == os.environ["http_proxy"] == bench_peer.CLOSED_PORT_PROXY
        assert os.environ["NO_PROXY"] == ""
    assert os.environ["HTTPS_PROXY"] == "http://proxy.example:3128" and "http_proxy" not in os.environ


@pytest.mark.slow
def test_peer_reads_our_ids_and_features(setup):
    """Each peer row carries the user's fields, the candidate's id, decade and genres, and the user's history."""
    items = torch.tensor([1, 7, 50])
    x = rows_for(setup, items)
    index, ours = setup.peer.feature_index, setup.ours

    def column(name):
        start, stop = index[name]
        return x[:, start:stop]

    assert torch.equal(column("item_id")[:, 0].long(), items)
    assert torch.equal(column("decade")[:, 0].long(), ours.item_year[items])
    assert torch.equal(column("occupation")[:, 0].long(), ours.user_fields[setup.user, 2].expand(3))
    genres = column("genres").long()
    multi_hot = torch.zeros(3, ours.item_genres.shape[1] + 1).scatter_(1, genres, 1.0)[:, 1:]
    assert torch.equal(multi_hot, ours.item_genres[items])
    assert torch.equal(column("hist_item_id")[0].long(), setup.history)
    assert int(column("seq_length")[0]) == int((setup.history != 0).sum())


@pytest.mark.slow
def test_identity_tap_leaves_scores_unchanged(setup):
    peer, x = setup.peer, rows_for(setup, setup.items)
    with torch.no_grad():
        tapped = peer(x)
        peer.attention, wrapper = peer.attention.inner, peer.attention
        try:
            untapped = peer(x)
        finally:
            peer.attention = wrapper
        fed_back = bench_peer.scores_with_history(peer, bench_peer.history_vectors(peer, x), x)
        fed_zeros = bench_peer.scores_with_history(peer, torch.zeros_like(bench_peer.history_vectors(peer, x)), x)
    assert torch.equal(tapped, untapped)
    assert torch.allclose(fed_back, tapped.squeeze(-1))
    assert not torch.allclose(fed_zeros, fed_back)  # the tap really feeds the attention


@pytest.mark.slow
def test_ig_through_the_tap_is_complete(setup):
    peer, x = setup.peer, rows_for(setup, setup.items[:5])
    attributions, delta = bench_peer.peer_integrated_gradients(peer, x, n_steps=50)
    vectors = bench_peer.history_vectors(peer, x)
    with torch.no_grad():
        change = bench_peer.scores_with_history(peer, vectors, x) - bench_peer.scores_with_history(
            peer, torch.zeros_like(vectors), x
        )
    assert attributions.shape == (5, len(setup.history))
    assert change.abs().min() > 1e-4  # a real change to explain
    assert torch.allclose(attributions.sum(1), change, rtol=0.03, atol=1e-6)
    assert torch.allclose(delta, attributions.sum(1) - change, atol=1e-5)


@pytest.mark.slow
def test_hook_captures_the_layers_weights(setup):
    """(items, history) weights, zero on padding, that give the layer's own output and follow the history."""
    peer, items = setup.peer, setup.items
    history = setup.history.clone()
    history[40:] = 0  # some padding to check the mask
    x = rows_for(setup, items, history)
    weights = bench_peer.peer_attention(peer, x)
    assert weights.shape == (len(items), len(history))
    assert torch.allclose(weights.sum(1), torch.ones(len(items)))
    assert torch.all(weights[:, 40:] == 0)

    pooled = []
    handle = peer.attention.register_forward_hook(lambda m, i, out: pooled.append(out.squeeze(1)))
    with torch.no_grad():
        peer(x)
    handle.remove()
    vectors = bench_peer.history_vectors(peer, x)
    assert torch.allclose(torch.bmm(weights.unsqueeze(1), vectors).squeeze(1), pooled[0], atol=1e-6)

    reversed_history = history.clone()
    reversed_history[:40] = history[:40].flip(0)
    moved = bench_peer.peer_attention(peer, rows_for(setup, items, reversed_history))
    assert torch.allclose(moved[:, :40], weights[:, :40].flip(1), atol=1e-6)  # each weight follows its item
    other = history.clone()
    other[:40] = torch.arange(1000, 1040)
    changed = bench_peer.peer_attention(peer, rows_for(setup, items, other))
    # random weights keep the attention close to uniform (1/40), but other items move it
    assert (changed - weights).abs().max() > 1e-4


def test_floor_weights_and_gradients(setup):
    rows = bench_peer.floor_rows(setup.ours, setup.history, 4)
    scores, weights = bench_peer.floor_forward(setup.floor, rows)
    assert scores.shape == (4,) and weights.shape == (4, len(setup.history))
    assert torch.allclose(weights.sum(1), torch.ones(4))
    assert bench_peer.floor_forward_backward(setup.floor, rows).shape == rows[1].shape


@pytest.mark.slow
def test_main_writes_the_marked_block(deepctr, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{bench_peer.START}\nold\n{bench_peer.END}\nafter\n")
    assert (
        bench_peer.main(
            [
                "--rounds",
                "1",
                "--items",
                "40",
                "--n-steps",
                "4",
                "--peer-batches",
                "16",
                "--threads",
                str(torch.get_num_threads()),
                "--write-docs",
                str(readme),
            ]
        )
        == 0
    )
    text = readme.read_text()
    block = text.split(bench_peer.START)[1].split(bench_peer.END)[0]
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{bench_peer.END}\nafter\n") and "old" not in block
    assert "| operation | ours ms | DeepCTR-Torch ms |" in block
    for operation in (
        "rank 40 items",
        "rank 40 items (peer in batches of 16)",
        "attention maps, 40 items",
        "IG top-10, history (n_steps=4)",
    ):
        assert f"| {operation} |" in block
    assert "`python tools/bench_peer.py --rounds 1 --items 40" in block and "--write-docs" not in block
    assert "random weights" in block
    assert "peer / ours" in capsys.readouterr().out
