"""Film cartoonization (streaming, lossless, fps/count/audio kept) and styles by name."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from deeperfour.film.video import probe, read_frames
from deeperfour.infer.cartoonize import (
    FrameCartoonizer,
    available_styles,
    cartoonize_film,
    cartoonize_images,
    load_style,
    style_picker,
)
from deeperfour.models.cartoongan import (
    REFERENCE_LOAD_SIZE,
    CartoonGANConfig,
    CartoonGenerator,
    ReleasedCartoonGAN,
)

from .conftest import make_clip

TINY = CartoonGANConfig(variant="light", base_channels=4, n_res_blocks=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames at 30000/1001 fps, 64x48, half a second of AAC audio."""
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", n=12, cut_at=(6,), audio_seconds=0.5)


@pytest.fixture(scope="module")
def tiny_generator() -> CartoonGenerator:
    torch.manual_seed(0)
    return CartoonGenerator(TINY).eval()


def test_film_keeps_fps_count_size_audio_and_matches_per_frame(clip, tmp_path, tiny_generator):
    dst = tmp_path / "cartoon.mkv"
    out = cartoonize_film(tiny_generator, clip, dst, batch=3, max_side=0, progress=False, precision="fp32")
    src, got = probe(clip), probe(dst)
    assert got.fps == src.fps == Fraction(30000, 1001) and got.n_frames == src.n_frames == out["n_frames"]
    assert (got.width, got.height) == (src.width, src.height) and got.has_audio
    assert not list(tmp_path.glob("*partial*"))
    # The film (channels-last batches of 3) and the photo path (NCHW batches of 8) are two float
    # computations of the same generator: promised within 1 level, not bit-exact (oneDNN picks kernels by
    # layout and batch). FFV1 itself is lossless, so the file holds exactly what the generator gave.
    frames = np.stack(list(read_frames(clip)))
    want = cartoonize_images(tiny_generator, frames, "cpu", precision="fp32").astype(int)
    assert np.abs(np.stack(list(read_frames(dst))).astype(int) - want).max() <= 1


def test_frame_cartoonizer_streams_in_order_at_the_generators_load_size(clip, tiny_generator):
    """Batches of 3 over 12 frames give the frames of one-at-a-time calls, in order; a generator with a
    ``load_size`` (a released style: 450) runs with the longer side at it and is resized back."""
    frames = list(read_frames(clip))  # (48, 64, 3) each
    pairs = [(f, f[..., 0]) for f in frames]
    one = list(FrameCartoonizer(tiny_generator, precision="fp32").stream(pairs))
    batched = list(FrameCartoonizer(tiny_generator, precision="fp32", batch=3).stream(pairs))
    assert len(batched) == len(frames)
    assert all(b.shape == (48, 64, 3) and b.dtype == np.uint8 for b in batched)
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(one, batched, strict=True)) <= 1
    tiny_generator.load_size = 32
    try:
        small = list(FrameCartoonizer(tiny_generator, precision="fp32").stream(pairs[:2]))
    finally:
        del tiny_generator.load_size
    assert [s.shape for s in small] == [(48, 64, 3)] * 2 and not np.array_equal(small[0], one[0])


def test_film_at_reduced_size_is_resized_back(clip, tmp_path, tiny_generator):
    out = cartoonize_film(tiny_generator, clip, tmp_path / "small.mkv", batch=8, max_side=32, progress=False)
    assert out["run_size"] == [32, 24]
    info = probe(tmp_path / "small.mkv")
    assert (info.width, info.height) == (64, 48) and info.n_frames == 12


def test_film_errors_leave_no_file(clip, tmp_path):
    with pytest.raises(ValueError, match="lossless"):
        cartoonize_film(torch.nn.Identity(), clip, tmp_path / "x.mp4", progress=False)

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        cartoonize_film(Broken(), clip, tmp_path / "x.mkv", progress=False)
    assert not list(tmp_path.iterdir())


def test_load_style_trained_released_and_unknown(tmp_path, tiny_generator):
    trained, models = tmp_path / "train_cartoongan", tmp_path / "models"
    tiny_generator.save(trained / "bunny" / "generator.pt")
    g = load_style("bunny", trained, models)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(g(x), tiny_generator(x))
    assert g.load_size is None and not g.training

    models.mkdir()
    paper = CartoonGenerator(CartoonGANConfig(variant="paper"))
    torch.save(paper.state_dict(), models / "Hayao_net_G_float.pth")  # the released key layout
    r = load_style("hayao", trained, models)
    assert isinstance(r, ReleasedCartoonGAN) and r.style == "Hayao" and r.load_size == REFERENCE_LOAD_SIZE
    torch.testing.assert_close(r(x), paper(x.flip(1)).flip(1))  # RGB outside, BGR inside
    assert list(available_styles(trained, models)) == ["bunny", "Hayao"]

    with pytest.raises(FileNotFoundError, match="Shinkai_net_G_float.pth"):
        load_style("Shinkai", trained, models)
    with pytest.raises(KeyError, match=r"unknown cartoon style 'nope'; available: bunny, Hayao.*Hosoda_net"):
        load_style("nope", trained, models)


