"""Reference-guided colorization, classical path: flow propagation, two-sided blend, cuts, Levin fill,
whole-shot references placed by homography or color transfer."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from deeperfour.film.color import gray_to_rgb, luma_chroma_to_rgb, luminance
from deeperfour.film.keyframes import Shot
from deeperfour.infer.propagate import (
    PropagateSettings,
    blend_weights,
    chroma,
    levin_fill,
    levin_weights,
    propagate,
)

from helpers import texture


def moving(n=10, h=64, w=96, step=2, seed=1):
    """A textured color image seen through a window sliding ``step`` px a frame: (frames, gray frames)."""
    big = texture(h + 8, w + step * n + 8, seed=seed, sigma=4)
    frames = [np.ascontiguousarray(big[4:4 + h, 4 + step * i:4 + step * i + w]) for i in range(n)]
    return frames, [luminance(f) for f in frames]


def de(a, b) -> float:
    return float(deltaE_ciede2000(rgb2lab(a), rgb2lab(b)).mean())


def test_moving_pattern_recovers_colors_luma_and_count():
    frames, gray = moving()
    prop = propagate(gray, [0], {0: frames[0]})
    out = list(prop)
    assert len(out) == len(frames) and prop.uncolored_shots == [] and prop.keyframes == {0: [0]}
    assert all(o.shape == f.shape and o.dtype == np.uint8 for o, f in zip(out, frames, strict=True))
    assert max(int(np.abs(luminance(o).astype(int) - g).max()) for o, g in zip(out, gray, strict=True)) <= 1
    for i in range(1, len(frames)):  # the part of frame i seen in the reference: its colors come back
        seen = slice(0, frames[i].shape[1] - 2 * i)
        assert de(out[i][:, seen], frames[i][:, seen]) < 1.0, i
    ours = np.mean([de(o, f) for o, f in zip(out[1:], frames[1:], strict=True)])
    grays = np.mean([de(gray_to_rgb(g), f) for g, f in zip(gray[1:], frames[1:], strict=True)])
    assert ours < 0.2 * grays, (ours, grays)


def test_luma_exact_at_odd_size_and_through_a_memmap():
    frames, gray = moving(n=6, h=45, w=67, step=1, seed=3)
    out = list(propagate(gray, [0], {0: frames[0]}))
    assert max(int(np.abs(luminance(o).astype(int) - g).max()) for o, g in zip(out, gray, strict=True)) <= 1
    spilled = list(propagate(gray, [0], {0: frames[0]}, PropagateSettings(spill_mb=0)))  # np.memmap buffers
    assert all(np.array_equal(a, b) for a, b in zip(out, spilled, strict=True))


def test_blend_weights_sum_to_one_and_favour_near_and_confident():
    conf = np.array([0.0, 0.3, 1.0], np.float32)
    for d_a, d_b in [(1, 5), (3, 3), (7, 2)]:
        w_a, w_b = blend_weights(conf, conf[::-1], d_a, d_b)
        assert np.allclose(w_a + w_b, 1) and (w_a >= 0).all() and (w_b >= 0).all()
    w_a, w_b = blend_weights(0.8, 0.8, 2, 6)  # equal confidence: the nearer keyframe counts more
    assert w_a > w_b and np.isclose(w_a, 0.75)
    w_a, w_b = blend_weights(0.9, 0.2, 4, 4)  # equal distance: the more confident one
    assert w_a > w_b
    w_a, _ = blend_weights(0.0, 0.0, 1, 3)  # neither confident: distance alone
    assert np.isclose(w_a, 0.75)
    with pytest.raises(ValueError):
        blend_weights(1, 1, 0, 3)


def test_two_keyframes_blend_towards_the_nearer():
    """Frame 0's reference is the truth, frame 11's the truth with its chroma shifted by +0.1: the
    shift the output carries grows from about 0 next to frame 0 to about 0.1 next to frame 11."""
    frames, gray = moving(n=12, step=1)
    shifted = luma_chroma_to_rgb(gray[11], chroma(frames[11]) + 0.1)
    out = list(propagate(gray, [0], {0: frames[0], 11: shifted}))
    shift = [float((chroma(o) - chroma(f)).mean()) for o, f in zip(out, frames, strict=True)]
    inner = shift[1:11]
    assert all(b > a - 0.005 for a, b in zip(inner, inner[1:], strict=False)), np.round(shift, 3)
    assert shift[1] < 0.03 and shift[10] > 0.06 and 0.03 < shift[5] < 0.07, np.round(shift, 3)


def test_cut_stops_propagation_and_lists_the_gray_shot():
    a, ga = moving(n=8, seed=1)
    b, gb = moving(n=8, seed=2)
    prop = propagate(ga + gb, [0, 8], {0: a[0]})
    assert prop.uncolored_shots == [1]  # known before any frame is made
    out = list(prop)
    assert len(out) == 16
    for o, g in zip(out[8:], gb, strict=True):  # no color leaks across the cut
        assert np.array_equal(o, gray_to_rgb(g))
    assert np.mean([de(o, f) for o, f in zip(out[1:8], a[1:], strict=True)]) < 2.5


def test_frames_before_the_first_keyframe_take_their_own_shot():
    a, ga = moving(n=8, seed=1)
    b, gb = moving(n=8, seed=2)
    out = list(propagate(ga + gb, [0, 8], {0: a[0], 13: b[5]}))  # shot 2 colored at its 6th frame only
    for i in range(8, 13):  # frames 8..12 come from frame 13 backwards, never from shot 1
        seen = slice(2 * (13 - i), None)
        assert de(out[i][:, seen], b[i - 8][:, seen]) < 1.0, i


def test_levin_fill_follows_luma_edges():
    """Levin et al. 2004: two regions of different luma, one colored scribble in each, fill by region."""
    h, w = 40, 60
    y = np.full((h, w), 60, np.uint8)
    y[:, 30:] = 190
    uv = np.zeros((h, w, 2), np.float32)
    conf = np.zeros((h, w), np.float32)
    uv[16:24, 5:13] = (-0.1, 0.2)  # reddish scribble on the dark side
    uv[16:24, 45:53] = (0.2, -0.1)  # bluish scribble on the bright side
    conf[16:24, 5:13] = conf[16:24, 45:53] = 1
    filled = levin_fill(y, uv, conf, side=None)
    assert np.allclose(filled[:, :28], (-0.1, 0.2), atol=0.02)
    assert np.allclose(filled[:, 32:], (0.2, -0.1), atol=0.02)
    wgt, valid = levin_weights(y.astype(np.float32) / 255)
    assert np.allclose(wgt.sum(axis=2), 1) and not valid[0, 0, 0] and (wgt[~valid] == 0).all()


def test_shot_reference_placed_by_homography():
    """shot01.png is a still of the set: a wider, slightly zoomed view around frame 5, not a film frame."""
    h, w, step, n = 96, 144, 2, 10
    big = texture(h + 40, w + step * n + 40, seed=5, sigma=3)
    frames = [np.ascontiguousarray(big[20:20 + h, 20 + step * i:20 + step * i + w]) for i in range(n)]
    gray = [luminance(f) for f in frames]
    import cv2

    x0 = 20 + step * 5
    still = cv2.resize(big[20 - 6:20 + h + 6, x0 - 9:x0 + w + 9], (w, h), interpolation=cv2.INTER_AREA)
    prop = propagate(gray, [0], {Shot(0): still})
    out = list(prop)
    p = prop.placements[0]
    assert p.method == "homography" and p.inliers >= 15 and prop.keyframes == {0: [p.frame]}
    inner = (slice(8, -8), slice(12, -12))  # the still covers every frame except near the borders
    assert np.mean([de(o[inner], f[inner]) for o, f in zip(out, frames, strict=True)]) < 1.5


def test_shot_reference_by_color_transfer():
    """A reference of other content with the same luma -> color relation (dark blue, bright orange):
    no homography explains it, so Welsh et al.'s luminance-statistics transfer gives its colors."""

    def colored(rgb):  # luma rescaled to 60..200, chroma from the luma alone
        luma = (60 + luminance(rgb).astype(np.float32) * (140 / 255)).round().astype(np.uint8)
        t = luma.astype(np.float32)[..., None] / 255
        return luma_chroma_to_rgb(luma, (1 - t) * np.float32([0.15, -0.08]) + t * np.float32([-0.12, 0.12]))

    frames = [colored(f) for f in moving(n=6, seed=7)[0]]
    gray = [luminance(f) for f in frames]
    other = colored(texture(64, 96, seed=8, sigma=4))  # other content, same luma -> color relation
    prop = propagate(gray, [0], {Shot(0): other})
    out = list(prop)
    assert prop.placements[0].method == "transfer"
    ours = np.mean([de(o, f) for o, f in zip(out, frames, strict=True)])
    grays = np.mean([de(gray_to_rgb(g), f) for g, f in zip(gray, frames, strict=True)])
    assert ours < 0.5 * grays, (ours, grays)


@pytest.mark.parametrize("refs, starts, message", [
    ({0: np.zeros((10, 10, 3), np.uint8)}, [0], "resize it to the film first"),
    ({12: None}, [0], "frame 12 is past the end of the film"),
    ({Shot(2): None}, [0, 5], "shot 3 does not exist"),
    ({Shot(1): None, 6: None}, [0, 5], "has a shot reference and a frame reference"),
    ({0: None}, [1, 5], "shot starts"),
    ({"0": None}, [0], "must be a frame index"),
])
def test_bad_references_one_line(refs, starts, message):
    _, gray = moving(n=10)
    with pytest.raises(ValueError, match=message) as e:
        propagate(gray, starts, refs)
    assert "\n" not in str(e.value)
