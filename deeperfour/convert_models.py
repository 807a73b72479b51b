"""The models of ``deeperfour convert``: find the weight files, check them, load them once per process.

Layout of the weights folder (``--weights``, default ``build/`` as ``dvc repro`` leaves it)::

    colorize/colorizer.pt                  the NoGAN colorizer (stage colorize)
    train_cartoongan/<style>/generator.pt  one CartoonGAN generator per trained style
    convlstm/convlstm.pt                   Lai et al.'s stabilizer (stage convlstm)
    temporal_loss/generator.pt             Ruder et al.'s temporal-loss generator (stage temporal_loss)

Released third-party files live in ``--models`` (default ``models/``): ``ColorizeVideo_gen.pth`` (or
Stable, Artistic) when there is no trained colorizer, and ``<Style>_net_G_float.pth`` CartoonGAN styles.
:class:`Settings` holds every choice as plain values: hashable (the model cache key), picklable (a
remote task rebuilds the same models from it) and JSON-able (the work key and the manifest).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from torch import nn

from deeperfour.cartoonize import available_styles, load_style
from deeperfour.colorize import DeOldifyChroma, model_input_side
from deeperfour.config import BUILD, MODELS, pick_device
from deeperfour.stabilize import ConvLSTMStabilizer, FlowBlend, PerFrame

STABILIZERS = ("convlstm", "temporal", "flow", "none")
COLORIZER_FILE = "colorize/colorizer.pt"
STYLES_DIR = "train_cartoongan"
CONVLSTM_FILE = "convlstm/convlstm.pt"
TEMPORAL_FILE = "temporal_loss/generator.pt"
RELEASED_COLORIZERS = ("ColorizeVideo_gen.pth", "ColorizeStable_gen.pth", "ColorizeArtistic_gen.pth")
DEOLDIFY_RENDER_FACTOR = 21  # DeOldify's video default (336 px square)
EXPECTED = {  # what each file is and must hold, for the error messages
    "colorizer": ("colorizer", "the checkpoint that `dvc repro colorize` writes"),
    "deoldify": ("DeOldify colorizer", "a released " + " / ".join(RELEASED_COLORIZERS)),
    "style": ("cartoon generator", "one from `dvc repro train_cartoongan` or a released *_net_G_float.pth"),
    "convlstm": ("ConvLSTM stabilizer", "the checkpoint that `dvc repro convlstm` writes"),
    "temporal": ("temporal-loss generator", "the one that `dvc repro temporal_loss` writes"),
}


@dataclass(frozen=True)
class Settings:
    """Everything that determines the output frames (besides the input film)."""

    colorizer: str  # weight file
    colorizer_kind: str  # "deeperfour" (own checkpoint) | "deoldify" (released file)
    render_factor: int  # model input = 16 x render_factor px square
    chroma_scale: float  # saturation calibration of the colorizer
    style: str  # cartoon style name ("" with the temporal stabilizer: its generator has one built in)
    style_file: str
    trained_dir: str  # where trained styles live
    models_dir: str  # where released files live
    stabilizer: str  # convlstm | temporal | flow | none
    stabilizer_file: str = ""  # convlstm.pt or the temporal generator; "" for flow and none
    flow_alpha: float = 0.7  # FlowBlend: weight of the warped past
    device: str = "cpu"
    precision: str = "bf16"  # autocast of the colorizer and the cartoon generator
    max_side: int = 0  # px: stabilize and cartoonize with the longer side at most this (0 = full size)
    batch: int = 1  # frames per model call

    def files(self) -> list[str]:
        return [f for f in (self.colorizer, self.style_file, self.stabilizer_file) if f]

    @property
    def style_label(self) -> str:
        return self.style or "temporal"


def _guard(path: str | os.PathLike, what: str, load):
    """Run ``load()``; any failure but a missing file becomes one ValueError line naming the file,
    what it should have been, and the loader's own first words on why it is not."""
    try:
        return load()
    except FileNotFoundError:
        raise
    except Exception as e:  # torch.load, load_state_dict and the loaders raise many kinds
        text = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(e).__name__]
        detail = lines[0] + (f" {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
        detail = detail.removeprefix(f"{path}: ")
        detail = detail if len(detail) <= 200 else detail[:197] + "..."
        name, expected = EXPECTED[what]
        raise ValueError(f"{path}: not a usable {name} ({detail}); expected {expected}") from e


def _missing(path: Path, what: str, fix: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path}: no {what} there ({fix})")


# ---------------------------------------------------------------------------------------------------------
# loaders (cached: a CLI run and a Ray worker load every model once)
# ---------------------------------------------------------------------------------------------------------


def _stamp(*paths: str) -> tuple[int, ...]:
    """Modification times: part of the cache keys, so a retrained file is loaded again."""
    return tuple(os.stat(p).st_mtime_ns if os.path.exists(p) else 0 for p in paths)


def load_colorizer_file(path: str, kind: str, device: str) -> tuple[nn.Module, dict[str, Any]]:
    """(gray -> centered UV model in eval mode, checkpoint extras) for our checkpoint or a DeOldify file."""
    return _load_colorizer_file(path, kind, device, _stamp(path))


@lru_cache(maxsize=2)
def _load_colorizer_file(path: str, kind: str, device: str, stamp: tuple[int, ...]
                         ) -> tuple[nn.Module, dict[str, Any]]:
    if kind == "deoldify":
        from deeperfour.models.deoldify import load_deoldify

        gen, _ = _guard(path, "deoldify", lambda: load_deoldify(path, map_location=device))
        return DeOldifyChroma(gen).to(device).eval(), {}
    from deeperfour.models.colorizer import load_colorizer

    model, extras = _guard(path, "colorizer", lambda: load_colorizer(path, map_location=device))
    return model.to(device).eval(), extras


def _load_temporal_model(path: str, device: str):
    """A factory of fresh TemporalCartoonizers around the fine-tuned generator of stage temporal_loss."""
    from deeperfour.models import temporal_cartoongan as tc

    model = _guard(path, "temporal",
                   lambda: tc.TemporalCartoonGenerator.from_checkpoint(path, map_location=device))
    return lambda s: tc.TemporalCartoonizer(model, s.device, s.precision)  # runs at the model's load_size


@dataclass
class Models:
    """The loaded networks of one Settings; ``stabilizers()`` gives fresh (colorized, cartoon) stabilizers."""

    settings: Settings
    colorizer: nn.Module
    cartoon: nn.Module | None  # style generator, RGB [-1, 1]; None with the temporal stabilizer
    convlstm: nn.Module | None = None
    temporal: Any = None  # Settings -> a new TemporalCartoonizer

    def stabilizers(self) -> tuple[Any, Any]:
        s = self.settings
        if s.stabilizer == "convlstm":
            return (ConvLSTMStabilizer(self.convlstm, s.device, s.precision),
                    ConvLSTMStabilizer(self.convlstm, s.device, s.precision))
        if s.stabilizer == "flow":
            return FlowBlend(s.flow_alpha), FlowBlend(s.flow_alpha)
        if s.stabilizer == "temporal":
            return PerFrame(), self.temporal(s)
        return PerFrame(), PerFrame()


def load_models(s: Settings) -> Models:
    """Load (once per process) every network the settings name; one-line errors naming bad files."""
    return _load_models(s, _stamp(*s.files()))


@lru_cache(maxsize=1)
def _load_models(s: Settings, stamp: tuple[int, ...]) -> Models:
    colorizer, _ = load_colorizer_file(s.colorizer, s.colorizer_kind, s.device)
    cartoon = convlstm = temporal = None
    if s.style:
        cartoon = _guard(s.style_file, "style",
                         lambda: load_style(s.style, s.trained_dir, s.models_dir, map_location=s.device))
        cartoon = cartoon.to(s.device).eval()
    if s.stabilizer == "convlstm":
        from deeperfour.models.convlstm import from_checkpoint

        convlstm = _guard(s.stabilizer_file, "convlstm",
                          lambda: from_checkpoint(s.stabilizer_file, map_location=s.device))
    elif s.stabilizer == "temporal":
        temporal = _load_temporal_model(s.stabilizer_file, s.device)
    return Models(s, colorizer, cartoon, convlstm, temporal)


# ---------------------------------------------------------------------------------------------------------
# choosing the files
# ---------------------------------------------------------------------------------------------------------


def _find_colorizer(weights: Path, models: Path, explicit: str | os.PathLike | None) -> tuple[Path, str]:
    """(file, kind): --colorizer, else our trained colorizer, else a released DeOldify file."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise _missing(path, "colorizer file", "check the --colorizer path")
        return path, "deoldify" if path.suffix == ".pth" else "deeperfour"
    own = weights / COLORIZER_FILE
    if own.is_file():
        return own, "deeperfour"
    for name in RELEASED_COLORIZERS:
        if (models / name).is_file():
            return models / name, "deoldify"
    raise _missing(own, "colorizer", f"run `dvc repro colorize`, or put {' / '.join(RELEASED_COLORIZERS)} "
                                     f"in {models}")


def _pick_stabilizer(name: str | None, weights: Path) -> tuple[str, str, list[str]]:
    """(stabilizer, its weight file or "", notes); the default is convlstm when trained, else flow."""
    files = {"convlstm": weights / CONVLSTM_FILE, "temporal": weights / TEMPORAL_FILE}
    if name is None:
        if files["convlstm"].is_file():
            return "convlstm", str(files["convlstm"]), []
        return "flow", "", [f"stabilizer: flow (optical-flow blending), the default because there are no "
                            f"ConvLSTM weights at {files['convlstm']} (`dvc repro convlstm` trains them)"]
    if name not in STABILIZERS:
        raise ValueError(f"unknown stabilizer {name!r} (choose from {', '.join(STABILIZERS)})")
    if name in files:
        if not files[name].is_file():
            stage = "convlstm" if name == "convlstm" else "temporal_loss"
            raise _missing(files[name], f"{name} weights", f"run `dvc repro {stage}`, or pick "
                                                           "--stabilizer flow or none")
        return name, str(files[name]), []
    return name, "", []


def _pick_style(style: str | None, trained: Path, models: Path) -> tuple[str, str]:
    """(style name, its weight file); unknown names raise KeyError listing the known ones."""
    have = available_styles(trained, models)
    if style is None:
        if not have:
            raise _missing(trained, "cartoon style", f"run `dvc repro train_cartoongan`, or put a released "
                                                     f"<Style>_net_G_float.pth in {models}")
        style = next(iter(have))
    match = {k.lower(): k for k in have}.get(style.lower())
    if match is None:
        load_style(style, trained, models)  # raises KeyError / FileNotFoundError with the full story
    return match, str(have[match])


def resolve_settings(*, style: str | None = None, render_factor: int | None = None,
                     stabilizer: str | None = None, device: str = "auto",
                     weights: str | os.PathLike | None = None, models: str | os.PathLike | None = None,
                     colorizer: str | os.PathLike | None = None, max_side: int = 0, batch: int | None = None,
                     precision: str = "bf16") -> tuple[Settings, list[str]]:
    """Turn the command's options into Settings, checking every file exists; also the lines to print.

    ``batch=None``: 1 frame per model call on a CPU (batching gains nothing there and costs memory:
    about 200 MB per extra 640x360 frame in the cartoon generator), 4 on a GPU.
    """
    if (batch is not None and batch < 1) or max_side < 0 or precision not in ("bf16", "fp32"):
        raise ValueError(f"need --batch >= 1, --max-side >= 0 and precision bf16|fp32 "
                         f"(got {batch}, {max_side}, {precision})")
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(str(e)) from e
    batch = batch or (4 if dev.type == "cuda" else 1)
    weights = Path(weights) if weights else BUILD
    models = Path(models) if models else MODELS
    if not weights.is_dir():
        raise _missing(weights, "weights folder", "pass --weights DIR, the folder `dvc repro` fills (build/)")
    col_path, kind = _find_colorizer(weights, models, colorizer)
    _, extras = load_colorizer_file(str(col_path), kind, str(dev))
    rf = render_factor or extras.get("render_factor") or DEOLDIFY_RENDER_FACTOR
    model_input_side(rf)  # ValueError for a render factor out of 1..100
    stab, stab_file, stab_notes = _pick_stabilizer(stabilizer, weights)
    trained = weights / STYLES_DIR
    name, style_file = ("", "") if stab == "temporal" else _pick_style(style, trained, models)
    s = Settings(str(col_path), kind, int(rf), float(extras.get("chroma_scale", 1.0)), name, style_file,
                 str(trained), str(models), stab, stab_file, device=str(dev), precision=precision,
                 max_side=int(max_side), batch=int(batch))
    notes = [f"colorizer: {s.colorizer} ({kind}, render factor {s.render_factor}, "
             f"chroma scale {s.chroma_scale:g})"]
    notes.append(f"cartoon style: {name} ({style_file})" if name else
                 f"cartoon: the temporal-loss generator ({stab_file})")
    if stab == "temporal" and style:
        notes.append(f"note: --style {style} is ignored: the temporal-loss generator has its own style")
    notes += stab_notes or [f"stabilizer: {stab}" + (f" ({stab_file})" if stab_file else "")]
    size = f"longer side at most {max_side} px" if max_side else "full size"
    notes.append(f"device: {s.device}, {precision}, batch {batch}, {size}")
    return s, notes
