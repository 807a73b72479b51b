"""Edge-promoting data preparation for CartoonGAN (paper §3.2, Eq. 5; Chen et al. 2018 §3.2).

The discriminator must learn that a cartoon WITHOUT clear edges is fake (Eq. 5). Those negatives are
made from the real cartoons themselves: find the edges (Canny on the gray image), widen them (5x5
dilation) and replace only the pixels under the widened edges by a Gaussian-blurred copy. Everything
else stays bit-identical, so colors and shading remain those of a real cartoon and D has to look at
the edges.

The reference code blurs pixel by pixel in a Python loop; here the image is blurred once with OpenCV
and the mask selects pixels with ``np.where`` (same result up to rounding, thousands of times faster).
"""

from __future__ import annotations

import cv2
import numpy as np


def _check_image(img: np.ndarray, name: str = "image") -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        desc = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"{name}: expected an RGB uint8 array of shape (H, W, 3), got {desc}")


def edge_mask(rgb_uint8: np.ndarray, canny: tuple[int, int] = (100, 200), dilate: int = 5) -> np.ndarray:
    """Boolean (H, W) mask of the pixels within ``dilate // 2`` px of a Canny edge of the gray image.

    ``canny`` are the (low, high) hysteresis thresholds; ``dilate`` is the side of the square
    dilation kernel (0 or 1: no dilation).
    """
    _check_image(rgb_uint8, "edge_mask")
    gray = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY)  # (H, W) uint8
    edges = cv2.Canny(gray, canny[0], canny[1])  # (H, W) uint8 in {0, 255}
    if dilate > 1:
        edges = cv2.dilate(edges, np.ones((dilate, dilate), np.uint8))  # (H, W)
    return edges > 0  # (H, W) bool


def edge_smooth(
    rgb_uint8: np.ndarray, canny: tuple[int, int] = (100, 200), dilate: int = 5, blur: int = 5
) -> np.ndarray:
    """Edge-smoothed copy of a cartoon image: pixels under the dilated edges replaced by a blurred copy.

    (H, W, 3) uint8 -> (H, W, 3) uint8. ``blur`` is the (odd) side of the Gaussian kernel; its sigma
    follows from the size, as in OpenCV's ``sigma=0`` rule. Pixels off the mask are unchanged; a flat
    image (no edges) comes back unchanged.
    """
    mask = edge_mask(rgb_uint8, canny, dilate)  # (H, W) bool
    if not mask.any():
        return rgb_uint8.copy()
    blurred = cv2.GaussianBlur(rgb_uint8, (blur, blur), 0, borderType=cv2.BORDER_REFLECT_101)  # (H, W, 3)
    return np.where(mask[..., None], blurred, rgb_uint8)  # (H, W, 3)


def random_crops(img: np.ndarray, size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``size`` x ``size`` crops of an (H, W) or (H, W, C) image, stacked: (n, size, size[, C]).

    An image smaller than the crop is first resized up (bicubic, aspect kept) so its shorter side is
    ``size``. Offsets come from ``rng`` so a seeded generator gives the same crops every run.
    """
    h, w = img.shape[:2]
    if min(h, w) < size:
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_CUBIC)  # (H', W'[, C])
        h, w = new_h, new_w
    ys = rng.integers(0, h - size + 1, size=n)
    xs = rng.integers(0, w - size + 1, size=n)
    return np.stack([img[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])  # (n, s, s[, C])
