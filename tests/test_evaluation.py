"""Colorization scoring helpers: preview frames, the shuffled control's partners, scale calibration."""

import numpy as np
import pytest

from deeperfour.metrics.colorization import (
    FilmScores,
    choose_scale,
    preview_indices,
    shuffled_partner,
)


def test_shuffled_partner_is_in_the_next_shot():
    starts, n = [0, 10, 25], 40
    assert shuffled_partner(3, starts, n) == 13  # shot 0 -> shot 1, same offset
    assert shuffled_partner(24, starts, n) == 25 + 14  # shot 1 -> shot 2
    assert shuffled_partner(39, starts, n) == 14 % 10  # shot 2 -> shot 0 (cyclic), offset mod length
    with pytest.raises(ValueError, match="two shots"):
        shuffled_partner(1, [0], 5)


def test_choose_scale():
    scales = np.array([0.5, 1.0, 1.5])
    ciede = np.array([3.0, 2.0, 4.0])
    col = np.array([5.0, 10.0, 15.0])
    assert choose_scale(scales, ciede, col, 10.0, "ciede") == 1.0
    assert choose_scale(scales, ciede, col, 10.0, "colorfulness") == 1.0
    assert choose_scale(scales, ciede, col, 10.0, "colorfulness", ratio=0.5) == 0.5
    with pytest.raises(ValueError, match="'budget'"):
        choose_scale(scales, ciede, col, 10.0, "other")


def test_choose_scale_budget_takes_the_most_color_within_the_budget():
    scales = np.array([0.1, 0.2, 0.3, 0.4])
    ciede = np.array([5.0, 5.4, 6.1, 7.0])  # gray scores 5.0
    col = np.array([2.0, 4.0, 6.0, 8.0])
    assert choose_scale(scales, ciede, col, 10.0, "budget", gray_ciede=5.0, budget=1.0) == 0.2
    assert choose_scale(scales, ciede, col, 10.0, "budget", gray_ciede=5.0, budget=1.1) == 0.3
    assert choose_scale(scales, ciede, col, 10.0, "budget", gray_ciede=5.0, budget=3.0) == 0.4
    assert choose_scale(scales, ciede + 9, col, 10.0, "budget", gray_ciede=5.0) == 0.1  # none fits
    with pytest.raises(ValueError, match="gray_ciede"):
        choose_scale(scales, ciede, col, 10.0, "budget")


def test_scores_of_perfect_and_gray_prediction():
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    def scores(pred, stride=1, truth_only=False):
        acc = FilmScores((), stride, truth_only=truth_only)
        for p, t in zip(pred, truth, strict=True):
            acc.update(*((t,) if truth_only else (p, t)))
        return acc.result()

    perfect = scores(truth, 2)
    assert perfect["ciede2000"] == 0 and perfect["psnr"] == float("inf")
    gray = scores([t.mean(axis=2).astype(np.uint8) for t in truth])
    assert gray["colorfulness"] == 0 and gray["ciede2000"] > 1
    assert scores(truth, truth_only=True)["colorfulness"] > 10
    assert preview_indices([0, 10, 20], 30, 3) == [5, 15, 25]


def test_held_out_scores_model_gray_and_truth():
    """Held-out frames (the face check): the true chroma at scale 1 scores as the truth itself, zero chroma
    as the gray input; the truth's colorfulness is reported beside them."""
    import cv2

    from deeperfour.metrics.colorization import held_out_scores

    rng = np.random.default_rng(0)
    truths = [cv2.GaussianBlur(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), (7, 7), 2)
              for _ in range(3)]
    uv = [cv2.cvtColor(t, cv2.COLOR_RGB2YUV)[..., 1:].astype(np.float32) / 255 - 0.5 for t in truths]
    perfect = held_out_scores(truths, uv, 1.0)
    assert perfect["n_frames"] == 3 and set(perfect) == {"model", "gray", "ground_truth", "n_frames"}
    assert perfect["model"]["ciede2000"] < 1.0 < perfect["gray"]["ciede2000"]
    assert perfect["model"]["psnr"] > perfect["gray"]["psnr"]
    assert perfect["gray"]["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["model"]["colorfulness"] == pytest.approx(perfect["ground_truth"]["colorfulness"], rel=0.1)
    none = held_out_scores(truths, [u * 0 for u in uv], 1.0)
    assert none["model"] == pytest.approx(none["gray"])
