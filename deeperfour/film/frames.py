"""Stage ``frames``: make the B&W demo film, cut it into shots, keep the color original.

Outputs (under ``out_dir``, DVC-cached):
  bw.mkv      the grayscale film, FFV1 lossless, source fps and audio
  color.mkv   the decoded color original (ground truth), FFV1 lossless
  shots.json  first frame of every shot, the per-frame cut scores, fps as a fraction
"""

from __future__ import annotations

from pathlib import Path

from deeperfour.core.config import resolve
from deeperfour.core.results import read_json, write_json
from deeperfour.film.oldfilm import Degradation, make_bw_film
from deeperfour.film.shots import ShotDetector
from deeperfour.film.video import probe, read_frames


def load_shots(out_dir: str | Path) -> dict:
    """Read ``shots.json`` written by :func:`run`."""
    return read_json(Path(out_dir) / "shots.json")


def run(params: dict, out_dir: str | Path = "build/frames",
        metrics_path: str | Path = "reports/metrics/frames.json", progress: bool = True) -> dict:
    """Make the stage's films and shots with the ``frames`` section of params.yaml; returns the metrics.

    Its figures are drawn from these outputs by ``deeperfour.report.frames``.
    """
    out_dir = resolve(out_dir)
    src = resolve(params["source"])
    info = probe(src)
    max_frames = params.get("max_frames") or None
    deg = Degradation(**params.get("degrade", {}))
    out_dir.mkdir(parents=True, exist_ok=True)
    n = make_bw_film(src, out_dir / "bw.mkv", out_dir / "color.mkv", deg, seed=params["seed"],
                     max_frames=max_frames, progress=progress)

    # 1. shots, detected on the B&W film itself (what a user's film gives us)
    det = ShotDetector(**params["shots"])
    for f in read_frames(out_dir / "bw.mkv", gray=True):
        det.update(f)
    bw_info = probe(out_dir / "bw.mkv")
    shots = {"starts": det.starts, "n_frames": n, "fps": f"{bw_info.fps.numerator}/{bw_info.fps.denominator}",
             "scores": [round(s, 5) for s in det.scores], "threshold": det.threshold}
    write_json(out_dir / "shots.json", shots)

    # 2. metrics
    metrics = {
        "source": src.name, "n_frames": n, "source_n_frames": info.n_frames,
        "fps": shots["fps"], "width": bw_info.width, "height": bw_info.height,
        "n_shots": len(det.starts), "shot_starts": det.starts,
        "has_audio": bw_info.has_audio, "degraded": deg.active,
    }
    write_json(resolve(metrics_path), metrics)
    return metrics
