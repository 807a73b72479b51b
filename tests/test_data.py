"""`deeperfour data samples`: byte-identical copies from the wheels, roles, errors."""

import filecmp

import numpy as np
import pytest

from deeperfour.data import samples
from deeperfour.data.samples import SAMPLES, load_image, materialize_samples, package_file, training_stills
from deeperfour.film.resize import shrink


def test_samples_are_byte_identical(tmp_path):
    paths = materialize_samples(tmp_path / "samples")
    assert len(paths) == len(SAMPLES)
    for s, p in zip(SAMPLES, paths, strict=True):
        assert p == tmp_path / "samples" / s.kind / s.name
        assert filecmp.cmp(p, package_file(s.module, s.inside), shallow=False)
    # idempotent: a second run verifies and keeps them
    assert materialize_samples(tmp_path / "samples") == paths


def test_changed_sample_is_refused_then_restored(tmp_path):
    root = tmp_path / "samples"
    paths = materialize_samples(root)
    paths[0].write_bytes(b"edited")
    with pytest.raises(FileExistsError, match="differs"):
        materialize_samples(root)
    materialize_samples(root, force=True)
    s = SAMPLES[0]
    assert filecmp.cmp(paths[0], package_file(s.module, s.inside), shallow=False)


def test_training_stills_and_images(tmp_path):
    materialize_samples(tmp_path / "samples")
    stills = training_stills(tmp_path)
    assert len(stills) == sum(s.kind == "stills" for s in SAMPLES)
    img = load_image(stills[0], max_side=100)
    assert img.ndim == 3 and img.shape[2] == 3 and max(img.shape[:2]) == 100
    with pytest.raises(ValueError, match="not a readable image"):
        bad = tmp_path / "bad.png"
        bad.write_text("nope")
        load_image(bad)


def test_no_demo_film_in_training_stills(tmp_path):
    materialize_samples(tmp_path / "samples")
    assert all("bikes" not in p.name for p in training_stills(tmp_path))


def test_shrink_keeps_aspect_and_small_images():
    img = np.zeros((300, 1000, 3), np.uint8)
    assert shrink(img, 500).shape == (150, 500, 3)
    assert shrink(img, 2000) is img and shrink(img, 0) is img
    assert shrink(np.zeros((1, 1000), np.uint8), 10).shape == (1, 10)  # never a zero side


def test_photos_are_copied_byte_for_byte_from_unpacked_packages(tmp_path, monkeypatch):
    root = tmp_path / "unpacked"  # as `dpkg-deb -x` leaves the packages
    rels = ("usr/share/wallpapers/Path/contents/images/1280x1024.jpg",
            "usr/share/backgrounds/mate/nature/Aqua.jpg",
            "usr/share/doc/opencv-doc/examples/data/leuvenA.jpg")
    for seed, rel in enumerate(rels):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(np.random.default_rng(seed).bytes(100))
    monkeypatch.setattr(samples, "PHOTO_FILES", rels)
    out = samples.materialize_photos(tmp_path / "data" / "extended", source=root)
    assert [p.name for p in out] == ["Path.jpg", "Aqua.jpg", "opencv_leuvenA.jpg"]
    assert all(filecmp.cmp(root / r, p, shallow=False) for r, p in zip(rels, out, strict=True))
    assert training_stills(tmp_path / "data") == sorted(out)  # extended/photos join the training stills


def test_missing_photos_say_which_packages_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(samples, "PHOTO_FILES", ("usr/share/nowhere.jpg",))
    with pytest.raises(FileNotFoundError, match="apt-get install lomiri-wallpapers-16.04 .* opencv-doc"):
        samples.materialize_photos(tmp_path / "extended", source=tmp_path)
    assert not (tmp_path / "extended" / "photos").exists()
