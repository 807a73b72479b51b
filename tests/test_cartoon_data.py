"""Style datasets and photo domain: layout, determinism, held-out split, user folders, clipart, the
Debian scratch art (style ``scratch``, photos), errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from deeperfour.data import debian_art
from deeperfour.data import style_datasets as cartoon_data
from deeperfour.data.edges import edge_mask
from deeperfour.data.style_datasets import (
    DatasetConfig,
    build_datasets,
    load_photos,
    load_style,
    photo_sources,
)

from .conftest import make_clip
from .test_debian_art import SPRITES, fake_image_tree
from helpers import texture

TINY = DatasetConfig(crop=32, max_side=96, style_frame_stride=8, style_crops_per_image=1,
                     photo_frame_stride=8, photo_crops_per_image=2, photo_crops_per_frame=1, holdout=0.25)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A tiny data/ tree: a cartoon 'bunny' clip, 4 stills, a real validation clip, a user style."""
    root = tmp_path_factory.mktemp("data")
    video = root / "samples" / "video"
    video.mkdir(parents=True)
    make_clip(video / "bigbuckbunny.mp4", n=16, size=(96, 64), cut_at=(), seed=1)
    make_clip(video / "carphone_pristine.mp4", n=16, size=(64, 48), cut_at=(), audio_seconds=None, seed=2)
    make_clip(video / "bikes.mp4", n=8, size=(64, 48), cut_at=(), audio_seconds=None, seed=3)  # demo film
    stills = root / "samples" / "stills"
    stills.mkdir()
    for k in range(4):
        cv2.imwrite(str(stills / f"photo{k}.png"), texture(80, 120, seed=10 + k))
    user = root / "cartoons" / "mystyle"
    user.mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(user / f"frame{k}.png"), texture(64, 64, seed=20 + k, sigma=6))
    make_clip(user / "clip.mp4", n=8, size=(64, 48), cut_at=(), audio_seconds=None, seed=4)
    return root


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build") / "prepare_datasets"
    return out, build_datasets(data_dir, out, TINY, progress=False)


def test_layout_counts_and_manifest(built):
    out, manifest = built
    assert set(manifest["styles"]) == {"bunny", "mystyle"}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    bunny = manifest["styles"]["bunny"]
    assert bunny["n_images"] == 2 and bunny["n_crops"] == 2  # frames 0 and 8 of 16, one crop each
    assert bunny["sources"] == ["samples/video/bigbuckbunny.mp4"]
    mystyle = manifest["styles"]["mystyle"]
    assert mystyle["n_files"] == 3 and mystyle["n_images"] == 2 + 1  # two images + frame 0 of the clip
    crops, smooth = load_style(out, "bunny")
    assert crops.shape == smooth.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    assert not (out.parent / "prepare_datasets.partial").exists()


def test_smooth_crops_differ_only_under_the_dilated_edges(built):
    out, _ = built
    crops, smooth = load_style(out, "mystyle")
    for c, s in zip(crops, smooth, strict=True):
        changed = (c != s).any(axis=2)
        assert not changed[~edge_mask(c)].any()


def test_photo_domain_excludes_cartoons_and_demo_film_and_holds_out(built, data_dir):
    out, manifest = built
    stills, clips = photo_sources(data_dir)
    assert [c.name for c in clips] == ["carphone_pristine.mp4"]  # not bunny (a style), not bikes
    assert len(stills) == 4
    test_sources = manifest["photo"]["test"]["sources"]
    assert sum(s.startswith("samples/stills/") for s in test_sources) == 1  # 25 % of 4 stills
    assert "samples/video/carphone_pristine.mp4@8" in test_sources  # the last of frames 0, 8
    assert manifest["photo"]["train"]["n_crops"] == 3 * 2 + 1
    assert manifest["photo"]["test"]["n_crops"] == 1 * 2 + 1
    assert load_photos(out, "test").shape == (3, 32, 32, 3)
    train_sources = set(manifest["photo"]["train"]["sources"])
    assert not train_sources & set(test_sources)


