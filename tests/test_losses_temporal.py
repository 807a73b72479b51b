"""Ruder et al.'s temporal losses (Eqs. 8-10) and Lai et al.'s losses (Eqs. 11-14) on tiny tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deeperfour.film.flow import long_term_weights
from deeperfour.losses.temporal import lai_losses, long_term_temporal_loss, temporal_loss


def tiny_features(x: torch.Tensor, layers=("relu4_3",)) -> dict[str, torch.Tensor]:
    """Stand-in for the VGG feature net: a fixed random 3x3 conv + ReLU at half resolution."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 3, 3, 3, generator=g)
    feat = F.relu(F.conv2d(F.avg_pool2d(x, 2), weight, padding=1))  # (B, 4, H/2, W/2)
    return {name: feat for name in layers}


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- Ruder et al. ---------------------------------------------------------------------------------------


def test_temporal_loss_zero_when_equal():
    x = rand(2, 3, 8, 8)
    assert temporal_loss(x, x.clone(), torch.ones(2, 1, 8, 8)).item() == 0.0


def test_temporal_loss_weighting_golden():
    x = torch.ones(1, 3, 4, 4)
    w = torch.zeros(1, 3, 4, 4)
    c = torch.zeros(1, 1, 4, 4)
    c[..., :2] = 1.0  # half the pixels certain; broadcast over the 3 channels
    assert temporal_loss(x, w, c).item() == pytest.approx(0.5)  # (1/D) * (D/2) * 1^2
    w[:, 0] = 1.0  # channel 0 now agrees: 2 of 3 channels differ on the certain half
    assert temporal_loss(x, w, c).item() == pytest.approx(0.5 * 2 / 3)
    c_full = torch.full((1, 3, 4, 4), 0.25)  # per-channel weights are accepted too
    assert temporal_loss(x, torch.zeros_like(x), c_full).item() == pytest.approx(0.25)


def test_temporal_loss_gradient_only_on_certain_pixels():
    x = rand(1, 3, 4, 4).requires_grad_()
    c = torch.zeros(1, 1, 4, 4)
    c[..., 0, 0] = 1.0
    temporal_loss(x, torch.zeros_like(x), c).backward()
    assert (x.grad[..., 0, 0] != 0).all() and x.grad[..., 1:, :].abs().sum() == 0


def test_long_term_temporal_loss_sums_eq8_with_eq10_weights():
    x = rand(1, 3, 6, 6, seed=1)
    warped = {j: rand(1, 3, 6, 6, seed=10 + j) for j in (1, 2, 4)}
    certain = {j: (rand(1, 1, 6, 6, seed=20 + j) > 0.5).float() for j in (1, 2, 4)}
    c_long = long_term_weights(certain)
    expected = sum(temporal_loss(x, warped[j], c_long[j]) for j in (1, 2, 4))
    torch.testing.assert_close(long_term_temporal_loss(x, warped, c_long), expected)
    with pytest.raises(ValueError):
        long_term_temporal_loss(x, warped, {1: c_long[1]})


# --- Lai et al. -----------------------------------------------------------------------------------------


def test_lai_losses_zero_when_output_is_consistent():
    p = rand(2, 3, 8, 8)
    m = torch.ones(2, 1, 8, 8)
    total, parts = lai_losses(p, p, p, p, m, m, tiny_features)
    assert total.item() == 0.0 and all(v.item() == 0.0 for v in parts.values())


def test_lai_losses_weighted_total_and_masks():
    o = rand(1, 3, 8, 8, seed=1).requires_grad_()
    p, prev, first = rand(1, 3, 8, 8, seed=2), rand(1, 3, 8, 8, seed=3), rand(1, 3, 8, 8, seed=4)
    m_st = torch.zeros(1, 1, 8, 8)
    m_st[..., :4] = 1.0
    m_lt = torch.ones(1, 1, 8, 8)
    total, parts = lai_losses(o, p, prev, first, m_st, m_lt, tiny_features, lambdas=(10, 100, 100))
    expected_st = ((o - prev).abs()[..., :4].sum() / o.numel()).item()  # Eq. 13, masked L1 mean
    assert parts["short_term"].item() == pytest.approx(expected_st, rel=1e-5)
    assert parts["long_term"].item() == pytest.approx((o - first).abs().mean().item(), rel=1e-5)  # Eq. 14
    feat_o, feat_p = tiny_features(o)["relu4_3"], tiny_features(p)["relu4_3"]
    assert parts["perceptual"].item() == pytest.approx((feat_o - feat_p).abs().mean().item(), rel=1e-5)
    weighted = 10 * parts["perceptual"] + 100 * parts["short_term"] + 100 * parts["long_term"]  # Eq. 11
    assert total.item() == pytest.approx(weighted.item(), rel=1e-6)
    total.backward()
    assert o.grad is not None and o.grad.abs().sum() > 0


def test_lai_losses_without_first_frame():
    o, p = rand(1, 3, 8, 8, seed=1), rand(1, 3, 8, 8, seed=2)
    m = torch.ones(1, 1, 8, 8)
    total, parts = lai_losses(o, p, p, None, m, None, tiny_features)
    assert parts["long_term"].item() == 0.0
    assert total.item() == pytest.approx(10 * parts["perceptual"].item() + 100 * parts["short_term"].item())
