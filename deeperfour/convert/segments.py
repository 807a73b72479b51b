"""The resumable segment store of ``deeperfour convert``: scan, plan, seek, work folder.

A film is converted as independent **segments**: every shot, cut into chunks of at most
``max_frames`` frames. Segments are the unit of work (and of resumption, and of the Ray tasks of
issue 8): each is computed from the input file alone and written as lossless FFV1 files, so an
interrupted run redoes only the segments it had not finished.

* :func:`scan_film` is one streaming pass over the decoded gray film: shot cuts, frame count,
  whether it is really B&W, and whether frame i can be found by seeking (constant frame rate);
* :func:`plan_segments` is THE chunking, defined once and used by every run. A chunk that starts
  inside a shot begins ``warmup`` frames earlier: a recurrent stabilizer is reset there and those
  frames are recomputed and dropped, so its state at the first kept frame has seen recent history;
* :func:`read_range` decodes frames [start, stop) after seeking to the nearest keyframe;
* :class:`WorkDir` is ``OUTDIR/.deeperfour/<key>/``: the key hashes the input file, the settings and
  the model files, so a different input or settings never reuses stale segments.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from deeperfour import __version__
from deeperfour.film.shots import ShotDetector
from deeperfour.film.video import VideoError, probe, read_frames

WORK_FOLDER = ".deeperfour"
MANIFEST = "manifest.json"
TARGETS = ("colorized", "cartoon")  # the lossless files of a segment (colors from keyframes: cartoon only)
COLOR_CHECK_FRAMES = 30  # frames (every 10th) looked at to tell a color film from a B&W one
COLOR_SPREAD = 4.0  # mean max-min channel spread (8-bit levels) above which a frame counts as color


@dataclass(frozen=True)
class Film:
    """What a segment needs to know about the input, without probing it again (picklable, JSON-able)."""

    path: str
    width: int
    height: int
    fps: str  # exact, e.g. "30000/1001"
    n_frames: int
    has_audio: bool
    is_color: bool  # the input has chroma: only its luminance is used
    shot_starts: tuple[int, ...]
    first_pts: int | None  # pts of frame 0 when frame i sits at first_pts + i / (fps * time_base); else None
    colorized: str = ""  # the film colorized from keyframes (lossless, in the work folder); "": per frame

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def targets(self) -> tuple[str, ...]:
        """The lossless files each segment writes. Colors carried from keyframes are already a lossless
        film (``colorized``), and no stabilizer changes them: the segments hold the cartoon only, and
        the colorized output is made from that film (one encode and decode less per frame)."""
        return ("cartoon",) if self.colorized else TARGETS


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of one shot, computed from frame ``lead`` <= start (warm-up frames dropped)."""

    index: int
    lead: int
    start: int
    stop: int

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"seg_{self.index:05d}"


# ---------------------------------------------------------------------------------------------------------
# scan and plan
# ---------------------------------------------------------------------------------------------------------


def _color_spread(frame: av.VideoFrame) -> float:
    """Mean over pixels of (max - min) of R, G, B: about 0 for a B&W frame."""
    rgb = frame.to_ndarray(format="rgb24").astype(np.int16)  # (H, W, 3)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def _index(pts: int | None, first_pts: int | None, per_frame: Fraction | None) -> int | None:
    """Frame index of a timestamp in a constant-frame-rate stream (None when timestamps are missing)."""
    if pts is None or first_pts is None or not per_frame or per_frame < 1:
        return None
    return round((pts - first_pts) / per_frame)


def scan_film(path: str | os.PathLike, threshold: float = 0.8,
              progress: Callable[[int], None] | None = None) -> Film:
    """One decoding pass: shot starts, the real frame count, B&W or color, and seekability.

    Raises VideoError for a file that is not a video, has no frames, or is truncated (before any
    model runs, so a broken film fails in seconds rather than after hours).
    """
    path = Path(path)
    info = probe(path)  # one-line VideoErrors for missing, non-video and empty files
    det = ShotDetector(threshold=threshold)
    first_pts: int | None = None
    exact_pts, is_color, n = True, False, 0
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        per_frame = 1 / (info.fps * vs.time_base) if vs.time_base else None  # pts ticks per frame
        try:
            for n, frame in enumerate(c.decode(vs)):
                if n == 0:
                    first_pts = frame.pts
                if exact_pts and _index(frame.pts, first_pts, per_frame) != n:
                    exact_pts = False
                if n < COLOR_CHECK_FRAMES * 10 and n % 10 == 0 and not is_color:
                    is_color = _color_spread(frame) > COLOR_SPREAD
                det.update(frame.to_ndarray(format="gray"))
                if progress is not None:
                    progress(1)
        except av.error.FFmpegError as e:
            raise VideoError(path, f"is truncated or corrupt: decoding failed after frame {n} ({e})",
                             "re-export or re-download the file") from e
        n = len(det.scores)
    if n == 0:
        raise VideoError(path, "contains no video frames", "is it an empty or truncated file?")
    if n < info.n_frames:
        raise VideoError(path, f"is truncated: it lists {info.n_frames} frames, only {n} decode",
                         "re-export or re-download the file")
    return Film(str(path), info.width, info.height, str(info.fps), n, info.has_audio, is_color,
                tuple(det.starts), first_pts if exact_pts else None)


