"""The propagation refiner (issue 15): identity at init, checkpoints with their config, self-supervised
samples from the classical path, seeded and resumable training; the propagation baselines (copy, chain)
and the stage's scoring helpers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from deeperfour.film.color import luminance
from deeperfour.film.keyframes import Shot
from deeperfour.infer.propagate import PropagateSettings, Refiner, chroma, propagate
from deeperfour.metrics import reference_colorization as rc
from deeperfour.metrics.film import ciede2000
from deeperfour.models.propagation_refiner import PropagationRefiner, RefinerConfig, count_parameters
from deeperfour.train.propagation_refiner import (
    RefinerTrainConfig,
    Samples,
    _window_samples,
    refiner_loss,
    still_sequence,
    train_refiner,
)

from helpers import texture


def moving(n=8, h=48, w=64, step=2, seed=1):
    big = texture(h + 8, w + step * n + 8, seed=seed, sigma=4)
    frames = [np.ascontiguousarray(big[4:4 + h, 4 + step * i:4 + step * i + w]) for i in range(n)]
    return frames, [luminance(f) for f in frames]


def test_refiner_is_small_and_the_identity_before_training():
    model = PropagationRefiner()
    assert count_parameters(model) <= 1_000_000
    x = torch.rand(2, 5, 37, 53) - 0.5  # odd size: padded inside, cropped back
    out = model(x)
    assert out.shape == (2, 2, 37, 53) and torch.equal(out, x[:, 1:3])
    frames, gray = moving()
    classical = list(propagate(gray, [0], {0: frames[0]}))
    refined = list(propagate(gray, [0], {0: frames[0]}, refiner=Refiner(model, precision="fp32")))
    assert all(np.array_equal(a, b) for a, b in zip(classical, refined, strict=True))


def test_refiner_checkpoint_keeps_its_config(tmp_path):
    torch.manual_seed(0)
    model = PropagationRefiner(RefinerConfig(width=8, max_delta=0.1))
    torch.nn.init.normal_(model.out.weight, std=0.1)
    model.save(tmp_path / "r.pt", {"note": 1})
    back = PropagationRefiner.from_checkpoint(tmp_path / "r.pt")
    assert back.config == RefinerConfig(width=8, max_delta=0.1) and not back.training
    x = torch.rand(1, 5, 16, 16)
    assert torch.equal(model.eval()(x), back(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt: not a readable refiner checkpoint"):
        PropagationRefiner.from_checkpoint(tmp_path / "bad.pt")


def test_still_sequence_moves_progressively_from_the_still():
    still = texture(40, 60, seed=2, sigma=3)
    seq = still_sequence(still, 5, 0.1, np.random.default_rng(0))
    assert len(seq) == 5 and np.array_equal(seq[0], still)
    diff = [np.abs(s.astype(int) - still.astype(int)).mean() for s in seq]
    assert all(b > a for a, b in zip(diff, diff[1:], strict=False)), diff


def test_window_samples_are_the_classical_path_and_its_truth():
    frames, _ = moving(n=5)
    s = _window_samples(frames, PropagateSettings())
    assert s["x"].shape == (4, 5, 48, 64) and s["uv"].shape == (4, 2, 48, 64)
    assert list(s["dist"]) == [1, 2, 3, 4] and not s["mask"][-1].any() and s["mask"][0].any()
    truth = np.stack([chroma(f).transpose(2, 0, 1) for f in frames[1:]])
    assert np.allclose(s["uv"], truth, atol=2e-3)  # float16
    err = np.abs(s["x"][:, 1:3].astype(np.float32) - truth).mean()  # the classical path's error, small here
    assert err < 0.02
    assert np.allclose(s["x"][:, 0], np.stack([luminance(f) for f in frames[1:]]) / 255, atol=1e-3)


def _tiny_samples() -> Samples:
    frames, _ = moving(n=6)
    return Samples([_window_samples(frames, PropagateSettings())])


def test_training_is_seeded_and_resumes_exactly(tmp_path):
    samples = _tiny_samples()
    cfg = RefinerTrainConfig(width=4, steps=4, batch=2, crop=32, precision="fp32", log_every=1,
                             checkpoint_every=2)
    straight = train_refiner(samples, cfg, tmp_path / "a", progress=False)
    cut = RefinerTrainConfig(**{**cfg.__dict__, "steps": 2})
    train_refiner(samples, cut, tmp_path / "b", progress=False)
    state = torch.load(tmp_path / "b" / "refiner_state.pt", weights_only=False)
    state["config"] = cfg.__dict__  # the same run, stopped at step 2 (a killed run resumes from here)
    torch.save(state, tmp_path / "b" / "refiner_state.pt")
    resumed = train_refiner(samples, cfg, tmp_path / "b", progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(),
                                                      PropagationRefiner(RefinerConfig(width=4)).state_dict().values(),
                                                      strict=True))
    other = RefinerTrainConfig(**{**cfg.__dict__, "lr": 0.5})
    with pytest.raises(ValueError, match="another config"):
        train_refiner(samples, other, tmp_path / "b", progress=False)


def test_untrained_refiners_loss_is_the_classical_paths_error():
    """The refiner starts as the identity: its L1 term is exactly the classical chroma's error, and the
    total is the weighted sum of the three terms."""
    samples = _tiny_samples().groups[0]
    b = {k: torch.from_numpy(samples[k][:2].astype(np.float32)) for k in ("x", "uv", "flow", "mask")}
    b["x1"] = torch.from_numpy(samples["x"][1:3].astype(np.float32))
    cfg = RefinerTrainConfig()
    losses = refiner_loss(PropagationRefiner(RefinerConfig(width=4)), b, cfg)
    classical = (b["x"][:, 1:3] - b["uv"]).abs().mean()
    assert torch.allclose(losses["l1"], classical) and 0 < float(losses["l1"]) < 0.02
    total = losses["l1"] + cfg.w_smooth * losses["smooth"] + cfg.w_temporal * losses["temporal"]
    assert torch.allclose(losses["total"], total)


def test_config_from_the_stage_params():
    cfg = RefinerTrainConfig.from_params({"seed": 7, "precision": "fp32", "work_side": 160, "every": 50,
                                          "refiner_steps": 3, "refiner_lr": 0.5, "refiner_unknown": 1})
    assert (cfg.seed, cfg.precision, cfg.work_side, cfg.steps, cfg.lr) == (7, "fp32", 160, 3, 0.5)


def test_copy_and_chain_baselines():
    frames, gray = moving(n=8)
    copy = list(propagate(gray, [0], {0: frames[0], 7: frames[7]}, PropagateSettings(mode="copy")))
    for i, key in ((1, 0), (3, 0), (4, 7), (6, 7)):  # the nearest keyframe's chroma, unmoved
        assert np.abs(chroma(copy[i]) - chroma(frames[key])).mean() < 0.01, i
        other = 7 - key
        assert np.abs(chroma(copy[i]) - chroma(frames[other])).mean() > 0.02, i
    chain = list(propagate(gray, [0], {0: frames[0]}, PropagateSettings(mode="chain")))
    full = list(propagate(gray, [0], {0: frames[0]}))
    assert len(chain) == 8 and not all(np.array_equal(a, b) for a, b in zip(chain[2:], full[2:], strict=True))
    with pytest.raises(ValueError, match="mode 'nope'"):
        list(propagate(gray, [0], {0: frames[0]}, PropagateSettings(mode="nope")))


def test_reference_cases_distance_and_drift():
    color = [np.full((4, 4, 3), i, np.uint8) for i in range(120)]
    cases = rc.reference_cases(color, [0, 70], every=50)
    assert sorted(cases["first_frame"]) == [0, 70] and sorted(cases["every_50"]) == [0, 50, 70, 100]
    assert set(cases["cross_reference"]) == {Shot(0), Shot(1)}
    assert cases["cross_reference"][Shot(0)][0, 0, 0] == (70 + 119) // 2  # the other shot's middle frame
    dist = rc.keyframe_distance([0, 70], [0, 70], 120)
    assert dist[0] == 0 and dist[69] == 69 and dist[70] == 0 and dist[119] == 49
    assert rc.drift_curve({1: 2.0, 71: 4.0, 5: 1.0}, dist) == [[1, 3.0], [5, 1.0]]


def test_film_scorer_truth_scores_zero_and_gray_is_colorless():
    frames, gray = moving(n=6)
    scorer = rc.FilmScorer(gray, frames, [0, 3])
    truth, ciede = scorer.score(frames, range(1, 6))
    assert truth["ciede2000"] == 0 and truth["psnr"] == float("inf") and set(ciede) == {1, 2, 3, 4, 5}
    grays, _ = scorer.score(rc.method_film("gray", gray, [0, 3], {}), range(1, 6))
    assert grays["colorfulness"] == 0 and grays["ciede2000"] > 1
    with pytest.raises(ValueError, match="5 frames, its original 6"):
        scorer.score(frames[:5], range(5))
    with pytest.raises(ValueError, match="needs the trained refiner"):
        rc.method_film("refined", gray, [0], {0: frames[0]})


def test_film_scorer_threads_give_the_serial_result():
    """The per-frame metrics run in threads; the means and CIEDE2000s equal a one-thread run (in frame
    order, whatever order the threads finish in), and each frame's CIEDE2000 is metrics.film's."""
    frames, gray = moving(n=6)
    film = rc.method_film("copy", gray, [0, 3], {0: frames[0], 3: frames[3]})
    film = list(film)
    serial = rc.FilmScorer(gray, frames, [0, 3], workers=1).score(film, range(1, 6))
    threaded = rc.FilmScorer(gray, frames, [0, 3], workers=3)
    assert threaded.score(iter(film), range(1, 6)) == serial
    assert serial[1][4] == ciede2000(film[4], frames[4]) > 0


def test_film_scorer_streams_the_film_with_a_bounded_number_of_frames_in_flight():
    """score() reads the next frame only once at most 2 x workers earlier frames are still unscored,
    so a long film is never held whole; the result is the one of the whole list."""
    frames, gray = moving(n=12)
    film = list(rc.method_film("copy", gray, [0], {0: frames[0]}))
    scorer = rc.FilmScorer(gray, frames, [0], workers=2)
    expected = scorer.score(film, range(1, 12))
    done, worst = [], [0]
    frame = scorer._frame

    def counted(*args):  # slow scoring: an unbounded reader would run far ahead of it
        time.sleep(0.02)
        out = frame(*args)
        done.append(1)
        return out

    def lazily():
        for i, f in enumerate(film):
            worst[0] = max(worst[0], i - len(done))  # frames read but not yet scored
            yield f

    scorer._frame = counted
    assert scorer.score(lazily(), range(1, 12)) == expected
    assert worst[0] <= 2 * 2 + 1
