"""E_warp, CDC, flicker curve and per-frame metrics on tiny synthetic videos."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from deeperfour.metrics.film import (
    cdc,
    channel_histograms,
    ciede2000,
    colorfulness,
    js_divergence,
    psnr,
    ssim,
    warping_error,
    warping_error_curve,
)

from helpers import texture


def flickering(base: np.ndarray, n: int, amplitude: float) -> list[np.ndarray]:
    """Frames whose brightness alternates by +-amplitude (fraction of the value)."""
    return [np.clip(base * (1.0 + amplitude * (-1) ** t), 0, 255).astype(np.uint8) for t in range(n)]


# --- warping error --------------------------------------------------------------------------------------


def test_warping_error_static_video_is_zero():
    frames = [texture(48, 64)] * 4
    assert warping_error(frames, frames) == pytest.approx(0.0, abs=1e-7)


def test_warping_error_rises_with_flicker():
    base = texture(48, 64) * 0.8  # headroom so the brightening is not clipped
    source = [base.astype(np.uint8)] * 4
    errors = [warping_error(flickering(base, 4, a), source) for a in (0.0, 0.02, 0.05, 0.1)]
    assert errors[0] == pytest.approx(0.0, abs=1e-7)
    assert all(lo < hi for lo, hi in zip(errors, errors[1:], strict=False)), errors


def test_warping_error_ignores_pairs_across_a_declared_cut():
    a, b = texture(48, 64, 1), texture(48, 64, 2)
    frames = [a, a, a, b, b, b]
    assert warping_error(frames, frames) > 1e-3  # the cut pair counts when undeclared
    assert warping_error(frames, frames, shot_starts=(3,)) == pytest.approx(0.0, abs=1e-7)
    curve = warping_error_curve(frames, frames, shot_starts=(3,))
    assert curve.shape == (5,) and np.isnan(curve[2]) and np.nanmax(curve) < 1e-7


def test_warping_error_streams_and_accepts_gray_source():
    base = texture(48, 64) * 0.8
    frames = flickering(base, 4, 0.05)
    gray = [cv2.cvtColor(base.astype(np.uint8), cv2.COLOR_RGB2GRAY)] * 4
    expected = warping_error(frames, gray)
    assert expected > 0
    assert warping_error(iter(frames), (g for g in gray)) == pytest.approx(expected)
    with pytest.raises(ValueError):
        warping_error(frames, gray[:3])  # length mismatch


def test_warping_error_uses_source_motion():
    """A moving texture whose output moves the same way is stable; the flow comes from the source."""
    big = texture(80, 100)
    source = [big[10:58, 10 + 2 * t : 74 + 2 * t] for t in range(4)]  # camera pan, 2 px per frame
    static = [source[0]] * 4
    assert warping_error(source, source) < 2e-4
    assert warping_error(static, source) > 10 * warping_error(source, source)


# --- CDC ------------------------------------------------------------------------------------------------


def test_js_divergence_bounds_natural_log():
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert js_divergence(p, q) == pytest.approx(math.log(2))
    assert js_divergence(p, p) == pytest.approx(0.0)


def test_cdc_constant_video_is_zero():
    assert cdc([texture(16, 16)] * 6) == pytest.approx(0.0)


def test_cdc_alternating_colors_golden():
    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    frames = [black, white] * 4  # d=1 pairs: disjoint histograms; d=2 and d=4 pairs: identical
    assert cdc(iter(frames)) == pytest.approx(math.log(2) / 3)
    assert channel_histograms(black).shape == (3, 256)


def test_cdc_skips_pairs_across_a_cut():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((8, 8, 3), np.uint8)
    blue[..., 2] = 255
    frames = [red] * 5 + [blue] * 5
    assert cdc(frames) > 0
    assert cdc(frames, shot_starts=(5,)) == pytest.approx(0.0)


# --- flicker curve --------------------------------------------------------------------------------------


# --- per-frame metrics ----------------------------------------------------------------------------------


def test_colorfulness():
    gray = np.repeat(texture(16, 16)[..., :1], 3, axis=2)
    assert colorfulness(gray) == pytest.approx(0.0)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    assert colorfulness(red) == pytest.approx(0.3 * math.hypot(255, 127.5))  # ~85.5: "very colorful"
    assert colorfulness(texture(16, 16)) > 0


def test_psnr_ssim_ciede2000():
    a = texture(32, 32)
    assert psnr(a, a) == math.inf  # documented: no cap
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)) == pytest.approx(
        20 * math.log10(255)
    )
    assert ssim(a, a) == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    assert ssim(a, b) < 1.0
    assert ciede2000(a, a) == pytest.approx(0.0)
    assert ciede2000(a, b) > 1.0


def test_ciede2000_and_ssim_in_float32_match_skimage_in_float64():
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    ref_c = deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean()  # skimage's own float64 path
    ref_s = structural_similarity(a, b, channel_axis=-1, data_range=255)
    assert ciede2000(a, b) == pytest.approx(ref_c, rel=1e-5) and ciede2000(a, b) > 5
    assert ssim(a, b) == pytest.approx(ref_s, abs=1e-5) and ssim(a, b) < 0.99
    # a float image is read as 0..1, as skimage reads it
    assert ciede2000(a / 255.0, b / 255.0) == pytest.approx(ref_c, rel=1e-5)
