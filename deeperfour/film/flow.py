"""Optical flow, backward warping, occlusion masks and long-term weights.

Conventions used everywhere in DeeperFour:

* a flow array is float32 ``(H, W, 2)`` in pixels, ``(dx, dy)``; a torch flow is ``(B, 2, H, W)``;
* ``estimate_flow(src, dst)`` maps each pixel ``x`` of ``src`` to the position ``x + flow(x)`` in ``dst``;
* backward warping: ``warp(dst, flow)`` samples ``dst`` at ``x + flow(x)``, which gives ``dst`` seen on
  the pixel grid of ``src``. To compare frame t with frame t-1, compute ``flow_{t->t-1}`` and warp
  frame t-1 with it.

Two stabilizers use these tools (paper Sec. 5.2): Ruder et al.'s temporal loss needs warped previous
frames and per-pixel certainties ``c`` (occlusion rule, Eq. 10 long-term weights); Lai et al.'s network
needs flow only at training time, for the visibility masks ``M`` of Eqs. (13)-(14).
"""

from __future__ import annotations

import os
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_BORDERS = {"replicate": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}
LONG_TERM_J = (1, 2, 4)  # Ruder et al.'s set J of previous frames for the long-term loss (Eq. 9-10)


# ---------------------------------------------------------------------------------------------------------
# Flow estimation
# ---------------------------------------------------------------------------------------------------------


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """Any frame (uint8 or float in [0, 1]; gray, (H, W, 1) or RGB) -> uint8 gray (H, W), as flow needs."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    if img.ndim != 2:
        raise ValueError(f"expected a frame (H, W), (H, W, 1) or (H, W, 3), got shape {img.shape}")
    return np.ascontiguousarray(img)


def estimate_flow(
    src: np.ndarray,
    dst: np.ndarray,
    method: str = "dis",
    preset: str = "medium",
    raft_weights: str | os.PathLike | None = None,
) -> np.ndarray:
    """Dense flow (H, W, 2) float32 mapping pixels of ``src`` to their positions in ``dst``.

    ``method``: ``"dis"`` (OpenCV DIS, default; ``preset`` = ultrafast/fast/medium), ``"farneback"``,
    or ``"raft"`` (torchvision RAFT built with ``weights=None`` and loaded from the local state_dict
    ``raft_weights``; nothing is ever downloaded). Frames may be gray or RGB, uint8 or float [0, 1].
    """
    if np.shape(src)[:2] != np.shape(dst)[:2]:
        raise ValueError(f"frames differ in size: {np.shape(src)[:2]} vs {np.shape(dst)[:2]}")
    if method == "dis":
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r} (choose from {', '.join(_DIS_PRESETS)})")
        dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
        flow = dis.calc(to_gray_u8(src), to_gray_u8(dst), None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(
            to_gray_u8(src), to_gray_u8(dst), None,
            pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0,
        )
    elif method == "raft":
        if raft_weights is None:
            raise ValueError(
                "method='raft' needs raft_weights=<local .pth state_dict of torchvision raft_small or "
                "raft_large>; DeeperFour never downloads weights (use method='dis' otherwise)"
            )
        flow = _raft_flow(src, dst, os.fspath(raft_weights))
    else:
        raise ValueError(f"unknown flow method {method!r} (choose from dis, farneback, raft)")
    return np.ascontiguousarray(flow, dtype=np.float32)


@lru_cache(maxsize=2)
def _load_raft(path: str) -> torch.nn.Module:
    """torchvision RAFT (large, else small) with a user-supplied local state_dict; cached per path."""
    from torchvision.models.optical_flow import raft_large, raft_small

    sd = torch.load(path, map_location="cpu", weights_only=True)
    sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    errors = []
    for build in (raft_large, raft_small):
        net = build(weights=None, progress=False)
        try:
            net.load_state_dict(sd)
        except RuntimeError as e:  # wrong architecture for these keys/shapes: try the other one
            errors.append(f"{build.__name__}: {str(e).splitlines()[0]}")
            continue
        return net.eval()
    raise ValueError(f"{path}: not a torchvision RAFT state_dict ({'; '.join(errors)})")


def _to_raft_input(img: np.ndarray) -> torch.Tensor:
    """Frame -> (1, 3, H, W) float in [-1, 1], as torchvision RAFT expects."""
    img = np.asarray(img)
    x = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if x.ndim == 2:
        x = x[..., None]
    x = np.array(np.broadcast_to(x[..., :3], (*x.shape[:2], 3)))  # writable copy
    return torch.from_numpy(x).permute(2, 0, 1)[None] * 2.0 - 1.0


@torch.no_grad()
def _raft_flow(src: np.ndarray, dst: np.ndarray, weights: str) -> np.ndarray:
    net = _load_raft(weights)
    a, b = _to_raft_input(src), _to_raft_input(dst)  # (1, 3, H, W)
    h, w = a.shape[-2:]
    # RAFT needs sides divisible by 8 and at least 128 px (its correlation pyramid has 4 levels)
    pad = (0, max(128, w + (-w) % 8) - w, 0, max(128, h + (-h) % 8) - h)
    a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
    flow = net(a, b)[-1][0, :, :h, :w]  # (2, H, W), last refinement
    return flow.permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------------------
# Warping
# ---------------------------------------------------------------------------------------------------------


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sampling positions x + flow(x): two float32 (H, W) maps for cv2.remap."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def warp(img: np.ndarray, flow: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Backward warping: out(x) = img(x + flow(x)), bilinear; dtype and shape of ``img`` are kept.

    ``border``: ``"replicate"`` (default) or ``"constant"`` (zeros outside the frame).
    """
    img = np.asarray(img)
    flow = np.asarray(flow, dtype=np.float32)
    if img.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {img.shape[:2]} and flow {flow.shape[:2]} differ in size")
    dtype = img.dtype
    if dtype not in (np.uint8, np.float32):
        img = img.astype(np.float32)
    map_x, map_y = _sample_grid(flow)
    mode = _BORDERS[border]

    def remap(a: np.ndarray) -> np.ndarray:
        return cv2.remap(np.ascontiguousarray(a), map_x, map_y, cv2.INTER_LINEAR, borderMode=mode)

    if img.ndim == 2 or img.shape[2] <= 4:
        out = remap(img).reshape(img.shape)
    else:  # cv2.remap handles at most 4 channels at once
        out = np.concatenate([remap(img[..., i : i + 4]).reshape(*img.shape[:2], -1)
                              for i in range(0, img.shape[2], 4)], axis=2)
    return out.astype(dtype, copy=False)


