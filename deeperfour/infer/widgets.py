"""Live exploration widgets for JupyterLab (built only when a notebook asks; inert under papermill)."""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from deeperfour.film.video import probe, read_frames_at
from deeperfour.infer.colorize import colorize_frames


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def colorize_explorer(model: torch.nn.Module, film: str | os.PathLike, chroma_scale: float = 1.0,
                      device: str | torch.device = "cpu", render_factor: int = 12):
    """A frame scrubber and a render-factor slider over a B&W film, colorized on the fly."""
    import ipywidgets as w

    n = probe(film).n_frames
    frame = w.IntSlider(0, 0, n - 1, description="frame", continuous_update=False)
    rf = w.IntSlider(render_factor, 4, 40, description="render factor", continuous_update=False)
    image = w.Image(format="png")

    def update(_=None):
        gray = read_frames_at(film, [frame.value], gray=True)[0]
        rgb = next(iter(colorize_frames(model, [gray], rf.value, chroma_scale, device)))
        image.value = _png(np.concatenate([np.repeat(gray[..., None], 3, 2), rgb], axis=1))

    frame.observe(update, "value")
    rf.observe(update, "value")
    update()
    return w.VBox([w.HBox([frame, rf]), image])
