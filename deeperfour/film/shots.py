"""Shot-cut detection on luminance, streaming and robust to old-film flicker.

Each frame is reduced to a 64x32 thumbnail (area averaging: film grain cancels out) and
standardized to zero mean and unit variance (global flicker and contrast changes cancel
out). The cut score between two frames is the mean absolute difference of their
standardized thumbnails: about 0 for a still shot, 0.2-0.6 for fast motion, near 1 or
above for a cut to unrelated content. A cut is declared where the score exceeds an
absolute ``threshold`` AND ``ratio`` times the median of the preceding scores (an
adaptive test, so a shot full of fast motion does not fire), at least ``min_shot``
frames after the previous cut.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from deeperfour.film.color import luminance

THUMB = (64, 32)  # (W, H) of the standardized thumbnail


@dataclass
class ShotDetector:
    threshold: float = 0.8  # absolute cut score (standardized thumbnails, mean |diff|)
    ratio: float = 2.0  # score must also exceed ratio x median of the recent scores
    window: int = 8  # how many recent scores form that median
    min_shot: int = 5  # frames: no cut closer than this to the previous one
    scores: list[float] = field(default_factory=list)  # score[i] compares frame i with i-1 (score[0]=0)
    starts: list[int] = field(default_factory=lambda: [0])  # first frame of every shot
    _prev: np.ndarray | None = None
    _recent: deque = field(default_factory=lambda: deque(maxlen=8))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"shot threshold {self.threshold}: must be a finite number > 0 (default 0.8; "
                             "higher finds fewer cuts)")
        if not (math.isfinite(self.ratio) and self.ratio >= 0) or self.window < 1 or self.min_shot < 1:
            raise ValueError(f"shot detector: need ratio >= 0, window >= 1, min_shot >= 1 (got ratio "
                             f"{self.ratio}, window {self.window}, min_shot {self.min_shot})")
        self._recent = deque(maxlen=self.window)

    def update(self, frame: np.ndarray) -> bool:
        """Feed the next frame (RGB or gray uint8); True when it starts a new shot."""
        thumb = cv2.resize(luminance(frame), THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
        thumb = (thumb - thumb.mean()) / (thumb.std() + 1.0)  # (32, 64); +1: flat frames stay ~0
        i = len(self.scores)
        if self._prev is None:
            self.scores.append(0.0)
            self._prev = thumb
            return False
        score = float(np.mean(np.abs(thumb - self._prev)))
        self._prev = thumb
        self.scores.append(score)
        base = float(np.median(self._recent)) if self._recent else 0.0
        is_cut = (score > self.threshold and score > self.ratio * base
                  and i - self.starts[-1] >= self.min_shot)
        if is_cut:
            self.starts.append(i)
            self._recent.clear()  # the new shot gets its own motion baseline
        else:
            self._recent.append(score)
        return is_cut


def detect_shots(frames: Iterable[np.ndarray], **kwargs) -> list[int]:
    """First frame index of every shot (always starts with 0), from a stream of frames."""
    det = ShotDetector(**kwargs)
    for f in frames:
        det.update(f)
    return det.starts


def shot_ranges(starts: list[int], n_frames: int) -> list[tuple[int, int]]:
    """[(start, stop)] half-open frame ranges of the shots."""
    bounds = list(starts) + [n_frames]
    return [(bounds[k], bounds[k + 1]) for k in range(len(starts))]
