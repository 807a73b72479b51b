"""Edge-promoting data prep: only the dilated edge band changes, vectorized == per-pixel definition."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deeperfour.data.edges import edge_mask, edge_smooth, random_crops


def vertical_edge_image(h: int = 48, w: int = 64, col: int = 32) -> np.ndarray:
    """Dark left half, bright right half: one sharp vertical edge at ``col``; (h, w, 3) uint8."""
    img = np.empty((h, w, 3), np.uint8)
    img[:, :col] = (40, 60, 30)
    img[:, col:] = (220, 200, 180)
    return img


def per_pixel_edge_smooth(rgb: np.ndarray, mask: np.ndarray, k: int = 5) -> np.ndarray:
    """The definition, slowly: each masked pixel <- Gaussian-weighted mean of its k x k neighbourhood."""
    g = cv2.getGaussianKernel(k, 0)
    kernel = g @ g.T  # (k, k), sums to 1
    padded = np.pad(rgb.astype(np.float64), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="reflect")
    out = rgb.copy()
    for y, x in zip(*np.nonzero(mask), strict=True):
        patch = padded[y : y + k, x : x + k]  # (k, k, 3)
        out[y, x] = np.round((patch * kernel[..., None]).sum(axis=(0, 1)))
    return out


def test_edge_smoothing_changes_only_the_dilated_band():
    img = vertical_edge_image()
    mask = edge_mask(img)
    out = edge_smooth(img)
    changed = (out != img).any(axis=2)  # (H, W)
    assert changed.any()
    assert not changed[~mask].any()  # nothing outside the dilated edges
    band_cols = np.nonzero(mask.any(axis=0))[0]
    assert band_cols.min() >= 32 - 4 and band_cols.max() <= 32 + 3  # Canny line +- 2 px of dilation
    assert mask[:, band_cols].all()  # the band spans every row


def test_flat_image_is_unchanged():
    img = np.full((40, 40, 3), 123, np.uint8)
    assert not edge_mask(img).any()
    np.testing.assert_array_equal(edge_smooth(img), img)


def test_vectorized_matches_per_pixel_definition():
    rng = np.random.default_rng(0)
    img = vertical_edge_image(24, 24, 12)
    img[4:9, 3:20] = rng.integers(0, 256, size=(5, 17, 3), dtype=np.uint8)  # some texture too
    mask = edge_mask(img)
    fast = edge_smooth(img).astype(int)
    slow = per_pixel_edge_smooth(img, mask).astype(int)
    assert np.abs(fast - slow).max() <= 1  # OpenCV's fixed-point rounding


def test_edge_smooth_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="RGB uint8"):
        edge_smooth(np.zeros((8, 8), np.uint8))


def test_random_crops_shapes_seeding_and_upscaling():
    img = np.random.default_rng(1).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    crops = random_crops(img, 256, 4, np.random.default_rng(7))
    assert crops.shape == (4, 256, 256, 3) and crops.dtype == np.uint8
    again = random_crops(img, 256, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(crops, again)
    small = random_crops(img[:100, :150], 256, 2, np.random.default_rng(0))  # resized up first
    assert small.shape == (2, 256, 256, 3)
    gray = random_crops(img[..., 0], 64, 3, np.random.default_rng(0))
    assert gray.shape == (3, 64, 64)