def test_style_picker_builds_a_dropdown_of_styles(tmp_path, tiny_generator):
    pytest.importorskip("ipywidgets")
    tiny_generator.save(tmp_path / "a" / "generator.pt")
    tiny_generator.save(tmp_path / "b" / "generator.pt")
    photos = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    box = style_picker(photos, tmp_path, tmp_path / "models")
    dropdown, _ = box.children
    assert dropdown.options == ("a", "b") and dropdown.value == "a"
    dropdown.value = "b"  # re-renders without error
    with pytest.raises(FileNotFoundError, match="no cartoon style"):
        style_picker(photos, tmp_path / "none", tmp_path / "models")


def test_the_stages_default_style_comes_first(tmp_path, tiny_generator):
    """convert's default style is the first of available_styles: the one stage train_cartoongan names."""
    import json

    from deeperfour.infer.cartoonize import DEFAULT_STYLE_FILE

    trained = tmp_path / "train_cartoongan"
    for style in ("bunny", "scratch", "zebra"):
        tiny_generator.save(trained / style / "generator.pt")
    (trained / "paper" / "scratch").mkdir(parents=True)  # the paper-recipe baseline: not a style
    tiny_generator.save(trained / "paper" / "scratch" / "generator.pt")
    assert list(available_styles(trained, tmp_path / "models")) == ["bunny", "scratch", "zebra"]
    (trained / DEFAULT_STYLE_FILE).write_text(json.dumps({"style": "scratch"}))
    assert list(available_styles(trained, tmp_path / "models")) == ["scratch", "bunny", "zebra"]


def test_convert_default_style_is_the_stages_measured_choice(tmp_path, tiny_generator):
    """default_style.json's ``convert`` names convert's default cartoon, which may be the classical
    abstraction (no weight file); --style still wins; no choice recorded: the first trained style."""
    import json

    from deeperfour.convert.models import ABSTRACTION, _pick_style
    from deeperfour.infer.cartoonize import DEFAULT_STYLE_FILE, convert_default_style

    trained, models = tmp_path / "train_cartoongan", tmp_path / "models"
    tiny_generator.save(trained / "bunny" / "generator.pt")
    assert convert_default_style(trained) is None
    assert _pick_style(None, trained, models)[0] == "bunny"
    (trained / DEFAULT_STYLE_FILE).write_text(json.dumps({"style": "bunny", "convert": ABSTRACTION}))
    assert convert_default_style(trained) == ABSTRACTION
    assert _pick_style(None, trained, models) == (ABSTRACTION, "")
    assert _pick_style("bunny", trained, models) == ("bunny", str(trained / "bunny" / "generator.pt"))


def test_abstraction_prior_is_streamed_through_each_shot_on_film(clip, tmp_path):
    """A generator with the abstraction prior gets, on film, the abstraction streamed through each shot
    (levels fixed per shot, flow-guided ink, restarted at the cut): the film, the streaming cartoonizer
    and ``cartoonize_frames`` all feed it the same inputs. Its first frame of each shot is the still's
    cartoon; a later frame is not the per-frame abstraction's cartoon (the stream has memory)."""
    from dataclasses import replace

    from deeperfour.infer.abstraction import AbstractionCartoonizer
    from deeperfour.infer.cartoonize import prior_frames
    from deeperfour.train.clips import cartoonize_frames

    torch.manual_seed(0)
    g = CartoonGenerator(replace(TINY, prior="abstraction")).eval()
    with torch.no_grad():  # a non-zero correction, as after training
        g.deconv03_1.weight.normal_(0, 0.01)
    frames = np.stack(list(read_frames(clip)))  # (12, 48, 64, 3), a cut at 6
    starts = [0, 6]
    stream, want = AbstractionCartoonizer(), []
    for i, f in enumerate(frames):
        if i in starts:
            stream.reset()
        want.append(stream.step(f, f))
    np.testing.assert_array_equal(prior_frames(g, frames, starts), np.stack(want))
    per_frame = cartoonize_frames(g, list(frames), precision="fp32", shot_starts=starts)
    film = tmp_path / "prior.mkv"
    cartoonize_film(g, clip, film, batch=3, max_side=0, progress=False, precision="fp32", shot_starts=starts)
    assert np.abs(np.stack(list(read_frames(film))).astype(int) - per_frame).max() <= 1
    fc = FrameCartoonizer(g, precision="fp32", batch=3)
    streamed = []
    for s, e in ((0, 6), (6, 12)):
        fc.reset()
        streamed += list(fc.stream((f, f) for f in frames[s:e]))
    assert np.abs(np.stack(streamed).astype(int) - per_frame).max() <= 1
    stills = cartoonize_images(g, frames, "cpu", "fp32").astype(int)
    assert all(np.abs(per_frame[i] - stills[i]).max() <= 1 for i in starts)
