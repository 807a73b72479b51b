"""One function per figure, one saver with a fixed style and dpi.

Figures are small PNGs committed under ``reports/figures/<stage>/``; they are drawn from
real stage outputs only. The saver writes deterministic files (no timestamps).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # headless runs: matplotlib picks Agg itself (or MPLBACKEND=Agg)
import numpy as np

DPI = 100
MAX_PIXELS = 650_000  # saved PNGs stay small for git (< 1 MB): large photo grids are saved at a lower dpi


def save(fig, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG at the house dpi, lowered so that it has at most ``MAX_PIXELS`` pixels
    (atomically, no timestamp metadata) and close it. An opaque figure is stored as RGB, not
    matplotlib's RGBA: a quarter fewer bytes for photo grids."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    w, h = fig.get_size_inches()
    dpi = min(DPI, (MAX_PIXELS / (w * h)) ** 0.5)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        with Image.open(tmp) as im:
            im.load()
        if im.mode == "RGBA" and im.getextrema()[3] == (255, 255):
            im.convert("RGB").save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str] = (),
               col_titles: Sequence[str] = (), width: float = 12.0, title: str = ""):
    """A grid of uint8 images (RGB or gray), one list per row; returns the figure."""
    n_r, n_c = len(rows), max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    fig, axes = plt.subplots(n_r, n_c, figsize=(width, width * n_r * h / (n_c * w) + 0.4 * n_r),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_c):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                img = row[c]
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            else:
                ax.axis("off")
            if r == 0 and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=9)
            if c == 0 and r < len(row_titles):
                ax.set_ylabel(row_titles[r], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def shot_starts_figure(bw_frames: Sequence[np.ndarray], color_frames: Sequence[np.ndarray],
                       starts: Sequence[int]):
    """First frame of every shot: the B&W film above, its color original below."""
    cols = [f"shot {k + 1}: frame {s}" for k, s in enumerate(starts)]
    return image_grid([list(bw_frames), list(color_frames)], ["B&W film", "color original"], cols,
                      title="Detected shots")


def cut_scores_figure(scores: Sequence[float], starts: Sequence[int], threshold: float):
    """The shot detector's cut score per frame with the threshold and the detected cuts."""
    fig, ax = plt.subplots(figsize=(10, 3))
    ax.plot(np.arange(len(scores)), scores, lw=1, label="cut score")
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold}")
    for s in starts[1:]:
        ax.axvline(s, color="tab:red", lw=0.8, alpha=0.6)
    ax.set_xlabel("frame")
    ax.set_ylabel("mean |Δ standardized thumbnail|")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"Shot cuts: {len(starts) - 1} detected (red)")
    fig.tight_layout()
    return fig


def stabilizers_figure(frames: dict[str, Sequence[np.ndarray]], diffs: dict[str, Sequence[np.ndarray]],
                       indices: Sequence[int], gain: float = 4.0, title: str = ""):
    """Paper Fig. 5: per method, a row of consecutive frames and a row of motion-compensated differences
    |warp(V_{t+1}) - V_t| (x ``gain``, occluded pixels black): flicker shows as bright texture there."""
    rows, titles = [], []
    for name in frames:
        rows.append(list(frames[name]))
        rows.append([np.clip(gain * d.astype(np.float32), 0, 255).astype(np.uint8) for d in diffs[name]])
        titles += [name, f"|Δ warped| x{gain:g}"]
    return image_grid(rows, titles, [f"frame {i}" for i in indices], title=title)


def ewarp_fidelity_figure(tables: dict[str, dict[str, dict[str, float]]], source_ewarp: float):
    """Per video, a bar of E_warp per method (lower = steadier) with its PSNR to the per-frame result written
    on the bar (higher = more faithful), and the color original's own E_warp as the dashed floor."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.4), squeeze=False)
    for ax, (video, table) in zip(axes[0], tables.items(), strict=True):
        names = list(table)
        vals = [float(table[n]["ewarp"]) for n in names]
        bars = ax.bar(names, vals, color=[f"C{i}" for i in range(len(names))])
        for b, n in zip(bars, names, strict=True):
            p = float(table[n]["psnr_to_per_frame"])  # "inf" (the reference itself) when read from JSON
            label = "ref." if not np.isfinite(p) else f"{p:.1f} dB"
            ax.annotate(label, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                        fontsize=8)
        ax.axhline(source_ewarp, color="k", ls="--", lw=1, label=f"color original {source_ewarp:.2e}")
        ax.set_title(f"{video}: E_warp (bar) and PSNR to per-frame")
        ax.set_ylabel("warping error")
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(curves: dict[str, np.ndarray], xlabel: str, ylabel: str, title: str = "",
                  logy: bool = False):
    """Line plot of named curves over the same x (NaN entries leave gaps, e.g. at shot cuts)."""
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for name, y in curves.items():
        ax.plot(np.arange(len(y)), y, lw=1, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def training_curves_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]],
                           title: str = "Training losses", smooth: int = 10):
    """One panel per training phase (``phase/loss`` names), loss vs global step, moving-average smoothed."""
    phases: dict[str, list[str]] = {}
    for name in sorted(curves, key=lambda n: curves[n][0][0]):  # phases in training order
        phases.setdefault(name.split("/")[0], []).append(name)
    fig, axes = plt.subplots(1, len(phases), figsize=(4 * len(phases), 3), squeeze=False)
    for ax, (phase, names) in zip(axes[0], phases.items(), strict=True):
        for name in names:
            steps, values = curves[name]
            k = max(1, min(smooth, len(values) // 5))
            sm = np.convolve(values, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], sm, lw=1, label=name.split("/", 1)[-1])
        ax.set_title(phase, fontsize=9)
        ax.set_xlabel("step")
        if all((curves[n][1] > 0).all() for n in names):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def calibration_figure(scales: np.ndarray, ciede: np.ndarray, colorfulness: np.ndarray, chosen: float,
                       target_colorfulness: float | None = None, gray_ciede: float | None = None,
                       ciede_limit: float | None = None):
    """Chroma-scale calibration on the validation clip: CIEDE2000 and colorfulness vs scale, with the
    gray input's CIEDE2000 and the criterion's target (a colorfulness or a CIEDE2000 limit)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(scales, ciede, "o-", color="tab:blue", label="CIEDE2000 (left)")
    if gray_ciede is not None:
        ax.axhline(gray_ciede, color="tab:gray", ls="-", lw=1, label="CIEDE2000 of the gray input")
    if ciede_limit is not None:
        ax.axhline(ciede_limit, color="tab:blue", ls=":", lw=1, label="CIEDE2000 limit")
    ax.set_xlabel("chroma scale")
    ax.set_ylabel("CIEDE2000")
    ax2 = ax.twinx()
    ax2.plot(scales, colorfulness, "s-", color="tab:orange", label="colorfulness (right)")
    if target_colorfulness is not None:
        ax2.axhline(target_colorfulness, color="tab:orange", ls=":", lw=1, label="target colorfulness")
    ax2.set_ylabel("colorfulness")
    ax.axvline(chosen, color="k", ls="--", lw=0.8)
    ax.set_title(f"Validation clip: chosen chroma scale {chosen:g}")
    fig.legend(loc="upper center", fontsize=7, ncol=4, bbox_to_anchor=(0.5, 0.02))
    fig.tight_layout()
    return fig