def warp_torch(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Differentiable backward warping of (B, C, H, W) by pixel flow (B, 2, H, W): out(x) = x(p + flow(p)).

    ``align_corners=True`` makes the normalized coordinate -1/+1 the CENTRES of the first/last pixels,
    so integer pixel positions 0..W-1 map exactly to pixel centres, as in cv2.remap.
    """
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    px = xs + flow[:, 0].to(x.dtype)  # (B, H, W)
    py = ys + flow[:, 1].to(x.dtype)  # (B, H, W)
    gx, gy = 2.0 * px / max(w - 1, 1) - 1.0, 2.0 * py / max(h - 1, 1) - 1.0  # normalized to [-1, 1]
    grid = torch.stack((gx, gy), dim=-1)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


# ---------------------------------------------------------------------------------------------------------
# Occlusion / certainty masks (Ruder et al.; reference Sec. 3)
# ---------------------------------------------------------------------------------------------------------


def consistency_mask(flow_fw: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """1 where going along ``flow_fw`` and back along ``flow_bw`` returns home, 0 at (dis)occlusions.

    Rule: with w = flow_fw(x) and w' = flow_bw(x + w), unreliable if
    |w + w'|^2 > 0.01 (|w|^2 + |w'|^2) + 0.5. (H, W) float32 in {0, 1}.
    """
    w = np.asarray(flow_fw, dtype=np.float32)
    w_back = warp(np.asarray(flow_bw, dtype=np.float32), w)  # w'(x + w), (H, W, 2)
    lhs = np.sum((w + w_back) ** 2, axis=2)
    rhs = 0.01 * (np.sum(w**2, axis=2) + np.sum(w_back**2, axis=2)) + 0.5
    return (lhs <= rhs).astype(np.float32)


def motion_boundary_mask(flow: np.ndarray) -> np.ndarray:
    """1 away from motion boundaries, 0 where |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002.

    Gradients are central differences (np.gradient), so both sides of a flow edge get flagged.
    """
    flow = np.asarray(flow, dtype=np.float32)
    grad2 = np.zeros(flow.shape[:2], dtype=np.float32)
    for c in range(2):
        gy, gx = np.gradient(flow[..., c])
        grad2 += gx**2 + gy**2
    return (grad2 <= 0.01 * np.sum(flow**2, axis=2) + 0.002).astype(np.float32)


def in_frame_mask(flow: np.ndarray) -> np.ndarray:
    """1 where x + flow(x) lands inside the frame [0, W-1] x [0, H-1], 0 where it flows out."""
    h, w = flow.shape[:2]
    px, py = _sample_grid(np.asarray(flow, dtype=np.float32))
    return ((px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)).astype(np.float32)


def occlusion_mask(flow_fw: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """Ruder et al.'s certainty c on the pixel grid of ``flow_fw``: (H, W) float32, 1 = reliable.

    ``flow_fw`` is the flow used for warping (defined on the grid where the mask lives), ``flow_bw`` the
    flow in the opposite direction. For Ruder's c^(i-1,i) of frame i pass flow_{i->i-1}, flow_{i-1->i};
    for E_warp of pair (t, t+1) pass flow_{t->t+1}, flow_{t+1->t}. A pixel is unreliable if the
    forward-backward check fails, if it sits on a motion boundary, or if it flows out of the frame.
    """
    return consistency_mask(flow_fw, flow_bw) * motion_boundary_mask(flow_fw) * in_frame_mask(flow_fw)


def long_term_weights(certainties: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Paper Eq. (10): c_long^(i-j,i) = max(c^(i-j,i) - sum_{k in J, k < j} c^(i-k,i), 0).

    ``certainties[j]`` is c^(i-j,i), the mask of frame i-j warped to frame i (J = its keys, usually
    {1, 2, 4}). A pixel already covered by a closer frame gets no weight from farther ones, so each
    pixel is pulled toward its nearest reliable past, not toward several at once. Works for numpy
    arrays and torch tensors alike.
    """
    out = {}
    for j in sorted(certainties):
        closer = sum(certainties[k] for k in certainties if k < j)  # 0 when j is the nearest
        out[j] = (certainties[j] - closer).clip(min=0)
    return out


def visibility_mask(frame_t, warped_prev, alpha: float = 50.0):
    """Lai et al.'s M = exp(-alpha |I_t - warp(I_{t-1})|^2), squared difference summed over channels.

    A soft occlusion mask computed from the INPUT frames: where the warped previous input disagrees with
    the current one (occlusion, flow error), Eqs. (13)-(14) stop asking the output to agree.
    numpy (H, W[, C]) (uint8 or float [0, 1]) -> (H, W) float32; torch (B, C, H, W) -> (B, 1, H, W).
    """
    if isinstance(frame_t, torch.Tensor):
        d2 = ((frame_t - warped_prev) ** 2).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        return torch.exp(-alpha * d2)
    a, b = to_float01(frame_t), to_float01(warped_prev)
    d2 = (a - b) ** 2
    d2 = d2.sum(axis=2) if d2.ndim == 3 else d2  # (H, W)
    return np.exp(-alpha * d2).astype(np.float32)


def to_float01(img: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 / 255; float frames are taken as already in [0, 1]."""
    img = np.asarray(img)
    return img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
