"""Lai et al. (2018) blind video temporal consistency network (paper Sec. 5.2.2, reference Sec. 3).

At step t the network sees the per-frame processed frame P_t (colorized or cartoonized), its own
previous output O_{t-1} and the input frames I_t, I_{t-1}, and predicts a residual: O_t = P_t + net(...).
It needs no optical flow at test time (flow only builds the training masks of Eqs. 13-14), and the
ConvLSTM carries memory along a shot. Unlike the reference codes, DeeperFour resets that memory at every
shot cut: ``step(..., state=None)`` starts a shot and returns P_t unchanged (O_0 = P_0).

Layout (nf = 32 -> about 3 M parameters):

    stream A (I_t, I_{t-1})  ─┐  7x7 conv nf, 3x3/2 conv 2nf, 3x3/2 conv 4nf   (two streams, summed)
    stream B (O_{t-1}, P_t)  ─┘
    -> n_res_blocks residual blocks (4nf) -> ConvLSTM (hidden 4nf)
    -> upsample+conv 2nf (+ skip at H/2) -> upsample+conv nf (+ skip at H) -> 7x7 conv -> residual

Flow-guided variant (``ConvLSTMConfig.warp_prev``, DeeperFour's CPU default): O_{t-1} and I_{t-1} arrive
already warped to frame t by DIS flow on the input frames, and the last conv also predicts a gate g, so
O_t = P_t + sigmoid(g) * (warp(O_{t-1}) - P_t) + residual: a learned, occlusion-aware blend of the aligned
past (stream A sees I_t next to warp(I_{t-1}), where occlusions show) with the recurrent memory on top.
A few hundred CPU steps do not teach the blind network motion compensation (measured: E_warp unchanged
on the demo film); with the past aligned and the blend explicit they suffice.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deeperfour.models import ops

CHECKPOINT_VERSION = 1


@dataclass
class ConvLSTMConfig:
    nf: int = 32  # base width: encoder nf -> 2nf -> 4nf, ConvLSTM hidden 4nf (paper: 32 -> 128); 8-16 on CPU
    n_res_blocks: int = 5  # residual blocks at 4nf before the ConvLSTM (paper: 5)
    channels: int = 3  # channels of P, O and I frames; replicate a gray film to 3 channels
    lstm_kernel: int = 3  # spatial kernel of the ConvLSTM gates
    # False: Lai et al.'s blind net sees O_{t-1}, I_{t-1} as they are (no flow at test time). True: both
    # arrive warped to frame t by flow on the INPUT frames, so the net need not learn motion compensation
    # itself (a short CPU training does not)
    warp_prev: bool = False


NEGATIVE_SLOPE = 0.2  # every activation is LeakyReLU(0.2), as in Lai et al.'s released network


def act(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) rather than ReLU: without normalization layers, a plain ReLU layer of a few channels
    can die for good under Adam (all outputs <= 0), and the last one before the residual conv then cuts
    the network off; a leaky slope always passes a gradient, so training recovers (Lai et al. do the same).
    """
    return F.leaky_relu(x, NEGATIVE_SLOPE)


def conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    """'Same' conv with replicate padding: no zero border that would darken frame edges, any size works.

    ``PadConv2d`` (an ``nn.Conv2d``, same keys): the padding stays bf16 under autocast, where the stock
    replicate padding is an fp32 op that costs two extra copies per conv (``models/ops.py``)."""
    return ops.PadConv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="replicate")


