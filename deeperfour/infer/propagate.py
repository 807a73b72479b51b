"""Reference-guided colorization, the classical path (issue 15): carry an artist's colors through a shot.

An artist colors a keyframe of every shot (``deeperfour keyframes`` writes them, ``film.keyframes``
reads them back); :func:`propagate` carries the reference chroma to every frame of the same shot with
optical flow and recombines it with each frame's own luma, so output luma = input luma (within
8-bit rounding). Per shot:

1. **Read** (pass 1, streaming): every frame is reduced to a small work size (longer side
   ``work_side``, 320 px by default) and kept, gray uint8, in a per-shot buffer; a whole-shot reference
   (``shotNN.png``, not a frame of the film) is matched meanwhile to a few frames of the shot.
2. **Forward** (pass 2): from each keyframe to the next, the chroma is warped by DIS flow both frame to
   frame (chained) and directly from the keyframe (flow frame -> keyframe computed directly); per pixel
   the warp with the higher confidence wins. Confidence = a soft forward-backward check,
   exp(-|w + w'|^2 / (0.01 (|w|^2 + |w'|^2) + 0.5)) (Ruder et al.'s rule made soft), times "stays in the
   frame", times the confidence of what was warped (so a chain's confidence decays where it drifts).
3. **Backward and blend** (pass 3): the same from the next keyframe backwards; a frame between two
   keyframes blends the two by confidence and distance (:func:`blend_weights`: weights that sum to 1).
   Low-confidence pixels are then filled by Levin et al.'s optimization (:func:`levin_fill`).
4. **Output** (pass 4, streaming again): each frame's full-resolution luma + its chroma, upsampled.

Never across a cut: a frame before a shot's first keyframe takes the nearest keyframe of its own shot
(backward only); a shot without any reference stays gray and is listed in
:attr:`Propagation.uncolored_shots` (known before the first frame), for the caller to fall back to
automatic keyframes (the colorizer).

Memory per shot is bounded by its work-size buffers (gray uint8 + chroma and confidence float16 at
320x180: about 0.3 MB a frame), which move to a temporary file (``np.memmap``) above ``spill_mb``; full
frames are only ever held one (or two: the read and the output pass) at a time. A film path is decoded
twice (once ahead for passes 1-3, once behind for the output).

A whole-shot reference is placed by global correspondence: SIFT features of the reference matched to
those of up to ``max_candidates`` frames of the shot (Lowe's ratio test), the frame with the most RANSAC
homography inliers is its keyframe and the reference is warped onto it when there are at least
``min_inliers``; otherwise (a still that no homography explains) its colors are transferred by
luminance statistics, in the spirit of Welsh, Ashikhmin & Mueller 2002 (:func:`transfer_colors`),
onto the frame with the most matches.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
import torch
from scipy.spatial import cKDTree

from deeperfour.core.precision import autocast
from deeperfour.film.color import gray_to_rgb, luma_chroma_to_rgb, luminance, recombine_luma
from deeperfour.film.flow import estimate_flow, in_frame_mask, warp
from deeperfour.film.keyframes import References, Shot, check_reference_keys, read_references
from deeperfour.film.outputs import check_video_output
from deeperfour.film.resize import fit_longer_side, resize
from deeperfour.film.shots import ShotDetector, shot_ranges
from deeperfour.film.video import VideoWriter, probe, read_frames
from deeperfour.models.propagation_refiner import PropagationRefiner, refiner_inputs


@dataclass(frozen=True)
class PropagateSettings:
    work_side: int = 320  # px, longer side of the flow and chroma propagation (chroma is low-frequency)
    preset: str = "medium"  # DIS preset; medium: 0.07 CIEDE2000 better than fast on the demo film
    levin_side: int = 160  # px, longer side at which Levin's system is solved
    hard: float = 0.5  # confidence from which a pixel's chroma is a hard constraint of the fill
    data_weight: float = 1.0  # lambda: soft constraint of a pixel below ``hard``, times its confidence
    match_side: int = 640  # px, longer side at which a whole-shot reference is matched (SIFT)
    max_candidates: int = 16  # frames of a shot a whole-shot reference is matched against
    min_inliers: int = 15  # RANSAC inliers needed to place it by homography; else color transfer
    transfer_confidence: float = 0.5  # confidence of chroma placed by the color transfer
    spill_mb: float = 64.0  # a shot's buffers above this size live in a temporary file
    mode: str = "full"  # full: the method above | chain: chained warps from the previous keyframe only
    #                     (no direct route, no blend, no fill) | copy: the nearest keyframe's chroma,
    #                     no motion (the last two: baselines of the stage colorize_reference)


MODES = ("full", "chain", "copy")


@dataclass(frozen=True)
class Placement:
    """Where a whole-shot reference went: ``frame`` (film index), ``method`` ("homography" or
    "transfer"), the ratio-test ``matches`` and RANSAC ``inliers`` with that frame."""

    frame: int
    method: str
    matches: int
    inliers: int


# ---------------------------------------------------------------------------------------------------------
# Chroma, confidence, blending
# ---------------------------------------------------------------------------------------------------------


def chroma(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> centered OpenCV float chroma (H, W, 2) (U, V), as ``luma_chroma_to_rgb``
    takes."""
    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2YUV)[..., 1:] - 0.5


