"""The B&W film maker: a color clip -> a grayscale "old film", with its color original kept.

No registry ships real black-and-white film, so DeeperFour makes its demo film from real
color footage: BT.601 luminance (``deeperfour.film.color.luminance``), plus an optional, seeded
old-film degradation. The color original is the ground truth for colorization metrics.

Every random draw comes from ``numpy.random.default_rng([seed, tag, index])``, so frame i
looks the same whether the film is made in one pass, resumed, or made in parallel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from deeperfour.film.color import luminance
from deeperfour.film.outputs import check_video_output, same_file
from deeperfour.film.video import VideoWriter, probe, read_frames


@dataclass(frozen=True)
class Degradation:
    """Strengths of the old-film look; all zero = clean luminance."""

    grain: float = 0.0  # std of Gaussian film grain, in 8-bit levels (e.g. 6)
    flicker: float = 0.0  # std of the per-frame global brightness gain (e.g. 0.04 = ±4 %)
    scratches: float = 0.0  # expected number of vertical scratches per frame (e.g. 0.6)
    vignette: float = 0.0  # darkening at the corners, 0..1 (e.g. 0.3)
    blur: float = 0.0  # Gaussian blur sigma in pixels (e.g. 0.7)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            top = 1.0 if name == "vignette" else math.inf
            try:
                ok = math.isfinite(float(value)) and 0 <= float(value) <= top
            except (TypeError, ValueError):
                ok = False
            if not ok:
                valid = "0..1" if name == "vignette" else "a finite number >= 0"
                raise ValueError(f"degradation {name} = {value}: must be {valid} (0 = off)")

    @property
    def active(self) -> bool:
        return any(v > 0 for v in asdict(self).values())


def _rng(seed: int, tag: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, tag, index])


def _vignette(h: int, w: int, strength: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2  # 0 at centre, 2 at corners
    return 1.0 - strength * np.clip(r2 / 2.0, 0, 1) ** 1.5  # (H, W)


def degrade(gray: np.ndarray, index: int, deg: Degradation, seed: int = 0) -> np.ndarray:
    """Apply the old-film look to frame ``index`` of a film: (H, W) uint8 -> (H, W) uint8."""
    if not deg.active:
        return gray
    h, w = gray.shape
    y = gray.astype(np.float32)
    if deg.blur > 0:
        y = cv2.GaussianBlur(y, (0, 0), deg.blur)
    if deg.flicker > 0:
        # smooth flicker: a gain drawn per 3-frame segment, linearly interpolated
        seg, t = divmod(index, 3)
        g0 = _rng(seed, 1, seg).normal(1.0, deg.flicker)
        g1 = _rng(seed, 1, seg + 1).normal(1.0, deg.flicker)
        y *= g0 + (g1 - g0) * t / 3.0
    if deg.vignette > 0:
        y *= _vignette(h, w, deg.vignette)
    if deg.scratches > 0:
        # a scratch lives for 6-frame segments at a fixed column that drifts slowly
        seg = index // 6
        r = _rng(seed, 2, seg)
        for _ in range(r.poisson(deg.scratches)):
            x = int(r.uniform(0, w)) + (index % 6) // 3
            width = int(r.integers(1, 3))
            value = 235.0 if r.random() < 0.7 else 25.0
            y0, y1 = sorted(r.integers(0, h, size=2))
            y[max(0, y0 - h // 3):y1, x:x + width] = value
    if deg.grain > 0:
        y += _rng(seed, 3, index).normal(0.0, deg.grain, size=(h, w)).astype(np.float32)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def make_bw_film(color_src: str | os.PathLike, bw_out: str | os.PathLike,
                 color_out: str | os.PathLike | None = None, deg: Degradation = Degradation(),
                 seed: int = 0, max_frames: int | None = None, progress: bool = True,
                 log: Callable[[str], None] = print) -> int:
    """Write the grayscale film ``bw_out`` (lossless FFV1 when .mkv) with the source's audio,
    and optionally the decoded color original ``color_out`` (lossless) as ground truth.

    Streams frame by frame; both outputs appear only when complete, and never over the source.
    A variable-frame-rate source is written at its average rate, every frame kept (a note says so).
    Returns the frame count.
    """
    info = probe(color_src)
    check_video_output(bw_out, "-o", inputs=[color_src])
    if color_out:
        check_video_output(color_out, "--color-out", inputs=[color_src])
        if same_file(color_out, bw_out):
            raise ValueError(f"--color-out {color_out}: is the same file as -o {bw_out}; give the two "
                             "films different names")
    if info.variable_rate:
        log(f"note: {color_src} has a variable frame rate; the output is written at a constant {info.fps} "
            "fps with every frame kept (timing of individual frames may shift slightly)")
    n = info.n_frames if max_frames is None else min(info.n_frames, max_frames)
    bw_w = VideoWriter(bw_out, info.fps, info.width, info.height, gray=True, audio_from=color_src)
    col_w = (VideoWriter(color_out, info.fps, info.width, info.height, audio_from=color_src)
             if color_out else None)
    try:
        frames = read_frames(color_src, stop=n)
        for i, rgb in enumerate(tqdm(frames, total=n, desc=f"B&W film {Path(bw_out).name}",
                                     unit="frame", disable=not progress)):
            bw_w.write(degrade(luminance(rgb), i, deg, seed))
            if col_w is not None:
                col_w.write(rgb)
    except BaseException:
        bw_w.abort()
        if col_w is not None:
            col_w.abort()
        raise
    bw_w.close()
    if col_w is not None:
        col_w.close()
    return bw_w.n_written
