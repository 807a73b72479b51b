"""A tiny report site for tests/test_site.py and tests/test_browser.py (importable as ``site_fixture``).

Three lossless FFV1 films of one tiny film at 30000/1001 fps. The left half of frame k is flat gray at
``level(k)``, so a test can read which frame a player shows (decoded pixels, canvas readback); the right
half is a moving texture so the H.264 previews are not trivial.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from deeperfour.film.video import VideoWriter
from deeperfour.report.figures import save

from helpers import texture

N_FRAMES = 60
FPS = Fraction(30000, 1001)
SIZE = (64, 48)  # (w, h): under the page's 180 px, so the previews keep it
SHOTS = [0, 24, 45]


def level(k: int) -> int:
    """The gray level of frame k's left half."""
    return 8 + 4 * k


def frame_of_level(v: float) -> int:
    return round((v - 8) / 4)


def make_film(path: Path, seed: int, gray: bool = False, n: int = N_FRAMES, fps: Fraction = FPS) -> Path:
    w, h = SIZE
    tex = texture(h, w + n, seed=seed)
    with VideoWriter(path, fps, w, h, gray=gray) as out:
        for k in range(n):
            f = tex[:, k:k + w].copy()
            f[:, : w // 2] = level(k)
            out.write(f.mean(axis=2).astype(np.uint8) if gray else f)
    return path


# shaped like reports/metrics/evaluate.json (the keys the report reads, and a few it only lists)
METRICS = {
    "colorize": {
        "chroma_scale": 0.3,
        "gray": {"cdc": 0.00449164, "ciede2000": 4.78332, "colorfulness": 0.0, "psnr": 31.6111},
        "ground_truth": {"cdc": 0.0044581, "colorfulness": 14.54},
        "model": {"cdc": 0.00494609, "ciede2000": 5.19089, "colorfulness": 6.84899, "psnr": 31.905},
        "shuffled": {"cdc": 0.00478684, "ciede2000": 5.34898, "colorfulness": 6.86134, "psnr": 31.6151},
    },
    "train_cartoongan": {"styles": {"bunny": {"content_distance": 1.18272, "style_distance_input": 0.912345,
                                              "style_distance_output": 0.401234, "n_photos": 264}}},
    "temporal_loss": {
        "cartoon": {"per_frame": {"cdc": 0.00393696, "ewarp": 0.000776756, "perceptual_to_per_frame": 0.0,
                                  "psnr_to_per_frame": "inf"},
                    "temporal_loss": {"cdc": 0.0041, "ewarp": 0.000512345, "perceptual_to_per_frame": 0.2,
                                      "psnr_to_per_frame": 30.1234}},
        "source_ewarp": 0.0001561,
    },
    "convlstm": {
        "cartoon": {"convlstm": {"cdc": 0.00455734, "ewarp": 0.000188291,
                                 "perceptual_to_per_frame": 0.312454, "psnr_to_per_frame": 29.5958},
                    "flow_blend": {"cdc": 0.00330572, "ewarp": 0.000141435,
                                   "perceptual_to_per_frame": 0.238781, "psnr_to_per_frame": 31.9435},
                    "per_frame": {"cdc": 0.00393696, "ewarp": 0.000776756, "perceptual_to_per_frame": 0.0,
                                  "psnr_to_per_frame": "inf"}},
        "colorized": {"convlstm": {"cdc": 0.00540198, "ewarp": 8.31818e-05,
                                   "perceptual_to_per_frame": 0.189402, "psnr_to_per_frame": 32.138},
                      "per_frame": {"cdc": 0.00494609, "ewarp": 0.000149939, "perceptual_to_per_frame": 0.0,
                                    "psnr_to_per_frame": "inf"}},
        "flow": "dis",
        "source_ewarp": 0.0001561,
    },
    "parallel_film": {"fps": "30000/1001", "n_frames": N_FRAMES, "path": "build/evaluate/parallel.mp4",
                      "size": [192, 48], "stabilizer": "convlstm"},
}


def make_site(root: Path, **kwargs) -> tuple[Path, dict[str, Path]]:
    """root/reports/site/index.html from three films in root/build and one figure in root/reports/figures;
    returns (index.html, {label: source film})."""
    import matplotlib.pyplot as plt

    from deeperfour.report.site import write_site

    build = root / "build"
    films = {"B&W input": make_film(build / "bw.mkv", 0, gray=True),
             "color original": make_film(build / "color.mkv", 0),
             "colorized · per_frame": make_film(build / "colorized.mkv", 1)}
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    save(fig, root / "reports" / "figures" / "colorize" / "curve.png")
    index = write_site(root / "reports" / "site", films, METRICS, root / "reports" / "figures",
                       shot_starts=SHOTS, **kwargs)
    return index, films