def test_deterministic_from_seed(built, data_dir, tmp_path):
    out, manifest = built
    again = build_datasets(data_dir, tmp_path / "again", TINY, styles=["bunny"], progress=False)
    assert again["styles"]["bunny"] == manifest["styles"]["bunny"]
    np.testing.assert_array_equal(load_style(out, "bunny")[0], load_style(tmp_path / "again", "bunny")[0])
    other = build_datasets(data_dir, tmp_path / "other", DatasetConfig(**{**TINY.__dict__, "seed": 1}),
                           styles=["bunny"], progress=False)
    assert other["styles"]["bunny"]["n_crops"] == 2
    assert not np.array_equal(load_style(out, "bunny")[0], load_style(tmp_path / "other", "bunny")[0])


def test_unknown_style_and_missing_manifest(data_dir, tmp_path):
    with pytest.raises(KeyError, match="unknown style.*data/cartoons"):
        build_datasets(data_dir, tmp_path / "x", TINY, styles=["nope"], progress=False)
    with pytest.raises(FileNotFoundError, match="dvc repro prepare_datasets"):
        load_photos(tmp_path / "x")


def test_failed_build_leaves_nothing(data_dir, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cartoon_data, "_build_photos", boom)
    with pytest.raises(RuntimeError):
        build_datasets(data_dir, tmp_path / "ds", TINY, styles=["bunny"], progress=False)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()


def test_clipart_skipped_without_cairosvg_and_rendered_with_it(data_dir, tmp_path, monkeypatch):
    clip = tmp_path / "art" / "openclipart" / "animals"
    clip.mkdir(parents=True)
    (clip / "a.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    art_dir = tmp_path / "art"
    monkeypatch.setattr(cartoon_data, "clipart_available", lambda: False)
    m = build_datasets(data_dir, tmp_path / "no", TINY, styles=["bunny"], progress=False, art_dir=art_dir)
    assert "clipart" not in m["styles"]
    m = build_datasets(data_dir, tmp_path / "no", TINY, progress=False, art_dir=art_dir)
    assert "cairosvg" in m["notes"]["clipart"] and "clipart" not in m["styles"]

    # a stand-in cairosvg: an RGBA PNG, half transparent -> composited over white
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[:, :24] = (0, 0, 255, 255)  # BGRA: opaque red on the left
    png = cv2.imencode(".png", rgba)[1].tobytes()
    fake = types.SimpleNamespace(svg2png=lambda url, output_width: png)
    monkeypatch.setitem(sys.modules, "cairosvg", fake)
    monkeypatch.setattr(cartoon_data, "clipart_available", lambda: True)
    m = build_datasets(data_dir, tmp_path / "yes", TINY, styles=["clipart"], progress=False, art_dir=art_dir)
    assert m["styles"]["clipart"]["n_crops"] == 1
    assert m["art"]["clipart"]["counts"] == {"svgs": 1, "rendered": 1}
    img = cartoon_data._render_svg(clip / "a.svg", 48)
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[0, -1]) == (255, 255, 255)


