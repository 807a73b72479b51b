"""Layers shared by the U-Net generators and the critic (fastai / DeOldify conventions).

Spectral-normed convs (Miyato et al. 2018), PixelShuffle upsampling with ICNR init and blur
(Aitken et al. 2017), SAGAN self-attention (Zhang et al. 2019), U-Net up-blocks. The module
and index layout of ``conv_block`` and the blocks reproduces fastai's key names, so the
DeOldify-compatible generator (``deoldify.py``) loads released weights with them, and our own
colorizer (``colorizer.py``) is built from the very same parts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from deeperfour.models.ops import Pad2d


def sn_conv(ni: int, nf: int, ks: int = 3, bias: bool = False, is_1d: bool = False) -> nn.Module:
    """Spectral-normed conv (Miyato et al. 2018), kaiming-normal init as fastai's ``init_default``.

    torch's hook-based ``spectral_norm`` stores exactly the released keys (weight_orig/_u/_v).
    """
    conv = (nn.Conv1d if is_1d else nn.Conv2d)(ni, nf, ks, padding=(ks - 1) // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight)
    if bias:
        nn.init.zeros_(conv.bias)
    return spectral_norm(conv)


def conv_block(ni: int, nf: int, ks: int = 3, bias: bool = False, relu: bool = True, bn: bool = True,
               self_attention: bool = False) -> nn.Sequential:
    """[SN conv, ReLU?, BN?, self-attention?]: fastai's ``custom_conv_layer`` key layout.

    Index positions are part of the key names (``conv.0`` conv, ``conv.2`` BN after the ReLU).
    """
    layers: list[nn.Module] = [sn_conv(ni, nf, ks, bias)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    if bn:
        layers.append(nn.BatchNorm2d(nf))
    if self_attention:
        layers.append(SelfAttention(nf))
    return nn.Sequential(*layers)


def batchnorm_2d(nf: int) -> nn.BatchNorm2d:
    """BN with fastai's init (weight 1, bias 1e-3), used on the body output and on the skips."""
    bn = nn.BatchNorm2d(nf)
    with torch.no_grad():
        bn.bias.fill_(1e-3)
    return bn


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR init: the scale**2 sub-kernels of each shuffled channel start equal (Aitken et al. 2017).

    Why: PixelShuffle then starts as a nearest-neighbour upsample, free of checkerboard artifacts.
    """
    out, *rest = weight.shape
    base = nn.init.kaiming_normal_(weight.new_empty(out // scale**2, *rest))
    with torch.no_grad():
        return weight.copy_(base.repeat_interleave(scale**2, dim=0))  # channel c*s^2+k <- base c


class WeightNormConv2d(nn.Module):
    """Conv with weight = g * v / ||v|| (norm over all dims but 0), keys ``bias``, ``weight_g``, ``weight_v``.

    Same keys and maths as the deprecated hook-based ``torch.nn.utils.weight_norm`` used by fastai
    for ``layers.8.conv.0``; written out to avoid its deprecation path.
    """

    def __init__(self, ni: int, nf: int, ks: int = 1):
        super().__init__()
        self.padding = (ks - 1) // 2
        v = icnr_(torch.empty(nf, ni, ks, ks))  # (out, in, k, k)
        # registered in the state_dict order of the hook version: bias, weight_g, weight_v
        self.bias = nn.Parameter(torch.zeros(nf))
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(nf, 1, 1, 1))  # (out, 1, 1, 1)
        self.weight_v = nn.Parameter(v)

    @property
    def weight(self) -> torch.Tensor:
        norm = self.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)  # (out, 1, 1, 1)
        return self.weight_g * self.weight_v / norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class PixelShuffleUp(nn.Module):
    """x2 upsample: 1x1 conv to 4x channels, ReLU, PixelShuffle, then a 2x2 blur.

    The blur (ReplicationPad2d((1,0,1,0)) + AvgPool2d(2, stride 1)) is always on in DeOldify's
    up-blocks and in ``layers.8`` (fastai 1.0.51), so the released weights expect it.
    ``norm="spectral"``: SN conv + BN (``shuf.conv.{0,1}``); ``"weight"``: weight-norm conv with bias.
    """

    def __init__(self, ni: int, nf: int, norm: str = "spectral", scale: int = 2):
        super().__init__()
        if norm == "spectral":
            self.conv = conv_block(ni, nf * scale**2, ks=1, relu=False, bn=True)
            icnr_(self.conv[0].weight_orig.data, scale)
        else:
            self.conv = nn.Sequential(WeightNormConv2d(ni, nf * scale**2, ks=1))
        self.relu = nn.ReLU(inplace=True)
        self.shuf = nn.PixelShuffle(scale)
        self.pad = Pad2d((1, 0, 1, 0), "replicate")  # stays bf16 under autocast: the cat after it too
        self.blur = nn.AvgPool2d(2, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ni, h, w)
        x = self.shuf(self.relu(self.conv(x)))  # (B, nf, 2h, 2w)
        return self.blur(self.pad(x))  # (B, nf, 2h, 2w)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019) with SN Conv1d query/key (C/8) and value (C).

    ``gamma`` starts at 0, so the block starts as the identity and learns how much to attend.
    """

    def __init__(self, c: int):
        super().__init__()
        self.query = sn_conv(c, c // 8, ks=1, is_1d=True)
        self.key = sn_conv(c, c // 8, ks=1, is_1d=True)
        self.value = sn_conv(c, c, ks=1, is_1d=True)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)  # (B, C, N)
        f, g, v = self.query(flat), self.key(flat), self.value(flat)  # (B, C/8, N), (B, C/8, N), (B, C, N)
        beta = F.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)  # (B, N, N), normalized over dim 1 as fastai
        out = self.gamma * torch.bmm(v, beta) + flat  # (B, C, N)
        return out.reshape(b, c, h, w)


