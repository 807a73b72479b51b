"""Drawn images and photographs from Debian's ``scratch`` package: the ``scratch`` cartoon style, more
photos for the photo domain, and data for the real-vs-drawn probe.

Source: Debian package ``scratch`` 1.4.0.6~dfsg1-6.1 (bookworm, ``main``), its
``/usr/share/scratch/Media``. Licence (debian/copyright, ``Files: Help/* Media/* Projects``):
CC-BY-SA-3.0, Copyright (c) 2011 Massachusetts Institute of Technology. Fetched without installing it
(``make data`` does this, then ``deeperfour data art --source <dir>``)::

    apt-get download scratch && dpkg-deb -x scratch_*.deb <dir>

:func:`materialize_scratch` copies the files byte for byte, as ``samples.materialize_photos`` does for
the wallpaper packages, into ``art/scratch/`` (``ART_DIR``: a top-level folder tracked by its own
``art.dvc``, outside ``data/``, so that adding it leaves ``data.dvc`` and the colorization stages alone):

* ``photos/``   51 of the 74 stage backgrounds (480 x 360) are PHOTOGRAPHS (rooms, streets, buildings,
                nature, sports fields): photo-domain stills of stage ``prepare_datasets``;
* ``scenes/``   18 are full-scene FLAT CARTOONS (drawn rooms, stage, desert, underwater, night city,
                schools, ...): with the sprites, the cartoon style ``scratch``;
* ``sprites/``  the costumes of ``Costumes/{Animals,Fantasy,People,Things,Transportation}`` that are
                DRAWN (cartoon characters, most with ink outlines; 175 files), by category;
* ``cutouts/``  the costumes that are PHOTOGRAPHS cut out on a transparent background (people, animals,
                cars, objects; 94 files): real photos, useful against a "white background = drawn" shortcut
                (the real-vs-drawn probe; never a training set);
* ``SOURCE.json`` package, version, licence and copyright of the files (``style_datasets`` copies it
                into its manifest) and ``copyright`` (the package's debian/copyright), for attribution.

Five backgrounds are in neither list: ``stars.gif`` (synthetic dots), ``xy-grid.gif`` (a diagram) and
three photographs OF painted murals (``berkeley-mural``, ``graffiti``, ``mural-faro``: drawn content in a
photo). The ``Letters`` costumes (glyphs) and ``.sprite`` projects are not copied. Every split was decided
by looking at each image (contact sheets), once, and is fixed here so that ``art/`` hashes the same.
"""

from __future__ import annotations

import filecmp
import gzip
import json
import os
import re
from pathlib import Path

import numpy as np

from deeperfour.core.config import ROOT
from deeperfour.data.samples import IMAGE_SUFFIXES, _copy_atomic
from deeperfour.film.resize import shrink

APT_PACKAGE = "scratch"
APT_VERSION = "1.4.0.6~dfsg1-6.1"  # the version the lists below were made from (bookworm)
LICENCE = "CC-BY-SA-3.0"
COPYRIGHT = "Copyright (c) 2011 Massachusetts Institute of Technology"
APT_HINT = ("run `make data`, or: apt-get download scratch && dpkg-deb -x scratch_*.deb <dir> && "
            "deeperfour data art --source <dir>; or apt-get install scratch and pass --source /")
DOC = Path("usr/share/doc/scratch")
MEDIA = Path("usr/share/scratch/Media")
BACKGROUNDS = MEDIA / "Backgrounds"
COSTUMES = MEDIA / "Costumes"
COSTUME_FOLDERS = ("Animals", "Fantasy", "People", "Things", "Transportation")  # not Letters
COSTUME_SUFFIXES = (".png", ".gif", ".jpg")