class ResBlock(nn.Module):
    """conv-LeakyReLU-conv plus identity. No normalization layers anywhere in this net: per-frame statistics
    (batch/instance norm) would themselves change from frame to frame and reintroduce flicker."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = conv(ch, ch, 3)
        self.conv2 = conv(ch, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(act(self.conv1(x)))


class ConvLSTMCell(nn.Module):
    """LSTM whose gates are convolutions, so the memory is a feature map that keeps spatial layout.

    i, f, o, g = split(conv([x, h])); c' = f * c + i * tanh(g); h' = o * tanh(c'). A None state means
    zero h and c (the first computed step of a shot).
    """

    def __init__(self, c_in: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        self.gates = conv(c_in + hidden, 4 * hidden, kernel)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])  # (B, hid, h, w)
            state = (zeros, zeros)
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # 4 x (B, hid, h, w)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class Encoder(nn.Module):
    """One stream: 7x7 conv at full size, then two strided 3x3 convs (1/2 and 1/4 resolution)."""

    def __init__(self, c_in: int, nf: int):
        super().__init__()
        self.conv1 = conv(c_in, nf, 7)
        self.conv2 = conv(nf, 2 * nf, 3, stride=2)
        self.conv3 = conv(2 * nf, 4 * nf, 3, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e1 = act(self.conv1(x))  # (B, nf, H, W)
        e2 = act(self.conv2(e1))  # (B, 2nf, H/2, W/2)
        e3 = act(self.conv3(e2))  # (B, 4nf, H/4, W/4)
        return e1, e2, e3


class UpConv(nn.Module):
    """Nearest x2 upsampling then a 3x3 conv, rather than a transposed conv, to avoid checkerboards."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv(c_in, c_out, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return act(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))


@dataclass
class StreamState:
    """Memory carried between consecutive frames of one shot (returned by ``step``, passed back in).

    ``hidden`` is None right after a shot start: the ConvLSTM then starts from zeros on the next frame.
    """

    hidden: tuple[torch.Tensor, torch.Tensor] | None = None  # ConvLSTM (h, c), each (B, 4nf, H'/4, W'/4)


class TemporalConsistencyNet(nn.Module):
    """Lai et al.'s recurrent stabilizer: O_t = P_t + net(P_t, O_{t-1}, I_t, I_{t-1}; ConvLSTM state)."""

    def __init__(self, config: ConvLSTMConfig | None = None):
        super().__init__()
        self.config = cfg = config or ConvLSTMConfig()
        nf, ch = cfg.nf, cfg.channels
        self.enc_input = Encoder(2 * ch, nf)  # stream A: (I_t, I_{t-1}), where the motion is
        self.enc_output = Encoder(2 * ch, nf)  # stream B: (O_{t-1}, P_t), what to keep and what to fix
        self.res_blocks = nn.Sequential(*[ResBlock(4 * nf) for _ in range(cfg.n_res_blocks)])
        self.lstm = ConvLSTMCell(4 * nf, 4 * nf, cfg.lstm_kernel)
        self.up2 = UpConv(4 * nf, 2 * nf)
        self.fuse2 = conv(4 * nf, 2 * nf, 3)  # after concatenating the H/2 skip
        self.up1 = UpConv(2 * nf, nf)
        self.fuse1 = conv(2 * nf, nf, 3)  # after concatenating the full-size skip
        self.out = conv(nf, ch + int(cfg.warp_prev), 7)  # residual (+ gate logit), no activation

    def forward(
        self,
        P_t: torch.Tensor,
        O_prev: torch.Tensor,
        I_t: torch.Tensor,
        I_prev: torch.Tensor,
        hidden: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One recurrent step on (B, C, H, W) frames of any size; returns O_t (B, C, H, W) and (h, c).

        Training loops call this for t >= 1 of a clip (with O_0 = P_0 and hidden=None at t = 1).
        """
        h, w = P_t.shape[-2:]
        pad = (0, (-w) % 4, 0, (-h) % 4)  # two stride-2 levels: sides must be multiples of 4

        def padded(x: torch.Tensor) -> torch.Tensor:
            return ops.pad(x, pad, mode="replicate") if any(pad) else x

        a1, a2, a3 = self.enc_input(padded(torch.cat([I_t, I_prev], dim=1)))  # (B, 2C, H', W') in
        b1, b2, b3 = self.enc_output(padded(torch.cat([O_prev, P_t], dim=1)))
        x = self.res_blocks(a3 + b3)  # (B, 4nf, H'/4, W'/4)
        x, hidden = self.lstm(x, hidden)  # (B, 4nf, H'/4, W'/4)
        x = self.up2(x)  # (B, 2nf, H'/2, W'/2)
        x = act(self.fuse2(torch.cat([x, a2 + b2], dim=1)))  # (B, 2nf, H'/2, W'/2)
        x = self.up1(x)  # (B, nf, H', W')
        x = act(self.fuse1(torch.cat([x, a1 + b1], dim=1)))  # (B, nf, H', W')
        y = self.out(x)[..., :h, :w]  # (B, C [+1], H, W), crop the padding back
        if self.config.warp_prev:  # O_prev is the aligned past: blend it in where the gate opens
            residual, gate = y[:, :-1], torch.sigmoid(y[:, -1:])  # (B, C, H, W), (B, 1, H, W)
            return P_t + gate * (O_prev - P_t) + residual, hidden
        return P_t + y, hidden

    def step(
        self,
        P_t: torch.Tensor,
        O_prev: torch.Tensor | None,
        I_t: torch.Tensor,
        I_prev: torch.Tensor | None,
        state: StreamState | None,
    ) -> tuple[torch.Tensor, StreamState]:
        """Inference step. ``state=None`` marks a shot start: O_t = P_t exactly and a fresh state comes back
        (``O_prev``/``I_prev`` are then ignored and may be None). Otherwise run ``forward``."""
        if state is None:
            return P_t, StreamState()
        if O_prev is None or I_prev is None:
            raise ValueError("O_prev and I_prev are required after the first frame of a shot")
        O_t, hidden = self(P_t, O_prev, I_t, I_prev, state.hidden)
        return O_t, StreamState(hidden)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
                        ) -> TemporalConsistencyNet:
        """Rebuild the network from the config inside its own checkpoint (eval mode)."""
        return _from_checkpoint(path, map_location)

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """``{"model": state_dict, "config": asdict(config), "version", **extra}``, written atomically."""
        return _save_checkpoint(self, path, extra)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: {"model": state_dict, "config": asdict(cfg), "version": 1}
# ---------------------------------------------------------------------------------------------------------


def _save_checkpoint(model: TemporalConsistencyNet, path: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write the weights WITH their config, atomically (temp file then os.replace): a crash mid-write never
    leaves a truncated file under ``path``. ``extra`` (step, optimizer state, metrics) is stored alongside."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**(extra or {}), "model": model.state_dict(), "config": asdict(model.config),
               "version": CHECKPOINT_VERSION}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _from_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> TemporalConsistencyNet:
    """Rebuild the network from its own stored config and load its weights (eval mode)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    version = ckpt.get("version")
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {version}, this code reads {CHECKPOINT_VERSION}")
    model = TemporalConsistencyNet(ConvLSTMConfig(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(map_location).eval()


if __name__ == "__main__":
    for cfg in (ConvLSTMConfig(), ConvLSTMConfig(nf=16)):
        print(f"{cfg}: {count_parameters(TemporalConsistencyNet(cfg)):,} parameters")
