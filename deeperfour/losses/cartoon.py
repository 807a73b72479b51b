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

from deeperfour.film.color import rgb_to_yuv_t
from deeperfour.models.ops import guided_filter

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


def real_fake_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """A plain discriminator's loss (to minimize): -E[log D(real)] - E[log(1 - D(fake))], Eqs. (4) and (6)
    without the edge-smoothed term (the whitebox recipe's surface discriminator)."""
    return _bce(d_real, 1.0) + _bce(d_fake, 0.0)


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
    return content_losses(features_fn, generated, [photo], layer)[0]


def content_losses(
    features_fn: FeaturesFn, generated: torch.Tensor, targets: Sequence[torch.Tensor], layer: str = "relu4_3"
) -> list[torch.Tensor]:
    """Eq. (7) of ``generated`` to each of ``targets`` (all (B, 3, H, W) in [-1, 1]), one loss per target.

    G(p)'s features (and the graph through the VGG) are computed once and shared: in the whitebox step,
    Eq. (7) to the photo and to its structure target cost one VGG forward and backward of G(p), not two
    (an fp32 step on 2 cores at 4 x 96^2: 1.72 -> 1.56 s). The targets' features have no graph.
    """
    layers: Sequence[str] = (layer,)
    feat_g = _feature(features_fn, (generated + 1) / 2, layers, layer)  # (B, C, h, w)
    losses = []
    for target in targets:
        with torch.no_grad():
            feat_t = _feature(features_fn, (target + 1) / 2, layers, layer)  # (B, C, h, w)
        losses.append(F.l1_loss(feat_g, feat_t))  # Eq. (7)
    return losses


def _feature(features_fn: FeaturesFn, x01: torch.Tensor, layers: Sequence[str], layer: str) -> torch.Tensor:
    feats = features_fn(x01, layers=layers)
    if layer not in feats:
        raise KeyError(f"content_loss: features_fn returned {sorted(feats)}, not the layer {layer!r}")
    return feats[layer]


def total_generator_loss(adv: torch.Tensor, content: torch.Tensor, omega: float = 10.0) -> torch.Tensor:
    """Eq. (3): L(G, D) = L_adv(G, D) + omega * L_con(G, D); omega = 10 as in CartoonGAN."""
    return adv + omega * content  # Eq. (3)


# ---------------------------------------------------------------------------------------------------------
# The small-data recipe (``recipe: whitebox``): the representations and terms later work added to CartoonGAN
# ---------------------------------------------------------------------------------------------------------


def surface_representation(x: torch.Tensor, r: int = 5, eps: float = 0.2) -> torch.Tensor:
    """White-box Cartoonization's surface: the image guided-filtered by itself (Wang & Yu 2020, Eq. 2),
    which keeps region colors and strong edges and drops texture. RGB in [-1, 1] -> RGB in [-1, 1]."""
    return guided_filter(x, x, r, eps)


def texture_representation(x: torch.Tensor, generator: torch.Generator | None = None,
                           spread: float = 0.1) -> torch.Tensor:
    """White-box Cartoonization's texture: a grayscale with random channel weights (Wang & Yu 2020,
    Eq. 3; ``w ~ N(luma weights, spread)`` per image), so the discriminator judges lines and texture, not
    the palette. RGB in [-1, 1] (B, 3, H, W) -> gray replicated to 3 channels (B, 3, H, W)."""
    base = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    noise = torch.randn(x.shape[0], 3, generator=generator).to(x.device, x.dtype)
    w = (base + spread * noise).clamp_min(0.01)  # (B, 3)
    w = w / w.sum(dim=1, keepdim=True)
    gray = (x * w[:, :, None, None]).sum(dim=1, keepdim=True)  # (B, 1, H, W)
    return gray.expand(-1, 3, -1, -1)


def color_loss(generated: torch.Tensor, photo: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """AnimeGANv2's color term, on chroma only: mean |UV(G(p)) - UV(p)| of both images average-pooled by
    ``pool`` (regions, not texture), so that the style set's palette cannot take over the photo's colors.
    RGB in [-1, 1] (B, 3, H, W)."""
    def chroma(x):  # (B, 2, H/pool, W/pool): OpenCV's centered U, V
        return rgb_to_yuv_t(F.avg_pool2d((x + 1) / 2, pool) if pool > 1 else (x + 1) / 2)[1]

    with torch.no_grad():
        target = chroma(photo)
    return F.l1_loss(chroma(generated), target)
