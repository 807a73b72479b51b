"""Training clips for the two stabilizers (paper Sec. 5.2), processed by the per-frame pipeline.

A :class:`Clip` is one training video (never the demo film) seen three ways, all frame-aligned:

* ``gray``       (T, H, W) uint8: the B&W input I_t (BT.601 luma of the color clip), what the whole
                 pipeline receives; flows and occlusion masks are computed on it;
* ``colorized``  (T, H, W, 3) uint8: the per-frame colorizer's output, also the cartoon generator's input;
* ``cartoon``    (T, H, W, 3) uint8: the per-frame cartoon generator applied to ``colorized``.

Lai et al.'s network learns to turn (I, P = colorized or cartoon) into a stable O; Ruder et al.'s
fine-tuning feeds ``colorized`` windows to the cartoon generator. ``shot_starts`` keeps every training
window inside one shot. Clips are stored as one ``<name>.npz`` per video under the stage's build folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deeperfour.film.color import luminance
from deeperfour.film.resize import shrink
from deeperfour.film.shots import detect_shots
from deeperfour.film.video import read_frames
from deeperfour.infer.cartoonize import cartoonize_batch, prior_frames
from deeperfour.infer.colorize import colorize_frames

TARGETS = ("colorized", "cartoon")  # the per-frame results a stabilizer can be trained on


@dataclass
class Clip:
    name: str
    gray: np.ndarray  # (T, H, W) uint8, the input I_t
    colorized: np.ndarray  # (T, H, W, 3) uint8, per-frame colorization
    cartoon: np.ndarray  # (T, H, W, 3) uint8, per-frame cartoon of ``colorized``
    shot_starts: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self):
        t, h, w = self.gray.shape
        for name in TARGETS:
            arr = getattr(self, name)
            if arr.shape != (t, h, w, 3) or arr.dtype != np.uint8:
                raise ValueError(f"clip {self.name!r}: {name} is {arr.shape} {arr.dtype}, "
                                 f"expected ({t}, {h}, {w}, 3) uint8 like gray {self.gray.shape}")
        if self.gray.dtype != np.uint8:
            raise ValueError(f"clip {self.name!r}: gray must be uint8, got {self.gray.dtype}")

    def __len__(self) -> int:
        return len(self.gray)

    def windows(self, length: int) -> list[int]:
        """First frames s of every window [s, s + length) that lies inside one shot."""
        ends = [*self.shot_starts[1:], len(self)]
        return [s for a, b in zip(self.shot_starts, ends, strict=True) for s in range(a, b - length + 1)]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.partial.npz")
        np.savez(tmp, gray=self.gray, colorized=self.colorized, cartoon=self.cartoon,
                 shot_starts=np.asarray(self.shot_starts, dtype=np.int64))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Clip:
        with np.load(path) as z:
            return cls(Path(path).stem, z["gray"], z["colorized"], z["cartoon"], z["shot_starts"].tolist())


def load_clips(folder: str | os.PathLike) -> list[Clip]:
    """Every ``*.npz`` clip of a folder, sorted by name."""
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no training clips (*.npz); run the temporal_loss stage first")
    return [Clip.load(p) for p in paths]


def cartoonize_frames(generator: nn.Module, frames: Sequence[np.ndarray], device: torch.device | str = "cpu",
                      batch: int = 4, precision: str = "bf16", shot_starts: Sequence[int] = (0,),
                      sources: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W, 3) uint8 through a cartoon generator (RGB [-1, 1] interface); a
    generator with the abstraction prior gets the clip's abstraction streamed through each shot
    (``prior_frames``; flow on ``sources``, the B&W frames)."""
    inputs = prior_frames(generator, frames, shot_starts, sources)  # (N, H, W, 3)
    return np.concatenate([cartoonize_batch(generator, inputs[i : i + batch], device, precision)
                           for i in range(0, len(inputs), batch)])


def build_clip(video: str | os.PathLike, colorizer: nn.Module, generator: nn.Module, render_factor: int,
               chroma_scale: float, max_side: int = 256, stride: int = 1, max_frames: int = 0,
               device: torch.device | str = "cpu", precision: str = "bf16", progress: bool = True) -> Clip:
    """Decode a COLOR training video, shrink it (longer side ``max_side``), keep every ``stride``-th frame,
    reduce it to luma, and run the per-frame pipeline (colorize, then cartoonize) on it."""
    frames = []
    for i, f in enumerate(read_frames(video)):
        if max_frames and len(frames) >= max_frames:
            break
        if i % stride == 0:
            frames.append(shrink(f, max_side))
    gray = np.stack([luminance(f) for f in frames])  # (T, H, W)
    name = Path(video).stem
    colorized = np.stack(list(tqdm(colorize_frames(colorizer, gray, render_factor, chroma_scale, device,
                                                   precision=precision),
                                   total=len(gray), desc=f"colorize {name}", disable=not progress)))
    shots = detect_shots(iter(gray))
    cartoon = cartoonize_frames(generator, list(colorized), device, precision=precision, shot_starts=shots,
                                sources=gray)
    return Clip(name, gray, colorized, cartoon, shots)
