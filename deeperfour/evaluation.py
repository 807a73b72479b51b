"""Scores of a film against its ground truth, computed in one streaming pass.

Definitions follow reference Sec. 4 (``deeperfour.metrics``): per-frame PSNR, SSIM,
CIEDE2000 and colorfulness (every ``stride``-th frame), and CDC over all consecutive
frames within shots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deeperfour import metrics
from deeperfour.color import gray_to_rgb


def preview_indices(shot_starts: Sequence[int], n_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread over the film, each in the middle of a shot where possible."""
    bounds = list(shot_starts) + [n_frames]
    mids = [(bounds[i] + bounds[i + 1]) // 2 for i in range(len(shot_starts))]
    if k <= len(mids):
        return [mids[round(j)] for j in np.linspace(0, len(mids) - 1, k)]
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, k)})


def colorization_scores(pred: Iterable[np.ndarray], truth: Iterable[np.ndarray],
                        shot_starts: Sequence[int] = (), stride: int = 1) -> dict[str, float]:
    """psnr, ssim, ciede2000, colorfulness (means over every ``stride``-th frame) and cdc
    (all frames) of ``pred`` against ``truth``; gray frames are compared as gray RGB."""
    per: dict[str, list[float]] = {"psnr": [], "ssim": [], "ciede2000": [], "colorfulness": []}

    def frames():
        for i, (p, t) in enumerate(zip(pred, truth, strict=True)):
            p = gray_to_rgb(p)
            if i % stride == 0:
                per["psnr"].append(metrics.psnr(p, t))
                per["ssim"].append(metrics.ssim(p, t))
                per["ciede2000"].append(metrics.ciede2000(p, t))
                per["colorfulness"].append(metrics.colorfulness(p))
            yield p

    cdc = metrics.cdc(frames(), shot_starts)
    return {k: float(np.mean(v)) for k, v in per.items()} | {"cdc": float(cdc)}


def ground_truth_scores(truth: Iterable[np.ndarray], shot_starts: Sequence[int] = (),
                        stride: int = 1) -> dict[str, float]:
    """colorfulness (every ``stride``-th frame) and cdc of the ground-truth film itself."""
    col: list[float] = []

    def frames():
        for i, t in enumerate(truth):
            if i % stride == 0:
                col.append(metrics.colorfulness(t))
            yield t

    cdc = metrics.cdc(frames(), shot_starts)
    return {"colorfulness": float(np.mean(col)), "cdc": float(cdc)}
