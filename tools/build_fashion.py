"""Build the shipped fashion catalogue in data/fashion/ from Debian's Fashion-MNIST files (seeded, deterministic).

    python tools/build_fashion.py                     # reads /usr/share/datasets/fashion-mnist
    python tools/build_fashion.py --source DIR --out data/fashion

What is real: 2,000 images from Fashion-MNIST's test part (t10k), 200 per class, chosen with the seed.
What is simulated: 500 shoppers and their interactions. Each shopper has
  * a segment (tops / evening / footwear / casual) whose prototype, plus individual noise, gives class affinities;
  * k in 3..5 planted cells of the 7 x 7 grid (a compact blob of informative cells; each cell is a 4 x 4 pixel
    block), and a weight on them. The visual signal of an item for the shopper is the mean, over the planted
    cells, of the cell's ink (mean intensity) and edge energy (mean gradient magnitude), each standardised
    within the item's class, so it is what class alone cannot explain;
  * utility(item) = class affinity + weight * visual signal (standardised over the catalogue).
Utility is standardised over the catalogue per shopper. Over time, the shopper is shown a slate of 30 unseen
items (the shop rotates its catalogue: items shown less often so far are more likely on a slate) and picks one
with probability softmax(utility / 0.5), or, 10% of the time, the least chosen item on the slate (browsing).
The rating is the utility plus noise, cut into 1..5 at the pooled quantiles of all choices that give a
MovieLens-like mix (6/11/27/34/22%). Gaps between interactions are 1 minute plus an exponential with mean
6 hours, so each shopper's timestamps strictly increase.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recmodels.data.fashion import CLASS_NAMES, DEBIAN_FASHION_MNIST, read_fashion_mnist

SEED = 20170825  # Fashion-MNIST's release date
PER_CLASS = 200
N_USERS = 500
MIN_EVENTS, MAX_EVENTS = 30, 80
GRID = 7
CELL = 4  # 28 / 7 pixels per cell side
SLATE = 30
TEMPERATURE = 0.5
EXPLORE = 0.10
RATING_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)  # 1..5, about MovieLens-100K's mix
RATING_NOISE = 0.35
START = 1_704_067_200  # 2024-01-01T00:00:00Z
SEGMENTS = {  # class affinity prototypes (class order as CLASS_NAMES)
    "tops": (1.0, -0.5, 1.0, 0.0, 0.5, -0.5, 1.0, -0.5, -0.5, -0.5),
    "evening": (-0.5, -0.5, -0.5, 1.5, 0.5, 1.0, 0.0, -0.5, 1.0, -0.5),
    "footwear": (-0.5, 0.0, -0.5, -0.5, -0.5, 1.0, -0.5, 1.5, 0.0, 1.5),
    "casual": (1.0, 1.5, 0.0, -0.5, -0.5, 0.0, -0.5, 1.0, 0.5, -0.5),
}


def cell_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 4 x 4 cell of each 28 x 28 image: mean intensity and mean gradient magnitude, (N, 49) each, on [0, 1]."""
    x = images.astype(np.float64) / 255.0
    gy, gx = np.gradient(x, axis=(1, 2))
    edge = np.sqrt(gx**2 + gy**2)
    n = len(x)

    def per_cell(a):
        return a.reshape(n, GRID, CELL, GRID, CELL).mean((2, 4)).reshape(n, GRID * GRID)

    return per_cell(x), per_cell(edge)


def within_class_z(values: np.ndarray, labels: np.ndarray, floor: float = 0.02) -> np.ndarray:
    out = np.zeros_like(values)
    for c in np.unique(labels):
        rows = labels == c
        mean, std = values[rows].mean(0), values[rows].std(0)
        out[rows] = (values[rows] - mean) / np.maximum(std, floor)
    return out


