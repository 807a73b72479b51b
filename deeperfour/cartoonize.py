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

import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deeperfour.config import resolve
from deeperfour.models.cartoongan import (
    REFERENCE_LOAD_SIZE,
    RELEASED_STYLES,
    from_checkpoint,
    load_released_cartoongan,
)
from deeperfour.train.cartoongan import GENERATOR_FILE, stylize, to_uint8
from deeperfour.train.common import autocast
from deeperfour.video import LOSSLESS_SUFFIX, VideoWriter, probe, read_frames

RELEASED_SUFFIX = "_net_G_float.pth"


def available_styles(trained_dir: str | os.PathLike = "build/train_cartoongan",
                     models_dir: str | os.PathLike = "models") -> dict[str, Path]:
    """Styles that can be loaded now: {name: weight file}, trained styles first (sorted), then released."""
    trained_dir, models_dir = resolve(trained_dir), resolve(models_dir)
    found: dict[str, Path] = {}
    if trained_dir.is_dir():
        for d in sorted(p for p in trained_dir.iterdir() if (p / GENERATOR_FILE).is_file()):
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
        model = from_checkpoint(trained, map_location).eval()
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


def _resize_for(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    """(h', w') with the longer side = max_side when the frame is larger, else (h, w)."""
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(5, round(h * s)), max(5, round(w * s))


@torch.inference_mode()
def cartoonize_batch(generator: nn.Module, frames: np.ndarray | Sequence[np.ndarray],
                     device: str | torch.device = "cpu", precision: str = "bf16") -> np.ndarray:
    """One generator call, the films' hot path: RGB uint8 frames (B, H, W, 3) -> cartoons (B, H, W, 3) uint8.

    The (B, 3, H, W) view of the NHWC frames is already channels-last, which a CartoonGAN generator keeps
    through every layer (a conv returns channels-last for a channels-last input, ``models/ops.py`` keeps
    the pads and norms so): the fast bf16 layout on CPUs. The output permutes back to NHWC without a copy.
    The generator's weights may keep any layout.
    """
    frames = np.ascontiguousarray(frames if isinstance(frames, np.ndarray) else np.stack(frames))  # (B,H,W,3)
    x = torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W) NHWC
    with autocast(device, precision):
        return to_uint8(generator(x))  # (B, H, W, 3)


def cartoonize_film(generator: nn.Module, src: str | os.PathLike, dst: str | os.PathLike,
                    device: str | torch.device = "cpu", batch: int = 4, max_side: int | None = None,
                    progress: bool = True, precision: str = "bf16") -> dict:
    """Cartoonize every frame of ``src`` into the lossless ``dst`` (.mkv): same fps, count, size, audio.

    Frames are decoded, batched (``batch`` frames), run through ``generator`` (RGB [-1, 1]) and
    encoded one by one: constant memory whatever the film's length. ``max_side``: run the generator
    with the longer side shrunk to this many px (area) and resize the result back (bicubic) to the
    frame size; ``None`` = the generator's ``load_size`` (450 for released styles) or full size;
    0 = full size. ``precision``: "bf16" autocast (about 2x faster on CPUs with bf16 units) or "fp32".
    Returns ``{"n_frames", "width", "height", "fps", "run_size", "seconds", "frames_per_second"}``.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix != LOSSLESS_SUFFIX:
        raise ValueError(f"{dst}: the cartoon film is an intermediate, use lossless {LOSSLESS_SUFFIX}")
    device = torch.device(device)
    info = probe(src)
    if max_side is None:
        max_side = getattr(generator, "load_size", None)
    run_h, run_w = _resize_for(info.height, info.width, max_side)
    # channels-last weights as well as inputs: the film then matches stylize() of the same frames bit for bit
    # in fp32 (with NCHW weights a few pixels differ by one level); in place, like .eval()
    generator = generator.to(device, memory_format=torch.channels_last).eval()
    t0 = time.time()
    n = 0

    def flush(frames: list[np.ndarray], writer: VideoWriter) -> None:
        small = [f if (run_h, run_w) == f.shape[:2] else
                 cv2.resize(f, (run_w, run_h), interpolation=cv2.INTER_AREA) for f in frames]
        y = cartoonize_batch(generator, small, device, precision)  # (b, h', w', 3) uint8
        for out in y:
            if out.shape[:2] != (info.height, info.width):
                out = cv2.resize(out, (info.width, info.height), interpolation=cv2.INTER_CUBIC)
            writer.write(out)

    with VideoWriter(dst, info.fps, info.width, info.height, audio_from=src) as writer:
        pending: list[np.ndarray] = []
        for frame in tqdm(read_frames(src), total=info.n_frames, desc=f"cartoonize {src.name}",
                          disable=not progress):
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
        cartoons = stylize(gen, photos, device)
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
