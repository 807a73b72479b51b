"""Side-by-side films: B&W | colorized | cartoon in one frame, streamed (paper Fig. 4 as a video).

:func:`side_by_side` composes one frame from any number of panels; :func:`write_parallel` streams three
films (each a file, or a list of files played one after the other, such as the lossless segments of
``deeperfour convert``) into one H.264 film with the frame rate, frame count and audio of the B&W film.
Used by ``deeperfour convert`` and by notebook 06.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from deeperfour.film.color import gray_to_rgb
from deeperfour.film.video import VideoError, VideoWriter, probe, read_frames

DEFAULT_LABELS = ("B&W", "colorized", "cartoon")
MAX_WIDTH = 3840  # px: wider side-by-side films are scaled down (H.264 players choke beyond 4K)

Source = str | os.PathLike | Sequence[str | os.PathLike]  # one film, or films played in sequence


def panel_size(width: int, height: int, n_panels: int = 3, max_width: int = MAX_WIDTH) -> tuple[int, int]:
    """(w, h) of each panel: the film's own size, scaled down when n_panels side by side exceed
    ``max_width``; both sides even so the result encodes as yuv420p."""
    s = min(1.0, max_width / (n_panels * width))
    w, h = max(2, round(width * s)), max(2, round(height * s))
    return w + w % 2, h + h % 2


def _put_label(img: np.ndarray, text: str) -> None:
    """White text with a dark outline in the top-left corner, sized to the panel height (in place)."""
    scale = max(0.3, img.shape[0] / 720)
    org = (max(3, round(8 * scale)), max(10, round(28 * scale)))
    thick = max(1, round(2 * scale))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def side_by_side(frames: Sequence[np.ndarray], size: tuple[int, int] | None = None,
                 labels: Sequence[str] | None = None) -> np.ndarray:
    """Panels (gray (H, W) or RGB (H, W, 3) uint8, any sizes) -> one RGB frame (h, n*w, 3).

    Every panel is resized to ``size`` = (w, h) (default: the first panel's size; area when shrinking,
    bicubic when growing) and labelled with ``labels[k]`` when given.
    """
    w, h = size or (frames[0].shape[1], frames[0].shape[0])
    panels = []
    for k, f in enumerate(frames):
        p = gray_to_rgb(np.asarray(f))  # (H, W, 3)
        if p.shape[:2] != (h, w):
            shrink = p.shape[0] * p.shape[1] > h * w
            p = cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        else:
            p = p.copy()
        if labels:
            _put_label(p, labels[k])
        panels.append(p)
    return np.concatenate(panels, axis=1)  # (h, n*w, 3)


def frames_of(source: Source, gray: bool = False) -> Iterator[np.ndarray]:
    """The frames of one film, or of several films one after the other."""
    paths = [source] if isinstance(source, str | os.PathLike) else list(source)
    for p in paths:
        yield from read_frames(p, gray=gray)


def write_parallel(bw_path: str | os.PathLike, colorized_path: Source, cartoon_path: Source,
                   dst: str | os.PathLike, labels: bool | Sequence[str] = True,
                   max_width: int = MAX_WIDTH) -> Path:
    """Stream B&W | colorized | cartoon into ``dst`` (H.264 .mp4, or lossless .mkv), one frame at a time.

    The output has the B&W film's exact frame rate, frame count and audio; each panel has the B&W
    film's size (scaled down together when the three exceed ``max_width`` px). ``labels``: True for
    "B&W", "colorized", "cartoon", a sequence of three strings, or False. The colorized and cartoon
    sources must hold exactly as many frames as the B&W film (a VideoError names the one that does not).
    ``dst`` appears only when complete.
    """
    info = probe(bw_path)
    size = panel_size(info.width, info.height, 3, max_width)
    names = list(DEFAULT_LABELS) if labels is True else (list(labels) if labels else None)
    with ParallelWriter(dst, info.fps, size, names, audio_from=bw_path) as w:
        streams = (read_frames(bw_path, gray=True), frames_of(colorized_path), frames_of(cartoon_path))
        for panels in zip_films(streams, (bw_path, colorized_path, cartoon_path), info.n_frames):
            w.write(panels)
    return Path(dst)


def zip_films(streams: Sequence[Iterable[np.ndarray]], names: Sequence[Source],
               n_frames: int) -> Iterator[tuple[np.ndarray, ...]]:
    """zip(*streams), raising a VideoError naming the source that ends early or runs long."""
    its = [iter(s) for s in streams]
    for i in range(n_frames):
        row = []
        for it, name in zip(its, names, strict=True):
            f = next(it, None)
            if f is None:
                raise VideoError(_first(name), f"ends at frame {i}, the B&W film has {n_frames} frames")
            row.append(f)
        yield tuple(row)
    for it, name in zip(its[1:], names[1:], strict=True):
        if next(it, None) is not None:
            raise VideoError(_first(name), f"has more frames than the B&W film ({n_frames})")


def _first(source: Source) -> str | os.PathLike:
    return source if isinstance(source, str | os.PathLike) else source[0]


class ParallelWriter:
    """A VideoWriter of side-by-side frames: ``write((bw, colorized, cartoon))``, panels ``size`` (w, h)."""

    def __init__(self, dst: str | os.PathLike, fps, size: tuple[int, int], labels: Sequence[str] | None,
                 audio_from: str | os.PathLike | None = None, n_panels: int = 3):
        self.size, self.labels = size, labels
        self.writer = VideoWriter(dst, fps, n_panels * size[0], size[1], audio_from=audio_from)

    def write(self, panels: Sequence[np.ndarray]) -> None:
        self.writer.write(side_by_side(panels, self.size, self.labels))

    def __enter__(self) -> ParallelWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.__exit__(exc_type, exc, tb)
