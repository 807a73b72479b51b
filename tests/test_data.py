"""`deeperfour data samples`: byte-identical copies from the wheels, roles, errors."""

import filecmp

import pytest

from deeperfour.data import SAMPLES, load_image, materialize_samples, package_file, training_stills


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
