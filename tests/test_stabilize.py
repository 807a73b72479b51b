"""Stabilizers (flow blend, ConvLSTM wrapper) and the side-by-side stability scorer on tiny films."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from deeperfour.infer.stabilize import ConvLSTMStabilizer, FlowBlend, FlowMemo, PerFrame, stabilize
from deeperfour.metrics.film import warping_error
from deeperfour.metrics.temporal import StabilityScorer, difference_maps, ewarp_reduction, middle_frames
from deeperfour.models.convlstm import ConvLSTMConfig, TemporalConsistencyNet

from helpers import texture


def panning_film(n: int = 8, seed: int = 0, flicker: float = 0.08):
    """A texture panning 1 px a frame: gray source frames, and a per-frame 'result' that flickers."""
    big = texture(60, 90, seed) * 0.8
    rng = np.random.default_rng(seed)
    color = [big[6:54, 4 + t : 68 + t] for t in range(n)]  # (48, 64, 3) float
    sources = [cv2.cvtColor(c.astype(np.uint8), cv2.COLOR_RGB2GRAY) for c in color]
    gains = 1.0 + flicker * rng.standard_normal(n)
    processed = [np.clip(c * g, 0, 255).astype(np.uint8) for c, g in zip(color, gains, strict=True)]
    return processed, sources


def test_flow_blend_lowers_warping_error_and_keeps_shot_starts():
    processed, sources = panning_film()
    out = list(stabilize(FlowBlend(alpha=0.8), processed, sources, shot_starts=(0, 5)))
    assert [o.shape for o in out] == [p.shape for p in processed] and out[0].dtype == np.uint8
    np.testing.assert_array_equal(out[0], processed[0])
    np.testing.assert_array_equal(out[5], processed[5])  # reset at the cut: the per-frame frame itself
    before = warping_error(processed, sources, (0, 5))
    after = warping_error(out, sources, (0, 5))
    assert after < 0.5 * before, (before, after)


def test_flow_blend_alpha_zero_is_per_frame_and_bad_alpha():
    processed, sources = panning_film(4)
    out = list(stabilize(FlowBlend(alpha=0.0), processed, sources))
    for o, p in zip(out, processed, strict=True):
        np.testing.assert_array_equal(o, p)
    with pytest.raises(ValueError, match="alpha"):
        FlowBlend(alpha=1.5)


def test_convlstm_stabilizer_resets_at_every_shot_start():
    torch.manual_seed(0)
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1))
    processed, sources = panning_film(7)
    out = list(stabilize(ConvLSTMStabilizer(net), processed, sources, shot_starts=(0, 3)))
    for t in (0, 3):
        np.testing.assert_array_equal(out[t], processed[t])
    assert not np.array_equal(out[1], processed[1])  # a random net does change the other frames
    assert out[1].shape == processed[1].shape and out[1].dtype == np.uint8


def test_scorer_matches_metrics_and_reference_columns():
    processed, sources = panning_film()
    blended = list(stabilize(FlowBlend(alpha=0.8), processed, sources))
    scorer = StabilityScorer(["per_frame", "flow_blend"], (0,))
    for s, p, b in zip(sources, processed, blended, strict=True):
        scorer.update(s, {"per_frame": p, "flow_blend": b})
    table = scorer.result()
    assert table["per_frame"]["psnr_to_per_frame"] == float("inf")
    assert table["per_frame"]["ewarp"] == pytest.approx(warping_error(processed, sources))
    assert table["flow_blend"]["ewarp"] == pytest.approx(warping_error(blended, sources))
    assert 20 < table["flow_blend"]["psnr_to_per_frame"] < 60
    assert len(scorer.curves["per_frame"]) == len(processed) - 1
    with pytest.raises(ValueError, match="per_frame"):
        StabilityScorer(["flow_blend"])
    with pytest.raises(ValueError, match="versions"):
        scorer.update(sources[0], {"per_frame": processed[0]})


def test_difference_maps_zero_for_a_stable_pan():
    processed, sources = panning_film(4, flicker=0.0)
    maps = difference_maps(processed, sources)
    assert len(maps) == 4 and maps[0].max() == 0
    flick, _ = panning_film(4, flicker=0.1)
    assert np.mean(difference_maps(flick, sources)[1:]) > 3 * np.mean(maps[1:]) + 0.5


def test_per_frame_is_identity():
    processed, sources = panning_film(3)
    assert all(o is p for o, p in zip(stabilize(PerFrame(), processed, sources), processed, strict=True))


def test_flow_guided_convlstm_streams_and_resets():
    """A ``warp_prev`` network gets its past aligned by input flow; shot starts still return P_t exactly."""
    torch.manual_seed(0)
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1, warp_prev=True))
    processed, sources = panning_film(6)
    out = list(stabilize(ConvLSTMStabilizer(net), processed, sources, shot_starts=(0, 4)))
    np.testing.assert_array_equal(out[4], processed[4])
    assert not np.array_equal(out[2], processed[2])
    torch.nn.init.zeros_(net.out.weight)
    torch.nn.init.zeros_(net.out.bias)
    with torch.no_grad():
        net.out.bias[-1] = -30.0  # residual 0 and gate closed: the identity, whatever the past looks like
    same = list(stabilize(ConvLSTMStabilizer(net), processed, sources))
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(same, processed, strict=True))


def test_ewarp_reduction_is_relative_to_per_frame():
    table = {"per_frame": {"ewarp": 0.004}, "flow_blend": {"ewarp": 0.001}, "convlstm": {"ewarp": 0.003}}
    assert ewarp_reduction(table) == pytest.approx({"flow_blend": 0.75, "convlstm": 0.25})


def test_middle_frames_stay_inside_the_first_shot():
    assert middle_frames([0, 30, 50], 80, 3) == [14, 15, 16]
    assert middle_frames([0, 2], 10, 5) == [0, 1]  # a short first shot: never across its cut
    assert middle_frames([0], 9, 3) == [3, 4, 5]  # one shot: the film's middle


def test_two_stabilizers_sharing_a_flow_memo_compute_each_flow_once():
    """convert stabilizes the colorized and the cartoon film of the same B&W frames: with one FlowMemo the
    flow of each frame pair is computed once, and both outputs are those of unshared stabilizers."""
    torch.manual_seed(0)
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1, warp_prev=True))
    processed, sources = panning_film(6)
    cartoonish = [255 - p for p in processed]
    memo = FlowMemo()
    a, b = ConvLSTMStabilizer(net, flows=memo), ConvLSTMStabilizer(net, flows=memo)
    shared = [(a.step(p, s), b.step(c, s)) for p, c, s in zip(processed, cartoonish, sources, strict=True)]
    alone_a = list(stabilize(ConvLSTMStabilizer(net), processed, sources))
    alone_b = list(stabilize(ConvLSTMStabilizer(net), cartoonish, sources))
    assert all(np.array_equal(x, y) for (x, _), y in zip(shared, alone_a, strict=True))
    assert all(np.array_equal(x, y) for (_, x), y in zip(shared, alone_b, strict=True))
    assert (memo.misses, memo.hits) == (5, 5)  # 5 pairs: one estimate each, one reuse each
    fa, fb = FlowBlend(0.7, flows=FlowMemo()), FlowBlend(0.7)
    assert all(np.array_equal(fa.step(p, s), fb.step(p, s)) for p, s in zip(processed, sources, strict=True))
    assert fa.flow.misses == 10 and fa.flow.hits == 0  # two directions per pair, nothing to share alone
