"""Temporal consistency losses of paper Sec. 5.2: Ruder et al. (Eqs. 8-10) and Lai et al. (Eqs. 11-14).

All tensors are (B, C, H, W) floats in [0, 1]; masks/weights are (B, 1, H, W) or (B, C, H, W) and are
broadcast over channels. Warped frames and masks are computed by the caller with ``deeperfour.film.flow``
(``warp_torch``, ``occlusion_mask``, ``long_term_weights``, ``visibility_mask``), so these functions stay
pure arithmetic that reads like the equations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# features_fn(x_rgb01, layers=(...)) -> {layer name: (B, C_l, h, w)}, the perceptual (VGG) network
FeaturesFn = Callable[..., dict[str, torch.Tensor]]


def temporal_loss(x: torch.Tensor, warped: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Ruder et al.'s short-term temporal loss, paper Eq. (8): (1/D) sum_k c_k (x_k - w_k)^2.

    D = C x H x W is the image dimensionality; the batch is averaged. ``c`` in [0, 1] (certainty from the
    occlusion rule) removes disoccluded pixels and motion boundaries, where the warped previous frame
    holds no valid information about the current one.
    """
    weighted = c * (x - warped) ** 2  # (B, C, H, W); c broadcasts over channels
    return weighted.expand_as(x).mean()  # = mean over batch of (1/D) sum over the D entries


def long_term_temporal_loss(
    x: torch.Tensor, warped_prevs: dict[int, torch.Tensor], c_long: dict[int, torch.Tensor]
) -> torch.Tensor:
    """Temporal part of paper Eq. (9): sum_{j in J} L_temporal(x^(i), w_{i-j}^i(x^(i-j)), c_long^(i-j,i)).

    ``warped_prevs[j]`` is output frame i-j warped to frame i, ``c_long[j]`` its Eq. (10) weight from
    ``deeperfour.film.flow.long_term_weights``; pass only the j with i - j >= 1 (frames that exist).
    The weight gamma of Eq. (9) is applied by the caller together with the content and style terms.
    """
    if set(warped_prevs) != set(c_long):
        raise ValueError(f"warped frames for j={sorted(warped_prevs)} but weights for j={sorted(c_long)}")
    total = x.new_zeros(())
    for j in sorted(warped_prevs):
        total = total + temporal_loss(x, warped_prevs[j], c_long[j])  # Eq. (8) with Eq. (10) weights
    return total


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mean of M |a - b| over all entries (mask broadcast over channels): the summand of Eqs. (13)-(14)."""
    return (mask * (a - b).abs()).expand_as(a).mean()


def lai_losses(
    O_t: torch.Tensor,
    P_t: torch.Tensor,
    O_prev_warped: torch.Tensor,
    O_first_warped: torch.Tensor | None,
    M_st: torch.Tensor,
    M_lt: torch.Tensor | None,
    features_fn: FeaturesFn,
    lambdas: tuple[float, float, float] = (10.0, 100.0, 100.0),
    layer: str = "relu4_3",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Lai et al.'s training loss for one time step t >= 2; returns (weighted total, unweighted parts).

    Eq. (11): L = lambda_p L_p + lambda_st L_st + lambda_lt L_lt, defaults (10, 100, 100) (reference Sec. 3).
    Eq. (12): L_p  = || phi_l(O_t) - phi_l(P_t) ||_1, perceptual features of ``layer`` (VGG relu4_3):
              keeps the output's content close to the per-frame processed frame P_t.
    Eq. (13): L_st = M_{t=>t-1} || O_t - warp(O_{t-1}) ||_1, short-term consistency.
    Eq. (14): L_lt = M_{t=>1} || O_t - warp(O_1) ||_1, long-term consistency with the first frame.
    The sums of the paper become means (over elements, and over the batch), so the weights do not depend
    on resolution; the caller averages over the time steps of a clip. ``O_first_warped``/``M_lt`` may be
    None (e.g. when frame t-1 is the first frame), which gives L_lt = 0.
    """
    lam_p, lam_st, lam_lt = lambdas
    feat_o = features_fn(O_t, layers=(layer,))[layer]  # (B, C_l, h, w)
    with torch.no_grad():  # P_t is the target: no graph through the perceptual net for it
        feat_p = features_fn(P_t, layers=(layer,))[layer]
    l_p = (feat_o - feat_p).abs().mean()  # Eq. (12)
    l_st = masked_l1(O_t, O_prev_warped, M_st)  # Eq. (13)
    if O_first_warped is None or M_lt is None:
        l_lt = O_t.new_zeros(())
    else:
        l_lt = masked_l1(O_t, O_first_warped, M_lt)  # Eq. (14)
    total = lam_p * l_p + lam_st * l_st + lam_lt * l_lt  # Eq. (11)
    return total, {"perceptual": l_p, "short_term": l_st, "long_term": l_lt}
