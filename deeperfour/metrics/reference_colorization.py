"""Scoring reference-guided colorization (issue 15; stage ``colorize_reference``).

The protocol of the exemplar-based video colorization papers (the NTIRE 2023 challenge gives references
at frames 1, 50 and 100): the color original's frames serve as the artist's references, every other
frame is scored against the original. Cases on the demo film (:func:`reference_cases`):

* ``first_frame``: (a) the first frame of every shot;
* ``every_50``: (b) those and every 50th frame;
* ``cross_reference``: (c) each shot gets, as a whole-shot reference (``shotNN.png``), the middle frame
  of ANOTHER shot (the previous one; the first shot takes the second's): a different view of similar
  streets, placed by global correspondence (``infer.propagate``: SIFT + homography, else Welsh et al.'s
  transfer).

Methods (:data:`METHODS`): ``gray`` (the input), ``copy`` (the nearest keyframe's chroma, no motion),
``chain_warp`` (chained flow warps from the previous keyframe only), ``classical`` (the full classical
path) and ``refined`` (classical + the learned refiner). Metrics (:data:`METRICS`): CIEDE2000, PSNR, SSIM
and colorfulness on every non-reference frame; CDC and E_warp over the whole film (E_warp's flows and
masks from the B&W film, computed once for all films by :class:`FilmScorer`).
"""

from __future__ import annotations

import os
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from deeperfour.film.color import gray_to_rgb
from deeperfour.film.keyframes import Shot
from deeperfour.film.shots import shot_ranges
from deeperfour.infer.propagate import PropagateSettings, propagate
from deeperfour.metrics.film import (
    CDCAccumulator,
    ciede2000,
    colorfulness,
    masked_warp_error,
    pair_flow_mask,
    psnr,
    ssim,
)

METHODS = ("gray", "copy", "chain_warp", "classical", "refined")
METRICS = ("ciede2000", "psnr", "ssim", "colorfulness", "cdc", "ewarp")
CASES = ("first_frame", "every_50", "cross_reference")
MODE_OF = {"copy": "copy", "chain_warp": "chain", "classical": "full", "refined": "full"}


