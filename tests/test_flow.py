"""Flow, warping, occlusion rule (Ruder et al.), Eq. 10 long-term weights, Lai visibility mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deeperfour.film.flow import (
    consistency_mask,
    estimate_flow,
    in_frame_mask,
    long_term_weights,
    motion_boundary_mask,
    occlusion_mask,
    visibility_mask,
    warp,
    warp_torch,
)

from helpers import texture


def constant_flow(h: int, w: int, dx: float, dy: float) -> np.ndarray:
    return np.broadcast_to(np.array([dx, dy], np.float32), (h, w, 2)).copy()


def moving_square(k: int, h: int = 96, w: int = 128, side: int = 32, y0: int = 32, x0: int = 32):
    """Textured square moving k px to the right over a static textured background: frames A, B."""
    bg, fg = texture(h, w, 1), texture(side, side, 2)
    a, b = bg.copy(), bg.copy()
    a[y0 : y0 + side, x0 : x0 + side] = fg
    b[y0 : y0 + side, x0 + k : x0 + k + side] = fg
    return a, b


# --- warping --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_warp_integer_shift_reproduces_frame(dtype):
    img = texture(40, 50).astype(dtype)
    dx, dy = 3, -2
    out = warp(img, constant_flow(40, 50, dx, dy))  # out(y, x) = img(y + dy, x + dx)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_array_equal(out[2:-2, :-3], img[0:-4, 3:])  # interior, away from the border


def test_warp_torch_integer_shift_and_agrees_with_numpy():
    img = texture(40, 50).astype(np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]  # (1, 3, H, W)
    flow = torch.tensor([3.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 40, 50)
    out = warp_torch(x, flow)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out[2:-2, :-3], img[0:-4, 3:], atol=1e-5)
    # fractional, spatially varying flow: both warps sample the same sub-pixel positions
    rng = np.random.default_rng(1)
    f = cv2.GaussianBlur(rng.normal(0, 3, (40, 50, 2)).astype(np.float32), (0, 0), 4) * 5
    out_np = warp(img, f)
    out_t = warp_torch(x, torch.from_numpy(f).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out_t[5:-5, 5:-5], out_np[5:-5, 5:-5], atol=2e-3)


def test_warp_constant_border_and_gray():
    img = np.full((10, 12), 200, np.uint8)
    out = warp(img, constant_flow(10, 12, 20.0, 0.0), border="constant")
    assert out.shape == (10, 12) and out.max() == 0


# --- flow estimation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_estimate_flow_recovers_known_shift(method):
    big = texture(120, 140)
    src = big[10:106, 10:130]
    dst = big[9:105, 7:127]  # content moved by (+3, +1): src(x) = dst(x + (3, 1))
    flow = estimate_flow(src, dst, method=method)
    assert flow.shape == (96, 120, 2) and flow.dtype == np.float32
    med = np.median(flow[10:-10, 10:-10].reshape(-1, 2), axis=0)
    np.testing.assert_allclose(med, [3.0, 1.0], atol=0.25)
    # float [0, 1] and gray inputs are accepted too
    gray = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)
    assert estimate_flow(gray, dst.astype(np.float32) / 255.0, method=method).shape == (96, 120, 2)


def test_estimate_flow_errors(tmp_path):
    a = texture(32, 32)
    with pytest.raises(ValueError, match="raft_weights"):
        estimate_flow(a, a, method="raft")
    with pytest.raises(ValueError, match="unknown flow method"):
        estimate_flow(a, a, method="lucas")
    with pytest.raises(ValueError, match="differ in size"):
        estimate_flow(a, a[:16])


def test_raft_from_local_state_dict(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    path = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)  # random weights: only the plumbing is tested
    a = texture(36, 52)
    flow = estimate_flow(a, a, method="raft", raft_weights=path)
    assert flow.shape == (36, 52, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


# --- occlusion rule -------------------------------------------------------------------------------------


def test_occlusion_mask_flags_disoccluded_strip_true_flows():
    k, h, w, y0, x0, side = 6, 64, 80, 20, 20, 24
    # true flows on frame B's grid (B -> A, used to warp A onto B) and on A's grid (A -> B)
    flow_ba = np.zeros((h, w, 2), np.float32)
    flow_ba[y0 : y0 + side, x0 + k : x0 + k + side, 0] = -k
    flow_ab = np.zeros((h, w, 2), np.float32)
    flow_ab[y0 : y0 + side, x0 : x0 + side, 0] = k
    mask = occlusion_mask(flow_ba, flow_ab)  # certainty of B
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    strip = (slice(y0, y0 + side), slice(x0, x0 + k))  # background uncovered behind the square
    assert mask[strip].max() == 0.0
    assert consistency_mask(flow_ba, flow_ab)[strip].max() == 0.0  # caught by the fw-bw check itself
    assert mask[y0 + 4 : y0 + side - 4, x0 + k + 4 : x0 + k + side - 4].min() == 1.0  # square interior
    assert mask[:, x0 + k + side + 4 :].min() == 1.0 and mask[: y0 - 4].min() == 1.0  # far background
    mb = motion_boundary_mask(flow_ba)
    assert mb[y0 + side // 2, x0 + k + side - 1] == 0.0  # square edge is a motion boundary
    assert mb[y0 + side // 2, x0 + k + side // 2] == 1.0


def test_occlusion_mask_with_dis_flows():
    k = 8
    a, b = moving_square(k)
    mask = occlusion_mask(estimate_flow(b, a), estimate_flow(a, b))
    assert mask[34:62, 33 : 32 + k - 1].mean() < 0.2  # disoccluded strip mostly flagged
    assert mask[:, 90:].mean() > 0.95 and mask[:20].mean() > 0.95  # far from the square: reliable


def test_out_of_frame_is_unreliable():
    flow = constant_flow(20, 30, 5.0, 0.0)
    inside = in_frame_mask(flow)
    assert inside[:, :25].min() == 1.0 and inside[:, 26:].max() == 0.0
    assert occlusion_mask(flow, -flow)[:, 26:].max() == 0.0


# --- Eq. 10 long-term weights ---------------------------------------------------------------------------


def test_long_term_weights_golden():
    c = {
        1: np.array([1.0, 1.0, 0.0, 0.0, 0.5]),
        2: np.array([1.0, 0.0, 1.0, 0.0, 1.0]),
        4: np.array([1.0, 1.0, 1.0, 1.0, 0.2]),
    }
    out = long_term_weights(c)
    np.testing.assert_allclose(out[1], [1.0, 1.0, 0.0, 0.0, 0.5])  # nearest frame: its own certainty
    np.testing.assert_allclose(out[2], [0.0, 0.0, 1.0, 0.0, 0.5])  # max(c2 - c1, 0)
    np.testing.assert_allclose(out[4], [0.0, 0.0, 0.0, 1.0, 0.0])  # max(c4 - c1 - c2, 0)
    t = long_term_weights({j: torch.from_numpy(v) for j, v in c.items()})
    torch.testing.assert_close(t[4], torch.from_numpy(out[4]))


# --- Lai visibility mask --------------------------------------------------------------------------------


def test_visibility_mask_values():
    a = np.full((4, 5, 3), 0.5, np.float32)
    assert np.allclose(visibility_mask(a, a), 1.0)
    m = visibility_mask(a, a + 0.1)  # exp(-50 * 3 * 0.1^2)
    np.testing.assert_allclose(m, np.exp(-1.5), rtol=1e-4)
    assert m.shape == (4, 5)
    ta = torch.from_numpy(a).permute(2, 0, 1)[None]
    mt = visibility_mask(ta, ta + 0.1)
    assert mt.shape == (1, 1, 4, 5)
    torch.testing.assert_close(mt, torch.full((1, 1, 4, 5), float(np.exp(-1.5))), rtol=1e-4, atol=1e-6)