# Backgrounds/<folder>/<file>: full-scene flat cartoons
SCENE_BACKGROUNDS = (
    "Indoors/bedroom1.gif", "Indoors/bedroom2.gif", "Indoors/party-room.jpg", "Indoors/room1.jpg",
    "Indoors/room2.jpg", "Indoors/room3.jpg", "Indoors/spotlight-stage.jpg",
    "Nature/desert.gif", "Nature/underwater.gif", "Nature/woods-and-bench.jpg", "Nature/woods.gif",
    "Outdoors/brick-wall1.jpg", "Outdoors/night-city-with-street.gif", "Outdoors/night-city.gif",
    "Outdoors/school1.gif", "Outdoors/school2.jpg", "Outdoors/train-tracks3.gif",
    "Sports/basketball-court2.png",
)
# Backgrounds/<folder>/<file>: photographs
PHOTO_BACKGROUNDS = (
    *(f"Indoors/{n}" for n in ("chalkboard.jpg", "clothing-store.jpg", "hall.jpg", "kitchen.jpg",
                               "the-movies-inside.jpg")),
    *(f"Nature/{n}.jpg" for n in ("beach-malibu", "canyon", "flower-bed", "forest", "garden-rock",
                                  "grand-canyon", "gravel-desert", "hill", "lake", "moon", "pathway",
                                  "tree", "water-and-rocks", "wave")),
    "Nature/flowers.gif", "Outdoors/all-sports-mural.jpg",
    *(f"Outdoors/{n}.jpg" for n in (
        "atom-playground", "bench-with-view", "boardwalk", "brick-wall-and-stairs", "brick-wall2",
        "building-at-mit", "building-fireproof", "castle", "city-with-water", "city-with-water2",
        "driveway", "hallway_outdoors", "hay_field", "houses", "mansion", "parking-ramp", "pool",
        "route66", "silos", "the-movies", "train-tracks1", "train-tracks2", "village", "wooden-house")),
    *(f"Sports/{n}.jpg" for n in ("baseball-field", "basketball-court1-a", "basketball-court1-b",
                                  "football-field", "playing-field", "tennis-backboard")),
)
EXCLUDED_BACKGROUNDS = ("Nature/stars.gif", "xy-grid.gif", "Outdoors/berkeley-mural.jpg",
                        "Outdoors/graffiti.jpg", "Outdoors/mural-faro.jpg")
# Costumes/<folder>/<file> that are photographs (cut out); every other costume image is drawn
CUTOUT_COSTUMES = (
    *(f"Animals/{n}.gif" for n in ("bird-flying", "buffalo1", "cow1", "elephant", "giraffe1-a", "giraffe1-b",
                                   "grasshopper2", "insect1-a", "insect1-b", "insect2")),
    "Animals/squirrel1.png", "Fantasy/sun.gif",
    *(f"People/{n}.gif" for n in (
        "amon1", *(f"anjuli-{i}" for i in range(1, 6)), *(f"anna-{i}" for i in range(1, 4)),
        "breakdancer1", "breakdancer2", "breakdancer3", "calvrett-jumping", "calvrett-thinking", "calvrett",
        "cassy-chillin", *(f"cassy-dancing-{i}" for i in range(1, 5)), "cassy-jumping-1", "cassy-jumping-2",
        "cassy-phone-1", "cassy-sitting-1", "cassy-standing-1", "chamak1", "chamak2",
        *(f"dan{i}" for i in range(1, 7)), "ed", "football-run", "football-stand", "jay", "jodi1", "jodi2",
        "lee-fan", "mako-laughing", "mako-screaming", "mako-stop", "marissa-crouching", "marissa-sitting",
        "marissa", "nathan", "nina1", "paul1", "referee1", "referee2", "ribbon-dancer", "sam", "thai-dancer",
        "thai-dancer2")),
    *(f"Things/{n}.gif" for n in ("cheesy-puffs", "fire-hydrant", "flower-vase", "fortune_cookie",
                                  "fruit_platter", "hair1", "hair2", "lamp", "lego", "marble-building",
                                  "palmtree", "scoreboard", "trampoline", "umbrella")),
    "Things/manhole.png", "Things/tennisball.png",
    *(f"Transportation/{n}.gif" for n in ("airplane", "bike", "bus", "car-blue", "car-bug", "car-cow",
                                          "sail-boat", "train", "tug-boat", "yacht")),
    "Transportation/street-cleaner-mit.png",
)
ART_DIR = ROOT / "art"  # top-level, tracked by art.dvc (not data/: data.dvc and its stages stay as they are)
SCRATCH_DIR = ART_DIR / "scratch"
KINDS = ("photos", "scenes", "sprites", "cutouts")
SOURCE_FILE = "SOURCE.json"
ART_SUFFIXES = (*IMAGE_SUFFIXES, ".gif")


def costume_files(source: str | os.PathLike) -> list[str]:
    """Every costume image of ``COSTUME_FOLDERS`` under an unpacked root, ``<folder>/<file>``, sorted."""
    base = Path(source) / COSTUMES
    return sorted(p.relative_to(base).as_posix() for d in COSTUME_FOLDERS for p in (base / d).glob("*")
                  if p.is_file() and p.suffix.lower() in COSTUME_SUFFIXES)


