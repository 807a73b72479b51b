"""Scores of films against their ground truth, streaming (one decoding pass per film set).

Definitions follow reference Sec. 4 (``deeperfour.metrics.film``): per-frame PSNR, SSIM,
CIEDE2000 and colorfulness (every ``stride``-th frame), and CDC over all consecutive
frames within shots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deeperfour.film.color import gray_to_rgb, luma_chroma_to_rgb, luminance
from deeperfour.metrics import film as metrics


def preview_indices(shot_starts: Sequence[int], n_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread over the film, each in the middle of a shot where possible."""
    bounds = list(shot_starts) + [n_frames]
    mids = [(bounds[i] + bounds[i + 1]) // 2 for i in range(len(shot_starts))]
    if k <= len(mids):
        return [mids[round(j)] for j in np.linspace(0, len(mids) - 1, k)]
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, k)})


class FilmScores:
    """Running scores of one film against the ground truth, fed frame by frame.

    psnr, ssim, ciede2000, colorfulness: means over every ``stride``-th frame; cdc: all frames.
    With ``truth_only`` it scores the ground truth itself (colorfulness and cdc).
    """

    def __init__(self, shot_starts: Sequence[int] = (), stride: int = 1, truth_only: bool = False):
        keys = ("colorfulness",) if truth_only else ("psnr", "ssim", "ciede2000", "colorfulness")
        self.per: dict[str, list[float]] = {k: [] for k in keys}
        self.cdc = metrics.CDCAccumulator(shot_starts)
        self.stride, self.i = stride, 0

    def update(self, pred: np.ndarray, truth: np.ndarray | None = None) -> None:
        p = gray_to_rgb(pred)  # gray frames are compared as gray RGB
        if self.i % self.stride == 0:
            if truth is not None:
                self.per["psnr"].append(metrics.psnr(p, truth))
                self.per["ssim"].append(metrics.ssim(p, truth))
                self.per["ciede2000"].append(metrics.ciede2000(p, truth))
            self.per["colorfulness"].append(metrics.colorfulness(p))
        self.cdc.update(p)
        self.i += 1

    def result(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self.per.items()} | {"cdc": self.cdc.value}


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
                 truth_colorfulness: float, criterion: str = "colorfulness", ratio: float = 1.0,
                 gray_ciede: float | None = None, budget: float = 1.0) -> float:
    """Pick the chroma scale on VALIDATION data.

    ``ciede``: the lowest CIEDE2000. ``colorfulness``: colorfulness closest to ``ratio`` x the
    validation ground truth's (a ratio below 1 hedges against wrong hues). ``budget``: the most
    colorful scale whose CIEDE2000 stays within ``budget`` of the gray input's (``gray_ciede``):
    as much color as the model's hues earn on held-out footage, for at most that cost over gray.
    """
    scales, ciede = np.asarray(scales, float), np.asarray(ciede, float)
    if criterion == "ciede":
        return float(scales[int(np.argmin(ciede))])
    if criterion == "colorfulness":
        target = ratio * truth_colorfulness
        return float(scales[int(np.argmin(np.abs(np.asarray(colorfulness) - target)))])
    if criterion == "budget":
        if gray_ciede is None:
            raise ValueError("calibration 'budget' needs the gray input's CIEDE2000 (gray_ciede)")
        ok = ciede <= gray_ciede + budget
        if not ok.any():  # every scale costs more: the least colorful one
            return float(scales.min())
        return float(scales[ok].max())
    raise ValueError(f"calibration must be 'ciede', 'colorfulness' or 'budget', got {criterion!r}")


def colorization_metrics(bw_path, color_path, colorized_path, chroma: dict[int, np.ndarray],
                         chroma_scale: float, mean_uv: np.ndarray, shot_starts: Sequence[int],
                         stride: int = 1) -> dict[str, dict]:
    """The ``colorize`` stage's contract, in ONE decoding pass over the three films.

    model: the colorized film; gray: the B&W input itself; mean_chroma: the training set's mean
    chroma everywhere; shuffled: each frame's chroma replaced by the model's chroma of a frame
    from another shot (``shuffled_partner``), same scale; ground_truth: the color original.
    ``chroma`` holds the model's unscaled chroma of EVERY frame (model resolution).
    """
    from deeperfour.film.video import probe, read_frames

    n = probe(bw_path).n_frames
    if len(chroma) != n:
        raise ValueError(f"need the model chroma of all {n} frames, got {len(chroma)}")
    mean = np.asarray(mean_uv, np.float32).reshape(1, 1, 2)
    names = ("model", "gray", "mean_chroma", "shuffled")
    acc = {name: FilmScores(shot_starts, stride) for name in names}
    truth_acc = FilmScores(shot_starts, stride, truth_only=True)
    films = zip(read_frames(bw_path, gray=True), read_frames(color_path), read_frames(colorized_path),
                strict=True)
    for i, (g, t, colorized) in enumerate(films):
        preds = {
            "model": colorized,
            "gray": g,
            "mean_chroma": luma_chroma_to_rgb(g, np.broadcast_to(mean, (*g.shape, 2))),
            "shuffled": luma_chroma_to_rgb(g, chroma[shuffled_partner(i, shot_starts, n)] * chroma_scale),
        }
        for name, p in preds.items():
            acc[name].update(p, t)
        truth_acc.update(t)
    return {name: a.result() for name, a in acc.items()} | {"ground_truth": truth_acc.result()}


def held_out_scores(truths: Sequence[np.ndarray], chromas: Sequence[np.ndarray], chroma_scale: float
                    ) -> dict[str, dict[str, float]]:
    """Scores on held-out color frames that are not a film with shots (the face clip's last frames):
    ``model`` (their luma + ``chroma_scale`` x the model's chroma ``chromas``, at the truths' size) and
    ``gray`` (the luma alone), each with mean CIEDE2000, PSNR and colorfulness; ``ground_truth`` with
    the frames' own colorfulness."""
    names = ("model", "gray")
    per: dict[str, dict[str, list[float]]] = {n: {"ciede2000": [], "psnr": [], "colorfulness": []}
                                              for n in names}
    truth_col = []
    for t, uv in zip(truths, chromas, strict=True):
        y = luminance(t)
        preds = {"model": luma_chroma_to_rgb(y, uv * chroma_scale), "gray": gray_to_rgb(y)}
        for n, p in preds.items():
            per[n]["ciede2000"].append(metrics.ciede2000(p, t))
            per[n]["psnr"].append(metrics.psnr(p, t))
            per[n]["colorfulness"].append(metrics.colorfulness(p))
        truth_col.append(metrics.colorfulness(t))
    out = {n: {k: float(np.mean(v)) for k, v in d.items()} for n, d in per.items()}
    return out | {"ground_truth": {"colorfulness": float(np.mean(truth_col))}, "n_frames": len(truth_col)}
