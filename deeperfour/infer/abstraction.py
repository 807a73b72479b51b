"""The classical cartoon baseline (issue 16): Winnemöller, Olsen and Gooch 2006, "Real-time video
abstraction".

No network and no weights: an image is turned into a cartoon by

1. **smoothing** in CIELab with an iterated bilateral filter (paper Eq. 3; ``cv2.bilateralFilter``,
   3 passes of d = 9 px as in a public implementation, the range sigma in Lab units);
2. **soft luminance quantization** (paper Eq. 8): L is pulled to the centre of its bin, with a tanh step of
   sharpness ``phi_q`` at the bin boundaries instead of a hard staircase;
3. **DoG edges** (paper Eq. 6): a difference of Gaussians of the luminance taken after the first
   ``edge_iterations`` passes, mapped through a soft threshold to ``D`` in [0, 1] (1 = no edge); the
   quantized colours are multiplied by ``D`` and pixels with ``D < edge_threshold`` are drawn black.

Equation numbers follow the paper as public implementations of it cite them. The paper's GPU filter is a
separable bilateral approximation; here OpenCV's exact one runs (on a half-size copy by default).

:func:`abstract` does one image. :class:`AbstractionCartoonizer` streams a film with the interface of
``deeperfour.infer.cartoonize`` (``reset()`` at each shot start, ``step(frame, source)``, ``stream(pairs)``)
and makes two changes for temporal coherence: the quantization levels are fixed per shot (set from the
luminance percentiles of the shot's first frame, so the bins do not follow each frame's exposure), and
the soft edge map is blended with the previous frame's, warped by DIS flow on the B&W source frames
where that flow is reliable (Ruder et al.'s occlusion rule), so lines do not flicker.

Cost at 640x360 on one core of the 2-core dev CPU (one OpenCV thread, CPU time per frame): about 49 ms
(~20 frames/s) with the defaults: bilateral passes 18 (run at ``filter_scale`` = 0.5 of the frame size),
two DIS flows 12.5 (at ``flow_scale`` = 0.5), occlusion mask 5, quantize and compose 5.6, warp 2.7, DoG
1.9. At full size (``filter_scale=1.0``) the bilateral passes take 65 ms and the whole frame ~97 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

import cv2
import numpy as np

from deeperfour.film.flow import estimate_flow, occlusion_mask, to_gray_u8, warp

FLOW_PRESETS = ("ultrafast", "fast", "medium")  # the DIS presets of deeperfour.film.flow.estimate_flow

__all__ = ["AbstractionCartoonizer", "AbstractionConfig", "abstract", "dog_edges", "quantization_levels",
           "quantize_luminance", "smooth_lab"]


@dataclass(frozen=True)
class AbstractionConfig:
    """Every knob of the abstraction; invalid values raise one ``ValueError`` line naming all of them."""

    # --- smoothing: iterated bilateral filter in CIELab (paper Eq. 3) ---
    bilateral_iterations: int = 3  # n_b: bilateral passes in total, integer >= 1 (paper: 3-4)
    edge_iterations: int = 1  # n_e: passes made before the edge image is taken, 0..n_b (paper: 1-2)
    bilateral_diameter: int = 9  # d: filter window diameter in px at the filter size, odd integer >= 3
    sigma_color: float = 17.0  # range sigma in Lab units (CIE76 Delta E), > 0; larger merges more colours
    sigma_space: float = 17.0  # spatial sigma in px at the filter size, > 0 (with d = 9 the window decides)
    filter_scale: float = 0.5  # the bilateral passes run on a copy this fraction of the frame size, (0, 1];
    #   0.5 (default) doubles the window in frame px and is about 4x faster than 1.0 (full size)
    # --- soft luminance quantization (paper Eq. 8) ---
    n_bins: int = 8  # q: luminance bins, integer >= 2 (paper: 8-12)
    phi_q: float = 3.0  # tanh sharpness at a bin boundary, per L unit (L in [0, 100]), > 0 (paper: 3-14)
    level_percentiles: tuple[float, float] = (1.0, 99.0)  # the bins split L evenly between these
    #   percentiles of the (shot's first) frame's smoothed L; 0 <= low < high <= 100
    # --- DoG edges (paper Eq. 6) ---
    sigma_e: float = 1.0  # px, sigma of the centre Gaussian at the frame size, > 0 (paper: 1.0)
    sigma_ratio: float = 1.6  # sigma_r / sigma_e, > 1; XDoG's k = 1.6 (the 2006 paper's sqrt(1.6) = 1.26
    #   approximates the LoG more closely but draws few lines on low-contrast film)
    tau: float = 0.98  # weight of the surround Gaussian, (0, 1]; < 1 keeps flat areas edge-free (paper: 0.98)
    phi_e: float = 2.0  # tanh sharpness of the edge falloff, per L unit, > 0 (paper: 0.75-5)
    edge_threshold: float = 0.3  # pixels with D below this are drawn pure black, [0, 1); 0 = soft edges only
    # --- video: temporal coherence (AbstractionCartoonizer only) ---
    edge_memory: float = 0.6  # weight of the previous frame's warped soft edge map where the flow is
    #   reliable, [0, 1); 0 = per-frame edges
    flow_preset: str = "medium"  # DIS preset for the source-frame flow: ultrafast, fast or medium
    flow_scale: float = 0.5  # the flow runs on the B&W source at this fraction of the frame size, (0, 1]

    def __post_init__(self) -> None:
        bad = []

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                bad.append(f"{name}={getattr(self, name)!r} (must be {rule})")

        def is_int(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def num(name: str) -> float:
            v = getattr(self, name)
            ok = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            return float(v) if ok and math.isfinite(float(v)) else math.nan

        need(is_int("bilateral_iterations") and self.bilateral_iterations >= 1, "bilateral_iterations",
             "an integer >= 1")
        need(is_int("edge_iterations") and is_int("bilateral_iterations")
             and 0 <= self.edge_iterations <= self.bilateral_iterations, "edge_iterations",
             "an integer in 0..bilateral_iterations")
        d = self.bilateral_diameter
        need(is_int("bilateral_diameter") and d >= 3 and d % 2 == 1, "bilateral_diameter",
             "an odd integer >= 3")
        need(is_int("n_bins") and self.n_bins >= 2, "n_bins", "an integer >= 2")
        for name in ("sigma_color", "sigma_space", "phi_q", "sigma_e", "phi_e"):
            need(num(name) > 0, name, "a number > 0")
        for name in ("filter_scale", "flow_scale"):
            need(0 < num(name) <= 1, name, "in (0, 1]")
        need(num("sigma_ratio") > 1, "sigma_ratio", "a number > 1")
        need(0 < num("tau") <= 1, "tau", "in (0, 1]")
        need(0 <= num("edge_threshold") < 1, "edge_threshold", "in [0, 1)")
        need(0 <= num("edge_memory") < 1, "edge_memory", "in [0, 1)")
        need(self.flow_preset in FLOW_PRESETS, "flow_preset", f"one of {', '.join(FLOW_PRESETS)}")
        p = self.level_percentiles
        ok = (isinstance(p, tuple | list) and len(p) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
              and 0 <= p[0] < p[1] <= 100)
        need(ok, "level_percentiles", "(low, high) with 0 <= low < high <= 100")
        if bad:
            raise ValueError(f"bad AbstractionConfig: {'; '.join(bad)}")

    @classmethod
    def from_dict(cls, values: dict) -> AbstractionConfig:
        """From a params-like dict; unknown keys raise one ``ValueError`` line listing the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown AbstractionConfig keys {', '.join(unknown)} "
                             f"(valid: {', '.join(sorted(names))})")
        values = dict(values)
        if isinstance(values.get("level_percentiles"), list):
            values["level_percentiles"] = tuple(values["level_percentiles"])
        return cls(**values)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return np.ascontiguousarray(rgb)


