"""deeperfour.color: one luminance everywhere; recombination keeps the original luminance."""

import numpy as np
import pytest

from deeperfour.color import gray_to_rgb, luminance, recombine_luma


def test_luminance_is_bt601():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    expected = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    np.testing.assert_allclose(luminance(rgb).astype(int), expected.astype(int), atol=1)
    assert np.array_equal(luminance(gray_to_rgb(expected)), expected)


@pytest.mark.parametrize("size", [(45, 67), (64, 64), (33, 100)])
def test_recombined_luma_equals_input_luma_at_any_size(size):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size, dtype=np.uint8)
    chroma = rng.integers(0, 256, (21, 21, 3), dtype=np.uint8)  # any model resolution
    out = recombine_luma(gray, chroma)
    assert out.shape == (*size, 3)
    assert np.abs(luminance(out).astype(int) - gray.astype(int)).max() <= 1


def test_recombine_rejects_bad_shapes():
    with pytest.raises(ValueError):
        recombine_luma(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
