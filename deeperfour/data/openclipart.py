"""Clip art from Debian's ``openclipart-svg`` package: the ``clipart`` cartoon style set (drawn by hand:
flat fills and ink outlines) and more drawn images for the real-vs-drawn probe (issue 16).

Source: Debian package ``openclipart-svg`` 1:0.18+dfsg-19 (bookworm, ``main``), its
``/usr/share/openclipart/svg`` (8,121 SVGs in 22 categories). Licence (debian/copyright): the Creative
Commons Public Domain Dedication, every image. Fetched without installing it (``make data`` does this,
then ``deeperfour data clipart --source <dir>``)::

    apt-get download openclipart-svg && dpkg-deb -x openclipart-svg_*.deb <dir>

:func:`materialize_openclipart` copies ``N_SVGS`` of them byte for byte into ``art/openclipart/`` (beside
``art/scratch``, tracked by ``art.dvc``: the colorizer's ``data/`` stays untouched), keeping their
category folders, with ``SOURCE.json`` and the package's ``copyright``. The selection is fixed: evenly
spaced over the sorted SVGs of the scene-like categories ``CATEGORIES`` (animals, buildings, food, people,
plants, recreation, transportation: 2,230 files). Icons, symbols, shapes and logos are left out: they are
drawn, but they are not what a cartoon frame shows. Chosen by looking at contact sheets of the
categories, once. The SVGs are rendered by cairosvg in stage ``prepare_datasets``.
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
from deeperfour.data.samples import _copy_atomic

APT_PACKAGE = "openclipart-svg"
APT_VERSION = "1:0.18+dfsg-19"  # the version the selection was made from (bookworm)
LICENCE = "public domain (Creative Commons Public Domain Dedication; debian/copyright)"
APT_HINT = ("run `make data`, or: apt-get download openclipart-svg && dpkg-deb -x openclipart-svg_*.deb "
            "<dir> && deeperfour data clipart --source <dir>; or apt-get install openclipart-svg and pass "
            "--source /")
SVG_DIR = Path("usr/share/openclipart/svg")
DOC = Path("usr/share/doc/openclipart-svg")
CATEGORIES = ("animals", "buildings", "food", "people", "plants", "recreation", "transportation")
N_SVGS = 200  # copied (10.6 MB); stage prepare_datasets renders up to its clipart_max of them
CLIPART_DIR = ROOT / "art" / "openclipart"
SOURCE_FILE = "SOURCE.json"


def selection(source: str | os.PathLike = "/", n: int = N_SVGS) -> list[Path]:
    """The ``n`` SVGs (paths relative to ``SVG_DIR``) evenly spaced over the sorted SVGs of ``CATEGORIES``
    under ``source``. Raises with the way to get them when the package is not there."""
    svg_dir = Path(source) / SVG_DIR
    files = sorted(p.relative_to(svg_dir) for c in CATEGORIES for p in (svg_dir / c).rglob("*.svg"))
    if not files:
        raise FileNotFoundError(f"no openclipart SVGs under {svg_dir} in the categories "
                                f"{', '.join(CATEGORIES)} ({APT_HINT})")
    if n < 1:
        raise ValueError(f"n {n}: must be >= 1")
    idx = np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int))
    return [files[i] for i in idx]


def package_version(source: str | os.PathLike = "/") -> str:
    """The unpacked (or installed) package's version, from its ``changelog.Debian.gz``; ``APT_VERSION``
    when that file is absent or unreadable."""
    try:
        with gzip.open(Path(source) / DOC / "changelog.Debian.gz", "rt", encoding="utf-8") as f:
            m = re.match(r"openclipart \(([^)]+)\)", f.readline())
    except (OSError, EOFError):
        m = None
    return m.group(1) if m else APT_VERSION


def materialize_openclipart(root: str | os.PathLike | None = None, source: str | os.PathLike = "/",
                            n: int = N_SVGS) -> list[Path]:
    """Copy :func:`selection` from ``source`` (``/`` when the package is installed, or the folder
    ``dpkg-deb -x`` unpacked it in) to ``root`` (default ``art/openclipart``), byte for byte, with
    ``SOURCE.json`` and ``copyright``. Returns the SVG paths written or verified."""
    root = Path(root or CLIPART_DIR)
    out = []
    for rel in selection(source, n):
        src, dst = Path(source) / SVG_DIR / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            _copy_atomic(src, dst)
        out.append(dst)
    copyright_file = Path(source) / DOC / "copyright"
    if copyright_file.is_file() and (not (root / "copyright").exists()
                                     or not filecmp.cmp(copyright_file, root / "copyright", shallow=False)):
        _copy_atomic(copyright_file, root / "copyright")
    record = json.dumps({"package": APT_PACKAGE, "version": package_version(source), "licence": LICENCE,
                         "files": f"/{SVG_DIR}/{{{','.join(CATEGORIES)}}}: {len(out)} evenly spaced"},
                        indent=2, sort_keys=True) + "\n"
    if not (root / SOURCE_FILE).is_file() or (root / SOURCE_FILE).read_text() != record:
        tmp = root / f".{SOURCE_FILE}.partial"
        tmp.write_text(record)
        os.replace(tmp, root / SOURCE_FILE)
    return out


def clipart_files(art_dir: str | os.PathLike | None) -> list[Path]:
    """The SVGs of a materialized ``art/openclipart`` (sorted; empty when absent)."""
    if art_dir is None:
        return []
    folder = Path(art_dir) / CLIPART_DIR.name
    return sorted(folder.rglob("*.svg")) if folder.is_dir() else []
