"""CartoonGAN losses (paper §3.2): edge-promoting adversarial loss, Eqs. (4)-(6), content loss, Eq. (7).

Total objective, Eq. (3):  L(G, D) = L_adv(G, D) + omega * L_con(G, D),  omega = 10.

The discriminator returns LOGITS; every log D(.) term is written with ``binary_cross_entropy_with_logits``,
which computes log(sigmoid(.)) without overflow: -log D(x) = BCE(logit, 1), -log(1 - D(x)) = BCE(logit, 0).
Each term is a mean over the batch and over D's patch grid, i.e. the expectations E[.] of the paper.

Images follow the project convention: RGB in [-1, 1], (B, 3, H, W). The perceptual network is passed in
as ``features_fn(x_rgb01, layers=(...)) -> {name: (B, C, h, w)}`` taking RGB in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

FeaturesFn = Callable[..., Mapping[str, torch.Tensor]]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE-with-logits against a constant label (1 = real cartoon, 0 = fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(
    d_real_cartoon: torch.Tensor, d_edge_smoothed: torch.Tensor, d_generated: torch.Tensor
) -> torch.Tensor:
    """Edge-promoting adversarial loss for D (to minimize): -L_adv of Eqs. (4)-(6).

    Real cartoons c_i are labelled real; edge-smoothed cartoons e_j AND generated images G(p_k) fake,
    which is what teaches D (and through it G) that clear edges make a cartoon. Pass ``d_generated``
    computed on ``G(p).detach()`` when only D is being updated.
    """
    real = _bce(d_real_cartoon, 1.0)  # Eq. (4): -E_c[log D(c_i)]
    smoothed = _bce(d_edge_smoothed, 0.0)  # Eq. (5): -E_e[log(1 - D(e_j))]
    generated = _bce(d_generated, 0.0)  # Eq. (6): -E_p[log(1 - D(G(p_k)))]
    return real + smoothed + generated


def generator_adv_loss(d_generated: torch.Tensor) -> torch.Tensor:
    """Adversarial loss for G, the Eq. (6) term, in the non-saturating form -E_p[log D(G(p_k))].

    Minimizing log(1 - D(G(p))) as written gives vanishing gradients while D rejects G's outputs
    confidently (early training); maximizing log D(G(p)) has the same fixed point and strong
    gradients (Goodfellow et al. 2014). Eqs. (4)-(5) do not depend on G.
    """
    return _bce(d_generated, 1.0)  # Eq. (6), non-saturating


def content_loss(
    features_fn: FeaturesFn, generated: torch.Tensor, photo: torch.Tensor, layer: str = "relu4_3"
) -> torch.Tensor:
    """Content loss, Eq. (7): E_p[ || VGG_l(G(p)) - VGG_l(p) ||_1 ], mean absolute feature difference.

    ``generated`` = G(p) and ``photo`` = p, both RGB in [-1, 1], (B, 3, H, W). The sparse L1 norm (not
    L2) lets G change local textures into cartoon style while keeping the photo's semantic content.
    The photo's features are a fixed target and are computed without a graph.
    Note: the reference implementations use VGG19 conv4_4 (before ReLU); the project's default is the
    ``relu4_3`` layer of its own VGG16 feature network; pass ``layer`` to change it.
    """
    layers: Sequence[str] = (layer,)
    feat_g = _feature(features_fn, (generated + 1) / 2, layers, layer)  # (B, C, h, w)
    with torch.no_grad():
        feat_p = _feature(features_fn, (photo + 1) / 2, layers, layer)  # (B, C, h, w)
    return F.l1_loss(feat_g, feat_p)  # Eq. (7)


def _feature(features_fn: FeaturesFn, x01: torch.Tensor, layers: Sequence[str], layer: str) -> torch.Tensor:
    feats = features_fn(x01, layers=layers)
    if layer not in feats:
        raise KeyError(f"content_loss: features_fn returned {sorted(feats)}, not the layer {layer!r}")
    return feats[layer]


def total_generator_loss(adv: torch.Tensor, content: torch.Tensor, omega: float = 10.0) -> torch.Tensor:
    """Eq. (3): L(G, D) = L_adv(G, D) + omega * L_con(G, D); omega = 10 as in CartoonGAN."""
    return adv + omega * content  # Eq. (3)
