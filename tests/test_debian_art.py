"""The scratch copier on a fake unpacked tree: photos, scenes, sprites and cutouts to their folders."""

from __future__ import annotations

import numpy as np
import pytest

from deeperfour.data import debian_art as art


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