# ---------------------------------------------------------------------------------------------------------
# the three stages, one image at a time
# ---------------------------------------------------------------------------------------------------------


def smooth_lab(rgb: np.ndarray, cfg: AbstractionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Iterated bilateral filtering in CIELab (paper Eq. 3) -> (Lab after all n_b passes (H, W, 3)
    float32, L after the first n_e passes (H, W) float32); L in [0, 100], a and b in about [-128, 127].

    The three channels are filtered jointly (Lab distance, CIE76 Delta E, against ``sigma_color``); with
    ``filter_scale`` < 1 the passes run on an INTER_AREA copy and the result is resized back (linear).
    """
    rgb = _check_rgb(rgb)
    h, w = rgb.shape[:2]
    lab = cv2.cvtColor(rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)  # (H, W, 3) float32
    fh, fw = max(1, round(h * cfg.filter_scale)), max(1, round(w * cfg.filter_scale))
    small = (fh, fw) != (h, w)
    x = cv2.resize(lab, (fw, fh), interpolation=cv2.INTER_AREA) if small else lab

    def full(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR) if small else img

    lum_e = np.ascontiguousarray(lab[..., 0])  # n_e = 0: edges of the unfiltered L
    for i in range(cfg.bilateral_iterations):
        x = cv2.bilateralFilter(x, cfg.bilateral_diameter, cfg.sigma_color, cfg.sigma_space)
        if i + 1 == cfg.edge_iterations:
            lum_e = full(np.ascontiguousarray(x[..., 0]))
    return full(x), lum_e


def quantization_levels(lum: np.ndarray, cfg: AbstractionConfig) -> np.ndarray:
    """The n_bins + 1 bin edges (float64, L units): ``n_bins`` equal bins between the ``level_percentiles``
    of ``lum`` (a smoothed L channel, [0, 100]). Luminance outside falls into the first or last bin."""
    lo, hi = np.percentile(np.asarray(lum, dtype=np.float32), cfg.level_percentiles)
    if hi - lo < 1e-3:  # a flat frame: one bin of 1 L unit around it
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, cfg.n_bins + 1)


def quantize_luminance(lum: np.ndarray, levels: np.ndarray, phi_q: float) -> np.ndarray:
    """Paper Eq. (8), soft quantization: Q(x) = q_nearest + (dq / 2) tanh(phi_q (f(x) - q_nearest)).

    f = ``lum``, q_nearest = the inner bin boundary nearest to f, dq = the bin width. Far from a boundary
    Q is the bin centre (a flat plateau); at a boundary it steps with a tanh of slope ``phi_q`` instead of
    jumping, so a pixel that drifts across a boundary changes gradually (the paper's temporal coherence).
    Values outside the levels settle on the outer bin centres. (H, W) float32 in, (H, W) float32 out.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size < 3 or not np.all(np.diff(levels) > 0):
        raise ValueError(f"levels must be >= 3 increasing bin edges (n_bins >= 2), got {levels!r}")
    lo, dq, n = float(levels[0]), float(levels[1] - levels[0]), levels.size - 1
    f = np.asarray(lum, dtype=np.float32)
    k = np.clip(np.rint((f - lo) / dq), 1, n - 1)  # index of the nearest inner boundary
    q_nearest = (lo + k * dq).astype(np.float32)
    return q_nearest + np.float32(dq / 2) * np.tanh(np.float32(phi_q) * (f - q_nearest))


def dog_edges(lum: np.ndarray, cfg: AbstractionConfig) -> np.ndarray:
    """Paper Eq. (6), DoG edges: with S_e = G(sigma_e) * f and S_r = G(sigma_r) * f (sigma_r =
    ``sigma_ratio`` sigma_e), D = 1 where S_e - tau S_r > 0, else 1 + tanh(phi_e (S_e - tau S_r)).

    ``lum`` is an L channel ([0, 100]). Returns D (H, W) float32 in [0, 1]: 1 = no edge, near 0 = a line,
    on the dark side of a luminance step. tau < 1 keeps flat areas at 1 (S_e - tau S_r = (1 - tau) L > 0).
    """
    f = np.asarray(lum, dtype=np.float32)
    s_e = cv2.GaussianBlur(f, (0, 0), cfg.sigma_e, borderType=cv2.BORDER_REPLICATE)
    s_r = cv2.GaussianBlur(f, (0, 0), cfg.sigma_e * cfg.sigma_ratio, borderType=cv2.BORDER_REPLICATE)
    dog = s_e - np.float32(cfg.tau) * s_r
    return np.where(dog > 0, np.float32(1.0), 1.0 + np.tanh(np.float32(cfg.phi_e) * dog)).astype(np.float32)


def compose(lab: np.ndarray, levels: np.ndarray, edges: np.ndarray, cfg: AbstractionConfig) -> np.ndarray:
    """Quantized L with the smoothed a, b -> RGB, multiplied by the edge map D; D < threshold -> black.

    (H, W, 3) Lab float32, levels (n_bins + 1,), D (H, W) in [0, 1] -> RGB uint8 (H, W, 3).
    """
    out = lab.copy()
    out[..., 0] = quantize_luminance(lab[..., 0], levels, cfg.phi_q)
    rgb = cv2.cvtColor(out, cv2.COLOR_Lab2RGB)  # float32, about [0, 1]
    ink = np.float32(255.0) * np.asarray(edges, dtype=np.float32)  # (H, W): 255 = no edge
    ink[edges < cfg.edge_threshold] = 0.0  # below the threshold: pure black
    rgb *= ink[..., None]
    np.clip(rgb, 0.0, 255.0, out=rgb)
    rgb += 0.5
    return rgb.astype(np.uint8)


def abstract(rgb: np.ndarray, cfg: AbstractionConfig | None = None, levels: np.ndarray | None = None
             ) -> np.ndarray:
    """One image -> its abstraction (cartoon), RGB uint8 (H, W, 3) -> RGB uint8 (H, W, 3).

    ``levels``: the quantization bin edges (``quantization_levels``); ``None`` = from this image. Pass a
    shot's levels to quantize every frame of it alike.
    """
    cfg = cfg or AbstractionConfig()
    lab, lum_e = smooth_lab(rgb, cfg)
    if levels is None:
        levels = quantization_levels(lab[..., 0], cfg)
    return compose(lab, levels, dog_edges(lum_e, cfg), cfg)


# ---------------------------------------------------------------------------------------------------------
# the streaming cartoonizer
# ---------------------------------------------------------------------------------------------------------


class AbstractionCartoonizer:
    """Winnemöller et al.'s abstraction as a streaming cartoonizer (the ``abstraction`` style).

    ``step(colorized (H, W, 3) uint8, source (H, W) uint8 gray) -> cartoon (H, W, 3) uint8`` and
    ``stream(pairs)`` over a shot; ``reset()`` at every shot start. No weights, no device: it runs on the
    CPU with OpenCV. Temporal coherence within a shot:

    * the quantization ``levels`` are set on the first frame after ``reset()`` (its luminance
      percentiles) and kept for the whole shot;
    * the soft edge map D_t is blended with the previous blended map warped into frame t:
      D_t <- (1 - m c) D_t + m c warp(D_{t-1}, flow_{t->t-1}), m = ``edge_memory``, c = Ruder et al.'s
      certainty (``occlusion_mask``) of DIS flows on the B&W SOURCE frames (t -> t-1 and t-1 -> t,
      computed at ``flow_scale`` of the frame size, then resized up).

    The first frame of a shot equals ``abstract(frame, config)``.
    """

    name = "abstraction"

    def __init__(self, config: AbstractionConfig | None = None):
        self.config = config or AbstractionConfig()
        self.reset()

    def reset(self) -> None:
        """A shot starts: forget the levels, the previous edge map and the previous source frame."""
        self.levels: np.ndarray | None = None  # (n_bins + 1,) bin edges in L units, fixed for the shot
        self.prev_edges: np.ndarray | None = None  # (H, W) float32 blended D of the previous frame
        self.prev_src: np.ndarray | None = None  # (h, w) uint8 gray at the flow size

    def stream(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        for frame, source in pairs:
            yield self.step(frame, source)

    def _flow_size(self, h: int, w: int) -> tuple[int, int]:
        s = self.config.flow_scale
        return max(8, round(h * s)), max(8, round(w * s))

    def _warped_prev(self, src: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """The previous edge map warped to frame t and the certainty c, both (H, W) float32."""
        cfg = self.config
        back = estimate_flow(src, self.prev_src, "dis", preset=cfg.flow_preset)  # (h, w, 2) t -> t-1
        fwd = estimate_flow(self.prev_src, src, "dis", preset=cfg.flow_preset)  # (h, w, 2) t-1 -> t
        c = occlusion_mask(back, fwd)  # (h, w), 1 = reliable
        fh, fw = src.shape
        if (fh, fw) != (h, w):
            back = cv2.resize(back, (w, h), interpolation=cv2.INTER_LINEAR)
            back *= np.array([w / fw, h / fh], dtype=np.float32)  # px of the flow size -> px of the frame
            c = cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR)
        return warp(self.prev_edges, back), c

    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray:
        cfg = self.config
        frame = _check_rgb(frame)
        h, w = frame.shape[:2]
        src = to_gray_u8(source)
        if src.shape != (h, w):
            raise ValueError(f"source {src.shape} and frame {(h, w)} differ in size")
        lab, lum_e = smooth_lab(frame, cfg)
        if self.levels is None:
            self.levels = quantization_levels(lab[..., 0], cfg)
        edges = dog_edges(lum_e, cfg)  # (H, W) float32, 1 = no edge
        fh, fw = self._flow_size(h, w)
        src = cv2.resize(src, (fw, fh), interpolation=cv2.INTER_AREA) if (fh, fw) != (h, w) else src
        if cfg.edge_memory > 0 and self.prev_edges is not None and self.prev_edges.shape == (h, w):
            warped, c = self._warped_prev(src, h, w)
            m = np.float32(cfg.edge_memory) * c
            edges = (1.0 - m) * edges + m * warped
        self.prev_edges, self.prev_src = edges, src
        return compose(lab, self.levels, edges, cfg)
