"""Figures of stage ``frames``: the first frame of every shot (B&W and color), and the cut scores."""

from __future__ import annotations

from pathlib import Path

from deeperfour.core.config import resolve
from deeperfour.film.frames import load_shots
from deeperfour.film.video import read_frames
from deeperfour.report import figures


def draw(out_dir: str | Path = "build/frames",
         figures_dir: str | Path = "reports/figures/frames") -> list[Path]:
    """Draw ``shots.png`` and ``cut_scores.png`` from the stage's outputs in ``out_dir``."""
    out_dir, figures_dir = resolve(out_dir), resolve(figures_dir)
    shots = load_shots(out_dir)
    wanted = set(shots["starts"])
    bw = [f for i, f in enumerate(read_frames(out_dir / "bw.mkv", gray=True)) if i in wanted]
    col = [f for i, f in enumerate(read_frames(out_dir / "color.mkv")) if i in wanted]
    return [figures.save(figures.shot_starts_figure(bw, col, shots["starts"]), figures_dir / "shots.png"),
            figures.save(figures.cut_scores_figure(shots["scores"], shots["starts"], shots["threshold"]),
                         figures_dir / "cut_scores.png")]
