"""Shot-cut detection: the bikes clip's five cuts, robustness to old-film flicker and grain."""

import numpy as np
import pytest

from deeperfour.film.oldfilm import Degradation, degrade
from deeperfour.film.shots import ShotDetector, detect_shots, shot_ranges
from deeperfour.film.video import read_frames

BIKES_STARTS = [0, 30, 76, 137, 187, 242]


def test_bikes_has_six_shots(sample):
    starts = detect_shots(read_frames(sample("bikes.mp4"), gray=True))
    assert len(starts) == 6
    assert np.all(np.abs(np.array(starts) - BIKES_STARTS) <= 1)


def test_single_shot_clips_have_no_cut(sample):
    assert detect_shots(read_frames(sample("carphone_pristine.mp4"), gray=True)) == [0]


def test_cuts_survive_heavy_old_film_degradation(sample):
    deg = Degradation(grain=12, flicker=0.12, scratches=2, vignette=0.5, blur=1.5)
    frames = (degrade(f, i, deg, seed=3) for i, f in enumerate(read_frames(sample("bikes.mp4"), gray=True)))
    assert detect_shots(frames) == BIKES_STARTS


def test_synthetic_cut(clip):
    assert detect_shots(read_frames(clip)) == [0, 20]


def test_shot_ranges():
    assert shot_ranges([0, 30, 76], 100) == [(0, 30), (30, 76), (76, 100)]


@pytest.mark.parametrize("threshold", [-1.0, 0.0, float("nan"), float("inf")])
def test_threshold_must_be_finite_and_positive(threshold):
    """A threshold <= 0 would call every frame a cut, nan none: refused, saying the valid range."""
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        ShotDetector(threshold=threshold)
