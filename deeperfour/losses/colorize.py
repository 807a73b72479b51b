"""Losses of the DeOldify-style colorizer: NoGAN feature loss and the SAGAN hinge losses.

Feature loss (reference §1): L1 on the chroma plus L1 between perceptual features of the
colorized and the true RGB image (DeOldify: VGG16 features before pools 3, 4, 5, weights
20, 70, 10; here the HED VGG16 of ``models/features.py``, layers chosen in params).
Hinge losses: paper Eqs. (1)-(2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from deeperfour.film.color import yuv_to_rgb_t


def feature_loss(uv_pred: torch.Tensor, uv_true: torch.Tensor, y: torch.Tensor,
                 features_fn: Callable[..., dict[str, torch.Tensor]], layer_weights: Mapping[str, float],
                 pixel_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """pixel_weight * |UV - UV*|_1 + sum_l w_l |phi_l(RGB(Y, UV)) - phi_l(RGB(Y, UV*))|_1.

    uv_*: (B, 2, H, W) centered chroma; y: (B, 1, H, W) luma in [0, 1], shared by both images.
    """
    pix = F.l1_loss(uv_pred.float(), uv_true)
    total = pixel_weight * pix
    parts = {"pixel": pix.item()}
    if layer_weights:
        layers = tuple(layer_weights)
        f_pred = features_fn(yuv_to_rgb_t(y, uv_pred.float()), layers)
        with torch.no_grad():
            f_true = features_fn(yuv_to_rgb_t(y, uv_true), layers)
        for name, w in layer_weights.items():
            term = F.l1_loss(f_pred[name].float(), f_true[name].float())
            total = total + w * term
            parts[name] = term.item()
    return total, parts


def hinge_critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Paper Eq. (1): L_D = -E[min(0, -1 + D(x))] - E[min(0, -1 - D(G(z)))]."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Paper Eq. (2): L_G = -E[D(G(z))]."""
    return -fake_logits.mean()