def fb_confidence(flow_fw: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """Soft forward-backward confidence on the grid of ``flow_fw``: (H, W) float32 in [0, 1].

    With w = flow_fw(x) and w' = flow_bw(x + w): exp(-|w + w'|^2 / (0.01 (|w|^2 + |w'|^2) + 0.5)), the
    quantities of Ruder et al.'s hard rule (``film.flow.consistency_mask``: 1 where the ratio <= 1, here
    e^-1 there), times 0 where x + w leaves the frame.
    """
    w = np.asarray(flow_fw, dtype=np.float32)
    w_back = warp(np.asarray(flow_bw, dtype=np.float32), w)
    err2 = np.sum((w + w_back) ** 2, axis=2)
    scale = 0.01 * (np.sum(w**2, axis=2) + np.sum(w_back**2, axis=2)) + 0.5
    return np.exp(-err2 / scale) * in_frame_mask(w)


def blend_weights(conf_a, conf_b, dist_a: float, dist_b: float, eps: float = 1e-3):
    """Weights (w_a, w_b), w_a + w_b = 1, of two propagations into a frame ``dist_a`` frames after
    keyframe a and ``dist_b`` before keyframe b: w_a ∝ (conf_a + eps) / dist_a, w_b ∝ (conf_b + eps) / dist_b.

    The nearer keyframe counts more at equal confidence, the more confident one at equal distance; where
    neither is confident the weights fall back to distance alone. Arrays or scalars.
    """
    if dist_a <= 0 or dist_b <= 0:
        raise ValueError(f"distances to the keyframes must be > 0, got {dist_a} and {dist_b}")
    a = (np.asarray(conf_a, dtype=np.float32) + eps) * dist_b
    b = (np.asarray(conf_b, dtype=np.float32) + eps) * dist_a
    w_a = a / (a + b)
    return w_a, 1 - w_a


def _propagation_step(g_t, g_prev, uv_prev, conf_prev, g_key, uv_key, conf_key, preset, clock):
    """Chroma and confidence of frame t from its neighbour (chained) and from the keyframe (direct):
    per pixel the more confident. ``g_key is None``: the neighbour is the keyframe (one route only)."""
    with clock("flow"):
        f_tp, f_pt = estimate_flow(g_t, g_prev, preset=preset), estimate_flow(g_prev, g_t, preset=preset)
    with clock("warp"):
        c_chain = fb_confidence(f_tp, f_pt) * warp(conf_prev, f_tp)
        uv_chain = warp(uv_prev, f_tp)
    if g_key is None:
        return uv_chain, c_chain
    with clock("flow"):
        f_tk, f_kt = estimate_flow(g_t, g_key, preset=preset), estimate_flow(g_key, g_t, preset=preset)
    with clock("warp"):
        c_dir = fb_confidence(f_tk, f_kt) * warp(conf_key, f_tk)
        direct = c_dir > c_chain
        uv = np.where(direct[..., None], warp(uv_key, f_tk), uv_chain)
        return uv, np.maximum(c_dir, c_chain)


# ---------------------------------------------------------------------------------------------------------
# Levin, Lischinski & Weiss 2004, "Colorization using Optimization" (SIGGRAPH): fill uncertain chroma
# ---------------------------------------------------------------------------------------------------------

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def levin_weights(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Levin et al.'s affinities to the 8 neighbours: (H, W, 8) weights summing to 1 per pixel, and the
    (H, W, 8) validity mask (neighbours inside the image).

    w_rs ∝ exp(-(Y_r - Y_s)^2 / (2 sigma_r^2)) with sigma_r^2 from the variance of Y in the 3x3 window
    around r, as the authors' released code sets it: 2 sigma_r^2 = 0.6 var (the paper writes 2 sigma_r^2
    with sigma_r^2 the variance; the code's narrower kernel keeps colors from leaking across luma edges),
    bounded below so that the most similar neighbour keeps at least 1 % of the weight and by 2e-6 (both
    as in the code). ``luma`` in [0, 1].
    """
    y = np.asarray(luma, dtype=np.float64)
    h, w = y.shape
    pad = np.pad(y, 1, mode="constant", constant_values=np.nan)
    nb = np.stack([pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in _OFFSETS], axis=2)  # (H, W, 8)
    valid = ~np.isnan(nb)
    win = np.concatenate([nb, y[..., None]], axis=2)
    var = np.nanvar(win, axis=2)
    d2 = np.where(valid, (nb - y[..., None]) ** 2, np.inf)
    two_sig2 = np.maximum.reduce([0.6 * var, d2.min(axis=2) / math.log(100.0), np.full_like(var, 2e-6)])
    wgt = np.where(valid, np.exp(-d2 / two_sig2[..., None]), 0.0)
    return wgt / wgt.sum(axis=2, keepdims=True), valid


def levin_solve(luma: np.ndarray, uv: np.ndarray, known: np.ndarray, soft: np.ndarray | None = None,
                eps: float = 1e-6) -> np.ndarray:
    """Solve Levin et al.'s system for the pixels that are not ``known``; known pixels keep ``uv``.

    For each unknown pixel r: U(r) - sum_s w_rs U(s) + soft_r (U(r) - uv_r) + eps U(r) = 0, with the
    known pixels' U fixed (hard constraints) and ``soft`` (H, W) >= 0 pulling r towards its own ``uv``
    (soft constraints); ``eps`` pulls a region with no constraint at all to gray. One sparse system
    (scipy.sparse, SuperLU), both chroma channels at once. luma (H, W) in [0, 1], uv (H, W, C).
    """
    h, w = luma.shape
    uv = np.asarray(uv, dtype=np.float64).reshape(h * w, -1)
    known = np.asarray(known, dtype=bool).ravel()
    unknown = np.flatnonzero(~known)
    out = uv.copy()
    if unknown.size == 0:
        return out.reshape(h, w, -1)
    soft = np.zeros(h * w) if soft is None else np.asarray(soft, dtype=np.float64).ravel()
    wgt, valid = levin_weights(luma)
    col_of = np.full(h * w, -1)
    col_of[unknown] = np.arange(unknown.size)
    idx = np.arange(h * w).reshape(h, w)
    pad = np.pad(idx, 1, constant_values=-1)
    rows, cols, vals = [], [], []
    rhs = soft[unknown, None] * uv[unknown]
    for k, (dy, dx) in enumerate(_OFFSETS):
        s = pad[1 + dy:1 + dy + h, 1 + dx:1 + dx + w].ravel()[unknown]  # neighbour of each unknown r
        wk = wgt[..., k].ravel()[unknown]
        ok = valid[..., k].ravel()[unknown]
        s_unknown = ok & (col_of[np.where(ok, s, 0)] >= 0)
        s_known = ok & ~s_unknown
        rows.append(np.flatnonzero(s_unknown))
        cols.append(col_of[s[s_unknown]])
        vals.append(-wk[s_unknown])
        rhs[s_known] += wk[s_known, None] * uv[s[s_known]]
    n = unknown.size
    diag = 1.0 + soft[unknown] + eps
    a = sp.csc_matrix((np.concatenate([*vals, diag]),
                       (np.concatenate([*rows, np.arange(n)]), np.concatenate([*cols, np.arange(n)]))),
                      shape=(n, n))
    sol = spl.splu(a, permc_spec="MMD_AT_PLUS_A").solve(rhs)
    out[unknown] = sol
    return out.reshape(h, w, -1)


def levin_fill(luma: np.ndarray, uv: np.ndarray, conf: np.ndarray, hard: float = 0.5,
               data_weight: float = 1.0, side: int | None = 160) -> np.ndarray:
    """Chroma ``uv`` (H, W, 2) with its low-confidence pixels filled by Levin et al.'s optimization.

    Pixels with ``conf >= hard`` are hard constraints; the others are unknowns, softly pulled to their
    own chroma with weight ``data_weight * conf``. Solved at the longer side ``side`` (chroma is
    low-frequency), upsampled, and mixed back per pixel with weight min(conf / hard, 1) on the input.
    ``luma`` (H, W) uint8 or float in 0-255; ``conf`` (H, W) in [0, 1].
    """
    conf = np.clip(np.asarray(conf, dtype=np.float32), 0, 1)
    uv = np.asarray(uv, dtype=np.float32)
    if conf.min() >= hard:
        return uv
    if conf.max() <= 0:
        return np.zeros_like(uv)
    hw = fit_longer_side(*conf.shape, side)
    y = resize(np.asarray(luma, dtype=np.float32) / 255, hw)
    u, c = resize(uv, hw), resize(conf, hw)
    sol = levin_solve(y, u, c >= hard, data_weight * np.where(c < hard, c, 0)).astype(np.float32)
    up = cv2.resize(sol, (conf.shape[1], conf.shape[0]), interpolation=cv2.INTER_LINEAR)
    a = np.minimum(conf / hard, 1)[..., None]
    return a * uv + (1 - a) * up


# ---------------------------------------------------------------------------------------------------------
# Whole-shot references: global correspondence, else Welsh et al.'s luminance-statistics transfer
# ---------------------------------------------------------------------------------------------------------


def transfer_colors(ref_rgb: np.ndarray, target_luma: np.ndarray, samples: int = 200, seed: int = 0,
                    window: int = 5) -> np.ndarray:
    """Chroma (h, w, 2) for a gray frame from a color image of other content, after Welsh, Ashikhmin &
    Mueller 2002, "Transferring Color to Greyscale Images": the reference's luma is remapped to the
    target's mean and std, ``samples`` reference pixels are drawn on a jittered grid, and each target
    pixel takes the chroma of the sample nearest in (luma, local std over ``window`` x ``window``), both
    weighted 1/2. Chroma is YUV's here, not l-alpha-beta. ``ref_rgb`` is resized to ``target_luma``."""
    h, w = target_luma.shape
    ref = resize(ref_rgb, (h, w))
    yr, yt = luminance(ref).astype(np.float32) / 255, np.asarray(target_luma, dtype=np.float32) / 255
    yr = (yr - yr.mean()) * (yt.std() / max(float(yr.std()), 1e-6)) + yt.mean()

    def local_std(y):
        m = cv2.blur(y, (window, window))
        return np.sqrt(np.maximum(cv2.blur(y * y, (window, window)) - m * m, 0))

    rng = np.random.default_rng(seed)
    n = max(1, round(math.sqrt(samples)))
    ys = ((np.arange(n)[:, None] + rng.random((n, n))) * h / n).astype(int).ravel()  # one per grid cell
    xs = ((np.arange(n)[None, :] + rng.random((n, n))) * w / n).astype(int).ravel()
    feats_r = np.stack([yr[ys, xs], local_std(yr)[ys, xs]], axis=1) * math.sqrt(0.5)
    feats_t = np.stack([yt, local_std(yt)], axis=2).reshape(-1, 2) * math.sqrt(0.5)
    nearest = cKDTree(feats_r).query(feats_t)[1]
    return chroma(ref)[ys, xs][nearest].reshape(h, w, 2)


class _ShotMatcher:
    """SIFT matching of a whole-shot reference against candidate frames; keeps the best frame."""

    def __init__(self, ref_rgb: np.ndarray, match_side: int, ratio: float = 0.75):
        self.sift = cv2.SIFT_create()
        self.ratio, self.match_side = ratio, match_side
        self.kp, self.des = self.sift.detectAndCompute(self._small(luminance(ref_rgb)), None)
        self.best = (-1, -1, None, None)  # (inliers, matches, local frame index, homography)
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)

    def _small(self, gray: np.ndarray) -> np.ndarray:
        return resize(gray, fit_longer_side(*gray.shape, self.match_side))

    def add(self, i: int, gray: np.ndarray) -> None:
        kp, des = self.sift.detectAndCompute(self._small(gray), None)
        good, inliers, hom = [], 0, None
        if self.des is not None and des is not None and len(des) >= 2 and len(self.des) >= 2:
            pairs = self.matcher.knnMatch(self.des, des, k=2)
            good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) >= 4:
            src = np.float32([self.kp[m.queryIdx].pt for m in good])
            dst = np.float32([kp[m.trainIdx].pt for m in good])
            hom, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
            inliers = int(mask.sum()) if hom is not None else 0
        if (inliers, len(good)) > self.best[:2]:
            self.best = (inliers, len(good), i, hom)

    def match_scale(self, shape: tuple[int, int]) -> tuple[float, float]:
        """(sx, sy) from the frame size ``shape`` to the matching size."""
        h, w = fit_longer_side(*shape, self.match_side)
        return w / shape[1], h / shape[0]