def reference_cases(color: Sequence[np.ndarray], shot_starts: Sequence[int], every: int = 50
                    ) -> dict[str, dict]:
    """{case: {frame index or Shot(k): RGB reference}} for the three cases of the module doc."""
    n = len(color)
    ranges = shot_ranges(list(shot_starts), n)
    first = {a: color[a] for a, _ in ranges}
    extra = {i: color[i] for i in range(every, n, every) if i not in first}
    cross = {}
    for k in range(len(ranges)):
        other = k - 1 if k > 0 else min(1, len(ranges) - 1)
        a, b = ranges[other]
        cross[Shot(k)] = color[(a + b - 1) // 2]
    return {"first_frame": first, "every_50": {**first, **extra}, "cross_reference": cross}


def keyframe_distance(frames: Sequence[int], shot_starts: Sequence[int], n: int) -> np.ndarray:
    """(n,) frames to the nearest keyframe of the same shot (0 at a keyframe; -1 in a shot without)."""
    out = np.full(n, -1, np.int64)
    keys = sorted(frames)
    for a, b in shot_ranges(list(shot_starts), n):
        ks = [k for k in keys if a <= k < b]
        if ks:
            idx = np.arange(a, b)
            out[a:b] = np.min(np.abs(idx[:, None] - np.asarray(ks)[None, :]), axis=1)
    return out


def method_film(method: str, gray: Sequence[np.ndarray], shot_starts: Sequence[int], references: Mapping,
                refiner: Callable | None = None, settings: PropagateSettings | None = None):
    """The frames (an iterable, RGB uint8) of ``method`` for the B&W frames ``gray`` and ``references``;
    the :class:`~deeperfour.infer.propagate.Propagation` for the propagation methods (its placements)."""
    if method == "gray":
        return [gray_to_rgb(g) for g in gray]
    if method not in MODE_OF:
        raise ValueError(f"method {method!r}: choose {', '.join(METHODS)}")
    if method == "refined" and refiner is None:
        raise ValueError("method 'refined' needs the trained refiner")
    s = settings or PropagateSettings()
    s = PropagateSettings(**{**s.__dict__, "mode": MODE_OF[method]})
    return propagate(list(gray), shot_starts, references, s, refiner if method == "refined" else None)


class FilmScorer:
    """Scores versions of one film against its color original: E_warp's flows and occlusion masks come
    from the B&W ``gray`` frames, computed once here (all within-shot pairs). The per-frame metrics of a
    film run in ``workers`` threads (numpy and skimage release the GIL: the stage's scoring took 324 s
    instead of 400 on 2 cores); the results do not depend on their number. The film streams through:
    at most 2 x ``workers`` of its frames are in flight at once."""

    def __init__(self, gray: Sequence[np.ndarray], truth: Sequence[np.ndarray], shot_starts: Sequence[int],
                 progress: Callable | None = None, workers: int | None = None):
        if len(gray) != len(truth):
            raise ValueError(f"{len(gray)} B&W frames but {len(truth)} color frames")
        self.truth, self.starts, self.n = truth, list(shot_starts), len(truth)
        self.workers = workers or min(4, os.cpu_count() or 1)
        cuts = set(self.starts)
        self.pairs = {}
        for t in range(self.n - 1):
            if t + 1 not in cuts:
                self.pairs[t] = pair_flow_mask(gray[t], gray[t + 1])
            if progress:
                progress()

    def _frame(self, t: int, f: np.ndarray, prev: np.ndarray | None, scored: bool
               ) -> tuple[dict[str, float] | None, float | None]:
        """(fidelity and colorfulness of frame t or None, E_warp of the pair (t-1, t) or None)."""
        fid = None
        if scored:
            truth = self.truth[t]
            fid = {"ciede2000": ciede2000(f, truth), "psnr": psnr(f, truth),
                   "ssim": ssim(f, truth), "colorfulness": colorfulness(f)}
        ew = None
        if prev is not None and t - 1 in self.pairs:
            e = masked_warp_error(prev, f, *self.pairs[t - 1])
            ew = None if np.isnan(e) else e
        return fid, ew

    def score(self, frames, scored: Sequence[int]) -> tuple[dict[str, float], dict[int, float]]:
        """(the six metrics, {frame: CIEDE2000}) of ``frames`` (iterated once): fidelity and colorfulness
        means over the ``scored`` frames, CDC and E_warp over the whole film."""
        scored = set(scored)
        cdc = CDCAccumulator(self.starts)
        pending: deque = deque()  # at most 2 x workers frames in flight: the film streams through
        results = []  # in frame order: the means do not depend on the threads
        prev = None
        with ThreadPoolExecutor(self.workers) as pool:
            for t, f in enumerate(frames):
                cdc.update(f)
                pending.append(pool.submit(self._frame, t, f, prev, t in scored))
                prev = f
                if len(pending) > 2 * self.workers:
                    results.append(pending.popleft().result())
            results += [j.result() for j in pending]
        if len(results) != self.n:
            raise ValueError(f"the film has {len(results)} frames, its original {self.n}")
        per: dict[str, list[float]] = defaultdict(list)
        ciede: dict[int, float] = {}
        for t, (fid, _) in enumerate(results):
            if fid is not None:
                ciede[t] = fid["ciede2000"]
                for k, v in fid.items():
                    per[k].append(v)
        ew = [e for _, e in results if e is not None]
        out = {k: float(np.mean(v)) for k, v in per.items()}
        out.update(cdc=cdc.value, ewarp=float(np.mean(ew)) if ew else float("nan"))
        return {k: round(out[k], 6) for k in METRICS}, ciede


def subset(ciede: Mapping[int, float], frames: Sequence[int]) -> float:
    """Mean CIEDE2000 over ``frames`` (NaN when empty)."""
    vals = [ciede[i] for i in frames if i in ciede]
    return round(float(np.mean(vals)), 6) if vals else float("nan")


def drift_curve(ciede: Mapping[int, float], distance: np.ndarray) -> list[list[float]]:
    """[[distance, mean CIEDE2000 of the frames at that distance from their keyframe]], by distance."""
    by: dict[int, list[float]] = defaultdict(list)
    for i, v in ciede.items():
        if distance[i] > 0:
            by[int(distance[i])].append(v)
    return [[d, round(float(np.mean(by[d])), 6)] for d in sorted(by)]