def test_clipart_leaves_the_other_styles_and_the_photos_as_they_were(data_dir, built, tmp_path, monkeypatch):
    """The clipart crops draw from their own generator: adding the style changes no other crop."""
    clip = tmp_path / "art" / "openclipart" / "food"
    clip.mkdir(parents=True)
    (clip / "b.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    png = cv2.imencode(".png", texture(96, 96, seed=5))[1].tobytes()
    monkeypatch.setitem(sys.modules, "cairosvg", types.SimpleNamespace(svg2png=lambda url, output_width: png))
    monkeypatch.setattr(cartoon_data, "clipart_available", lambda: True)
    out, manifest = built
    m = build_datasets(data_dir, tmp_path / "with", TINY, progress=False, art_dir=tmp_path / "art")
    assert "clipart" in m["styles"]
    for style in manifest["styles"]:
        a, b = load_style(out, style), load_style(tmp_path / "with", style)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for split in ("train", "test"):
        assert np.array_equal(load_photos(out, split), load_photos(tmp_path / "with", split))


# ----------------------------------------------------------------------------------------------
# Debian scratch art (art/scratch): the style `scratch` and more photos


@pytest.fixture(scope="module")
def art_dir(tmp_path_factory) -> Path:
    """``<tmp>/art/scratch`` materialized from a fake unpacked scratch package of tiny real images."""
    root = tmp_path_factory.mktemp("artroot")
    src = fake_image_tree(root / "unpacked")
    debian_art.materialize_scratch(root / "art" / "scratch", source=src)
    return root / "art"


@pytest.fixture(scope="module")
def built_art(data_dir, art_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("build_art") / "prepare_datasets"
    return out, build_datasets(data_dir, out, TINY, progress=False, art_dir=art_dir)


def test_scratch_style_scenes_and_sprites_with_aligned_smooth_crops(built_art):
    out, manifest = built_art
    assert list(manifest["styles"]) == ["bunny", "mystyle", "scratch"]  # scratch last
    scratch = manifest["styles"]["scratch"]
    n = 18 + len(SPRITES)
    assert scratch["n_files"] == scratch["n_images"] == scratch["n_crops"] == n  # 1 crop per image
    assert scratch["sources"][:2] == ["art/scratch/scenes/basketball-court2.png",
                                      "art/scratch/scenes/bedroom1.gif"]
    assert scratch["sources"][18:] == [f"art/scratch/sprites/{p}" for p in sorted(SPRITES)]
    crops, smooth = load_style(out, "scratch")
    assert crops.shape == smooth.shape == (n, 32, 32, 3)
    for c, e in zip(crops, smooth, strict=True):  # e_j is c_i smoothed under its edges, nothing else
        assert not (c != e).any(axis=2)[~edge_mask(c)].any()
    assert (crops != smooth).any()
    # sprites (16 px, upscaled to the crop) composited over white: their transparent right half is white
    assert (crops[18:, :, -4:] == 255).all()
    sprites = crops[18:].astype(int)
    assert not ((sprites[..., 0] < 60) & (sprites[..., 1] > 200) & (sprites[..., 2] < 60)).any()  # no green


def test_scratch_photos_join_the_photo_domain(built_art, data_dir, art_dir):
    out, manifest = built_art
    stills, clips = photo_sources(data_dir, art_dir)
    scratch_photos = sorted((art_dir / "scratch" / "photos").glob("*"))
    assert len(scratch_photos) == 51 and stills[4:] == scratch_photos  # data stills first, then scratch
    assert [c.name for c in clips] == ["carphone_pristine.mp4"]
    train, test = (manifest["photo"][k]["sources"] for k in ("train", "test"))
    from_art = [s for s in train + test if s.startswith("art/scratch/photos/")]
    assert len(from_art) == len(set(from_art)) == 51
    assert any(s.startswith("art/scratch/photos/") for s in test)  # held out like any still
    n_test = round(0.25 * 55)  # one seeded permutation over 4 + 51 stills
    assert sum(not s.endswith(".mp4@8") for s in test) == n_test
    assert manifest["photo"]["test"]["n_crops"] == n_test * 2 + 1
    assert manifest["photo"]["train"]["n_crops"] == (55 - n_test) * 2 + 1
    assert not set(train) & set(test)
    assert load_photos(out, "test").shape == (n_test * 2 + 1, 32, 32, 3)
    everything = json.dumps(manifest["styles"]) + json.dumps(manifest["photo"])
    assert "cutouts" not in everything  # the cut-out photographs serve the probe only


def test_scratch_manifest_records_source_and_licence(built_art):
    _, manifest = built_art
    record = manifest["art"]["scratch"]
    assert record["package"] == "scratch" and record["version"] == "1.4.0.6~dfsg1-6.1"
    assert record["licence"] == "CC-BY-SA-3.0" and "Massachusetts" in record["copyright"]
    assert record["dir"] == "art/scratch"
    assert record["counts"] == {"scenes": 18, "sprites": len(SPRITES), "photos": 51}
    assert "scratch" not in manifest["notes"]


def test_bunny_and_user_styles_unchanged_by_the_art(built, built_art):
    (out, manifest), (out_art, manifest_art) = built, built_art
    assert "art" not in manifest or manifest["art"] == {}
    for style in ("bunny", "mystyle"):
        assert manifest_art["styles"][style] == manifest["styles"][style]
        for a, b in zip(load_style(out, style), load_style(out_art, style), strict=True):
            np.testing.assert_array_equal(a, b)


def test_art_dir_without_scratch_is_a_note(data_dir, tmp_path):
    m = build_datasets(data_dir, tmp_path / "ds", TINY, styles=["bunny", "scratch"], progress=False,
                       art_dir=tmp_path / "art")
    assert "scratch" not in m["styles"] and m["art"] == {}
    assert "make data" in m["notes"]["scratch"] and str(tmp_path / "art" / "scratch") in m["notes"]["scratch"]
    with pytest.raises(KeyError, match="unknown style.*needs art_dir"):
        build_datasets(data_dir, tmp_path / "ds", TINY, styles=["scratch"], progress=False)
