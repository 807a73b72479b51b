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


def save(fig, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG at the house dpi (atomically, no timestamp metadata) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
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


def frame_strip(frames: Sequence[np.ndarray], titles: Sequence[str] = (), title: str = ""):
    """One row of frames (e.g. consecutive frames, or samples of a dataset)."""
    return image_grid([list(frames)], (), titles, title=title)


def letterbox(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Fit ``img`` (RGB or gray uint8) into an (h, w, 3) black canvas, keeping its aspect ratio."""
    import cv2

    img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    s = min(h / img.shape[0], w / img.shape[1])
    nh, nw = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small
    return out


def consecutive_frames_figure(frames: Sequence[np.ndarray], indices: Sequence[int], label: str = ""):
    """Paper Fig. 5 view: consecutive frames, and below them |frame t - frame t-1| (x4, gray)."""
    diffs = [np.zeros(frames[0].shape[:2], np.uint8)]
    for a, b in zip(frames[:-1], frames[1:], strict=True):
        d = np.abs(b.astype(np.int16) - a.astype(np.int16))
        d = d.mean(axis=2) if d.ndim == 3 else d
        diffs.append(np.clip(4 * d, 0, 255).astype(np.uint8))
    return image_grid([list(frames), diffs], [label or "frames", "|Δ| x4"], [f"frame {i}" for i in indices])


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
