"""Lai et al.'s stabilizer training on tiny seeded nets and synthetic flickering clips.

The clips are a smooth texture panning 1 px a frame; ``gray`` is its luma (steady), ``colorized`` and
``cartoon`` are its color frames times a random per-frame brightness, so the per-frame result flickers
and the network has something to remove.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeperfour.infer.stabilize import ConvLSTMStabilizer, stabilize
from deeperfour.metrics.film import warping_error
from deeperfour.models.convlstm import (
    ConvLSTMConfig,
    TemporalConsistencyNet,
)
from deeperfour.train.clips import Clip
from deeperfour.train.common import Checkpointer, read_curves
from deeperfour.train.convlstm import (
    LIVE_DIR,
    NETWORK_FILE,
    STATE_FILE,
    ConvLSTMTrainConfig,
    WindowSampler,
    make_batch,
    new_network,
    train_convlstm,
    unroll,
    window_flows,
)

from helpers import texture


def flickering_clip(name: str, seed: int, n: int = 10, size: int = 40, flicker: float = 0.4,
                    shot_starts=(0,)) -> Clip:
    """A texture panning 1 px/frame; the per-frame results get a random brightness factor per frame."""
    big = texture(size, size + n, seed, sigma=2.0)
    color = np.stack([big[:, t : t + size] for t in range(n)])  # (T, H, W, 3): frame t shows big(x + t)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in color])  # (T, H, W)
    rng = np.random.default_rng(seed + 1000)

    def flickered() -> np.ndarray:
        gain = 1.0 + rng.uniform(-flicker, flicker, (n, 1, 1, 1))
        return np.clip(color * gain, 0, 255).astype(np.uint8)  # (T, H, W, 3)

    return Clip(name, gray, flickered(), flickered(), list(shot_starts))


def tiny_features(x01: torch.Tensor, layers=("relu4_3",)) -> dict[str, torch.Tensor]:
    """A fixed random conv layer standing in for the VGG (named like it)."""
    w = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    f = F.relu(F.conv2d(x01, w.to(x01), stride=2, padding=1))
    return {n: f for n in layers}


CLIPS = [flickering_clip("a", 0), flickering_clip("b", 1, shot_starts=(0, 5))]
CFG = ConvLSTMTrainConfig(nf=4, n_res_blocks=1, clip_len=4, crop=32, batch=2, steps=6, lr=3e-3,
                          precision="fp32", log_every=1, checkpoint_every=4)
LOSSES = {"total", "perceptual", "short_term", "long_term", "short_term_per_frame"}


def run(out, cfg=CFG, features=tiny_features, **kw):
    return train_convlstm(CLIPS, features, cfg, out, progress=False, **kw)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=k, rtol=0, atol=0)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return run(tmp_path_factory.mktemp("straight"))


def test_training_writes_reloadable_network_and_curves(straight):
    assert straight.steps == 6 and straight.resumed_from == 0 and straight.seconds_per_step > 0
    net = TemporalConsistencyNet.from_checkpoint(straight.out_dir / NETWORK_FILE)  # config inside the file
    assert net.config == ConvLSTMConfig(nf=4, n_res_blocks=1)
    same_weights(net, straight.net)
    ckpt = torch.load(straight.out_dir / NETWORK_FILE, weights_only=True)
    assert ckpt["train_config"] == asdict(CFG) and ckpt["step"] == 6
    curves = read_curves(straight.out_dir / LIVE_DIR)
    assert set(curves) == LOSSES
    assert all(list(steps) == list(range(6)) for steps, _ in curves.values())
    # the zero-initialized net starts as the identity: its Eq. (13) error is the per-frame input's
    np.testing.assert_allclose(curves["short_term"][1][0], curves["short_term_per_frame"][1][0], rtol=1e-6)
    assert curves["perceptual"][1][0] == 0.0
    np.testing.assert_allclose([curves["short_term_per_frame"][1][0], curves["total"][1][5]], GOLDEN,
                               rtol=1e-4)


def test_untrained_network_returns_processed_frames_exactly():
    net = new_network(CFG)
    g = torch.Generator().manual_seed(0)
    P, O_prev, I_t, I_prev = (torch.rand(2, 3, 20, 28, generator=g) for _ in range(4))  # (B, C, H, W)
    O_t, _ = net(P, O_prev, I_t, I_prev)
    assert torch.equal(O_t, P)
    batch = make_batch([WindowSampler(CLIPS, CFG).draw() for _ in range(2)], CFG)
    _, parts, outputs = unroll(net, batch, tiny_features, CFG)
    assert all(torch.equal(o, p) for o, p in zip(outputs, batch.P, strict=True))
    assert parts["perceptual"] == 0.0 and parts["short_term"] == pytest.approx(parts["short_term_per_frame"])


def test_killed_run_resumes_exactly(straight, tmp_path):
    calls = {"n": 0}

    def dies_in_step_6(x01, layers=("relu4_3",)):
        calls["n"] += 1  # 2 feature calls (O_t, P_t) per time step, 3 time steps per window
        if calls["n"] > 5 * 6 + 3:
            raise KeyboardInterrupt("killed")
        return tiny_features(x01, layers)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, features=dies_in_step_6)
    assert Checkpointer(tmp_path / STATE_FILE).load(restore_rng=False)["step"] == 4  # last checkpoint
    assert not (tmp_path / NETWORK_FILE).exists()  # only a finished run writes the network
    resumed = run(tmp_path)
    assert resumed.resumed_from == 4 and resumed.steps == 6
    same_weights(resumed.net, straight.net)
    steps = read_curves(tmp_path / "dvclive")["total"][0]
    assert list(steps) == list(range(6))  # the rows of the lost step 5 are not duplicated


def test_more_steps_continue_other_settings_restart(straight, tmp_path):
    short = run(tmp_path, cfg=replace(CFG, steps=3))
    assert short.steps == 3 and (tmp_path / NETWORK_FILE).exists()
    longer = run(tmp_path)  # same run, more steps: continues from step 3
    assert longer.resumed_from == 3
    same_weights(longer.net, straight.net)
    other = run(tmp_path, cfg=replace(CFG, steps=2, lr=1e-3), stop_after=1)
    assert other.resumed_from == 0 and other.steps == 1


@pytest.mark.parametrize(("change", "match"), [
    ({"clip_len": 1}, "clip_len=1"),
    ({"targets": "colorized,sepia"}, "sepia"),
    ({"targets": ""}, "targets"),
    ({"flow": "raft"}, "flow='raft'"),
    ({"precision": "fp16"}, "precision"),
])
def test_bad_config_raises(change, match):
    with pytest.raises(ValueError, match=match):
        replace(CFG, **change)


def test_clips_that_cannot_feed_the_config_raise(tmp_path):
    with pytest.raises(ValueError, match="crop=48 px is larger than clip"):
        run(tmp_path, cfg=replace(CFG, crop=48))
    with pytest.raises(ValueError, match="clip_len=11"):
        run(tmp_path, cfg=replace(CFG, clip_len=11))
    with pytest.raises(ValueError, match="no training clips"):
        train_convlstm([], tiny_features, CFG, tmp_path, progress=False)


def test_sampler_windows_stay_in_one_shot_and_are_seeded():
    t, x = np.arange(10)[:, None, None], np.arange(40)[None, None, :]
    gray = np.broadcast_to(20 * t + x, (10, 40, 40)).astype(np.uint8)  # value = 20 * frame + column
    colorized = np.repeat(gray[..., None], 3, axis=3)
    clip = Clip("ramp", gray, colorized, 255 - colorized, [0, 5])  # shots [0, 5) and [5, 10)
    cfg = replace(CFG, crop=24)
    a, b = WindowSampler([clip], cfg), WindowSampler([clip], cfg)
    kinds, flips = set(), set()
    for _ in range(40):
        g, p = a.draw()
        g2, p2 = b.draw()
        assert np.array_equal(g, g2) and np.array_equal(p, p2)  # same seed, same windows
        assert g.shape == (4, 24, 24) and p.shape == (4, 24, 24, 3)
        first = int(g[0].min()) // 20  # frame index of the window's first frame
        assert np.all(np.diff(g[:, 0, 0].astype(int)) == 20) and first in (0, 1, 5, 6), first
        flips.add(int(g[0, 0, 1]) - int(g[0, 0, 0]))  # +1 as stored, -1 when flipped
        kinds.add("colorized" if p[0, 0, 0, 0] == g[0, 0, 0] else "cartoon")
    assert flips == {1, -1} and kinds == {"colorized", "cartoon"}


def test_flows_and_masks_follow_the_pan():
    gray = CLIPS[0].gray[:4, 4:36, 4:36]  # (T, 32, 32), frame t shows the texture shifted by t
    to_prev, to_first = window_flows(gray)
    inner = (slice(6, -6), slice(6, -6))
    for t in range(1, 4):
        np.testing.assert_allclose(np.median(to_prev[t][inner].reshape(-1, 2), axis=0), [1, 0], atol=0.1)
        np.testing.assert_allclose(np.median(to_first[t][inner].reshape(-1, 2), axis=0), [t, 0], atol=0.2)
    batch = make_batch([(gray, CLIPS[0].colorized[:4, 4:36, 4:36])], CFG)
    assert batch.I.shape == batch.P.shape == (4, 1, 3, 32, 32) and batch.M_st.shape == (4, 1, 1, 32, 32)
    assert batch.M_st[1:, ..., 6:-6, 6:-6].mean() > 0.9 and batch.M_lt[2:, ..., 6:-6, 6:-6].mean() > 0.8


def test_full_bptt_sends_gradients_through_the_state():
    torch.manual_seed(0)
    net = TemporalConsistencyNet(CFG.model_config())  # default init: the residual is already non-zero
    batch = make_batch([WindowSampler(CLIPS, CFG).draw() for _ in range(2)], CFG)
    grads = {}
    for full in (False, True):
        net.zero_grad()
        loss, _, _ = unroll(net, batch, tiny_features, replace(CFG, full_bptt=full))
        loss.backward()
        grads[full] = net.lstm.gates.weight.grad.clone()
    assert not torch.allclose(grads[False], grads[True])


def test_training_reduces_flicker_on_a_held_out_clip(tmp_path):
    """100 steps turn the identity into a stabilizer: far lower E_warp than the per-frame frames.

    Seeds 0-4 all reach E_warp ratios of 0.07-0.14 here; about 4 s on one free CPU thread.
    """
    cfg = replace(CFG, steps=100, clip_len=3, crop=24, log_every=10, checkpoint_every=100)
    result = run(tmp_path, cfg=cfg)
    test = flickering_clip("held_out", 7, n=12)
    stable = np.stack(list(stabilize(ConvLSTMStabilizer(result.net), test.colorized, test.gray)))
    e_net, e_frames = warping_error(stable, test.gray), warping_error(test.colorized, test.gray)
    assert e_net < 0.5 * e_frames, (e_net, e_frames)
    curves = read_curves(tmp_path / LIVE_DIR)
    assert curves["short_term"][1][-2:].mean() < 0.7 * curves["short_term_per_frame"][1][-2:].mean()


GOLDEN = [0.09193369, 23.484951]  # short_term_per_frame at step 0, total at step 5 (fp32, CPU)