def plan_segments(shot_starts: Sequence[int], n_frames: int, max_frames: int = 200,
                  warmup: int = 0) -> list[Segment]:
    """Every shot cut into ceil(len / max_frames) chunks of equal length (+-1), in film order.

    Deterministic in (shots, n_frames, max_frames, warmup) only, so a single-process run, a resumed
    run and a distributed run all compute the same segments. A chunk starting mid-shot gets
    ``lead = max(shot start, start - warmup)``; a chunk starting a shot gets ``lead = start``.
    """
    if max_frames < 1 or warmup < 0:
        raise ValueError(f"segment length must be >= 1 and warm-up >= 0, got {max_frames} and {warmup}")
    bounds = [*sorted(set(shot_starts) | {0}), n_frames]
    segs: list[Segment] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        k = math.ceil((b - a) / max_frames)
        cuts = [a + ((b - a) * j) // k for j in range(k + 1)]
        for s, e in zip(cuts[:-1], cuts[1:], strict=True):
            segs.append(Segment(len(segs), s if s == a else max(a, s - warmup), s, e))
    return segs


# ---------------------------------------------------------------------------------------------------------
# seeking reader
# ---------------------------------------------------------------------------------------------------------


def read_range(film: Film, start: int, stop: int) -> Iterator[np.ndarray]:
    """Gray frames (H, W) uint8 with indices start <= i < stop, seeking when the film allows it.

    Frame indices come from timestamps (checked exact by :func:`scan_film`); if the seek lands after
    ``start`` or a frame is missing, decoding falls back to a linear pass from the film's beginning,
    so the frames are always the ones a full sequential decode gives.
    """
    if film.first_pts is None or start == 0:
        yield from read_frames(film.path, gray=True, start=start, stop=stop)
        return
    expected = start
    with av.open(film.path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        per_frame = 1 / (film.rate * vs.time_base)  # pts ticks per frame
        c.seek(film.first_pts + math.floor(start * per_frame), stream=vs, backward=True, any_frame=False)
        try:
            for frame in c.decode(vs):
                i = _index(frame.pts, film.first_pts, per_frame)
                if i is None or i > expected:  # seek landed too late, or a frame is missing
                    break
                if i < expected:
                    continue
                if i >= stop:
                    return
                yield frame.to_ndarray(format="gray")
                expected += 1
        except av.error.FFmpegError:
            pass  # the linear pass below reports where the file really breaks
    if expected < stop:
        yield from read_frames(film.path, gray=True, start=expected, stop=stop)


# ---------------------------------------------------------------------------------------------------------
# keys and the work folder
# ---------------------------------------------------------------------------------------------------------


def fingerprint(path: str | os.PathLike, sample: int = 1 << 20) -> dict[str, Any]:
    """Size, mtime and a hash of the first and last MiB: tells files apart without reading a whole film."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(sample))
        if st.st_size > sample:
            f.seek(max(sample, st.st_size - sample))
            h.update(f.read(sample))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256_ends": h.hexdigest()}


def work_key(film_path: str | os.PathLike, settings: dict[str, Any], files: Sequence[str | os.PathLike],
             plan: dict[str, Any]) -> str:
    """16 hex digits naming a run: input file, settings, model files and the segment plan parameters."""
    blob = {"input": fingerprint(film_path), "settings": settings, "plan": plan, "version": __version__,
            "files": {str(p): fingerprint(p) for p in files}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def segment_files(work_dir: str | os.PathLike, seg: Segment, targets: Sequence[str] = TARGETS
                  ) -> dict[str, Path]:
    """{"colorized": .../seg_NNNNN.colorized.mkv, "cartoon": .../seg_NNNNN.cartoon.mkv}, for ``targets``
    (``Film.targets``)."""
    return {t: Path(work_dir) / f"{seg.name}.{t}.mkv" for t in targets}


class WorkDir:
    """``OUTDIR/.deeperfour/<key>/``: manifest.json plus ``seg_NNNNN.<target>.mkv`` per finished segment."""

    def __init__(self, outdir: str | os.PathLike, key: str):
        self.root = Path(outdir) / WORK_FOLDER / key
        self.key = key

    def files(self, seg: Segment, targets: Sequence[str] = TARGETS) -> dict[str, Path]:
        return segment_files(self.root, seg, targets)

    def done(self, seg: Segment, targets: Sequence[str] = TARGETS) -> bool:
        """A segment is finished when all its files exist: each appears atomically when complete."""
        return all(p.is_file() for p in self.files(seg, targets).values())

    def load_film(self) -> Film | None:
        """The scan of an earlier run with the same key (so a resumed run does not decode the film twice)."""
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())["film"]
            return Film(**{**d, "shot_starts": tuple(d["shot_starts"])})
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable manifest is simply redone

    def save(self, film: Film, segments: Sequence[Segment], settings: dict[str, Any]) -> None:
        """Write the manifest atomically; clear leftovers of a killed run (``*.partial.mkv``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for p in self.root.glob("*.partial.*"):
            p.unlink()
        blob = {"key": self.key, "film": asdict(film), "settings": settings,
                "segments": [asdict(s) for s in segments]}
        tmp = self.root / f".{MANIFEST}.partial"
        tmp.write_text(json.dumps(blob, indent=1))
        os.replace(tmp, self.root / MANIFEST)

    def remove(self) -> None:
        """Delete this run's folder, and ``.deeperfour`` too when nothing else is left in it."""
        shutil.rmtree(self.root, ignore_errors=True)
        try:
            self.root.parent.rmdir()
        except OSError:
            pass
