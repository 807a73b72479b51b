"""Cartoonize a film with any style by name (paper §2 step 4, "animating colored frames using a GAN").

* :func:`load_style` returns a generator behind the project interface (RGB in [-1, 1] in and out) for a
  style trained by stage ``train_cartoongan`` (``build/train_cartoongan/<style>/generator.pt``) or for
  a released CartoonGAN style (``Hayao``, ``Hosoda``, ``Paprika``, ``Shinkai``) whose
  ``models/<Style>_net_G_float.pth`` the user dropped in. Released nets get their own pre- and
  post-processing automatically: BGR channel order (inside ``ReleasedCartoonGAN``) and the reference
  input size, longer side 450 px (``load_size``, used by :func:`cartoonize_film` when
  ``max_side=None``), with the output resized back to the frame size.
* :func:`cartoonize_film` streams a film through a generator, a batch of frames at a time, into a
  lossless FFV1 ``.mkv`` with the source's frame rate, frame count, size and audio.
* :func:`style_picker` is the notebook's live widget (ipywidgets): pick a style, see photos converted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deeperfour.core.config import resolve
from deeperfour.core.precision import autocast
from deeperfour.film.flow import estimate_flow, occlusion_mask, to_gray_u8, warp_torch
from deeperfour.film.resize import fit_longer_side, resize
from deeperfour.film.video import LOSSLESS_SUFFIX, VideoWriter, probe, read_frames
from deeperfour.infer.abstraction import AbstractionCartoonizer, abstract
from deeperfour.models.cartoongan import (
    GENERATOR_FILE,
    MIN_SIDE,
    REFERENCE_LOAD_SIZE,
    RELEASED_STYLES,
    CartoonGenerator,
    load_released_cartoongan,
    to_uint8,
    to_unit,
)
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator

RELEASED_SUFFIX = "_net_G_float.pth"


DEFAULT_STYLE_FILE = "default_style.json"  # {"style": name, "convert": name}: by stage train_cartoongan
#   style: the trained style the stage made its default (cartoon.mkv, temporal_loss); convert: the cartoon
#   `deeperfour convert` makes without --style, chosen from the cartoon-ness measurements (it may be the
#   classical "abstraction", which has no weight file)


def convert_default_style(trained_dir: str | os.PathLike = "build/train_cartoongan") -> str | None:
    """The style ``convert`` uses without ``--style``, as the stage ``train_cartoongan`` chose it from its
    measurements (``DEFAULT_STYLE_FILE``'s ``convert``); None where the stage wrote no choice."""
    path = resolve(trained_dir) / DEFAULT_STYLE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("convert")


def available_styles(trained_dir: str | os.PathLike = "build/train_cartoongan",
                     models_dir: str | os.PathLike = "models") -> dict[str, Path]:
    """Styles that can be loaded now: {name: weight file}, trained styles first (the stage's default
    style, named in ``DEFAULT_STYLE_FILE``, then the others sorted), then released."""
    trained_dir, models_dir = resolve(trained_dir), resolve(models_dir)
    found: dict[str, Path] = {}
    if trained_dir.is_dir():
        trained = sorted(p for p in trained_dir.iterdir() if (p / GENERATOR_FILE).is_file())
        default = trained_dir / DEFAULT_STYLE_FILE
        first = json.loads(default.read_text()).get("style") if default.is_file() else None
        for d in sorted(trained, key=lambda p: p.name != first):  # stable: the default, then sorted
            found[d.name] = d / GENERATOR_FILE
    for style in RELEASED_STYLES:
        path = models_dir / f"{style}{RELEASED_SUFFIX}"
        if path.is_file() and style not in found:
            found[style] = path
    return found


def load_style(name: str, trained_dir: str | os.PathLike = "build/train_cartoongan",
               models_dir: str | os.PathLike = "models",
               map_location: str | torch.device = "cpu") -> nn.Module:
    """A style's generator by name, in eval mode, RGB [-1, 1] in and out, (B, 3, H, W) -> same.

    Trained styles (``<trained_dir>/<name>/generator.pt``) win over released ones of the same name.
    Released names are matched case-insensitively (``shinkai`` -> ``Shinkai_net_G_float.pth``); their
    module carries ``load_size = 450`` (the reference preprocessing). Unknown names raise ``KeyError``
    listing every style available and the released files that could be added.
    """
    trained = resolve(trained_dir) / name / GENERATOR_FILE
    if trained.is_file():
        model = CartoonGenerator.from_checkpoint(trained, map_location).eval()
        model.load_size = None  # trained at the dataset's scale: run at the frame's own size
        model.style = name
        return model
    released = {s.lower(): s for s in RELEASED_STYLES}
    if name.lower() in released:
        style = released[name.lower()]
        path = resolve(models_dir) / f"{style}{RELEASED_SUFFIX}"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the released CartoonGAN style {style!r} is not installed; "
                                    f"put {path.name} (Yijunmaverick/CartoonGAN-Test-Pytorch-Torch) there")
        model = load_released_cartoongan(path, map_location)
        model.load_size = REFERENCE_LOAD_SIZE  # released test.py: longer side 450 px
        return model
    have = available_styles(trained_dir, models_dir)
    missing = [f"{s}{RELEASED_SUFFIX}" for s in RELEASED_STYLES if s not in have]
    hint = f"trained styles come from {resolve(trained_dir)}"
    if missing:
        hint += f"; released styles load from {resolve(models_dir)}: add {', '.join(missing)}"
    raise KeyError(f"unknown cartoon style {name!r}; available: {', '.join(have) or 'none'} ({hint})")


