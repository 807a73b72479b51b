"""Keyframes for a person to color, and their colored references read back (issue 15).

The workflow of reference-guided colorization: :func:`write_keyframes` writes the B&W keyframe of every
shot (and, with ``every``, one every N frames of a long shot) as lossless PNGs named by frame index;
an artist colors some or all of them; :func:`read_references` reads the colored files back, checked,
for ``deeperfour.infer.propagate`` to carry their colors through the shots.

A reference is one of two kinds:

* ``000137.png`` / ``000137.jpg``: the colored frame 137 of the film (any number of digits; the index
  is 0-based, as ``deeperfour shots`` prints it). It is placed on that frame.
* ``shot02.png``: colors for a whole shot, given by any image of it (a colored frame, a still of the set).
  Shots are numbered from 1 in file names (``shot01`` is the shot starting at frame 0), the order of the
  shot starts. The propagation places it on the best-matching frame of that shot by global
  correspondence.

Rules (each broken rule is one ``ValueError`` line naming the file, the problem and the fix, raised
before anything is written):

* the folder holds at least one reference; every other file in it is an error (hidden files and
  sub-folders are ignored), so a misnamed reference is never silently skipped;
* a reference of another size than the film's frames is resized to them (with a note in
  ``References.notes``) when only the size differs; an aspect ratio more than 2 % off is refused;
* a gray image is refused ("is gray: color it first"): an uncolored keyframe left in the folder;
* one reference per frame: ``000137.png`` with ``000137.jpg`` (or ``137.png``) is refused; and one kind
  per shot: a shot given both ``shotNN.png`` and a frame reference inside it is refused (the two would
  compete for the same shot; keep the one you mean).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deeperfour.film.outputs import check_writable
from deeperfour.film.shots import ShotDetector, shot_ranges
from deeperfour.film.video import VideoInfo, probe, read_frames

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_FRAME_NAME = re.compile(r"^(\d+)\.(png|jpe?g)$", re.IGNORECASE)
_SHOT_NAME = re.compile(r"^shot(\d+)\.(png|jpe?g)$", re.IGNORECASE)
_NAMING = "name a reference by its frame index (000137.png) or by its shot, numbered from 1 (shot01.png)"
ASPECT_TOLERANCE = 0.02  # a reference whose aspect ratio differs by more than this is refused
GRAY_SPREAD = 8  # levels: a pixel is colored when max(R, G, B) - min(R, G, B) exceeds this ...
GRAY_FRACTION = 0.002  # ... and an image is gray when fewer than this fraction of its pixels are


def keyframe_name(index: int) -> str:
    """File name of frame ``index``'s keyframe: ``000137.png``."""
    return f"{index:06d}.png"


@dataclass(frozen=True)
class Shot:
    """Key of a whole-shot reference: ``index`` is 0-based (the position in the shot starts); its file
    is ``shot{index + 1:02d}.png``."""

    index: int

    @property
    def name(self) -> str:
        return f"shot{self.index + 1:02d}"


class Keyframes(list):
    """The frame indices written (a list, ascending), with the film's ``shot_starts``."""

    def __init__(self, indices=(), shot_starts=()):
        super().__init__(indices)
        self.shot_starts = list(shot_starts)


