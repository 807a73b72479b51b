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

import copy
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeperfour.core.compile import compile_module
from deeperfour.core.config import BUILD, MODELS, pick_device
from deeperfour.core.precision import resolve_precision
from deeperfour.infer.abstraction import AbstractionCartoonizer
from deeperfour.infer.cartoonize import (
    FrameCartoonizer,
    TemporalCartoonizer,
    available_styles,
    convert_default_style,
    load_style,
)
from deeperfour.infer.colorize import DeOldifyChroma, model_input_side
from deeperfour.infer.stabilize import ConvLSTMStabilizer, FlowBlend, FlowMemo, PerFrame

CARTOONIZERS = ("generator", "temporal")  # a style's per-frame generator | the temporal-loss generator
ABSTRACTION = "abstraction"  # the classical style (Winnemoeller et al. 2006): no weights, always available
STABILIZERS = ("convlstm", "flow", "none")
COLORIZE_MODES = ("per-frame", "keyframes")  # the automatic colorization: every frame | keyframes propagated
PROPAGATIONS = ("auto", "classical", "refined")  # how keyframes are carried: auto = the stage's choice
REFINER_FILE = "colorize_reference/refiner.pt"
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
    style: str  # cartoon style name ("" with the temporal cartoonizer: its generator has one built in)
    style_file: str
    trained_dir: str  # where trained styles live
    models_dir: str  # where released files live
    stabilizer: str  # convlstm | flow | none: applied to the colorized and to the cartoon frames
    stabilizer_file: str = ""  # convlstm.pt; "" for flow and none
    cartoonizer: str = "generator"  # generator (per frame) | temporal (Ruder et al., sees its warped past)
    cartoonizer_file: str = ""  # the temporal-loss generator; "" for the style generator (style_file)
    flow_alpha: float = 0.7  # FlowBlend: weight of the warped past
    device: str = "cpu"
    precision: str = "fp32"  # autocast of every network: bf16 | fp32 (resolved from auto)
    max_side: int = 0  # px: stabilize and cartoonize with the longer side at most this (0 = full size)
    batch: int = 1  # frames per model call
    colorize: str = "keyframes"  # keyframes: the colorizer on each shot's first frame, propagated through
    #                              the shot (infer/propagate.py) | per-frame: the colorizer on every frame
    reference: str = ""  # folder of an artist's colored keyframes (then shots without one: automatic)
    reference_files: tuple[str, ...] = ()  # its images: part of the work key, so a recolored one counts
    refiner_file: str = ""  # the propagation refiner (stage colorize_reference); "" = the classical path
    compile: bool = False  # torch.compile the networks (core/compile.py): on by default on a GPU only

    def files(self) -> list[str]:
        return [f for f in (self.colorizer, self.style_file, self.stabilizer_file, self.cartoonizer_file,
                            self.refiner_file, *self.reference_files) if f]

    @property
    def propagated(self) -> bool:
        """True when the colorized film comes from keyframes carried through each shot."""
        return bool(self.reference) or self.colorize == "keyframes"

    @property
    def style_label(self) -> str:
        return self.style or "temporal"

    @property
    def recurrent(self) -> bool:
        """True when an output frame depends on earlier frames (segments then start with warm-up frames)."""
        return self.stabilizer != "none" or self.cartoonizer == "temporal"


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


@dataclass
class Models:
    """The loaded networks of one Settings; ``cartoonizer()`` and ``stabilizers()`` give fresh streaming
    objects (a recurrent one holds the state of one segment)."""

    settings: Settings
    colorizer: nn.Module
    cartoon: nn.Module | None  # style generator (RGB [-1, 1]) or TemporalCartoonGenerator; None: abstraction
    convlstm: nn.Module | None = None

    def cartoonizer(self) -> FrameCartoonizer | TemporalCartoonizer | AbstractionCartoonizer:
        s = self.settings
        if s.style == ABSTRACTION:
            return AbstractionCartoonizer()
        if s.cartoonizer == "temporal":
            return TemporalCartoonizer(self.cartoon, s.device, s.precision)  # runs at the model's load_size
        return FrameCartoonizer(self.cartoon, s.device, s.precision, s.batch)

    def stabilizers(self) -> tuple[Any, Any]:
        """(colorized stabilizer, cartoon stabilizer), fresh; they share one FlowMemo (same B&W frames,
        same flows: computed once)."""
        s = self.settings
        flows = FlowMemo()
        if s.stabilizer == "convlstm":
            return (ConvLSTMStabilizer(self.convlstm, s.device, s.precision, flows=flows),
                    ConvLSTMStabilizer(self.convlstm, s.device, s.precision, flows=flows))
        if s.stabilizer == "flow":
            return FlowBlend(s.flow_alpha, flows=flows), FlowBlend(s.flow_alpha, flows=flows)
        return PerFrame(), PerFrame()


def load_models(s: Settings) -> Models:
    """Load (once per process) every network the settings name; one-line errors naming bad files."""
    return _load_models(s, _stamp(*s.files()))


