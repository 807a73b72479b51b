"""Luminance and chroma conversions shared by every stage.

One definition of luminance everywhere: 8-bit BT.601 luma,
Y = 0.299 R + 0.587 G + 0.114 B (OpenCV's RGB2GRAY and RGB2YUV use the same weights,
and so does PIL's 'L'/'LA' conversion that DeOldify uses). The B&W film is this Y,
and a colorized frame is always recombined with the ORIGINAL Y (reference §1): a model
only ever contributes chroma.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 BT.601 luma; a (H, W) gray frame passes through."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 with three equal channels."""
    return np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray


def recombine_luma(original: np.ndarray, colorized: np.ndarray, gamut: str = "desaturate") -> np.ndarray:
    """Original luminance Y + the colorized chroma U, V (OpenCV YUV), as uint8 RGB (H, W, 3).

    This is DeOldify's key post-process (reference.md section 1): the full-resolution Y of the
    frame is kept, only the model's chroma is used, so output luminance equals input luminance.
    ``gamut="clip"`` is DeOldify's exact uint8 OpenCV path, where pixels pushed out of the RGB cube
    get clipped (which changes their luminance). ``"desaturate"`` (default) works in float and
    shrinks such a pixel's chroma towards gray just enough to fit, so Y stays exact.
    ``original``: gray (H, W) or RGB (H, W, 3) uint8; ``colorized``: RGB (h, w, 3) uint8 at any size,
    resized bilinearly to (H, W) first.
    """
    orig = gray_to_rgb(original)
    if orig.shape[-1] != 3 or colorized.ndim != 3 or colorized.shape[-1] != 3:
        raise ValueError(f"expected gray/RGB and RGB frames, got {original.shape} and {colorized.shape}")
    if colorized.shape[:2] != orig.shape[:2]:  # chroma is smooth: resize it to the frame (bilinear)
        colorized = cv2.resize(colorized, (orig.shape[1], orig.shape[0]), interpolation=cv2.INTER_LINEAR)
    if gamut == "clip":
        yuv = cv2.cvtColor(np.ascontiguousarray(orig, dtype=np.uint8), cv2.COLOR_RGB2YUV)
        chroma = cv2.cvtColor(np.ascontiguousarray(colorized, dtype=np.uint8), cv2.COLOR_RGB2YUV)
        yuv[..., 1:] = chroma[..., 1:]
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB)
    if gamut != "desaturate":
        raise ValueError(f"gamut must be 'desaturate' or 'clip', got {gamut!r}")
    uv = cv2.cvtColor(colorized.astype(np.float32) / 255, cv2.COLOR_RGB2YUV)[..., 1:] - 0.5
    y = original if original.ndim == 2 else cv2.cvtColor(orig.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return luma_chroma_to_rgb(y, uv)  # unrounded Y of an RGB original: no double rounding


def luma_chroma_to_rgb(luma: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Luma (H, W) in 0-255 (uint8 or float) + centered chroma (h, w, 2) -> RGB uint8 (H, W, 3).

    The chroma is resized bilinearly to (H, W). A pixel whose chroma would leave the RGB cube is
    desaturated towards gray just enough to fit, so its luma stays exact (within 8-bit rounding).
    """
    h, w = luma.shape
    uv = np.asarray(uv, dtype=np.float32)
    if uv.shape[:2] != (h, w):
        uv = cv2.resize(uv, (w, h), interpolation=cv2.INTER_LINEAR)
    y = (luma.astype(np.float32) / 255)[..., None]  # (H, W, 1)
    yuv = np.concatenate([y, uv + 0.5], axis=2)  # (H, W, 3), OpenCV float YUV
    d = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB) - y  # (H, W, 3): chroma's offset of each channel from Y
    # largest scale s <= 1 keeping every channel y + s d in [0, 1]: the channel that rises most bounds it
    # from above, the one that falls most from below (a division is monotonic, so min over channels of
    # (1 - y) / d equals (1 - y) / max d, bit for bit). Channel slices, not .max(axis=2): 2x faster.
    d_hi = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])[..., None]  # (H, W, 1)
    d_lo = np.minimum(np.minimum(d[..., 0], d[..., 1]), d[..., 2])[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.minimum(np.where(d_hi > 0, (1 - y) / d_hi, 1), np.where(d_lo < 0, -y / d_lo, 1))
    s = np.clip(s, 0, 1)  # (H, W, 1)
    rgb = np.clip(y + s * d, 0, 1)
    return np.rint(rgb * 255).astype(np.uint8)


# Torch versions for training (differentiable, batched). OpenCV's float YUV convention:
# U = 0.492 (B - Y) + 0.5, V = 0.877 (R - Y) + 0.5; here U, V are kept CENTERED (offset removed).
_YUV2RGB = ((1.0, 0.0, 1.14), (1.0, -0.395, -0.581), (1.0, 2.032, 0.0))  # rows R, G, B; cols Y, U, V


def rgb_to_yuv_t(rgb):
    """(B, 3, H, W) RGB in [0, 1] -> (Y (B, 1, H, W), UV (B, 2, H, W) centered at 0)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, torch.cat([0.492 * (b - y), 0.877 * (r - y)], dim=1)


def yuv_to_rgb_t(y, uv):
    """Y (B, 1, H, W) in [0, 1] + centered UV (B, 2, H, W) -> RGB (B, 3, H, W), clamped to [0, 1]."""
    u, v = uv[:, 0:1], uv[:, 1:2]
    rgb = [y * c[0] + u * c[1] + v * c[2] for c in _YUV2RGB]
    return torch.cat(rgb, dim=1).clamp(0.0, 1.0)
