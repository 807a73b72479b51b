"""The classical cartoon baseline (Winnemöller et al. 2006): one image, and streamed through a shot."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deeperfour.infer.abstraction import (
    AbstractionCartoonizer,
    AbstractionConfig,
    abstract,
    quantization_levels,
    smooth_lab,
)
from deeperfour.metrics.film import warping_error


def gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def colors_covering(img: np.ndarray, share: float = 0.9) -> int:
    """How many colours (5 bits a channel) it takes to cover ``share`` of the pixels."""
    q = (img // 8).reshape(-1, 3).astype(np.int64)
    counts = np.sort(np.bincount(q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]))[::-1]
    return int(np.searchsorted(np.cumsum(counts), share * len(q)) + 1)


def noisy_gradients(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """Two smooth colour ramps side by side, with Gaussian noise (sigma 6 levels)."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([60 + 120 * xx / w, 80 + 100 * yy / h, 150 - 60 * xx / w], axis=-1)
    base[:, w // 2:] += 40
    noise = np.random.default_rng(seed).normal(0, 6, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def panning_clip(n: int = 10, h: int = 72, w: int = 96, speed: float = 0.6, noise: float = 4.0,
                 seed: int = 1) -> list[np.ndarray]:
    """A smooth random colour texture panning ``speed`` px a frame (sub-pixel), with a little grain."""
    rng = np.random.default_rng(seed)
    tex = rng.integers(0, 256, (h // 6 + 4, (w + int(n * speed)) // 6 + 8, 3)).astype(np.float32)
    big = cv2.resize(tex, (tex.shape[1] * 6, tex.shape[0] * 6), interpolation=cv2.INTER_CUBIC)
    frames = []
    for t in range(n):
        shift = np.float32([[1, 0, -t * speed - 4], [0, 1, -4]])
        f = cv2.warpAffine(big, shift, (w, h), flags=cv2.INTER_LINEAR) + rng.normal(0, noise, (h, w, 3))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


@pytest.mark.parametrize("filter_scale", [0.5, 1.0])
def test_shape_and_dtype_kept_at_odd_sizes(filter_scale):
    cfg = AbstractionConfig(filter_scale=filter_scale)
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    out = abstract(img, cfg)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    cart = AbstractionCartoonizer(cfg)
    outs = list(cart.stream((img, gray(img)) for _ in range(3)))
    assert len(outs) == 3 and all(o.shape == (37, 53, 3) and o.dtype == np.uint8 for o in outs)


def test_flat_regions_get_flat():
    img = noisy_gradients()
    before, after = colors_covering(img), colors_covering(abstract(img))
    assert after < 0.5 * before, (before, after)


def test_step_edge_is_drawn_dark():
    img = np.full((40, 64, 3), 70, np.uint8)
    img[:, 32:] = (200, 190, 170)
    out = abstract(img).astype(np.float32).mean(axis=2)  # (40, 64) brightness
    rows = slice(8, 32)  # away from the top and bottom borders
    dark_side, bright_side = out[rows, 4:20].mean(), out[rows, 44:60].mean()
    line = out[rows, 26:38].min(axis=1)  # darkest pixel of each row near the step
    assert dark_side > 40 and bright_side > dark_side + 60  # flat sides keep their colours, no ink
    assert np.all(line < 0.3 * dark_side), (line, dark_side)


def test_levels_are_fixed_within_a_shot_and_recomputed_after_reset():
    cfg = AbstractionConfig()
    dark = noisy_gradients(seed=1) // 2
    bright = np.clip(noisy_gradients(seed=2).astype(np.int32) + 60, 0, 255).astype(np.uint8)
    cart = AbstractionCartoonizer(cfg)
    assert cart.levels is None
    first = cart.step(dark, gray(dark))
    np.testing.assert_array_equal(first, abstract(dark, cfg))  # a shot's first frame has no past
    shot_levels = cart.levels.copy()
    np.testing.assert_allclose(shot_levels, quantization_levels(smooth_lab(dark, cfg)[0][..., 0], cfg))
    cart.step(bright, gray(bright))
    np.testing.assert_array_equal(cart.levels, shot_levels)  # the brighter frame did not move the bins
    cart.reset()
    assert cart.levels is None and cart.prev_edges is None
    np.testing.assert_array_equal(cart.step(bright, gray(bright)), abstract(bright, cfg))
    assert cart.levels[0] > shot_levels[0] + 10  # the new shot's bins follow its own luminance


def test_flow_guided_edges_flicker_less_than_per_frame_edges():
    frames = panning_clip()
    sources = [gray(f) for f in frames]
    per_frame = list(AbstractionCartoonizer(AbstractionConfig(edge_memory=0.0)).stream(zip(frames, sources,
                                                                                           strict=True)))
    guided = list(AbstractionCartoonizer(AbstractionConfig(edge_memory=0.6)).stream(zip(frames, sources,
                                                                                        strict=True)))
    e_per_frame, e_guided = warping_error(per_frame, sources), warping_error(guided, sources)
    assert e_guided < 0.7 * e_per_frame, (e_guided, e_per_frame)

    def ink(outs: list[np.ndarray]) -> float:  # share of black line pixels
        return float(np.mean([(o.max(axis=2) < 20).mean() for o in outs[1:]]))

    assert ink(guided) > 0.5 * ink(per_frame) > 0  # the lines are steadier, not gone


@pytest.mark.parametrize("bad, name", [
    ({"n_bins": 1}, "n_bins"),
    ({"tau": 1.5}, "tau"),
    ({"phi_e": 0}, "phi_e"),
    ({"edge_memory": 1.0}, "edge_memory"),
    ({"bilateral_diameter": 4}, "bilateral_diameter"),
    ({"edge_iterations": 5}, "edge_iterations"),
    ({"filter_scale": 0.0}, "filter_scale"),
    ({"flow_preset": "slow"}, "flow_preset"),
    ({"level_percentiles": (90, 10)}, "level_percentiles"),
])
def test_bad_config_values_give_one_clear_line(bad, name):
    with pytest.raises(ValueError, match=f"bad AbstractionConfig: {name}=") as err:
        AbstractionConfig(**bad)
    assert "\n" not in str(err.value)


def test_bad_inputs_and_unknown_keys_give_one_clear_line():
    with pytest.raises(ValueError, match="unknown AbstractionConfig keys sigma "):
        AbstractionConfig.from_dict({"sigma": 2.0})
    cfg = AbstractionConfig.from_dict({"n_bins": 10, "level_percentiles": [5, 95]})  # as params.yaml gives it
    assert cfg.level_percentiles == (5, 95)
    with pytest.raises(ValueError, match="RGB uint8 image"):
        abstract(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        AbstractionCartoonizer().step(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8))