def has_prior(generator: nn.Module) -> bool:
    """Was ``generator`` trained on the abstraction prior (``CartoonGANConfig.prior``)? It then takes the
    classical abstraction of a frame, not the frame."""
    return getattr(getattr(generator, "cfg", None), "prior", "none") != "none"


def prior_inputs(generator: nn.Module, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """What ``generator`` takes for these unrelated RGB uint8 images (B, H, W, 3): the images, or, with the
    abstraction prior, each one's abstraction (``abstract``, default knobs, as in training)."""
    if not has_prior(generator):
        return images if isinstance(images, np.ndarray) else np.stack(images)
    return np.stack([abstract(np.ascontiguousarray(f)) for f in images])


def prior_stream(generator: nn.Module) -> AbstractionCartoonizer | None:
    """For film: the abstraction prior as a shot-coherent stream (``AbstractionCartoonizer``: luminance
    levels fixed per shot, ink blended along DIS flow; ``reset()`` at every shot start), so the generator's
    input does not flicker; None for a generator that takes the frames themselves."""
    return AbstractionCartoonizer() if has_prior(generator) else None


def prior_frames(generator: nn.Module, frames: np.ndarray | Sequence[np.ndarray],
                 shot_starts: Sequence[int] = (0,),
                 sources: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A clip's generator inputs (N, H, W, 3) uint8: the frames, or their streamed abstraction (reset at
    ``shot_starts``; flow on ``sources``, the B&W frames, else on the frames' own gray)."""
    stream = prior_stream(generator)
    if stream is None:
        return frames if isinstance(frames, np.ndarray) else np.stack(frames)
    starts = set(shot_starts) | {0}
    out = []
    for i, f in enumerate(frames):
        if i in starts:
            stream.reset()
        out.append(stream.step(f, f if sources is None else sources[i]))
    return np.stack(out)


@torch.inference_mode()
def cartoonize_batch(generator: nn.Module, frames: np.ndarray | Sequence[np.ndarray],
                     device: str | torch.device = "cpu", precision: str = "bf16") -> np.ndarray:
    """One generator call, the films' hot path: RGB uint8 frames (B, H, W, 3) -> cartoons (B, H, W, 3) uint8.

    ``frames`` are the generator's inputs: for a generator with the abstraction prior, the frames'
    abstraction (:func:`prior_stream` on film, :func:`prior_inputs` for unrelated images).

    The (B, 3, H, W) view of the NHWC frames is already channels-last, which a CartoonGAN generator keeps
    through every layer (a conv returns channels-last for a channels-last input, ``models/ops.py`` keeps
    the pads and norms so): the fast bf16 layout on CPUs. The output permutes back to NHWC without a copy.
    The generator's weights may keep any layout.
    """
    frames = np.ascontiguousarray(frames if isinstance(frames, np.ndarray) else np.stack(frames))  # (B,H,W,3)
    x = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W) NHWC
    with autocast(device, precision):
        return to_uint8(generator(x))  # (B, H, W, 3)


@torch.inference_mode()
def cartoonize_images(generator: nn.Module, images: np.ndarray, device: torch.device | str,
                      precision: str = "auto", batch: int = 8) -> np.ndarray:
    """A set of RGB uint8 images (N, H, W, 3) -> cartoons (N, H, W, 3) uint8, ``batch`` at a time.

    Unlike :func:`cartoonize_batch` (a channels-last view of the frames, the films' hot path), the
    input is a contiguous NCHW copy, as the generator saw it in training: held-out photos and training
    snapshots go through here.
    """
    out = []
    for i in range(0, len(images), batch):
        chunk = prior_inputs(generator, images[i : i + batch])  # (b, H, W, 3)
        x = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2).contiguous()
        x = to_unit(x.to(device))  # (b, 3, H, W) in [-1, 1]
        with autocast(device, precision):
            out.append(to_uint8(generator(x)))
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------------------
# streaming cartoonizers: (colorized frame, B&W source frame) in, cartoon out; reset at every shot start


