"""The small-data CartoonGAN recipe's terms: surface (guided filter), texture (random gray), color loss, and
the structure pseudo-target (SLIC mean colors + DoG ink)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeperfour.losses.cartoon import (
    color_loss,
    surface_representation,
    texture_representation,
)
from deeperfour.models.ops import box_filter, guided_filter
from deeperfour.train.structure_target import mean_fill, structure_target


def test_box_filter_is_the_clipped_window_mean():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 7, 11, generator=gen).to(memory_format=torch.channels_last)  # as generators feed it
    r = 2
    out = box_filter(x, r)
    expect = torch.empty_like(out)
    for i in range(7):
        for j in range(11):  # brute force: the mean of the window clipped at the border
            expect[:, :, i, j] = x[:, :, max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1].mean(dim=(2, 3))
    assert out.shape == x.shape
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=0)


def test_surface_keeps_flat_regions_and_steps_and_drops_texture():
    flat = torch.full((1, 3, 24, 24), 0.3)
    torch.testing.assert_close(surface_representation(flat), flat)
    step = torch.zeros(1, 3, 24, 24)
    step[..., 12:] = 1.0
    step -= 0.5
    assert (surface_representation(step, 3, 0.01) - step).abs().max() < 0.05  # a strong edge survives
    noise = 0.05 * torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    assert surface_representation(noise, 3, 0.2).std() < 0.3 * noise.std()  # faint texture is smoothed away
    torch.testing.assert_close(guided_filter(noise, noise, 2, 1e-8), noise, atol=1e-4, rtol=0)  # eps -> 0


def test_texture_is_a_gray_with_weights_that_sum_to_one():
    gen = torch.Generator().manual_seed(0)
    gray = torch.full((2, 3, 8, 8), -0.2)
    torch.testing.assert_close(texture_representation(gray, gen), gray)  # any convex weights: same gray
    x = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1
    t = texture_representation(x, gen)
    assert t.shape == x.shape and torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 1], t[:, 2])
    a = texture_representation(x, torch.Generator().manual_seed(1))
    b = texture_representation(x, torch.Generator().manual_seed(1))
    c = texture_representation(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)  # seeded, random


def test_color_loss_sees_chroma_not_brightness():
    dark, light = torch.full((1, 3, 8, 8), -0.5), torch.full((1, 3, 8, 8), 0.5)
    assert color_loss(dark, light).item() == pytest.approx(0.0, abs=1e-7)  # grays: no chroma either way
    red = light.clone()
    red[:, 0] = 1.0
    assert color_loss(red, light).item() > 0.05


def test_structure_target_fills_regions_with_their_mean_and_inks_the_boundary():
    img = np.zeros((48, 48, 3), np.uint8)
    img[:, :24] = (150, 30, 20)
    img[:, 24:] = (120, 180, 240)
    rng = np.random.default_rng(0)
    noisy = np.clip(img.astype(int) + rng.integers(-10, 11, img.shape), 0, 255).astype(np.uint8)
    out = structure_target(noisy, segment_px=200)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out, structure_target(noisy, segment_px=200))  # deterministic
    left, right = out[8:40, 4:16].reshape(-1, 3), out[8:40, 32:44].reshape(-1, 3)
    assert np.abs(left.astype(int) - (150, 30, 20)).max() <= 6 and left.std(axis=0).max() < 3  # flat fill
    assert np.abs(right.astype(int) - (120, 180, 240)).max() <= 6 and right.std(axis=0).max() < 3
    assert out[:, 20:28].min() == 0  # a black ink line along the luminance step
    labels = np.zeros((4, 4), int)
    labels[:, 2:] = 1
    fill = mean_fill(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), labels)
    assert np.allclose(fill[:, :2], fill[0, 0]) and not np.allclose(fill[0, 0], fill[0, 3])


def test_structure_target_refuses_non_rgb():
    with pytest.raises(ValueError, match="expected an RGB uint8"):
        structure_target(np.zeros((8, 8), np.uint8))
