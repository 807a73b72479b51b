"""The scratch copier on a fake unpacked tree: photos, scenes, sprites and cutouts to their folders;
its SOURCE.json (package, version, licence), the default target art/scratch, `deeperfour data art`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from deeperfour.cli import main
from deeperfour.core.config import DATA, ROOT
from deeperfour.data import debian_art as art
from deeperfour.data import style_datasets

SPRITES = ("Animals/cat1-a.gif", "People/baby.png", "Fantasy/dragon1.png")  # drawn: GIF/PNG with alpha


def fake_tree(root):
    """Every listed file (unique bytes), plus files the copier must skip or sort by itself."""
    files = [art.BACKGROUNDS / p for p in (*art.SCENE_BACKGROUNDS, *art.PHOTO_BACKGROUNDS,
                                           *art.EXCLUDED_BACKGROUNDS)]
    files += [art.COSTUMES / p for p in (*art.CUTOUT_COSTUMES, "Animals/cat1-a.gif", "People/baby.png",
                                         "Letters/Pixel/a.gif", "Animals/Gravity Cat.sprite",
                                         "Animals/scratchthumbs.db")]
    for i, rel in enumerate(files):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(f"{rel}:{i}".encode())
    return root


def _write_image(path: Path, kind: str, seed: int) -> None:
    """A tiny real image: a flat color with a black outline (scenes, sprites; the right half transparent
    for sprites and cutouts, through PNG alpha or GIF transparency) or seeded noise (photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = {"scene": (48, 64), "photo": (40, 56)}.get(kind, (16, 16))
    if kind == "photo":
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        rgb = np.full((h, w, 3), rng.integers(40, 220, 3), np.uint8)
        rgb[h // 4 : 3 * h // 4, w // 4 : w // 2] = 0  # an ink outline / dark shape
    alpha = kind in ("sprite", "cutout")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        # palette: 0 = green (transparent in sprites: must come out white, never green), 1 = color, 2 = black
        idx = np.where((rgb == 0).all(axis=2), 2, 1).astype(np.uint8)
        if alpha:
            idx[:, w // 2 :] = 0
        im = Image.frombytes("P", (w, h), idx.tobytes())
        im.putpalette([0, 255, 0, *rgb[0, 0].tolist(), 0, 0, 0] + [0] * (253 * 3))
        im.save(path, **({"transparency": 0} if alpha else {}))
    elif alpha:
        a = np.full((h, w, 1), 255, np.uint8)
        a[:, w // 2 :] = 0
        rgba = np.concatenate([rgb, a], axis=2)
        rgba[:, w // 2 :, :3] = (0, 255, 0)  # green under the transparent half
        Image.fromarray(rgba).save(path)
    else:
        Image.fromarray(rgb).save(path)


def fake_image_tree(root: Path, version: str | None = "1.4.0.6~dfsg1-6.1") -> Path:
    """An unpacked scratch package with tiny REAL images: every listed background and cutout, the
    excluded ones, the ``SPRITES`` and a Letters glyph; its changelog (``version``) and copyright."""
    media = [(art.BACKGROUNDS / p, "scene") for p in (*art.SCENE_BACKGROUNDS, *art.EXCLUDED_BACKGROUNDS)]
    media += [(art.BACKGROUNDS / p, "photo") for p in art.PHOTO_BACKGROUNDS]
    media += [(art.COSTUMES / p, "cutout") for p in art.CUTOUT_COSTUMES]
    media += [(art.COSTUMES / p, "sprite") for p in (*SPRITES, "Letters/Pixel/a.gif")]
    for i, (rel, kind) in enumerate(media):
        _write_image(root / rel, kind, seed=i)
    doc = root / art.DOC
    doc.mkdir(parents=True, exist_ok=True)
    (doc / "copyright").write_text("Files: Help/* Media/* Projects\nLicense: CC-BY-SA-3.0\n")
    if version:
        with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
            f.write(f"scratch ({version}) unstable; urgency=medium\n\n  * Non-maintainer upload.\n")
    return root


def test_copies_each_kind_byte_for_byte(tmp_path):
    src = fake_tree(tmp_path / "unpacked")
    out = art.materialize_scratch(tmp_path / "scratch", source=src)
    assert {k: len(v) for k, v in out.items()} == {
        "photos": len(art.PHOTO_BACKGROUNDS), "scenes": len(art.SCENE_BACKGROUNDS),
        "sprites": 2, "cutouts": len(art.CUTOUT_COSTUMES)}
    assert sorted(p.name for p in out["sprites"]) == ["baby.png", "cat1-a.gif"]
    original = (src / art.BACKGROUNDS / "Indoors/room1.jpg").read_bytes()
    assert (tmp_path / "scratch/scenes/room1.jpg").read_bytes() == original
    assert (tmp_path / "scratch/photos/lake.jpg").is_file()
    assert (tmp_path / "scratch/cutouts/People/dan1.gif").is_file()
    names = {p.name for ps in out.values() for p in ps}
    assert not names & {"stars.gif", "xy-grid.gif", "graffiti.jpg", "a.gif", "Gravity Cat.sprite"}
    listed = art.scratch_sets(tmp_path / "scratch")
    assert {k: len(v) for k, v in listed.items()} == {k: len(v) for k, v in out.items()}
    again = art.materialize_scratch(tmp_path / "scratch", source=src)  # idempotent
    assert again == out


def test_lists_are_disjoint_and_complete():
    scenes, photos = set(art.SCENE_BACKGROUNDS), set(art.PHOTO_BACKGROUNDS)
    excluded = set(art.EXCLUDED_BACKGROUNDS)
    assert len(scenes) == 18 and len(photos) == 51 and len(excluded) == 5
    assert not scenes & photos and not (scenes | photos) & excluded
    assert len(set(art.CUTOUT_COSTUMES)) == len(art.CUTOUT_COSTUMES) == 94


def test_missing_package_names_apt(tmp_path):
    with pytest.raises(FileNotFoundError, match="Debian package 'scratch'.*apt-get download scratch"):
        art.materialize_scratch(tmp_path / "out", source=tmp_path)
    assert not (tmp_path / "out").exists()


def test_load_art_composites_transparency(tmp_path):
    from PIL import Image

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (200, 10, 10, 255)  # opaque red left half, transparent right half
    Image.fromarray(rgba).save(tmp_path / "s.png")
    img = art.load_art(tmp_path / "s.png")
    assert img.shape == (4, 6, 3) and img.dtype == np.uint8
    assert (img[:, :3] == (200, 10, 10)).all() and (img[:, 3:] == 255).all()


def test_target_is_art_scratch_outside_data():
    """art/ has its own art.dvc: nothing of scratch may land in data/ (data.dvc, the colorizer's stages)."""
    assert art.ART_DIR == ROOT / "art" and art.SCRATCH_DIR == ROOT / "art" / "scratch"
    assert DATA not in art.SCRATCH_DIR.parents


def test_source_record_names_package_version_and_licence(tmp_path):
    src = fake_image_tree(tmp_path / "unpacked", version="9.9~test-1")
    art.materialize_scratch(tmp_path / "scratch", source=src)
    record = json.loads((tmp_path / "scratch" / art.SOURCE_FILE).read_text())
    assert record["package"] == "scratch" and record["version"] == "9.9~test-1"
    assert record["licence"] == "CC-BY-SA-3.0"
    assert "Massachusetts Institute of Technology" in record["copyright"]
    assert (tmp_path / "scratch" / "copyright").read_text().startswith("Files: Help/* Media/*")
    no_changelog = fake_image_tree(tmp_path / "bare", version=None)
    assert art.package_version(no_changelog) == art.APT_VERSION


def test_cli_data_art(tmp_path, capsys):
    src = fake_image_tree(tmp_path / "unpacked")
    out = tmp_path / "art" / "scratch"
    assert main(["data", "art", "--root", str(out), "--source", str(src)]) == 0
    printed = capsys.readouterr().out
    assert f"51 photos, 18 scenes, {len(SPRITES)} sprites, 94 cutouts" in printed
    assert "CC-BY-SA-3.0" in printed and "1.4.0.6~dfsg1-6.1" in printed
    assert sorted(p.name for p in (out / "sprites").rglob("*")
                  if p.is_file()) == sorted(Path(p).name for p in SPRITES)


def test_cli_data_art_without_the_package_one_line_error(tmp_path, capsys):
    """What is missing, where it was looked for, and how to get it; nothing written."""
    empty = tmp_path / "not-unpacked"
    empty.mkdir()
    assert main(["data", "art", "--root", str(tmp_path / "out"), "--source", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deeperfour: error: ")
    assert "scratch media files are missing" in err and str(empty) in err
    assert "Debian package 'scratch'" in err and "make data" in err and "deeperfour data art --source" in err
    assert not (tmp_path / "out").exists()


def test_small_sprites_are_pasted_on_a_white_canvas_not_upscaled(tmp_path):
    _write_image(tmp_path / "a.png", "sprite", seed=3)
    img = art.load_art(tmp_path / "a.png")
    side = 2 * max(img.shape[:2]) + 1
    out = style_datasets._sprite_or_scene(tmp_path / "a.png", side)
    assert out.shape == (side, side, 3) and (out[0] == 255).all() and (out[:, 0] == 255).all()
    y, x = (side - img.shape[0]) // 2, (side - img.shape[1]) // 2
    np.testing.assert_array_equal(out[y : y + img.shape[0], x : x + img.shape[1]], img)  # pixels unchanged
    np.testing.assert_array_equal(style_datasets._sprite_or_scene(tmp_path / "a.png", 4), img)  # big: as is