def planted_blob(rng, informative: np.ndarray, k: int) -> list[int]:
    """k informative cells around a random informative centre: the nearest by Chebyshev distance, random ties."""
    centre = rng.choice(informative)
    cy, cx = divmod(int(centre), GRID)
    others = informative[informative != centre]
    ys, xs = np.divmod(others, GRID)
    distance = np.maximum(abs(ys - cy), abs(xs - cx)) + 0.5 * (abs(ys - cy) + abs(xs - cx)) / GRID
    order = np.lexsort((rng.random(len(others)), distance))
    return sorted([int(centre)] + [int(c) for c in others[order[: k - 1]]])


def write_dataset(out: Path, item_ids, images, labels, chosen, users, rows, planted) -> None:
    """The images, the item, user and interaction tables, and the planted cells, as the loader reads them."""
    image_dir = out / "images"
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    for item, image in zip(item_ids, images):
        Image.fromarray(image, mode="L").save(image_dir / f"{item}.png", optimize=True)
    with open(out / "items.csv", "w") as f:
        f.write("item_id,class,class_name,source_index\n")
        for item, label, source_index in zip(item_ids, labels, chosen):
            f.write(f"{item},{label},{CLASS_NAMES[label]},{source_index}\n")
    with open(out / "users.csv", "w") as f:
        f.write("user_id,segment\n")
        f.writelines(f"{u},{s}\n" for u, s in users)
    with open(out / "interactions.csv", "w") as f:
        f.write("user_id,item_id,rating,timestamp\n")
        f.writelines(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    (out / "planted_regions.json").write_text(
        json.dumps(
            {
                "grid": [GRID, GRID],
                "description": "Each simulated shopper's planted cells of the 7 x 7 image grid (row-major: cell = "
                "row * 7 + column; each cell is a 4 x 4 pixel block of the 28 x 28 image) whose ink and edges "
                "drive their choices.",
                "users": planted,
            },
            indent=None,
            separators=(",", ":"),
        )
        + "\n"
    )


def build(source: Path, out: Path, seed: int = SEED) -> dict:
    rng = np.random.default_rng(seed)
    images, labels = read_fashion_mnist(source, "t10k")
    chosen = np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(labels == c), PER_CLASS, replace=False) for c in range(len(CLASS_NAMES))]
        )
    )
    images, labels = images[chosen], labels[chosen].astype(np.int64)
    n_items = len(chosen)
    item_ids = np.arange(1, n_items + 1)

    ink, edge = cell_statistics(images)
    ink_z, edge_z = within_class_z(ink, labels), within_class_z(edge, labels)
    signal = 0.5 * (ink_z + edge_z)  # (items, 49)
    # cells whose content varies within classes: the only ones a taste for "what is there" can be about
    within = np.mean([ink[labels == c].std(0) for c in range(len(CLASS_NAMES))], axis=0)
    informative = np.flatnonzero(within >= np.quantile(within, 0.40))  # the 30 most varied cells

    segment_names = list(SEGMENTS)
    prototypes = np.array([SEGMENTS[s] for s in segment_names])
    users, planted, shoppers, events = [], {}, {}, []
    shown = np.zeros(n_items)  # how often the shop has shown each item so far
    chosen_count = np.zeros(n_items)
    for user in range(1, N_USERS + 1):
        segment = int(rng.integers(len(segment_names)))
        affinity = prototypes[segment] + 0.6 * rng.standard_normal(len(CLASS_NAMES))
        affinity = (affinity - affinity.mean()) / affinity.std()
        k = int(rng.integers(3, 6))
        cells = planted_blob(rng, informative, k)
        weight = float(rng.uniform(1.0, 1.6))
        visual = signal[:, cells].mean(1)
        visual = (visual - visual.mean()) / visual.std()
        utility = affinity[labels] + weight * visual  # (items,)
        utility = (utility - utility.mean()) / utility.std()  # the shopper's own scale

        n_events = int(rng.integers(MIN_EVENTS, MAX_EVENTS + 1))
        seen = np.zeros(n_items, dtype=bool)
        time = START + int(rng.integers(0, 60 * 86_400))
        for _ in range(n_events):
            # the shop rotates its catalogue: items shown less often so far are more likely on the slate
            candidates = np.flatnonzero(~seen)
            rotation = 1.0 / (1.0 + shown[candidates])
            slate = rng.choice(candidates, SLATE, replace=False, p=rotation / rotation.sum())
            shown[slate] += 1
            if rng.random() < EXPLORE:  # browsing: the newest-looking (least chosen) item on the slate
                pick = int(slate[np.lexsort((rng.random(SLATE), chosen_count[slate]))[0]])
            else:
                logits = utility[slate] / TEMPERATURE
                p = np.exp(logits - logits.max())
                pick = int(rng.choice(slate, p=p / p.sum()))
            seen[pick] = True
            chosen_count[pick] += 1
            time += 60 + int(rng.exponential(6 * 3600))
            events.append((user, pick, utility[pick] + RATING_NOISE * rng.standard_normal(), time))
        users.append((user, segment_names[segment]))
        planted[str(user)] = cells
        shoppers[str(user)] = {
            "segment": segment_names[segment],
            "region_weight": round(weight, 3),
            "class_affinity": [round(float(a), 3) for a in affinity],
        }
    # ratings: the noisy utility (on each shopper's own scale) cut at pooled quantiles of all choices, so the
    # overall rating mix is MovieLens-like while shoppers who found more of what they like rate higher
    noisy = np.array([e[2] for e in events])
    cuts = np.quantile(noisy, np.cumsum(RATING_SHARES)[:-1])
    rows = [(u, int(item_ids[i]), 1 + int(np.searchsorted(cuts, v)), t) for (u, i, v, t) in events]

    write_dataset(out, item_ids, images, labels, chosen, users, rows, planted)

    ratings = np.array([r for _, _, r, _ in rows])
    counts = np.bincount([i for _, i, _, _ in rows], minlength=n_items + 1)[1:]
    source_files = sorted(Path(source).glob("t10k-*"))
    simulation = {
        "generator": "tools/build_fashion.py",
        "seed": seed,
        "source": {
            "name": "Fashion-MNIST t10k",
            "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in source_files},
        },
        "items": n_items,
        "per_class": PER_CLASS,
        "users": N_USERS,
        "interactions": len(rows),
        "events_per_user": [MIN_EVENTS, MAX_EVENTS],
        "slate": SLATE,
        "temperature": TEMPERATURE,
        "explore": EXPLORE,
        "rating_shares": list(RATING_SHARES),
        "rating_cuts": [round(float(c), 4) for c in cuts],
        "rating_noise": RATING_NOISE,
        "planted_k": [3, 5],
        "informative_cells": [int(c) for c in informative],
        "visual_signal": "mean over planted cells of 0.5 * (ink z + edge z), z within class per cell; "
        "standardised over the catalogue per shopper",
        "utility": "class_affinity[class] + region_weight * visual_signal",
        "segments": {name: list(proto) for name, proto in SEGMENTS.items()},
        "rating_counts": {str(r): int((ratings == r).sum()) for r in range(1, 6)},
        "items_never_chosen": int((counts == 0).sum()),
        "shoppers": shoppers,
    }
    (out / "simulation.json").write_text(json.dumps(simulation, indent=None, separators=(",", ":")) + "\n")
    return simulation


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(DEBIAN_FASHION_MNIST), help="folder with the Fashion-MNIST files")
    parser.add_argument("--out", default=str(ROOT / "data" / "fashion"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sim = build(Path(args.source), out, args.seed)
    print(
        f"wrote {out}: {sim['items']} items, {sim['users']} shoppers, {sim['interactions']} interactions, "
        f"ratings {sim['rating_counts']}, items never chosen: {sim['items_never_chosen']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
