"""Ruder et al.'s temporal-loss fine-tuning on a tiny seeded generator: config, data, resume, behaviour."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from deeperfour.film.color import luminance
from deeperfour.infer.cartoonize import TemporalCartoonizer
from deeperfour.infer.stabilize import stabilize
from deeperfour.metrics.film import warping_error
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator
from deeperfour.train.clips import Clip, cartoonize_frames
from deeperfour.train.common import Checkpointer, read_curves
from deeperfour.train.temporal_loss import (
    STATE_FILE,
    TemporalLossConfig,
    WindowSampler,
    finetune_temporal,
    window_flows,
)

from helpers import tiny_cartoon_generator, tiny_features


def flickering_clip(n: int = 16, h: int = 48, w: int = 48, seed: int = 0, amp: float = 0.25) -> Clip:
    """A smooth texture translated 1 px a frame; gray = its luma (steady), colorized = with flicker.

    The flicker is a per-frame brightness gain per channel times a left-right brightness tilt (a global
    gain alone would be cancelled by the generator's first instance norm and never reach the cartoon).
    """
    rng = np.random.default_rng(seed)
    r = cv2.GaussianBlur(rng.random((h, w + n, 3)).astype(np.float32), (0, 0), 2.0)
    tex = ((r - r.min()) / (r.max() - r.min()) * 255 + 0.5).astype(np.uint8)  # (h, w + n, 3)
    ramp = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]  # (1, w, 1)
    gray, col = [], []
    for t in range(n):
        rgb = np.ascontiguousarray(tex[:, t : t + w])  # frame t: texture moved 1 px left per frame
        gain = 1 + amp * rng.uniform(-1, 1, 3).astype(np.float32)  # (3,) per-channel brightness
        tilt = 1 + amp * rng.uniform(-1, 1) * ramp  # (1, w, 1)
        col.append(np.clip(rgb * gain * tilt + 0.5, 0, 255).astype(np.uint8))
        gray.append(luminance(rgb))
    col = np.stack(col)
    return Clip("flicker", np.stack(gray), col, col.copy(), [0])


CLIP = flickering_clip()
CFG = TemporalLossConfig(crop=32, batch=2, steps=6, lr=3e-4, precision="fp32", log_every=1,
                         checkpoint_every=4)


def run(out, cfg=CFG, base=None, **kw):
    base = base or tiny_cartoon_generator()
    return finetune_temporal(base, [CLIP], tiny_features, cfg, out, progress=False, **kw)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return run(tmp_path_factory.mktemp("straight"))


# ---------------------------------------------------------------- config and data


@pytest.mark.parametrize(("kw", "match"), [
    ({"window": 1, "J": "1"}, "window=1"),
    ({"window": 4}, "j=4 needs frame t-j"),
    ({"J": "1,x"}, "comma-separated positive integers"),
    ({"J": "0,1"}, "comma-separated positive integers"),
    ({"crop": 8}, "crop >= 16"),
    ({"precision": "fp16"}, "precision"),
    ({"gamma": -1.0}, "weights must be >= 0"),
])
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TemporalLossConfig(**kw)


def test_defaults_and_j():
    cfg = TemporalLossConfig()
    assert (cfg.window, cfg.js, cfg.crop, cfg.batch, cfg.lr, cfg.flow) == (5, (1, 2, 4), 96, 2, 1e-4, "dis")
    assert TemporalLossConfig(window=3, J="2, 1").js == (1, 2)


def test_crop_larger_than_clips_and_too_short_shots(tmp_path):
    with pytest.raises(ValueError, match=r"crop=64 is larger than clip\(s\) flicker 48x48"):
        run(tmp_path, replace(CFG, crop=64))
    short = Clip("short", CLIP.gray, CLIP.colorized, CLIP.cartoon, [0, 3, 6, 9, 12])  # shots of 3-4 frames
    with pytest.raises(ValueError, match="no window of 5 consecutive frames"):
        WindowSampler([short], 5, 32, 2, 0)


def test_sampler_is_seeded_and_aligned():
    """Colorized pixels encode (t, y, x); the gray ones a function of it: crops must agree everywhere."""
    t, y, x = np.meshgrid(np.arange(8), np.arange(40), np.arange(50), indexing="ij")  # (8, 40, 50) each
    coded = np.stack([t * 20, y, x], axis=-1).astype(np.uint8)  # (T, H, W, 3)
    clip = Clip("coded", ((7 * t + 3 * y + 5 * x) % 256).astype(np.uint8), coded, coded, [0, 6])
    a, b = WindowSampler([clip], 3, 32, 16, seed=1), WindowSampler([clip], 3, 32, 16, seed=1)
    col, gray = a.sample()
    assert col.shape == (16, 3, 3, 32, 32) and col.dtype == torch.uint8 and gray.shape == (16, 3, 32, 32)
    torch.testing.assert_close(col, b.sample()[0])
    ct, cy, cx = (col[:, :, i].numpy().astype(int) for i in range(3))  # (B, T, 32, 32) each
    np.testing.assert_array_equal(gray, (7 * (ct // 20) + 3 * cy + 5 * cx) % 256)  # same crop and flip
    np.testing.assert_array_equal(np.diff(ct[:, :, 0, 0] // 20, axis=1), 1)  # consecutive frames
    assert set((ct[:, 0, 0, 0] // 20).tolist()) <= {0, 1, 2, 3, 6}  # windows never cross the cut at 6
    flipped = cx[:, 0, 0, 0] > cx[:, 0, 0, -1]
    assert flipped.any() and not flipped.all()  # both orientations drawn
    assert len(set(zip(cy[:, 0, 0, 0], cx[:, 0, 0, 0], strict=True))) > 4  # random positions


def test_window_flows_follow_the_translation():
    _, gray = WindowSampler([CLIP], 5, 32, 2, seed=0).sample()
    flows = window_flows(gray, (1, 2, 4))
    assert sorted(flows) == [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2), (4, 4)]
    flow, c = flows[(4, 2)]
    assert flow.shape == (2, 2, 32, 32) and c.shape == (2, 1, 32, 32)
    assert set(torch.unique(c).tolist()) <= {0.0, 1.0} and c.mean() > 0.5
    center = flow[:, :, 8:24, 8:24].abs()  # a 1 px/frame pan: |flow t -> t-2| = 2 px horizontally
    assert abs(float(center[:, 0].median()) - 2.0) < 0.3 and float(center[:, 1].median()) < 0.3


# ---------------------------------------------------------------- the loop


def test_logs_generator_and_start_from_the_base(straight):
    curves = read_curves(straight.out_dir / "dvclive")
    assert set(curves) == {"total", "content", "pixel", "temporal"}
    assert list(curves["total"][0]) == list(range(6))
    # step 0 runs the un-tuned model, which IS the per-frame generator: no content or pixel loss yet
    assert curves["content"][1][0] == 0.0 and curves["pixel"][1][0] == 0.0
    assert curves["temporal"][1][0] > 0.0  # ... but the flicker of the per-frame cartoon
    loaded = TemporalCartoonGenerator.from_checkpoint(straight.out_dir / "generator.pt")
    for a, b in zip(loaded.state_dict().values(), straight.generator.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert straight.steps == 6 and straight.resumed_from == 0 and straight.seconds_per_step > 0
    assert (straight.generator.conv01_prev.weight != 0).any()  # the branch learned something


def test_base_is_left_unchanged(tmp_path):
    base = tiny_cartoon_generator()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    run(tmp_path, replace(CFG, steps=2), base=base)
    for k, v in base.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_killed_run_resumes_exactly(straight, tmp_path):
    run(tmp_path, stop_after=3)  # "killed" after 3 steps (checkpoint at 3)
    state = Checkpointer(tmp_path / STATE_FILE).load(restore_rng=False)
    assert state["step"] == 3 and state["train_config"]["window"] == 5
    assert not (tmp_path / "generator.pt").exists()  # only a finished run writes the model
    resumed = run(tmp_path)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    for (k, a), b in zip(straight.generator.state_dict().items(), resumed.generator.state_dict().values(),
                         strict=True):
        torch.testing.assert_close(a, b, msg=k, rtol=0, atol=0)
    steps = read_curves(tmp_path / "dvclive")["total"][0]
    assert list(steps) == list(range(6))  # no duplicated rows after the resume


def test_other_config_or_base_starts_fresh(tmp_path):
    run(tmp_path, stop_after=2)
    assert run(tmp_path, replace(CFG, steps=3)).resumed_from == 0
    run(tmp_path, stop_after=2)
    other = tiny_cartoon_generator()
    with torch.no_grad():
        other.conv01_1.bias.add_(0.1)
    assert run(tmp_path, base=other).resumed_from == 0


def test_fine_tuning_lowers_the_warping_error(tmp_path):
    """Behaviour: on a flickering pan, the fine-tuned streaming cartoonizer flickers less than G0.

    The output must still follow the per-frame cartoon (correlation), so a constant image does not pass.
    """
    base = tiny_cartoon_generator()
    cfg = replace(CFG, steps=30, lr=3e-4, pixel=10.0, gamma=300.0, log_every=10, checkpoint_every=100)
    tuned = run(tmp_path, cfg, base=base).generator
    per_frame = cartoonize_frames(base, list(CLIP.colorized), precision="fp32")  # (T, H, W, 3)
    streamed = np.stack(list(stabilize(TemporalCartoonizer(tuned, precision="fp32"), CLIP.colorized,
                                       CLIP.gray, CLIP.shot_starts)))
    e_per, e_tuned = warping_error(per_frame, CLIP.gray), warping_error(streamed, CLIP.gray)
    assert e_tuned < 0.5 * e_per, (e_tuned, e_per)
    corr = np.corrcoef(streamed.reshape(-1).astype(float), per_frame.reshape(-1).astype(float))[0, 1]
    assert corr > 0.75, corr
