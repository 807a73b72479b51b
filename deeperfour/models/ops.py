"""Layout- and precision-preserving building blocks for fast bf16 inference on CPUs (channels-last).

Why a module of its own: on CPUs with bf16 matrix units (AMX), oneDNN's bf16 convolutions run 4-8x
faster on channels-last (NHWC) tensors than on NCHW ones, but two innocent-looking ops undo it with a
full-tensor copy or two per layer, which then costs more than the convolutions themselves:

* reflect / replicate ``F.pad`` is on CPU autocast's fp32 list: a bf16 activation is cast to fp32,
  padded in fp32 and cast back to bf16 by the next conv. Padding only moves values, so running it in
  the input's own dtype gives the very same conv input (:func:`pad`, :class:`PadConv2d`);
* ``F.instance_norm`` folds the batch into the channels, ``(1, B*C, H, W)``, which makes an NCHW copy of
  a channels-last input and returns NCHW (:func:`instance_norm` keeps the layout).

Both fall back to the plain PyTorch op whenever the result could differ (gradients of the padding,
NCHW inputs of the norm), so training numerics are those of the stock ops.

Also here, because a model and a loss both use it: He et al.'s guided filter (:func:`guided_filter`, on
the clipped-window mean :func:`box_filter`): the cartoon generator's ``chroma="input"`` anchor and the
whitebox recipe's surface representation (``losses/cartoon.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor stored channels-last (NHWC) and NOT also plain contiguous (C = 1, 1x1 maps)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def pad(x: torch.Tensor, padding: tuple[int, ...], mode: str) -> torch.Tensor:
    """``F.pad(x, padding, mode)`` that keeps a bf16 ``x`` in bf16 under autocast (and its layout).

    The values are exactly those of ``F.pad`` followed by the next conv's autocast cast: a pad copies
    values, it rounds nothing. Inputs that need a gradient keep the stock path, whose backward sums the
    reflected borders in fp32.
    """
    if mode == "constant" or (x.requires_grad and torch.is_grad_enabled()):
        return F.pad(x, padding, mode=mode)
    with torch.autocast(x.device.type, enabled=False):  # reflect/replicate are autocast-fp32 ops on CPU
        return F.pad(x, padding, mode=mode)


def autocast_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the autocast dtype when a conv would cast it anyway (fp32 in, autocast on, no autograd).

    Casting before the padding rather than after halves the bytes the pad moves; the values are the
    same, as the pad only copies them.
    """
    device = x.device.type
    if x.dtype != torch.float32 or not torch.is_autocast_enabled(device) or (
            x.requires_grad and torch.is_grad_enabled()):
        return x
    return x.to(torch.get_autocast_dtype(device))


class Pad2d(nn.Module):
    """``nn.ReplicationPad2d`` / ``nn.ReflectionPad2d`` through :func:`pad` (no parameters: no keys)."""

    def __init__(self, padding: tuple[int, int, int, int], mode: str = "replicate"):
        super().__init__()
        self.padding, self.mode = tuple(padding), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H + pt + pb, W + pl + pr)
        return pad(x, self.padding, self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}, mode={self.mode!r}"


class PadConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose reflect / replicate padding runs through :func:`pad` (same keys, same values).

    A drop-in for ``nn.Conv2d(..., padding_mode="reflect" | "replicate")``: the state_dict keys are
    ``weight`` / ``bias`` as before, only the padding avoids autocast's fp32 round trip.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "zeros":
            return super()._conv_forward(x, weight, bias)
        x = pad(autocast_input(x), self._reversed_padding_repeated_twice, self.padding_mode)
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def instance_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                  eps: float = 1e-5) -> torch.Tensor:
    """``F.instance_norm(x, weight=weight, bias=bias, eps=eps)``, but a channels-last ``x`` stays so.

    One sample through a batch norm in training mode without running stats IS that sample's instance norm
    (same per-channel stats over H x W, same biased variance, same fp32 accumulation, bf16 stays bf16), and
    PyTorch's batch norm has a channels-last kernel; ``F.instance_norm`` itself reshapes to (1, B*C, H, W),
    which copies a channels-last input to NCHW. NCHW inputs take ``F.instance_norm``.
    """
    if not is_channels_last(x):
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)
    per_sample = [F.batch_norm(x[i : i + 1], None, None, weight, bias, True, 0.0, eps) for i in range(len(x))]
    return per_sample[0] if len(per_sample) == 1 else torch.cat(per_sample)  # (B, C, H, W) channels-last


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, the window clipped at the border. (B, C, H, W).

    Separable: a (1, k) then a (k, 1) average on a contiguous NCHW copy, divided by the window's
    inside share (zero padding, so sum / count). One 2-D k x k pool on a channels-last 1- or
    2-channel tensor cost 8-10x more at 640x360 (80 vs 8 ms), which made the chroma anchor of the
    cartoon generators the larger part of their frame time (issue 19).
    """
    k = 2 * r + 1
    h, w = x.shape[-2:]
    x = x.contiguous()  # (B, C, H, W): avg_pool2d on channels-last with few channels is the slow path
    rows = F.avg_pool2d(F.pad(x, (r, r, 0, 0)), (1, k), stride=1)  # (B, C, H, W), mean along W
    total = F.avg_pool2d(F.pad(rows, (0, 0, r, r)), (k, 1), stride=1)  # (B, C, H, W), then along H
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    inside_h = (torch.clamp(i + r, max=h - 1) - torch.clamp(i - r, min=0) + 1).to(x.dtype) / k  # (H,)
    inside_w = (torch.clamp(j + r, max=w - 1) - torch.clamp(j - r, min=0) + 1).to(x.dtype) / k  # (W,)
    return total / (inside_h[:, None] * inside_w[None, :])  # the clipped window's mean


def guided_filter(guide: torch.Tensor, x: torch.Tensor, r: int = 5, eps: float = 0.2) -> torch.Tensor:
    """He, Sun & Tang's guided filter (ECCV 2010, Eqs. 5-8), per channel, differentiable.

    q = mean(a) * I + mean(b), a = cov(I, p) / (var(I) + eps), b = mean(p) - a mean(I), over (2r+1)^2
    windows. ``guide`` I and ``x`` p: (B, C, H, W) (the same C, or a 1-channel guide).
    """
    mean_i, mean_p = box_filter(guide, r), box_filter(x, r)
    cov = box_filter(guide * x, r) - mean_i * mean_p
    var = box_filter(guide * guide, r) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box_filter(a, r) * guide + box_filter(b, r)
