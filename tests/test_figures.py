"""Saved figures: atomic PNGs, kept small for git."""

import cv2
import matplotlib.pyplot as plt
import numpy as np

from deeperfour.report import figures


def test_large_figures_are_saved_at_a_lower_dpi(tmp_path):
    big = figures.image_grid([[np.full((300, 400, 3), 90, np.uint8)] * 6] * 8)  # 12 in wide, tall
    small, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    for name, fig in (("big", big), ("small", small)):
        figures.save(fig, tmp_path / f"{name}.png")
    h, w = cv2.imread(str(tmp_path / "big.png")).shape[:2]
    assert h * w <= figures.MAX_PIXELS * 1.02 and w > 600  # capped, not shrunk to nothing
    h, w = cv2.imread(str(tmp_path / "small.png")).shape[:2]
    assert 300 < w <= 400 and 200 < h <= 300  # the house dpi below the cap
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "small.png"]  # no partial files
    assert cv2.imread(str(tmp_path / "big.png"), cv2.IMREAD_UNCHANGED).shape[2] == 3  # opaque: RGB, no alpha
