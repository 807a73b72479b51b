"""deeperfour.film.color: one luminance everywhere; recombination keeps the original luminance."""

import numpy as np
import pytest

from deeperfour.film.color import gray_to_rgb, luminance, recombine_luma


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


def test_torch_yuv_matches_opencv_and_inverts():
    import cv2
    import torch

    from deeperfour.film.color import rgb_to_yuv_t, yuv_to_rgb_t

    rgb = np.random.default_rng(1).random((8, 9, 3)).astype(np.float32)
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
    y, uv = rgb_to_yuv_t(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    np.testing.assert_allclose(y[0, 0].numpy(), ref[..., 0], atol=1e-5)
    np.testing.assert_allclose(uv[0].permute(1, 2, 0).numpy(), ref[..., 1:] - 0.5, atol=1e-5)
    back = yuv_to_rgb_t(y, uv)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, rgb, atol=2e-3)