@lru_cache(maxsize=1)
def _load_models(s: Settings, stamp: tuple[int, ...]) -> Models:
    models = _load_networks(s)
    if s.compile:  # in place, on copies: the cached eager colorizer stays eager for other settings
        for net in (models.colorizer, models.cartoon, models.convlstm):
            if net is not None:
                compile_module(net)
    return models


def _load_networks(s: Settings) -> Models:
    colorizer, _ = load_colorizer_file(s.colorizer, s.colorizer_kind, s.device)
    if s.compile:
        colorizer = copy.deepcopy(colorizer)
    convlstm = None
    if s.cartoonizer == "temporal":
        from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator

        cartoon = _guard(s.cartoonizer_file, "temporal",
                         lambda: TemporalCartoonGenerator.from_checkpoint(s.cartoonizer_file,
                                                                          map_location=s.device))
    elif s.style == ABSTRACTION:
        cartoon = None
    else:
        cartoon = _guard(s.style_file, "style",
                         lambda: load_style(s.style, s.trained_dir, s.models_dir, map_location=s.device))
    cartoon = cartoon.to(s.device).eval() if cartoon is not None else None
    if s.stabilizer == "convlstm":
        from deeperfour.models.convlstm import TemporalConsistencyNet

        convlstm = _guard(s.stabilizer_file, "convlstm",
                          lambda: TemporalConsistencyNet.from_checkpoint(s.stabilizer_file,
                                                                             map_location=s.device))
    return Models(s, colorizer, cartoon, convlstm)


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
    convlstm = weights / CONVLSTM_FILE
    if name is None:
        if convlstm.is_file():
            return "convlstm", str(convlstm), []
        return "flow", "", [f"stabilizer: flow (optical-flow blending), the default because there are no "
                            f"ConvLSTM weights at {convlstm} (`dvc repro convlstm` trains them)"]
    if name not in STABILIZERS:
        raise ValueError(f"unknown stabilizer {name!r} (choose from {', '.join(STABILIZERS)}, or temporal)")
    if name == "convlstm":
        if not convlstm.is_file():
            raise _missing(convlstm, "convlstm weights",
                           "run `dvc repro convlstm`, or pick --stabilizer flow or none")
        return name, str(convlstm), []
    return name, "", []


def _pick_cartoonizer(name: str, weights: Path) -> str:
    """The temporal-loss generator's file for ``temporal``, "" for the per-frame style generator."""
    if name not in CARTOONIZERS:
        raise ValueError(f"unknown cartoonizer {name!r} (choose from {', '.join(CARTOONIZERS)})")
    if name == "generator":
        return ""
    path = weights / TEMPORAL_FILE
    if not path.is_file():
        raise _missing(path, "temporal-loss generator", "run `dvc repro temporal_loss`, or pick "
                                                        "--cartoonizer generator")
    return str(path)


def _pick_style(style: str | None, trained: Path, models: Path) -> tuple[str, str]:
    """(style name, its weight file; "" for the classical abstraction); unknown names raise KeyError listing
    the known ones."""
    if style is None:
        style = convert_default_style(trained)  # the stage's measured choice, where it made one
    if style is not None and style.lower() == ABSTRACTION:
        return ABSTRACTION, ""
    have = available_styles(trained, models)
    if style is None:
        if not have:
            raise _missing(trained, "cartoon style", f"run `dvc repro train_cartoongan`, put a released "
                                                     f"<Style>_net_G_float.pth in {models}, or pick "
                                                     f"--style {ABSTRACTION} (classical, no weights)")
        style = next(iter(have))
    match = {k.lower(): k for k in have}.get(style.lower())
    if match is None:
        load_style(style, trained, models)  # raises KeyError / FileNotFoundError with the full story
    return match, str(have[match])


def _pick_refiner(propagation: str, weights: Path) -> tuple[str, list[str]]:
    """(the refiner's file or "", notes) for ``--propagation``. auto: the refiner when the stage
    colorize_reference trained one AND found it better than the classical path on its validation clip
    (recorded in the checkpoint as ``default_method``), else the classical path."""
    if propagation not in PROPAGATIONS:
        raise ValueError(f"--propagation {propagation!r}: choose {', '.join(PROPAGATIONS)}")
    path = weights / REFINER_FILE
    if propagation == "classical":
        return "", []
    if propagation == "refined":
        if not path.is_file():
            raise _missing(path, "propagation refiner", "run `dvc repro colorize_reference`, or pass "
                                                        "--propagation classical")
        return str(path), []
    if not path.is_file():
        return "", [f"propagation: classical (no refiner at {path}; `dvc repro colorize_reference` "
                    "trains one)"]
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        chosen = ckpt.get("default_method", "classical")
    except Exception as e:
        raise ValueError(f"{path}: not a usable propagation refiner ({e}); expected the checkpoint that "
                         "`dvc repro colorize_reference` writes") from e
    if chosen != "refined":
        return "", [f"propagation: classical (the refiner at {path} did not beat it on the validation clip)"]
    return str(path), []


