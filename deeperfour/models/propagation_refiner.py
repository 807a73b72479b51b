"""The propagation refiner (issue 15): a small U-Net that corrects the chroma the classical path carried.

Reference-guided colorization (``infer/propagate.py``) warps a keyframe's chroma through a shot; where
the flow is unsure, Levin et al.'s fill guesses from the surroundings, and along a long chain the colors
drift. The refiner sees, per frame, at the propagation's work size (longer side 320 px):

    x = [Y_t, U, V, c, |Y_t - Y_key|]          (N, 5, h, w)

the frame's luma, the propagated chroma, its confidence, and the luma mismatch to the keyframe (the
keyframe's luma travels with its chroma, so a pixel whose colors came from a differently lit or
different object shows it), and returns corrected chroma

    uv = [U, V] + delta(x)                      (N, 2, h, w)

Its last convolution starts at zero, so the untrained refiner is the classical path exactly; training
(``train/propagation_refiner.py``) only learns the correction. Three levels (strides 1, 2, 4), widths
``width`` x (1, 2, 4), ReLU, bilinear upsampling: 0.27 M parameters at width 24 (the issue allows 1 M).
Inputs of any size (padded to a multiple of 4 inside).

Checkpoints: ``{"model": state_dict, "config": asdict(RefinerConfig), "version": 1, **extra}``, one file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CHECKPOINT_VERSION = 1
IN_CHANNELS = 5  # Y, U, V, confidence, |Y - Y_key|
INPUT_SCALE = (1.0, 4.0, 4.0, 1.0, 4.0)  # chroma and mismatch live in about +-0.25: brought to about +-1


@dataclass(frozen=True)
class RefinerConfig:
    width: int = 24  # channels at full work size; x2 at stride 2, x4 at stride 4
    max_delta: float = 0.25  # the correction is max_delta * tanh(.), in centered YUV chroma units


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.ReLU(inplace=True))


class PropagationRefiner(nn.Module):
    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        self.config = cfg = config or RefinerConfig()
        w = cfg.width
        self.enc1 = _block(IN_CHANNELS, w)  # (N, w, h, w)
        self.enc2 = _block(w, 2 * w, stride=2)  # (N, 2w, h/2, w/2)
        self.enc3 = _block(2 * w, 4 * w, stride=2)  # (N, 4w, h/4, w/4)
        self.dec2 = _block(4 * w + 2 * w, 2 * w)  # upsampled enc3 ++ enc2
        self.dec1 = _block(2 * w + w, w)  # upsampled dec2 ++ enc1
        self.out = nn.Conv2d(w, 2, 3, 1, 1)
        self.register_buffer("scale", torch.tensor(INPUT_SCALE).view(1, -1, 1, 1), persistent=False)
        nn.init.zeros_(self.out.weight)  # identity at init: the classical path's chroma
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 5, H, W) = [Y, U, V, conf, mismatch] -> corrected chroma (N, 2, H, W)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        xp = x * self.scale
        xp = F.pad(xp, (0, pw, 0, ph), mode="replicate") if ph or pw else xp
        e1 = self.enc1(xp)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False),
                                  e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False),
                                  e1], 1))
        delta = self.config.max_delta * torch.tanh(self.out(d1))[..., :h, :w]
        return x[:, 1:3] + delta

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
                        ) -> PropagationRefiner:
        """Rebuild the network from the config inside its own checkpoint (eval mode)."""
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: not a readable refiner checkpoint ({e}); "
                             "run `dvc repro colorize_reference` to make one") from e
        if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION or "config" not in ckpt:
            raise ValueError(f"{path}: not a propagation refiner checkpoint (version "
                             f"{ckpt.get('version') if isinstance(ckpt, dict) else None}, expected "
                             f"{CHECKPOINT_VERSION}); run `dvc repro colorize_reference` to make one")
        model = cls(RefinerConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return model.to(map_location).eval()

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """``{"model", "config", "version", **extra}``, written atomically (temp file, then replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**(extra or {}), "model": self.state_dict(), "config": asdict(self.config),
                   "version": CHECKPOINT_VERSION}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def refiner_inputs(gray: np.ndarray, yuv: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """The refiner's input (5, h, w) float32 from a frame's luma ``gray`` (h, w) uint8, the propagated
    ``yuv`` (h, w, 3) (channel 0: the keyframe's luma in [0, 1], 1-2: centered chroma) and ``conf``."""
    y = np.asarray(gray, np.float32) / 255
    yuv = np.asarray(yuv, np.float32)
    return np.stack([y, yuv[..., 1], yuv[..., 2], np.asarray(conf, np.float32),
                     np.abs(y - yuv[..., 0])]).astype(np.float32)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