def render_factor_figure(frames: Sequence[np.ndarray], render_factors: Sequence[int],
                         gray: np.ndarray | None = None):
    """Paper Fig. 6: one frame colorized at several render factors (model input 16 x rf px)."""
    row = ([gray] if gray is not None else []) + list(frames)
    titles = [f"render factor {r} ({16 * r} px)" for r in render_factors]
    titles = (["B&W input"] if gray is not None else []) + titles
    return image_grid([row], (), titles, title="Render factor")


def edge_smoothing_figure(crops: Sequence[np.ndarray], smoothed: Sequence[np.ndarray],
                          masks: Sequence[np.ndarray], titles: Sequence[str] = (), zoom: int = 64):
    """Paper Fig. 3: cartoon crops, their edge-smoothed copies, the dilated edge band, and a zoom.

    The last two rows enlarge (nearest neighbour) the ``zoom`` x ``zoom`` px window of each crop
    holding the most edge pixels, in the crop and in its smoothed copy, where the blur shows.
    """
    import cv2

    def window(mask: np.ndarray) -> tuple[int, int]:
        density = cv2.boxFilter(mask.astype(np.float32), -1, (zoom, zoom), normalize=False,
                                anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)  # (H, W) edges in window
        valid = density[: mask.shape[0] - zoom + 1, : mask.shape[1] - zoom + 1]  # windows inside the crop
        y, x = np.unravel_index(np.argmax(valid), valid.shape)
        return int(y), int(x)

    def enlarge(img: np.ndarray, yx: tuple[int, int]) -> np.ndarray:
        (y, x), (h, w) = yx, img.shape[:2]
        return cv2.resize(img[y:y + zoom, x:x + zoom], (w, h), interpolation=cv2.INTER_NEAREST)

    where = [window(m) for m in masks]
    rows = [list(crops), list(smoothed), [m.astype(np.uint8) * 255 for m in masks],
            [enlarge(c, yx) for c, yx in zip(crops, where, strict=True)],
            [enlarge(s, yx) for s, yx in zip(smoothed, where, strict=True)]]
    names = ["(a) cartoon crop", "(b) edge-smoothed", "dilated edges", f"(a) {zoom} px zoom",
             f"(b) {zoom} px zoom"]
    return image_grid(rows, names, titles, title="Removing clear edges from cartoon images (Eq. 5 negatives)")


def cartoon_snapshots_figure(inputs: np.ndarray, snapshots: dict[int, np.ndarray], init_steps: int,
                             style: str = ""):
    """A fixed grid of held-out photos (top row) and G(photos) at several points of training."""
    def label(step: int) -> str:
        if step == 0:
            return "untrained"
        return f"step {step}" + (" (end of init)" if step == init_steps else "")

    steps = sorted(snapshots)
    rows = [list(inputs)] + [list(snapshots[s]) for s in steps]
    return image_grid(rows, ["photo"] + [label(s) for s in steps], (),
                      title=f"Photos → cartoons during training{f' (style {style})' if style else ''}")


def cartoon_stats_figure(stats: dict[str, dict[str, dict[str, float]]]):
    """Cartoon statistics per style: inputs, outputs and the style set (edge density, flat, colors)."""
    keys = (("edge_density", "edge density"), ("flat_fraction", "flat fraction"),
            ("n_colors", "colors (4 bit/ch)"))
    sets = ("input", "output", "style_set")
    fig, axes = plt.subplots(1, len(keys), figsize=(10, 3), squeeze=False)
    x = np.arange(len(stats))
    for ax, (key, name) in zip(axes[0], keys, strict=True):
        for k, s in enumerate(sets):
            ax.bar(x + (k - 1) * 0.27, [stats[st][s][key] for st in stats], 0.27, label=s.replace("_", " "))
        ax.set_xticks(x, list(stats))
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Held-out photos, their cartoons and the style set")
    fig.tight_layout()
    return fig