def resolve_settings(*, style: str | None = None, render_factor: int | None = None,
                     stabilizer: str | None = None, cartoonizer: str | None = None, device: str = "auto",
                     weights: str | os.PathLike | None = None, models: str | os.PathLike | None = None,
                     colorizer: str | os.PathLike | None = None, max_side: int = 0, batch: int | None = None,
                     precision: str = "auto", colorize: str = "keyframes",
                     reference: str | os.PathLike | None = None, propagation: str = "auto",
                     compile: bool | None = None) -> tuple[Settings, list[str]]:
    """Turn the command's options into Settings, checking every file exists; also the lines to print.

    ``stabilizer="temporal"`` is the short form of ``cartoonizer="temporal", stabilizer="none"`` (Ruder
    et al.'s generator is the stabilizer of the cartoon; the colorized film stays per-frame).
    ``batch=None``: 1 frame per model call on a CPU (batching gains nothing there and costs memory:
    about 200 MB per extra 640x360 frame in the cartoon generator), 4 on a GPU.
    ``precision="auto"``: bf16 where the device computes it natively, else fp32 (``core/precision.py``).
    ``reference``: a folder of colored keyframes (``deeperfour keyframes``); ``colorize="keyframes"``:
    without references, the colorizer colors each shot's first frame and propagation carries it.
    ``propagation``: auto (the refiner where the stage chose it) | classical | refined.
    ``compile``: torch.compile every network (None: on a GPU only; on the 2-core CPU it gained 5 % for
    9-34 s of compilation per network, see ``core/compile.py``).
    """
    if colorize not in COLORIZE_MODES:
        raise ValueError(f"--colorize {colorize!r}: choose {' or '.join(COLORIZE_MODES)}")
    ref_files: tuple[str, ...] = ()
    if reference:
        ref_dir = Path(reference)
        if not ref_dir.is_dir():
            raise ValueError(f"{ref_dir}: no such folder of colored references (write the keyframes to color "
                             "with `deeperfour keyframes FILM -o DIR`)")
        ref_files = tuple(str(p) for p in sorted(ref_dir.iterdir()) if p.is_file())
    if (batch is not None and batch < 1) or max_side < 0:
        raise ValueError(f"need --batch >= 1 and --max-side >= 0 (got {batch}, {max_side})")
    if render_factor is not None and not 1 <= render_factor <= 100:
        raise ValueError(f"--render-factor {render_factor}: must be 1..100 (the model input is 16 x it px "
                         "square; DeOldify's video default is 21)")
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(str(e)) from e
    precision = resolve_precision(precision, dev)
    notes: list[str] = []
    if stabilizer == "temporal":
        if cartoonizer not in (None, "temporal"):
            raise ValueError(f"--stabilizer temporal means --cartoonizer temporal, not {cartoonizer!r}")
        stabilizer, cartoonizer = "none", "temporal"
    cartoonizer = cartoonizer or "generator"
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
    cart_file = _pick_cartoonizer(cartoonizer, weights)
    trained = weights / STYLES_DIR
    name, style_file = ("", "") if cart_file else _pick_style(style, trained, models)
    propagated = bool(reference) or colorize == "keyframes"
    refiner_file, refiner_notes = _pick_refiner(propagation, weights) if propagated else ("", [])
    s = Settings(str(col_path), kind, int(rf), float(extras.get("chroma_scale", 1.0)), name, style_file,
                 str(trained), str(models), stab, stab_file, cartoonizer, cart_file, device=str(dev),
                 precision=precision, max_side=int(max_side), batch=int(batch), colorize=colorize,
                 reference=str(reference or ""), reference_files=ref_files, refiner_file=refiner_file,
                 compile=bool(dev.type == "cuda" if compile is None else compile))
    notes.append(f"colorizer: {s.colorizer} ({kind}, render factor {s.render_factor}, "
                 f"chroma scale {s.chroma_scale:g})")
    if s.reference:
        notes.append(f"colors: the artist's keyframes in {s.reference}, carried through each shot "
                     "(shots without one: the colorizer's keyframe)")
    elif s.propagated:
        notes.append("colors: the colorizer on each shot's first frame, carried through the shot")
    if s.propagated:
        notes += refiner_notes or [f"propagation: classical + the learned refiner ({s.refiner_file})"]
    if name == ABSTRACTION:
        how = "--style" if style else f"the default measured best by stage train_cartoongan ({trained})"
        notes.append(f"cartoon style: {ABSTRACTION} (classical, no weights; {how})")
    else:
        notes.append(f"cartoon style: {name} ({style_file})" if name else
                     f"cartoonizer: the temporal-loss generator ({cart_file})")
    if cart_file and style:
        notes.append(f"note: --style {style} is ignored: the temporal-loss generator has its own style")
    notes += stab_notes or [f"stabilizer: {stab}" + (f" ({stab_file})" if stab_file else "")]
    size = f"longer side at most {max_side} px" if max_side else "full size"
    notes.append(f"device: {s.device}, {precision}, batch {batch}, {size}"
                 + (", torch.compile (compiled once per process, cached on disk)" if s.compile else ""))
    return s, notes