class UnetBlock(nn.Module):
    """Upsample the decoder path, match the skip's size, concatenate with the BN'd skip, ReLU, convs.

    Odd sizes (e.g. 560 px, not a multiple of 32) give an upsampled map one pixel off its skip;
    DeOldify then resizes it with nearest interpolation, and so do we.
    """

    def __init__(self, up_in: int, skip_in: int, up_out: int):
        super().__init__()
        self.shuf = PixelShuffleUp(up_in, up_out)
        self.bn = batchnorm_2d(skip_in)
        self.relu = nn.ReLU()

    def merge(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up)  # (B, up_out, 2h, 2w)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.relu(torch.cat([up, self.bn(skip)], dim=1))  # (B, up_out + skip_in, H, W)


class UnetBlockDeep(UnetBlock):
    """Artistic up-block: two 3x3 convs (``conv1``, ``conv2``), width int(in * nf_factor)."""

    def __init__(self, up_in: int, skip_in: int, nf_factor: float, final_div: bool = True,
                 self_attention: bool = False):
        super().__init__(up_in, skip_in, up_in // 2)
        ni = up_in // 2 + skip_in
        nf = int((ni if final_div else ni // 2) * nf_factor)
        self.conv1 = conv_block(ni, nf)
        self.conv2 = conv_block(nf, nf, self_attention=self_attention)
        self.out_channels = nf

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.merge(up, skip)))  # (B, nf, H, W)


class UnetBlockWide(UnetBlock):
    """Stable/video up-block: one 3x3 conv (``conv``) to n_out/2; half the input comes from upsampling."""

    def __init__(self, up_in: int, skip_in: int, n_out: int, self_attention: bool = False):
        super().__init__(up_in, skip_in, n_out // 2)
        self.conv = conv_block(n_out // 2 + skip_in, n_out // 2, self_attention=self_attention)
        self.out_channels = n_out // 2

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.merge(up, skip))  # (B, n_out/2, H, W)


class MergeLayer(nn.Module):
    """fastai ``MergeLayer(dense=True)``: [x, network input] along channels, x first."""

    def forward(self, x: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, orig], dim=1)  # (B, C + 3, H, W)


class ResBlock(nn.Module):
    """fastai ``res_block`` with spectral norm: x + [SN conv(bias), ReLU] x 2 (no BN)."""

    def __init__(self, nf: int):
        super().__init__()
        self.layers = nn.Sequential(*(conv_block(nf, nf, bias=True, bn=False) for _ in range(2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class SigmoidRange(nn.Module):
    """sigmoid(x) scaled to (low, high): the output is bounded ImageNet-normalized RGB."""

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low


def spectral_norm_modules(model: nn.Module) -> list[nn.Module]:
    """Modules carrying hook-based spectral norm (``weight_orig``/``weight_u``/``weight_v``)."""
    return [m for m in model.modules() if hasattr(m, "weight_orig") and hasattr(m, "weight_u")]


@torch.no_grad()
def settle_spectral_norm(model: nn.Module, n_iter: int = 15) -> nn.Module:
    """Run power iterations until each stored u, v is close to the top singular pair.

    Why: freshly initialized u, v give a sigma far below the true one, and an eval-mode forward
    of a new model then overflows (DeOldify README: NaN at random init). Released files already
    hold converged vectors; use this for models built from scratch.
    """
    for m in spectral_norm_modules(model):
        w = m.weight_orig.flatten(1)  # (out, in*k*k)
        u, v = m.weight_u, m.weight_v
        for _ in range(n_iter):
            v.copy_(F.normalize(w.t() @ u, dim=0, eps=1e-12))
            u.copy_(F.normalize(w @ v, dim=0, eps=1e-12))
    return model