def key_yuv(gray_key: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """A keyframe's propagated channels (h, w, 3) float32: its own luma in [0, 1], then its chroma (U, V).

    The luma travels with the chroma, so that every frame knows the luma its colors came from: the
    refiner's "luma mismatch to the keyframe" is |Y_t - warped Y_key|."""
    return np.concatenate([np.asarray(gray_key, np.float32)[..., None] / 255, uv], axis=2).astype(np.float32)


def _nullclock(_part: str):
    return contextlib.nullcontext()


def propagate_shot(gray: np.ndarray, keys: Mapping[int, tuple[np.ndarray, np.ndarray]],
                   settings: PropagateSettings | None = None, refiner: Callable | None = None,
                   alloc: Callable = np.empty, clock: Callable = _nullclock) -> tuple[np.ndarray, np.ndarray]:
    """Passes 2 and 3 over one shot at work size: (yuv (L, h, w, 3) float16, conf (L, h, w) float16).

    ``gray`` (L, h, w) uint8: the shot's frames. ``keys``: {local index: (yuv (h, w, 3) from
    :func:`key_yuv`, confidence (h, w))}, at least one. Keyframes keep their own channels. Channel 0 of
    the result is the keyframes' luma carried along, 1-2 the chroma; ``conf`` is the final confidence
    (after the blend). ``refiner(gray_t, yuv_t, conf_t) -> uv_t``, when given, corrects each non-key
    frame's chroma after the fill. ``settings.mode`` chain / copy give the stage's baselines.
    """
    s = settings or PropagateSettings()
    if s.mode not in MODES:
        raise ValueError(f"propagation mode {s.mode!r}: choose {', '.join(MODES)}")
    if not keys:
        raise ValueError("propagate_shot needs at least one keyframe")
    n, (h, w) = len(gray), gray.shape[1:3]
    yuv_f = alloc((n, h, w, 3), np.float16)
    conf_f = alloc((n, h, w), np.float16)
    order = sorted(keys)
    first, last = order[0], order[-1]
    if s.mode == "copy":  # the nearest keyframe's channels, no motion (the earlier one on a tie)
        for i in range(n):
            yuv_f[i], conf_f[i] = keys[min(order, key=lambda k: (abs(k - i), k))]
        return yuv_f, conf_f
    chain_only = s.mode == "chain"
    key = prev = None
    for i in range(first, n):  # pass 2: forward from each keyframe
        if i in keys:
            key = i
            prev = keys[i]
        else:
            g_key = gray[key] if i - 1 != key and not chain_only else None
            prev = _propagation_step(gray[i], gray[i - 1], *prev, g_key, *keys[key], s.preset, clock)
        yuv_f[i], conf_f[i] = prev
    key = nxt = None
    for i in range(n - 1, -1, -1):  # pass 3: backward, blend, fill, refine
        is_key = i in keys
        if is_key:
            key = i
            nxt = keys[i]
            if chain_only:
                continue
            yuv, conf = keys[i]  # a placed still's uncovered pixels are filled below
        elif chain_only and i > first:  # forward chain only: pass 2's result stands
            continue
        elif i > last:
            yuv, conf = yuv_f[i].astype(np.float32), conf_f[i].astype(np.float32)
        else:
            g_key = gray[key] if i + 1 != key and not chain_only else None
            nxt = _propagation_step(gray[i], gray[i + 1], *nxt, g_key, *keys[key], s.preset, clock)
            yuv, conf = nxt
            if chain_only:
                yuv_f[i], conf_f[i] = yuv, conf
                continue
            if i > first:
                with clock("blend"):
                    before = max(j for j in order if j < i)
                    w_a, w_b = blend_weights(conf_f[i], conf, i - before, key - i)
                    yuv = w_a[..., None] * yuv_f[i] + w_b[..., None] * yuv
                    conf = w_a * conf_f[i] + w_b * conf
        with clock("levin"):
            yuv = levin_fill(gray[i], yuv, conf, s.hard, s.data_weight, s.levin_side)
        if refiner is not None and not is_key:
            with clock("refine"):
                yuv = np.concatenate([yuv[..., :1], refiner(gray[i], yuv, conf)], axis=2)
        yuv_f[i], conf_f[i] = yuv, conf
    return yuv_f, conf_f


# ---------------------------------------------------------------------------------------------------------
# Propagation over a film
# ---------------------------------------------------------------------------------------------------------


class _Buffer:
    """(L, ...) arrays for one shot, in memory or, above ``spill_mb``, in a temporary file."""

    def __init__(self, spill_mb: float):
        self.spill_bytes = spill_mb * 2**20
        self._files: list = []

    def alloc(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        if math.prod(shape) * np.dtype(dtype).itemsize <= self.spill_bytes:
            return np.empty(shape, dtype)
        f = tempfile.TemporaryFile(prefix="deeperfour-propagate-")
        self._files.append(f)
        return np.memmap(f, dtype=dtype, mode="w+", shape=shape)

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files.clear()


class Propagation:
    """The colorized frames of a B&W film, iterated once (``for rgb in propagation``).

    Attributes known at once: ``uncolored_shots`` (0-based shot numbers without any reference: they come
    out gray), ``n_frames``, ``shape`` (H, W). Filled while iterating: ``placements`` ({shot: Placement}
    for whole-shot references), ``keyframes`` ({shot: [frame indices]}), ``timings`` (seconds per part:
    decode, flow, warp, blend, levin, placement, output).
    """

    def __init__(self, film, shot_starts: Sequence[int], references: Mapping,
                 settings: PropagateSettings | None = None, refiner: Callable | None = None):
        self.settings = s = settings or PropagateSettings()
        self.refiner = refiner
        if s.preset not in ("ultrafast", "fast", "medium"):
            raise ValueError(f"preset {s.preset!r}: choose ultrafast, fast or medium")
        if isinstance(film, str | os.PathLike):
            info = probe(film)
            self.n_frames, self.shape = info.n_frames, (info.height, info.width)
            self._film, self._frames = Path(film), None
        else:
            if len(film) == 0:
                raise ValueError("no frames to colorize")
            self._film, self._frames = None, film
            self.n_frames, self.shape = len(film), tuple(np.shape(film[0])[:2])
        starts = [int(x) for x in shot_starts]
        if not starts or starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:], strict=False)) \
                or starts[-1] >= self.n_frames:
            raise ValueError(f"shot starts {starts[:8]}: must begin with 0 and increase, all below the "
                             f"{self.n_frames} frames (use deeperfour.film.shots.detect_shots)")
        self.ranges = shot_ranges(starts, self.n_frames)
        self.references = references
        keys = list(references)
        check_reference_keys(keys, starts, self.n_frames)
        if not isinstance(references, References):
            for k in keys:
                v = np.asarray(references[k])
                if v.shape != (*self.shape, 3) or v.dtype != np.uint8:
                    raise ValueError(f"reference {k}: shape {v.shape} {v.dtype}, the film's frames need "
                                     f"{(*self.shape, 3)} uint8 RGB; resize it to the film first")
        self._frame_keys = sorted(int(k) for k in keys if not isinstance(k, Shot))
        self._frame_key_set = set(self._frame_keys)
        self._shot_keys = {k.index for k in keys if isinstance(k, Shot)}
        self.uncolored_shots = [k for k, (a, b) in enumerate(self.ranges)
                                if k not in self._shot_keys and not any(a <= f < b for f in self._frame_keys)]
        self.work_hw = fit_longer_side(*self.shape, s.work_side)
        self.placements: dict[int, Placement] = {}
        self.keyframes: dict[int, list[int]] = {}
        self.timings: dict[str, float] = defaultdict(float)
        self._used = False

    @contextlib.contextmanager
    def _clock(self, part: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] += time.perf_counter() - t

    def _gray_frames(self) -> Iterator[np.ndarray]:
        if self._film is not None:
            yield from read_frames(self._film, gray=True)
        else:
            for f in self._frames:
                yield luminance(np.asarray(f, dtype=np.uint8))

    def _next(self, it: Iterator[np.ndarray]) -> np.ndarray:
        with self._clock("decode"):
            return next(it)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise RuntimeError("a Propagation is iterated once; call propagate() again")
        self._used = True
        ahead, behind = self._gray_frames(), self._gray_frames()
        for k, (a, b) in enumerate(self.ranges):
            buf = _Buffer(self.settings.spill_mb)
            try:
                uv = self._shot_chroma(k, a, b, ahead, buf)
                for i in range(b - a):
                    g = self._next(behind)
                    with self._clock("output"):
                        if uv is None:
                            out = gray_to_rgb(g)
                        elif a + i in self._frame_key_set:  # the artist's frame: its full-resolution chroma
                            out = recombine_luma(g, np.asarray(self.references[a + i]))
                        else:
                            out = luma_chroma_to_rgb(g, uv[i].astype(np.float32))
                    yield out
            finally:
                buf.close()

    def _shot_chroma(self, k: int, a: int, b: int, ahead, buf: _Buffer) -> np.ndarray | None:
        """Passes 1-3 for shot k (frames a..b-1): its chroma at work size (L, h, w, 2), or None when the
        shot has no reference."""
        s, n = self.settings, b - a
        if k in self.uncolored_shots:
            for _ in range(n):
                self._next(ahead)
            return None
        h, w = self.work_hw
        gray = buf.alloc((n, h, w), np.uint8)
        matcher = candidates = None
        if k in self._shot_keys:
            with self._clock("placement"):
                ref = np.asarray(self.references[Shot(k)])
                matcher = _ShotMatcher(ref, s.match_side)
                candidates = set(np.linspace(0, n - 1, min(n, s.max_candidates)).round().astype(int).tolist())
        for i in range(n):  # pass 1
            g = self._next(ahead)
            with self._clock("decode"):
                gray[i] = resize(g, (h, w))
            if matcher is not None and i in candidates:
                with self._clock("placement"):
                    matcher.add(i, g)
        keys: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if matcher is not None:
            with self._clock("placement"):
                i, uv, conf, placement = self._place(a, ref, matcher, gray)
                keys[i] = (uv, conf)
                self.placements[k] = placement
        for f in (f for f in self._frame_keys if a <= f < b):
            uv = resize(chroma(np.asarray(self.references[f])), (h, w))
            keys[f - a] = (key_yuv(gray[f - a], uv), np.ones((h, w), np.float32))
        self.keyframes[k] = sorted(a + i for i in keys)
        yuv, _ = propagate_shot(gray, keys, s, self.refiner, buf.alloc, self._clock)
        return yuv[..., 1:]

    def _place(self, a: int, ref: np.ndarray, matcher: _ShotMatcher, gray: np.ndarray):
        """Keyframe (local index), chroma and confidence at work size of a whole-shot reference."""
        s = self.settings
        inliers, matches, i, hom = matcher.best
        h, w = self.work_hw
        if i is None:
            i = 0
        if hom is not None and inliers >= s.min_inliers:
            sx, sy = matcher.match_scale(self.shape)
            to_work = np.diag([w / self.shape[1], h / self.shape[0], 1.0])
            to_match = np.diag([sx, sy, 1.0])
            # reference (work px) -> reference (full) -> reference (match) -> frame (match) -> frame (work)
            hw_ = to_work @ np.linalg.inv(to_match) @ hom @ to_match @ np.linalg.inv(to_work)
            ref_w = resize(ref, (h, w))
            uv = cv2.warpPerspective(chroma(ref_w), hw_, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_CONSTANT)  # (h, w, 2)
            y_ref = cv2.warpPerspective(luminance(ref_w).astype(np.float32) / 255, hw_, (w, h),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            cover = cv2.warpPerspective(np.ones((h, w), np.float32), hw_, (w, h), flags=cv2.INTER_NEAREST,
                                        borderMode=cv2.BORDER_CONSTANT)
            y = gray[i].astype(np.float32) / 255
            m = cover > 0.5
            if m.sum() > 16:  # the still may be exposed differently: match its luma's mean and std first
                gain = y[m].std() / max(float(y_ref[m].std()), 1e-3)
                y_ref = (y_ref - y_ref[m].mean()) * gain + y[m].mean()
            conf = (cover * np.exp(-((y_ref - y) ** 2) / (2 * 0.1**2))).astype(np.float32)
            return i, key_yuv(gray[i], uv), conf, Placement(a + i, "homography", matches, inliers)
        uv = transfer_colors(ref, gray[i]).astype(np.float32)
        conf = np.full((h, w), s.transfer_confidence, np.float32)
        return i, key_yuv(gray[i], uv), conf, Placement(a + i, "transfer", matches, max(inliers, 0))


class Refiner:
    """The learned refiner (``models/propagation_refiner.py``) as ``propagate_shot`` calls it:
    ``refiner(gray (h, w) uint8, yuv (h, w, 3), conf (h, w)) -> uv (h, w, 2)`` float32, one frame at a
    time, under ``precision`` (``core.precision``) on ``device``."""

    def __init__(self, model: PropagationRefiner, device: str | torch.device = "cpu",
                 precision: str = "fp32"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             precision: str = "fp32") -> Refiner:
        return cls(PropagationRefiner.from_checkpoint(path), device, precision)

    @torch.inference_mode()
    def __call__(self, gray: np.ndarray, yuv: np.ndarray, conf: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(refiner_inputs(gray, yuv, conf))[None].to(self.device)  # (1, 5, h, w)
        with autocast(self.device, self.precision):
            uv = self.model(x)  # (1, 2, h, w)
        return uv[0].float().permute(1, 2, 0).cpu().numpy()


def propagate(film, shot_starts: Sequence[int], references: Mapping,
              settings: PropagateSettings | None = None, refiner: Callable | None = None) -> Propagation:
    """Colorize a B&W film from references: an iterable :class:`Propagation` of RGB uint8 frames.

    ``film``: a video path (read as gray, decoded twice) or a sequence of gray (H, W) or RGB frames (its
    luma is used). ``shot_starts``: the first frame of every shot (``film.shots.detect_shots``).
    ``references``: {frame index or ``Shot(k)``: RGB (H, W, 3) uint8 at the film's size}, e.g. from
    ``film.keyframes.read_references``. ``refiner``: a learned correction of the propagated chroma
    (:class:`Refiner`), None for the classical path. Checks everything (ValueError) before any frame
    is made.
    """
    return Propagation(film, shot_starts, references, settings, refiner)


def propagate_film(film: str | os.PathLike, references: str | os.PathLike, output: str | os.PathLike,
                   threshold: float = 0.8, settings: PropagateSettings | None = None,
                   refiner: Callable | None = None) -> Propagation:
    """Colorize ``film`` from the colored references in the folder ``references`` into ``output``
    (.mkv lossless or .mp4 H.264, the film's fps and audio). Shots are detected on the film with
    ``threshold``; the references are read and checked before anything is written. Returns the finished
    :class:`Propagation` (``uncolored_shots``, ``placements``, ``timings``)."""
    info = probe(film)
    det = ShotDetector(threshold=threshold)
    for g in read_frames(film, gray=True):
        det.update(g)
    refs = read_references(references, info, det.starts)
    check_video_output(output, inputs=[film])
    prop = propagate(film, det.starts, refs, settings, refiner)
    with VideoWriter(output, info.fps, info.width, info.height,
                     audio_from=film if info.has_audio else None) as writer:
        for rgb in prop:
            writer.write(rgb)
    return prop