def write_keyframes(film: str | os.PathLike, out_dir: str | os.PathLike, every: int | None = None,
                    threshold: float = 0.8) -> Keyframes:
    """Write the B&W keyframe of every shot of ``film`` (and one every ``every`` frames inside a shot)
    into ``out_dir`` as lossless gray PNGs named by frame index; return the indices, ascending (a list
    that also carries the ``shot_starts`` found).

    Shots are detected on the film's luma by :class:`~deeperfour.film.shots.ShotDetector` (``threshold``
    as in ``deeperfour shots``). A folder that already holds images is refused (it may hold an artist's
    colored references). The frames are written into a hidden temporary folder and moved in only when
    the whole film decoded: a failure leaves nothing behind.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every={every!r}: must be a whole number of frames >= 1 "
                         "(or None: one keyframe a shot)")
    det = ShotDetector(threshold=threshold)  # checks the threshold before anything is written
    probe(film)  # a missing or broken film is one clear VideoError before any output
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder; give -o a folder for the keyframes")
    if out.is_dir():
        taken = sorted(p.name for p in out.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if taken:
            raise FileExistsError(f"{out}: already holds {len(taken)} image(s) ({taken[0]}, ...), perhaps "
                                  "colored references; choose an empty folder for new keyframes")
    check_writable(out)
    tmp = Path(tempfile.mkdtemp(prefix=".keyframes.partial-", dir=out))
    try:
        written, start = [], 0
        for i, frame in enumerate(read_frames(film, gray=True)):
            if det.update(frame) or i == 0:
                start = i
            if i == start or (every and (i - start) % every == 0):
                if not cv2.imwrite(str(tmp / keyframe_name(i)), frame):
                    raise OSError(f"{tmp / keyframe_name(i)}: could not write the PNG")
                written.append(i)
        for i in written:
            os.replace(tmp / keyframe_name(i), out / keyframe_name(i))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Keyframes(written, det.starts)


def _refuse(path: Path, problem: str, fix: str) -> ValueError:
    return ValueError(f"{path}: {problem}; {fix}")


def _load_rgb(path: Path) -> np.ndarray:
    """A PNG/JPG as RGB uint8 (H, W, 3); a gray file as (H, W); 16-bit scaled to 8; alpha dropped."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise _refuse(path, "cannot be read as an image (not really a PNG/JPG, or truncated)",
                      "re-export it, or remove it from the folder")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise _refuse(path, f"has {img.dtype} pixels", "save it as an 8-bit PNG or JPG")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3:
        img = img[..., :3][..., ::-1]  # BGR(A) -> RGB
        if img.shape[2] != 3:
            raise _refuse(path, f"has {img.shape[2]} channels", "save it as an RGB PNG or JPG")
    return np.ascontiguousarray(img)


def is_gray(rgb: np.ndarray) -> bool:
    """True for a (H, W) image, or an RGB one with (almost) no pixel whose channels differ by more than
    GRAY_SPREAD levels: compression noise of a gray image passes as gray, a colored region of 0.2 % does
    not."""
    if rgb.ndim == 2:
        return True
    spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
    return np.count_nonzero(spread > GRAY_SPREAD) < GRAY_FRACTION * spread.size


