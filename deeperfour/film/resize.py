"""One way to fit a frame's longer side, and one resize rule, for every stage and ``convert``."""

from __future__ import annotations

import cv2
import numpy as np


def fit_longer_side(h: int, w: int, max_side: int | None, min_side: int = 1) -> tuple[int, int]:
    """(h', w') with the longer side shrunk to ``max_side`` when the frame is larger, aspect kept.

    ``max_side`` 0/None: unchanged. ``min_side``: neither side goes below it (a model's smallest input).
    """
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(min_side, round(h * s)), max(min_side, round(w * s))


def resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W[, C]) -> (h, w[, C]): area when shrinking, bicubic when growing; the same array when already
    (h, w)."""
    if img.shape[:2] == tuple(hw):
        return img
    shrink = img.shape[0] * img.shape[1] > hw[0] * hw[1]
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def shrink(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """(H, W[, C]) -> (H', W'[, C]) with max(H', W') <= max_side (area), aspect kept; unchanged when already
    small enough or ``max_side`` is 0/None."""
    return resize(img, fit_longer_side(*img.shape[:2], max_side))
