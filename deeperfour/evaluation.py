"""Scores of a film against its ground truth, computed in one streaming pass.

Definitions follow reference Sec. 4 (``deeperfour.metrics``): per-frame PSNR, SSIM,
CIEDE2000 and colorfulness (every ``stride``-th frame), and CDC over all consecutive
frames within shots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deeperfour import metrics
from deeperfour.color import gray_to_rgb, luma_chroma_to_rgb, luminance


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


def shuffled_partner(i: int, shot_starts: Sequence[int], n_frames: int) -> int:
    """The frame whose chroma replaces frame i's in the shuffled-chroma control: the frame at the
    same offset (modulo its length) in the NEXT shot (cyclically). Needs at least two shots."""
    if len(shot_starts) < 2:
        raise ValueError("the shuffled-chroma control needs a film with at least two shots")
    bounds = list(shot_starts) + [n_frames]
    k = max(j for j, s in enumerate(shot_starts) if s <= i)
    k2 = (k + 1) % len(shot_starts)
    start2, length2 = bounds[k2], bounds[k2 + 1] - bounds[k2]
    return start2 + (i - bounds[k]) % length2


def scale_scores(truths: Sequence[np.ndarray], chromas: Sequence[np.ndarray], scales: Sequence[float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean CIEDE2000 and colorfulness of luma + scale x chroma over frames, for every scale
    (the validation-clip calibration curve)."""
    ciede, col = np.zeros(len(scales)), np.zeros(len(scales))
    for t, uv in zip(truths, chromas, strict=True):
        y = luminance(t)
        for k, s in enumerate(scales):
            rgb = luma_chroma_to_rgb(y, uv * s)
            ciede[k] += metrics.ciede2000(rgb, t)
            col[k] += metrics.colorfulness(rgb)
    return ciede / len(truths), col / len(truths)


def choose_scale(scales: Sequence[float], ciede: np.ndarray, colorfulness: np.ndarray,
                 truth_colorfulness: float, criterion: str = "colorfulness", ratio: float = 1.0) -> float:
    """Pick the chroma scale on VALIDATION data: ``ciede`` = lowest CIEDE2000; ``colorfulness`` =
    colorfulness closest to ``ratio`` x the validation ground truth's (calibrated saturation; a
    ratio below 1 hedges against wrong hues, as a regression to the mean would)."""
    if criterion == "ciede":
        return float(scales[int(np.argmin(ciede))])
    if criterion == "colorfulness":
        target = ratio * truth_colorfulness
        return float(scales[int(np.argmin(np.abs(np.asarray(colorfulness) - target)))])
    raise ValueError(f"calibration must be 'ciede' or 'colorfulness', got {criterion!r}")


def colorization_metrics(bw_path, color_path, colorized_path, chroma: dict[int, np.ndarray],
                         chroma_scale: float, mean_uv: np.ndarray, shot_starts: Sequence[int],
                         stride: int = 1) -> dict[str, dict]:
    """The ``colorize`` stage's contract, one streaming pass per variant over the demo film.

    model: the colorized film; gray: the B&W input itself; mean_chroma: the training set's mean
    chroma everywhere; shuffled: each frame's chroma replaced by the model's chroma of a frame
    from another shot (``shuffled_partner``), same scale; ground_truth: the color original.
    ``chroma`` holds the model's unscaled chroma of EVERY frame (model resolution).
    """
    from deeperfour.video import probe, read_frames

    n = probe(bw_path).n_frames
    if len(chroma) != n:
        raise ValueError(f"need the model chroma of all {n} frames, got {len(chroma)}")
    def grays():
        return read_frames(bw_path, gray=True)  # a fresh stream per variant

    def truth():
        return read_frames(color_path)

    mean = np.asarray(mean_uv, np.float32).reshape(1, 1, 2)
    variants = {
        "model": read_frames(colorized_path),
        "gray": grays(),
        "mean_chroma": (luma_chroma_to_rgb(g, np.broadcast_to(mean, (*g.shape, 2))) for g in grays()),
        "shuffled": (luma_chroma_to_rgb(g, chroma[shuffled_partner(i, shot_starts, n)] * chroma_scale)
                     for i, g in enumerate(grays())),
    }
    out = {name: colorization_scores(frames, truth(), shot_starts, stride)
           for name, frames in variants.items()}
    out["ground_truth"] = ground_truth_scores(truth(), shot_starts, stride)
    return out