def _fit_to_film(path: Path, rgb: np.ndarray, width: int, height: int) -> tuple[np.ndarray, str | None]:
    """The reference at the film's size, and a note when it was resized; refuses another aspect ratio."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb, None
    ratio, film_ratio = w / h, width / height
    if abs(ratio / film_ratio - 1) > ASPECT_TOLERANCE:
        raise _refuse(path, f"is {w}x{h} (aspect {ratio:.3f}), the film's frames are {width}x{height} "
                      f"(aspect {film_ratio:.3f})", "crop it to the film's aspect ratio, or color the "
                      "keyframe written by `deeperfour keyframes`")
    interp = cv2.INTER_AREA if w * h > width * height else cv2.INTER_CUBIC
    out = cv2.resize(rgb, (width, height), interpolation=interp)
    return out, f"{path}: {w}x{h} resized to the film's {width}x{height}"


@dataclass
class References(Mapping):
    """Checked references: a mapping ``{frame index (int) or Shot(k): RGB (H, W, 3) uint8 at the film's
    size}``. Images are read from disk when asked for (one at a time), so a film with many references
    never holds them all. ``notes``: what was adjusted (resized references)."""

    files: dict[int | Shot, Path]
    width: int
    height: int
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: int | Shot) -> np.ndarray:
        path = self.files[key]
        return _fit_to_film(path, _load_rgb(path), self.width, self.height)[0]

    def __iter__(self) -> Iterator[int | Shot]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def check_reference_keys(keys: Sequence[int | Shot], shot_starts: Sequence[int], n_frames: int,
                         where: Mapping[int | Shot, str] | None = None) -> None:
    """Frame keys inside the film, shot keys among its shots, and no shot given both kinds; one
    ValueError line otherwise. ``where``: how to name each key in the message (its file)."""
    where = where or {}
    ranges = shot_ranges(list(shot_starts), n_frames)

    def name(k) -> str:
        return where.get(k) or (k.name if isinstance(k, Shot) else f"reference for frame {k}")

    for k in keys:
        if isinstance(k, Shot):
            if not 0 <= k.index < len(ranges):
                raise ValueError(f"{name(k)}: shot {k.index + 1} does not exist (the film has {len(ranges)} "
                                 f"shots, shot01..shot{len(ranges):02d}); rename it to the shot it colors")
        elif isinstance(k, int | np.integer) and not isinstance(k, bool):
            if not 0 <= k < n_frames:
                raise ValueError(f"{name(k)}: frame {k} is past the end of the film ({n_frames} frames, "
                                 f"0..{n_frames - 1}); rename it to the frame it colors")
        else:
            raise ValueError(f"reference key {k!r}: must be a frame index (int) or a Shot")
    for s, (a, b) in enumerate(ranges):
        if Shot(s) in keys:
            inside = [k for k in keys if not isinstance(k, Shot) and a <= k < b]
            if inside:
                raise ValueError(f"{name(Shot(s))} and {name(inside[0])}: shot {s + 1} (frames {a}-{b - 1}) "
                                 "has a shot reference and a frame reference; keep one kind for a shot")


def read_references(folder: str | os.PathLike, film_info: VideoInfo,
                    shot_starts: Sequence[int]) -> References:
    """Read and check the colored references in ``folder`` for a film (see the module's rules).

    Returns a :class:`References` mapping (frame index or :class:`Shot`) to the image at the film's size.
    Raises one ``ValueError`` line for the first problem found; reads every image once to check it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder; give the folder of colored references "
                         "(write one with `deeperfour keyframes FILM -o DIR`)")
    W, H, n = film_info.width, film_info.height, film_info.n_frames
    files: dict[int | Shot, Path] = {}
    notes: list[str] = []
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and not p.is_dir())
    for p in entries:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            raise _refuse(p, "is not a PNG or JPG image", f"remove it from {folder}, or {_NAMING}")
    if not entries:
        raise ValueError(f"{folder}: holds no reference images; {_NAMING}, colored from the keyframes "
                         "`deeperfour keyframes` writes")
    for p in entries:
        m_frame, m_shot = _FRAME_NAME.match(p.name), _SHOT_NAME.match(p.name)
        if m_shot:
            number = int(m_shot.group(1))
            if number == 0:
                raise _refuse(p, "shots are numbered from 1 (shot01 is the shot starting at frame 0)",
                              "rename it")
            key: int | Shot = Shot(number - 1)
        elif m_frame:
            key = int(m_frame.group(1))
        else:
            raise _refuse(p, "has a name that is neither a frame index nor a shot", f"rename it: {_NAMING}")
        if key in files:
            what = f"shot {key.index + 1}" if isinstance(key, Shot) else f"frame {key}"
            raise ValueError(f"{files[key]} and {p}: two references for {what}; keep one")
        files[key] = p
    check_reference_keys(list(files), shot_starts, n, {k: str(p) for k, p in files.items()})
    for p in files.values():
        rgb = _load_rgb(p)
        if is_gray(rgb):
            raise _refuse(p, "is gray: color it first", "a reference gives the colors of its frame or shot; "
                          "remove the keyframes you do not color")
        note = _fit_to_film(p, rgb, W, H)[1]
        if note:
            notes.append(note)
    return References(files, W, H, notes)
