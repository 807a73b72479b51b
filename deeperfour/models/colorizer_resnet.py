"""The colorizer's ResNet option: the same U-Net decoder on a torchvision ResNet encoder.

``ColorizerConfig(encoder="resnet18" | "resnet34" | "resnet50" | "resnet101")``. The body is
``deoldify.resnet_body`` (torchvision layout, built with weights=None: nothing is downloaded); its
ImageNet weights come from a LOCAL torchvision state_dict (``encoder_weights``, e.g.
``models/resnet34.pth``) and are then part of the colorizer's own state_dict, so a checkpoint
reloads without that file. The gray input is replicated to 3 channels and ImageNet-normalized
inside the model: callers pass gray (B, 1, H, W) in [0, 1] and get centered UV (B, 2, H, W), as
with the VGG16 colorizer (``colorizer.py``), whose decoder parts (``blocks.py``) are reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from deeperfour.core.config import resolve
from deeperfour.models.blocks import (
    settle_spectral_norm,
)
from deeperfour.models.colorizer_unet import ColorizerConfig, UNetColorizerBase
from deeperfour.models.deoldify import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SKIP_IDX,
    _body_channels,
    _few,
    resnet_body,
)
from deeperfour.models.features import _read_state_dict

RESNET_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101}
STAGE_START = {"stem": 0, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}  # first body child of each
TV_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")  # body[i] names


def _rename(key: str, names: dict[str, str]) -> str:
    """Swap the first key component: body index <-> torchvision child name."""
    head, rest = key.split(".", 1)
    return f"{names[head]}.{rest}"


def load_torchvision_resnet(body: nn.Sequential, path: str | os.PathLike, depth: int) -> nn.Sequential:
    """Copy a torchvision ``resnet{depth}`` state_dict file into ``body`` (``resnet_body(depth)``).

    Checked key for key (``fc.*`` ignored): every body parameter and buffer must be in the file
    with its shape, and the file must hold no other layer. ``num_batches_tracked`` may be absent
    (older torchvision files), as torch's own BatchNorm loading allows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (colorize.encoder_weights: a local torchvision "
                                f"resnet{depth} state_dict)")
    hint = (f"expected a torchvision resnet{depth} state_dict, e.g. "
            f"torch.save(torchvision.models.resnet{depth}(weights=...).state_dict(), path)")
    try:
        sd = _read_state_dict(path)
    except ValueError as e:
        raise ValueError(f"{e}; {hint}") from e
    to_tv = {str(i): name for i, name in enumerate(TV_CHILDREN)}
    expected = {_rename(k, to_tv): v for k, v in body.state_dict().items()}  # torchvision keys
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected and not k.startswith("fc.")]
    shapes = [f"{k} {list(getattr(sd[k], 'shape', [type(sd[k]).__name__]))} (expected {list(v.shape)})"
              for k, v in expected.items()
              if k in sd and (not isinstance(sd[k], torch.Tensor) or sd[k].shape != v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing keys ({_few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected keys ({_few(unexpected)})" if unexpected else "",
                 f"{len(shapes)} wrong shapes ({_few(shapes)})" if shapes else ""]
        raise ValueError(f"{path}: does not fit a resnet{depth} encoder: "
                         + "; ".join(p for p in parts if p) + f". Fix: {hint}")
    to_body = {name: i for i, name in to_tv.items()}
    mapped = {_rename(k, to_body): v for k, v in sd.items() if k in expected}
    body.load_state_dict(mapped, strict=True)  # a missing num_batches_tracked is filled in by BatchNorm
    return body


class ResNetColorizer(UNetColorizerBase):
    """Gray (B, 1, H, W) in [0, 1] -> centered chroma UV (B, 2, H, W); any H, W >= 1.

    U-Net: ResNet body (stem relu @H/2, layer1 @H/4, layer2 @H/8, layer3 @H/16, layer4 @H/32;
    channels read from the body, 4x wider for ResNet50/101) -> BN, ReLU, middle conv (2w @H/32)
    -> up-blocks with the BN'd skips to 2w @H/16, w @H/8 (+ self-attention), w/2 @H/4, w/4 @H/2
    -> PixelShuffle x2 to w/8 @H (widths at strides 8..1 as the VGG colorizer's)
    -> dense merge with the input -> SN res-block -> 1x1 SN conv -> bounded UV.
    """

    def __init__(self, config: ColorizerConfig, body: nn.Sequential | None = None):
        super().__init__()
        if config.encoder not in RESNET_DEPTHS:
            raise ValueError(f"not a ResNet encoder: {config.encoder!r} ({', '.join(RESNET_DEPTHS)})")
        self.config = config
        self.encoder = body if body is not None else resnet_body(RESNET_DEPTHS[config.encoder])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._build_stride32_decoder(_body_channels(self.encoder), config.width, config.self_attention)
        settle_spectral_norm(self)

    def set_encoder_trainable(self, trainable: bool, from_layer: str = "stem") -> None:
        """NoGAN freezing: ``from_layer`` (stem, layer1..layer4) and the deeper stages train if ``trainable``.

        Frozen or not, the body's BN running statistics follow the data in train mode (fastai's
        ``train_bn``, as DeOldify): the gray input is not ImageNet's colour statistics.
        """
        if from_layer not in STAGE_START:
            raise ValueError(f"unknown {self.config.encoder} layer {from_layer!r} for unfreeze_from; "
                             f"valid: {', '.join(STAGE_START)}")
        first = STAGE_START[from_layer]
        for i, m in enumerate(self.encoder):
            for p in m.parameters():
                p.requires_grad_(trainable and i >= first)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) in [0, 1]
        h = (gray.expand(-1, 3, -1, -1) - self.mean) / self.std  # (B, 3, H, W), ImageNet-normalized
        skips = []
        for i, m in enumerate(self.encoder):
            h = m(h)
            if i in SKIP_IDX:
                skips.append(h)
        return self._decode_stride32(tuple(skips), h, gray)  # skips at strides 2-16, h: layer4 at 32


def build_resnet_colorizer(config: ColorizerConfig, pretrained: bool = True) -> ResNetColorizer:
    """A new ResNet colorizer; ``pretrained`` loads ``config.encoder_weights`` (relative: repo root)."""
    if config.encoder not in RESNET_DEPTHS:
        raise ValueError(f"not a ResNet encoder: {config.encoder!r} (available: {', '.join(RESNET_DEPTHS)})")
    depth = RESNET_DEPTHS[config.encoder]
    body = resnet_body(depth)
    if pretrained:
        if not config.encoder_weights:
            raise ValueError(f"encoder {config.encoder!r} needs ImageNet weights from a local file: set "
                             f"colorize.encoder_weights in params.yaml (e.g. models/{config.encoder}.pth, "
                             f"written by torch.save(torchvision.models.{config.encoder}(weights=...)"
                             ".state_dict(), path)), or build with pretrained=False for random weights")
        load_torchvision_resnet(body, resolve(config.encoder_weights), depth)
    return ResNetColorizer(config, body)
