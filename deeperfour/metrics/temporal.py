"""Score stabilizers side by side: stability (E_warp, CDC) against fidelity to the per-frame result.

Every version of a film (per-frame, flow blend, temporal loss, ConvLSTM) is scored in ONE decoding pass
with the source film's flows computed once per pair (``metrics.pair_flow_mask``): E_warp needs the flow
and occlusion mask of the ORIGINAL input frames (reference Sec. 4), which do not depend on the version.

Per version (``StabilityScorer.result``):

* ``ewarp``: Lai et al.'s warping error, within shots only (lower = steadier);
* ``psnr_to_per_frame``: 10 log10(255^2 / MSE) with the MSE averaged over all frames against the
  per-frame result (higher = more faithful; a constant film would have E_warp 0 and a poor PSNR);
* ``perceptual_to_per_frame``: an LPIPS-style distance on the perceptual network (HED VGG16): per layer,
  features unit-normalized along channels, squared difference averaged over positions, summed over
  ``PERCEPTUAL_LAYERS`` (uniform weights, no learned calibration); every ``perceptual_stride``-th frame;
* ``cdc``: color distribution consistency (``metrics.cdc``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import cv2
import numpy as np
import torch

from deeperfour.core.precision import autocast
from deeperfour.film.video import read_frames, read_frames_at
from deeperfour.metrics.film import CDCAccumulator, masked_warp_error, pair_flow_mask

PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
REFERENCE = "per_frame"


class PerceptualDistance:
    """LPIPS-style distance between two RGB uint8 frames on a VGG feature network (see module doc)."""

    def __init__(self, features, side: int = 320, device: torch.device | str = "cpu", precision: str = "bf16",
                 layers: Sequence[str] = PERCEPTUAL_LAYERS):
        self.features, self.side, self.layers = features, side, tuple(layers)
        self.device, self.precision = torch.device(device), precision

    def _tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = frames[0].shape[:2]
        s = min(1.0, self.side / max(h, w))
        size = (max(16, round(w * s)), max(16, round(h * s)))
        x = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) if s < 1 else f for f in frames])
        return torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, h, w)

    @torch.inference_mode()
    def many(self, a: np.ndarray, others: Sequence[np.ndarray]) -> list[float]:
        """d(a, b) for every b in ``others``, in one batch."""
        x = self._tensor([a, *others])  # (1 + K, 3, h, w)
        with autocast(self.device, self.precision):
            feats = self.features(x, layers=self.layers)
        out = torch.zeros(len(others))
        for name in self.layers:
            f = feats[name].float()
            f = f / (f.norm(dim=1, keepdim=True) + 1e-10)  # unit length along channels, (1 + K, C, h', w')
            out += ((f[1:] - f[:1]) ** 2).sum(dim=1).mean(dim=(1, 2))  # (K,)
        return out.tolist()


class StabilityScorer:
    """Feed one frame of every version per step; ``result()`` gives the table, ``curves`` the E_warp curves.

    ``names`` must include ``"per_frame"`` (the fidelity reference). Memory: one previous frame per version.
    """

    def __init__(self, names: Sequence[str], shot_starts: Iterable[int] = (0,),
                 perceptual: PerceptualDistance | None = None, perceptual_stride: int = 10,
                 flow_method: str = "dis"):
        if REFERENCE not in names:
            raise ValueError(f"the versions {list(names)} must include {REFERENCE!r}, the fidelity reference")
        self.names, self.starts = list(names), set(shot_starts) | {0}
        self.perceptual, self.stride, self.flow_method = perceptual, max(1, perceptual_stride), flow_method
        self.curves: dict[str, list[float]] = {n: [] for n in self.names}
        self.cdc = {n: CDCAccumulator(self.starts) for n in self.names}
        self.sq_err = dict.fromkeys(self.names, 0.0)
        self.percep: dict[str, list[float]] = {n: [] for n in self.names}
        self.prev_src: np.ndarray | None = None
        self.prev: dict[str, np.ndarray] = {}
        self.t = 0

    def update(self, source: np.ndarray, frames: Mapping[str, np.ndarray]) -> None:
        if set(frames) != set(self.names):
            raise ValueError(f"frame {self.t}: got versions {sorted(frames)}, expected {sorted(self.names)}")
        if self.t > 0:
            if self.t in self.starts:  # the pair straddles a cut: no motion to compensate
                for n in self.names:
                    self.curves[n].append(float("nan"))
            else:
                flow, mask = pair_flow_mask(self.prev_src, source, self.flow_method)  # once for all versions
                for n in self.names:
                    self.curves[n].append(masked_warp_error(self.prev[n], frames[n], flow, mask))
        ref = frames[REFERENCE]
        for n in self.names:
            self.cdc[n].update(frames[n])
            self.sq_err[n] += float(np.mean((frames[n].astype(np.float64) - ref.astype(np.float64)) ** 2))
        if self.perceptual is not None and self.t % self.stride == 0:
            others = [n for n in self.names if n != REFERENCE]
            for n, d in zip(others, self.perceptual.many(ref, [frames[n] for n in others]), strict=True):
                self.percep[n].append(d)
            self.percep[REFERENCE].append(0.0)
        self.prev_src, self.prev = source, dict(frames)
        self.t += 1

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for n in self.names:
            curve = np.asarray(self.curves[n], dtype=np.float64)
            valid = curve[~np.isnan(curve)]
            mse = self.sq_err[n] / max(self.t, 1)
            out[n] = {
                "ewarp": float(valid.mean()) if valid.size else float("nan"),
                "psnr_to_per_frame": float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
                "perceptual_to_per_frame": float(np.mean(self.percep[n])) if self.percep[n] else float("nan"),
                "cdc": self.cdc[n].value,
            }
        return out


def score_films(source: str | os.PathLike, films: Mapping[str, str | os.PathLike],
                shot_starts: Iterable[int], perceptual: PerceptualDistance | None = None,
                perceptual_stride: int = 10, flow_method: str = "dis", source_key: str | None = "source",
                color_source: str | os.PathLike | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """Decode the B&W ``source`` and every film once, in lockstep; return (table, E_warp curves).

    ``color_source`` (the color original) is scored alongside as ``source_key`` (its own E_warp is the
    floor a stabilizer can hope for); it is left out of the fidelity columns' meaning but scored the same.
    """
    names = list(films)
    extra = {source_key: color_source} if color_source is not None and source_key else {}
    scorer = StabilityScorer([*names, *extra], shot_starts, perceptual, perceptual_stride, flow_method)
    readers = {n: read_frames(p) for n, p in {**films, **extra}.items()}
    for src in read_frames(source, gray=True):
        try:
            frames = {n: next(r) for n, r in readers.items()}
        except StopIteration as e:
            raise ValueError(f"a film is shorter than its source {source} (frame {scorer.t})") from e
        scorer.update(src, frames)
    for n, r in readers.items():
        if next(r, None) is not None:
            raise ValueError(f"{films.get(n, color_source)} has more frames than its source {source}")
    return scorer.result(), {n: np.asarray(c) for n, c in scorer.curves.items()}


def ewarp_reduction(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{method: 1 - E_warp(method) / E_warp(per_frame)} for every method of a ``score_films`` table but
    the per-frame one: how much of the per-frame result's warping error a stabilizer removes."""
    base = table["per_frame"]["ewarp"]
    return {m: 1.0 - row["ewarp"] / base for m, row in table.items() if m != "per_frame"}