class FrameCartoonizer:
    """The per-frame style generator as a streaming cartoonizer: cartoon_t = G(colorized_t).

    ``stream(pairs)`` takes (colorized (H, W, 3) uint8, source (H, W) uint8) pairs and yields cartoons
    (H, W, 3) uint8 in order, ``batch`` frames per generator call. Released styles run with the longer
    side at their ``load_size`` (450) and are resized back. A generator with the abstraction prior gets
    the frames' shot-coherent abstraction (:func:`prior_stream`), which ``reset()`` restarts at each shot;
    otherwise the cartoonizer is stateless.
    """

    name = "per_frame"

    def __init__(self, generator: nn.Module, device: torch.device | str = "cpu", precision: str = "auto",
                 batch: int = 1):
        self.generator, self.device, self.precision, self.batch = generator, device, precision, batch
        self.prior = prior_stream(generator)

    def reset(self) -> None:
        if self.prior is not None:
            self.prior.reset()

    def _run(self, frames: list[np.ndarray]) -> Iterator[np.ndarray]:
        hw = frames[0].shape[:2]
        run = fit_longer_side(*hw, getattr(self.generator, "load_size", None), MIN_SIDE)
        x = np.stack([resize(f, run) for f in frames])  # (b, h, w, 3)
        for y in cartoonize_batch(self.generator, x, self.device, self.precision):
            yield resize(y, hw)

    def stream(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        buf: list[np.ndarray] = []
        for frame, source in pairs:
            buf.append(frame if self.prior is None else self.prior.step(frame, source))
            if len(buf) == self.batch:
                yield from self._run(buf)
                buf = []
        if buf:
            yield from self._run(buf)


class TemporalCartoonizer:
    """Ruder et al.'s temporal-loss generator streamed through a shot (paper Sec. 5.2.1).

    ``step(colorized (H, W, 3) uint8, source (H, W) uint8 gray) -> cartoon (H, W, 3) uint8``, and
    ``stream(pairs)`` over a shot. The first frame after ``reset()`` has no past, so it is the per-frame
    generator's output (``model(x)``). Later frames: DIS flows on the SOURCE frames t -> t-1 (backward,
    for warping) and t-1 -> t (forward, for the check), c = ``occlusion_mask(back, fwd)``, the previous
    output (kept in float, before rounding) warped with the backward flow, and ``model(x, warped, c)``.
    It also has the stabilizer interface (``deeperfour.infer.stabilize``), so ``stabilize_film`` runs it.

    ``max_side``: run the generator (and the flow) with the longer side shrunk to this many px (area) and
    resize the cartoon back (bicubic); ``None`` = the model's ``load_size`` (450 for released styles) or
    full size; 0 = full size.
    """

    name = "temporal_loss"

    def __init__(self, model: TemporalCartoonGenerator, device: torch.device | str = "cpu",
                 precision: str = "auto", flow: str = "dis", preset: str = "medium",
                 max_side: int | None = None):
        # channels-last: the layout oneDNN's bf16 convs are fastest in on CPUs (see models/ops.py)
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.device, self.precision = torch.device(device), precision
        self.flow, self.preset = flow, preset
        self.max_side = model.load_size if max_side is None else max_side
        self.prior = prior_stream(model)  # the abstraction prior's shot-coherent stream, or None
        self.reset()

    def reset(self) -> None:
        """A shot starts: forget the previous output and source frame."""
        if self.prior is not None:
            self.prior.reset()
        self.prev_out: torch.Tensor | None = None  # (1, 3, h, w) float32 in [-1, 1], run size
        self.prev_src: np.ndarray | None = None  # (h, w) uint8 gray, run size

    def stream(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        for frame, source in pairs:
            yield self.step(frame, source)

    @torch.inference_mode()
    def step(self, frame: np.ndarray, source: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        h, w = frame.shape[:2]
        rh, rw = fit_longer_side(h, w, self.max_side, MIN_SIDE)
        src = to_gray_u8(source)  # (H, W) uint8
        if src.shape != (h, w):
            raise ValueError(f"source {src.shape} and frame {(h, w)} differ in size")
        if (rh, rw) != (h, w):
            frame = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA)
            src = cv2.resize(src, (rw, rh), interpolation=cv2.INTER_AREA)
        if self.prior is not None:
            frame = self.prior.step(frame, src)  # (h, w, 3): the frame's abstraction, coherent in the shot
        x = to_unit(torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)[None])
        if self.prev_out is None:
            with autocast(self.device, self.precision):
                y = self.model(x)  # (1, 3, h, w)
        else:
            back = estimate_flow(src, self.prev_src, self.flow, preset=self.preset)  # (h, w, 2) t -> t-1
            fwd = estimate_flow(self.prev_src, src, self.flow, preset=self.preset)  # (h, w, 2) t-1 -> t
            c = torch.from_numpy(occlusion_mask(back, fwd)).to(self.device)[None, None]  # (1, 1, h, w)
            flow_t = torch.from_numpy(back).to(self.device).permute(2, 0, 1)[None]  # (1, 2, h, w)
            warped = warp_torch(self.prev_out, flow_t)  # (1, 3, h, w), float32 outside autocast
            with autocast(self.device, self.precision):
                y = self.model(x, warped, c)  # (1, 3, h, w)
        self.prev_out, self.prev_src = y.float().clamp(-1.0, 1.0), src
        out = to_uint8(self.prev_out)[0]  # (h, w, 3)
        if (rh, rw) != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
        return out


def cartoonize_film(generator: nn.Module, src: str | os.PathLike, dst: str | os.PathLike,
                    device: str | torch.device = "cpu", batch: int = 4, max_side: int | None = None,
                    progress: bool = True, precision: str = "bf16",
                    shot_starts: Sequence[int] = (0,)) -> dict:
    """Cartoonize every frame of ``src`` into the lossless ``dst`` (.mkv): same fps, count, size, audio.

    Frames are decoded, batched (``batch`` frames), run through ``generator`` (RGB [-1, 1]) and
    encoded one by one: constant memory whatever the film's length. ``max_side``: run the generator
    with the longer side shrunk to this many px (area) and resize the result back (bicubic) to the
    frame size; ``None`` = the generator's ``load_size`` (450 for released styles) or full size;
    0 = full size. ``precision``: "bf16" autocast (about 2x faster on CPUs with bf16 units) or "fp32".
    ``shot_starts``: where the abstraction prior's stream restarts (generators with the prior only).
    Returns ``{"n_frames", "width", "height", "fps", "run_size", "seconds", "frames_per_second"}``.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != LOSSLESS_SUFFIX:
        raise ValueError(f"{dst}: the cartoon film is an intermediate, use lossless {LOSSLESS_SUFFIX}")
    device = torch.device(device)
    info = probe(src)
    if max_side is None:
        max_side = getattr(generator, "load_size", None)
    run_h, run_w = fit_longer_side(info.height, info.width, max_side, MIN_SIDE)
    # channels-last weights as well as inputs: the film then matches cartoonize_images() of the same
    # frames bit for bit in fp32 (with NCHW weights a few pixels differ by one level; with the abstraction
    # prior, only the first frame of each shot has the same input); in place, like .eval()
    generator = generator.to(device, memory_format=torch.channels_last).eval()
    prior, starts = prior_stream(generator), set(shot_starts) | {0}
    t0 = time.time()
    n = 0

    def flush(small: list[np.ndarray], writer: VideoWriter) -> None:
        y = cartoonize_batch(generator, small, device, precision)  # (b, h', w', 3) uint8
        for out in y:
            if out.shape[:2] != (info.height, info.width):
                out = cv2.resize(out, (info.width, info.height), interpolation=cv2.INTER_CUBIC)
            writer.write(out)

    with VideoWriter(dst, info.fps, info.width, info.height, audio_from=src) as writer:
        pending: list[np.ndarray] = []
        for frame in tqdm(read_frames(src), total=info.n_frames, desc=f"cartoonize {src.name}",
                          disable=not progress):
            if (run_h, run_w) != frame.shape[:2]:
                frame = cv2.resize(frame, (run_w, run_h), interpolation=cv2.INTER_AREA)
            if prior is not None:  # the generator's input: the frame's abstraction, coherent in its shot
                if n in starts:
                    prior.reset()
                frame = prior.step(frame, frame)
            pending.append(frame)
            n += 1
            if len(pending) == batch:
                flush(pending, writer)
                pending = []
        if pending:
            flush(pending, writer)
    seconds = time.time() - t0
    return {"n_frames": n, "width": info.width, "height": info.height, "fps": info.fps,
            "run_size": [run_w, run_h], "seconds": seconds, "frames_per_second": n / max(seconds, 1e-9)}


def style_picker(photos: np.ndarray, trained_dir: str | os.PathLike = "build/train_cartoongan",
                 models_dir: str | os.PathLike = "models", device: str | torch.device = "cpu",
                 styles: Sequence[str] | None = None):
    """A live ipywidgets picker: a dropdown of styles and the ``photos`` (N, H, W, 3) uint8 converted.

    For JupyterLab only (the notebook builds it when ``live_widgets`` is true); returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    names = list(styles) if styles else list(available_styles(trained_dir, models_dir))
    if not names:
        raise FileNotFoundError(f"no cartoon style to pick: train one (dvc repro train_cartoongan) or add "
                                f"released weights to {resolve(models_dir)}")
    dropdown = widgets.Dropdown(options=names, value=names[0], description="style")
    out = widgets.Output()

    def show(change=None) -> None:
        gen = load_style(dropdown.value, trained_dir, models_dir)
        cartoons = cartoonize_images(gen, photos, device)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(2, len(photos), figsize=(3 * len(photos), 6), squeeze=False)
            for k in range(len(photos)):
                for r, img in enumerate((photos[k], cartoons[k])):
                    axes[r][k].imshow(img)
                    axes[r][k].axis("off")
            axes[0][0].set_title("photo", loc="left")
            axes[1][0].set_title(f"style {dropdown.value}", loc="left")
            display(fig)
            plt.close(fig)

    dropdown.observe(show, names="value")
    show()
    return widgets.VBox([dropdown, out])