def scratch_plan(source: str | os.PathLike = "/") -> dict[str, list[tuple[Path, Path]]]:
    """{kind: [(source file, path relative to the destination)]} for the four KINDS; raises
    FileNotFoundError (naming the apt package) when the scratch media are not under ``source``."""
    source = Path(source)
    listed = [BACKGROUNDS / p for p in (*SCENE_BACKGROUNDS, *PHOTO_BACKGROUNDS)] + [
        COSTUMES / p for p in CUTOUT_COSTUMES]
    missing = [p for p in listed if not (source / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(listed)} scratch media files are missing under {source}, "
            f"e.g. {missing[0]}: "
            f"they come from the Debian package '{APT_PACKAGE}' ({APT_HINT})")
    cutouts = set(CUTOUT_COSTUMES)
    costumes = costume_files(source)
    return {
        "photos": [(source / BACKGROUNDS / p, Path(p).name) for p in PHOTO_BACKGROUNDS],
        "scenes": [(source / BACKGROUNDS / p, Path(p).name) for p in SCENE_BACKGROUNDS],
        "sprites": [(source / COSTUMES / p, Path(p)) for p in costumes if p not in cutouts],
        "cutouts": [(source / COSTUMES / p, Path(p)) for p in costumes if p in cutouts],
    }


def materialize_scratch(root: str | os.PathLike | None = None,
                        source: str | os.PathLike = "/") -> dict[str, list[Path]]:
    """Copy the scratch backgrounds and costumes from ``source`` (``/`` when the package is installed,
    or the folder ``dpkg-deb -x`` unpacked it in) to ``root`` (default ``art/scratch``), byte
    for byte, sorted into ``photos/ scenes/ sprites/ cutouts/`` (module docstring), with ``SOURCE.json``
    and the package's ``copyright`` beside them. Nothing is copied unless every listed file exists.
    Returns {kind: [paths written or verified]}."""
    root = Path(root or SCRATCH_DIR)
    plan = scratch_plan(source)
    out: dict[str, list[Path]] = {}
    for kind, pairs in plan.items():
        out[kind] = []
        for src, rel in pairs:
            dst = root / kind / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
                _copy_atomic(src, dst)
            out[kind].append(dst)
    copyright_file = Path(source) / DOC / "copyright"
    if copyright_file.is_file():
        dst = root / "copyright"
        if not dst.exists() or not filecmp.cmp(copyright_file, dst, shallow=False):
            _copy_atomic(copyright_file, dst)
    record = json.dumps(source_record(source), indent=2, sort_keys=True) + "\n"
    if not (root / SOURCE_FILE).is_file() or (root / SOURCE_FILE).read_text() != record:
        tmp = root / f".{SOURCE_FILE}.partial"
        tmp.write_text(record)
        os.replace(tmp, root / SOURCE_FILE)
    return out


def package_version(source: str | os.PathLike = "/") -> str:
    """The version of the unpacked (or installed) package, from the first line of its
    ``changelog.Debian.gz``; ``APT_VERSION`` when that file is absent or unreadable."""
    try:
        with gzip.open(Path(source) / DOC / "changelog.Debian.gz", "rt", encoding="utf-8") as f:
            m = re.match(rf"{APT_PACKAGE} \(([^)]+)\)", f.readline())
    except (OSError, EOFError):
        m = None
    return m.group(1) if m else APT_VERSION


def source_record(source: str | os.PathLike = "/") -> dict[str, str]:
    """What ``SOURCE.json`` holds: the Debian package, its version, the media's licence and copyright."""
    return {"package": APT_PACKAGE, "version": package_version(source), "licence": LICENCE,
            "copyright": COPYRIGHT, "files": "/usr/share/scratch/Media (debian/copyright: Media/*)"}


def scratch_sets(root: str | os.PathLike | None = None) -> dict[str, list[Path]]:
    """{kind: image files, GIFs included} of a materialized ``art/scratch`` (empty when absent).

    Read them with :func:`load_art` (GIF and alpha aware), not ``samples.load_image``."""
    root = Path(root or SCRATCH_DIR)
    return {k: sorted(p for p in (root / k).rglob("*") if p.suffix.lower() in ART_SUFFIXES)
            if (root / k).is_dir() else [] for k in KINDS}


def load_art(path: str | os.PathLike, background: int = 255, max_side: int | None = None) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, its transparent pixels (PNG alpha, GIF transparency)
    composited over a flat ``background`` gray level (255: white, as clip art is shown)."""
    from PIL import Image

    with Image.open(path) as im:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)  # (H, W, 4)
    a = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * a + float(background) * (1.0 - a)
    img = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return shrink(img, max_side)