def middle_frames(shot_starts: Sequence[int], n_frames: int, n: int) -> list[int]:
    """``n`` consecutive frame indices in the middle of the first shot (the paper's Fig. 5 view)."""
    s0, s1 = shot_starts[0], ([*shot_starts, n_frames])[1]
    first = max(s0, (s0 + s1) // 2 - n // 2)
    return list(range(first, min(first + n, s1)))


def consecutive_frames(source: str | os.PathLike, films: Mapping[str, str | os.PathLike], idx: Sequence[int],
                       flow_method: str = "dis") -> tuple[dict[str, list], dict[str, list]]:
    """Frames ``idx`` of every film ({method: path}) and their :func:`difference_maps` (flows from the
    B&W ``source`` film): ({method: frames}, {method: maps}), for ``figures.stabilizers_figure``."""
    src = read_frames_at(source, idx, gray=True)
    frames = {m: read_frames_at(p, idx) for m, p in films.items()}
    return frames, {m: difference_maps(f, src, flow_method) for m, f in frames.items()}


def difference_maps(frames: Sequence[np.ndarray], sources: Sequence[np.ndarray],
                    flow_method: str = "dis") -> list[np.ndarray]:
    """Motion-compensated temporal differences for paper Fig. 5: entry t = |warp(V_{t+1}) - V_t| (gray
    uint8, occluded pixels 0), flows from the source frames; the first entry is all zeros."""
    from deeperfour.film.flow import warp

    out = [np.zeros(frames[0].shape[:2], np.uint8)]
    for t in range(1, len(frames)):
        flow, mask = pair_flow_mask(sources[t], sources[t - 1], flow_method)  # t -> t-1
        d = np.abs(warp(frames[t - 1].astype(np.float32), flow) - frames[t].astype(np.float32))
        d = d.mean(axis=2) if d.ndim == 3 else d
        out.append(np.clip(d * mask, 0, 255).astype(np.uint8))
    return out
