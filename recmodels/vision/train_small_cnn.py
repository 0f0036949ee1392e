"""Train the small Fashion-MNIST CNN whose 7 x 7 map is the fashion catalogue's region grid.

    python -m recmodels.vision.train_small_cnn                       # -> data/fashion/small_cnn/
    python -m recmodels.vision.train_small_cnn --epochs 2 --out /tmp/cnn --source ~/fashion-mnist

Reads the four Fashion-MNIST IDX files (Debian's ``dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist``), trains on the 60,000 training images with a fixed schedule (no choice
is made on the test set), and reports the accuracy on the 10,000 test images once, at the end. Writes
``model.safetensors`` and ``config.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm import tqdm

from recmodels.data.fashion import CLASS_NAMES, DEBIAN_FASHION_MNIST, FASHION_DIR, read_fashion_mnist
from recmodels.device import describe_device, resolve_device
from recmodels.vision.small_cnn import FASHION_MEAN, FASHION_STD, SmallCNN

DEFAULT_OUT = FASHION_DIR / "small_cnn"


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float().div(255.0) - FASHION_MEAN) / FASHION_STD


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 px (zero padding) and horizontal flips, on a (B, 28, 28) uint8 batch."""
    n = batch.shape[0]
    padded = F.pad(batch, (2, 2, 2, 2))
    dy = torch.randint(0, 5, (n,), generator=generator).to(batch.device)
    dx = torch.randint(0, 5, (n,), generator=generator).to(batch.device)
    ar = torch.arange(28, device=batch.device)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    flip = (torch.rand(n, generator=generator) < 0.5).to(batch.device)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    return padded[torch.arange(n, device=batch.device)[:, None, None], rows, cols]


@torch.no_grad()
def evaluate(model: SmallCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = _normalise(images[start : start + batch_size]).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(
    source=DEBIAN_FASHION_MNIST,
    out=DEFAULT_OUT,
    epochs: int = 12,
    batch_size: int = 256,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
    limit: int | None = None,
) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    device = resolve_device(device)
    train_x, train_y = read_fashion_mnist(source, "train")
    test_x, test_y = read_fashion_mnist(source, "t10k")
    if limit:
        train_x, train_y = train_x[:limit], train_y[:limit]
    train_x, train_y = (
        torch.from_numpy(train_x.copy()).to(device),
        torch.from_numpy(train_y.astype(np.int64)).to(device),
    )
    test_x, test_y = torch.from_numpy(test_x.copy()).to(device), torch.from_numpy(test_y.astype(np.int64)).to(device)

    model = SmallCNN().to(device).to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = (len(train_x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    started = time.time()
    print(f"training SmallCNN on {len(train_x)} Fashion-MNIST images, {epochs} epochs, {describe_device(device)}")
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        total, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", leave=False)
        for step in bar:
            index = order[step * batch_size : (step + 1) * batch_size]
            x = _normalise(_augment(train_x[index], generator)).unsqueeze(1)
            x = x.contiguous(memory_format=torch.channels_last)  # about twice as fast for convolutions on CPU
            loss = F.cross_entropy(model(x), train_y[index], label_smoothing=0.05)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{total / seen:.4f}")
        history.append({"epoch": epoch, "train_loss": round(total / seen, 5)})
        print(f"epoch {epoch}: train loss {total / seen:.4f}")
    accuracy = evaluate(model, test_x, test_y)
    print(f"Fashion-MNIST test accuracy: {accuracy:.4f}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"architecture": "SmallCNN"})
    source = Path(source)
    config = {
        "architecture": "SmallCNN",
        "channels": list(model.channels),
        "num_classes": 10,
        "class_names": list(CLASS_NAMES),
        "input": {"size": 28, "mode": "L", "mean": FASHION_MEAN, "std": FASHION_STD},
        "grid": [7, 7],
        "feature_dim": model.feature_dim,
        "region_dim": model.region_dim,
        "regions": "hypercolumn per 7 x 7 cell: the map after the second max-pool (local content) concatenated "
        "with the last conv block's map (class evidence), both after batch norm and ReLU",
        "metrics": {"test_accuracy": round(accuracy, 4), "test_images": len(test_x)},
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "train_images": len(train_x),
            "optimiser": "AdamW + one-cycle",
            "augmentation": "random shift <= 2 px, horizontal flip",
            "label_smoothing": 0.05,
            "device": describe_device(device),
            "seconds": round(time.time() - started, 1),
            "command": "python -m recmodels.vision.train_small_cnn",
        },
        "history": history,
        "data": {
            "name": "Fashion-MNIST",
            "citation": "Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747",
            "licence": "MIT (Zalando SE)",
            "files": {p.name: _sha256(p) for p in sorted(source.glob("*-ubyte*"))},
        },
        "weights_sha256": _sha256(out / "model.safetensors"),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {out / 'model.safetensors'} and {out / 'config.json'}")
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m recmodels.vision.train_small_cnn", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", default=str(DEBIAN_FASHION_MNIST), help="folder with the Fashion-MNIST IDX files")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default data/fashion/small_cnn)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    train(
        args.source,
        args.out,
        args.epochs,
        args.batch_size,
        args.lr,
        seed=args.seed,
        device=args.device,
        limit=args.limit,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
