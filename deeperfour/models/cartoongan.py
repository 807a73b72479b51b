"""CartoonGAN (Chen et al. 2018; paper §3.2, Fig. 2): generator, discriminator, checkpoints, released weights.

Two generator variants share one key-naming scheme:

* ``paper``: the published architecture. Its ``state_dict`` keys are exactly the 94 keys of the
  released ``<Style>_net_G_float.pth`` files (``/work/shared/cartoongan/keys.tsv``), so those files
  strict-load into it; 11,129,667 parameters.
* ``light``: a quarter-width (32/64/128), 4-residual-block generator (about 1.6 M parameters) that
  upsamples by resize-then-conv instead of transposed convs, against checkerboard artifacts.

Project interface for every generator here: RGB in [-1, 1], shape (B, 3, H, W) in; RGB in [-1, 1], the
SAME (B, 3, H, W) out, for any H, W >= 5 (other sizes are reflect-padded to a multiple of 4 and cropped
back). The released nets work in BGR; :class:`ReleasedCartoonGAN` swaps channels so callers never see it.

Key names (a public interface): ``convNN_k`` / ``inNN_k`` with NN = 01 (flat conv), 02-03 (down blocks),
04 .. 03+n (residual blocks); the up blocks are ``deconv01_*``, ``deconv02_*`` with norms ``in{04+n}_1``,
``in{05+n}_1`` (``in12_1``, ``in13_1`` for the paper's n = 8), and the output conv ``deconv03_1``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deeperfour.film.color import rgb_to_yuv_t, yuv_to_rgb_t
from deeperfour.models.ops import PadConv2d, guided_filter, instance_norm, is_channels_last, pad

CHECKPOINT_VERSION = 1
RELEASED_STYLES = ("Hayao", "Hosoda", "Paprika", "Shinkai")  # files <Style>_net_G_float.pth
REFERENCE_LOAD_SIZE = 450  # released test.py: longer side resized to 450 px (bicubic)
GENERATOR_FILE = "generator.pt"  # a trained style: <stage out>/<style>/generator.pt
MIN_SIDE = 5  # padded to 8, the 1/4-resolution maps are 2 px: the least a reflect pad of 1 accepts

_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"base_channels": 64, "n_res_blocks": 8, "upsample": "deconv"},
    "light": {"base_channels": 32, "n_res_blocks": 4, "upsample": "resize"},
}


class CartoonGANWeightsError(ValueError):
    """A weight or checkpoint file that cannot be used; the one-line message names the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


CHROMA_MODES = ("free", "mean", "input")  # CartoonGANConfig.chroma
PRIORS = ("none", "abstraction")  # CartoonGANConfig.prior


@dataclass
class CartoonGANConfig:
    """Architecture of a CartoonGAN generator/discriminator; saved inside every checkpoint.

    Fields left at ``None`` take the value of the ``variant`` preset (see ``_PRESETS``).
    """

    variant: str = "paper"  # "paper" (released layout, 11.13 M params) | "light" (~1.6 M, resize-conv)
    base_channels: int | None = None  # width of the first conv; down blocks x2, x4 (paper 64, light 32)
    n_res_blocks: int | None = None  # residual blocks at 4*base_channels (paper 8, light 4)
    upsample: str | None = None  # "deconv" (transposed conv, paper) | "resize" (x2 resize + 3x3 conv)
    resize_mode: str = "nearest"  # interpolation of upsample="resize": "nearest" | "bilinear"
    norm_eps: float = 1e-9  # instance-norm epsilon; the released weights use 1e-9
    d_base_channels: int = 32  # discriminator first-conv width (paper Fig. 2: k3n32s1)
    d_norm: str = "instance"  # discriminator norm: "instance" | "batch"
    chroma: str = "free"  # output chroma: "free" (G's own) | "mean" | "input" (see anchor_chroma)
    prior: str = "none"  # "none": G(photo), the paper | "abstraction": G's input is the classical
    #   abstraction A of the photo (infer/abstraction.py; the callers in infer/ compute it) and G corrects
    #   it, y = clamp(A + T(A)) with the output conv zero-initialized: training starts at the abstraction

    def __post_init__(self):
        if self.variant not in _PRESETS:
            raise ValueError(f"CartoonGANConfig.variant={self.variant!r}: expected one of {list(_PRESETS)}")
        for name, value in _PRESETS[self.variant].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.upsample not in ("deconv", "resize"):
            raise ValueError(f"CartoonGANConfig.upsample={self.upsample!r}: expected 'deconv' or 'resize'")
        if self.resize_mode not in ("nearest", "bilinear"):
            raise ValueError(f"CartoonGANConfig.resize_mode={self.resize_mode!r}: expected nearest|bilinear")
        if self.chroma not in CHROMA_MODES:
            raise ValueError(f"CartoonGANConfig.chroma={self.chroma!r}: expected one of {CHROMA_MODES}")
        if self.prior not in PRIORS:
            raise ValueError(f"CartoonGANConfig.prior={self.prior!r}: expected one of {PRIORS}")
        if self.d_norm not in ("instance", "batch"):
            raise ValueError(f"CartoonGANConfig.d_norm={self.d_norm!r}: expected 'instance' or 'batch'")
        if self.base_channels < 1 or self.n_res_blocks < 0 or self.d_base_channels < 1:
            raise ValueError(f"CartoonGANConfig: bad sizes in {self}")

    @property
    def channels(self) -> tuple[int, int, int]:
        """Widths of the flat conv, the 1/2-resolution and the 1/4-resolution stages."""
        c = self.base_channels
        return c, 2 * c, 4 * c


# ----------------------------------------------------------------------------------------------
# building blocks


def anchor_chroma(y: torch.Tensor, x: torch.Tensor, mode: str = "mean", r: int = 4,
                  eps: float = 1e-3) -> torch.Tensor:
    """G's output ``y`` with its chroma (OpenCV YUV) tied to the input ``x``'s; its luma Y is kept.

    * ``mean``: U, V shifted per image by mean(UV(x)) - mean(UV(y)): G keeps its spatial chroma;
    * ``input``: U, V are the input's, guided-filtered (He et al. 2010) with G's own luma as the guide
      (window 2r+1, ``eps`` on Y in [0, 1]): the photo's colors, flattened within the regions G drew.

    Why: the generator instance-normalizes right after its first conv, so no later layer sees the
    image's global color; on a small style set and a few hundred steps its output colors are then
    learned from the style set (the olive cast of Big Buck Bunny) or not at all. The anchor gives the
    photo's colors back, and G draws the regions, shading and ink (its luma). RGB [-1, 1] (B, 3, H, W).
    """
    lum, uv_y = rgb_to_yuv_t((y.float() + 1) / 2)  # (B, 1, H, W), (B, 2, H, W): OpenCV's YUV on [0, 1]
    _, uv_x = rgb_to_yuv_t((x.float() + 1) / 2)
    if mode == "mean":
        uv = uv_y + uv_x.mean(dim=(2, 3), keepdim=True) - uv_y.mean(dim=(2, 3), keepdim=True)
    else:  # guided filter of the input's chroma, guided by G's luma (per channel, Eqs. 5-8)
        uv = guided_filter(lum, uv_x, r, eps)
    return (2 * yuv_to_rgb_t(lum, uv) - 1).to(y.dtype)  # RGB [-1, 1], clamped



class InstanceNorm(nn.Module):
    """Instance norm with affine params named ``scale``/``shift``, as in the released weights.

    Biased variance per (sample, channel) over H x W, no running stats; identical to
    ``F.instance_norm(x, weight=scale, bias=shift, eps=eps)``. A dedicated module (rather than
    ``nn.InstanceNorm2d``) only because the released files name the params ``scale``/``shift``.

    Channels-last inputs keep their layout (:func:`deeperfour.models.ops.instance_norm`); NCHW inputs
    (training) take ``F.instance_norm`` itself.
    """

    def __init__(self, channels: int, eps: float = 1e-9):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H, W)
        return instance_norm(x, self.scale, self.shift, self.eps)  # layout-preserving, see ops.py


class ResizeConv2d(PadConv2d):
    """x2 resize (nearest/bilinear), then a reflect-padded 3x3 conv: a drop-in for the stride-2 deconv.

    Why: a stride-2 transposed conv with a 3x3 kernel covers output pixels unevenly (kernel size not
    divisible by the stride), which prints a checkerboard into the output that training must fight
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts"); users of CartoonGAN re-implementations
    report exactly that. Resizing first spreads every input pixel evenly, and the conv then learns the
    detail. Subclassing ``nn.Conv2d`` (via ``PadConv2d``) keeps the keys ``<name>.weight`` / ``<name>.bias``.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest"):
        super().__init__(in_channels, out_channels, 3, padding=1, padding_mode="reflect")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, h, w) -> (B, Cout, 2h, 2w)
        align = False if self.mode == "bilinear" else None
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=align)  # (B, Cin, 2h, 2w)
        return super().forward(x)


def _conv_reflect(cin: int, cout: int, k: int) -> nn.Conv2d:
    """k x k conv with 'same' reflection padding (the paper's ReflectionPad2d + Conv2d, same keys).

    ``PadConv2d``: the padding stays in bf16 under autocast (stock reflect padding is an fp32 op there)."""
    return PadConv2d(cin, cout, k, padding=k // 2, padding_mode="reflect")


def _pad_to_multiple(x: torch.Tensor, m: int = 4) -> torch.Tensor:
    """Reflect-pad bottom/right so H and W are multiples of ``m`` (two stride-2 stages need m = 4)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x
    return pad(x, (0, pw, 0, ph), mode="reflect")  # (B, C, H + ph, W + pw)


def frame_by_frame(x: torch.Tensor) -> bool:
    """Run a batch one frame at a time? Yes for CPU inference (no autograd) on a channels-last batch.

    Why: the generator is per-frame anyway (instance norm), and on a CPU one frame's activations
    (at most ~30 MB at 640x360 in bf16) stay in the allocator's reused heap and closer to the caches, while
    a batch's (> 32 MB, glibc's largest mmap threshold) are fresh pages, page-faulted on every call:
    measured 1.7x faster per frame than a batch of 4. Training (NCHW, autograd) keeps its batches.
    """
    return len(x) > 1 and x.device.type == "cpu" and not torch.is_grad_enabled() and is_channels_last(x)


def _init_gan_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) conv weights, zero biases, unit norm scales: the usual GAN init (DCGAN, CartoonGAN).

    Explicit rather than PyTorch's default so that seeded models (and golden test values) do not
    change when a PyTorch release changes its default initializers.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------------------------
# generator


class CartoonGenerator(nn.Module):
    """CartoonGAN generator (paper Fig. 2): flat conv, 2 down blocks, residual blocks, 2 up blocks, tanh.

    Modules are registered flat and in the released order so that the ``paper`` variant's
    ``state_dict`` keys equal the released files' keys exactly. Input and output: RGB in [-1, 1],
    (B, 3, H, W) -> (B, 3, H, W) for any H, W >= 5 (see the module docstring).
    """

    def __init__(self, cfg: CartoonGANConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CartoonGANConfig()
        c1, c2, c3 = cfg.channels
        eps = cfg.norm_eps
        # 1. flat conv: 7x7, reflection pad 3
        self.conv01_1 = _conv_reflect(3, c1, 7)
        self.in01_1 = InstanceNorm(c1, eps)
        # 2. down blocks: 3x3 stride-2 conv, 3x3 conv (zero pad 1, as released), norm, relu
        self.conv02_1 = nn.Conv2d(c1, c2, 3, 2, 1)
        self.conv02_2 = nn.Conv2d(c2, c2, 3, 1, 1)
        self.in02_1 = InstanceNorm(c2, eps)
        self.conv03_1 = nn.Conv2d(c2, c3, 3, 2, 1)
        self.conv03_2 = nn.Conv2d(c3, c3, 3, 1, 1)
        self.in03_1 = InstanceNorm(c3, eps)
        # 3. residual blocks at 1/4 resolution, indices 04 .. 03+n
        self.res_ids = [f"{i:02d}" for i in range(4, 4 + cfg.n_res_blocks)]
        for r in self.res_ids:
            self.add_module(f"conv{r}_1", _conv_reflect(c3, c3, 3))
            self.add_module(f"in{r}_1", InstanceNorm(c3, eps))
            self.add_module(f"conv{r}_2", _conv_reflect(c3, c3, 3))
            self.add_module(f"in{r}_2", InstanceNorm(c3, eps))
        # 4. up blocks: x2 upsampling (transposed conv or resize-conv), 3x3 conv, norm, relu
        n = cfg.n_res_blocks
        self.up_norm_ids = (f"{4 + n:02d}", f"{5 + n:02d}")  # ("12", "13") for the paper
        self.deconv01_1 = self._upsampler(c3, c2)
        self.deconv01_2 = nn.Conv2d(c2, c2, 3, 1, 1)
        self.add_module(f"in{self.up_norm_ids[0]}_1", InstanceNorm(c2, eps))
        self.deconv02_1 = self._upsampler(c2, c1)
        self.deconv02_2 = nn.Conv2d(c1, c1, 3, 1, 1)
        self.add_module(f"in{self.up_norm_ids[1]}_1", InstanceNorm(c1, eps))
        # 5. output conv: 7x7 to RGB, reflection pad 3, then tanh
        self.deconv03_1 = _conv_reflect(c1, 3, 7)
        _init_gan_weights(self)
        if cfg.prior != "none":  # a correction of the prior that starts at zero: G(A) = A before training
            nn.init.zeros_(self.deconv03_1.weight)
            nn.init.zeros_(self.deconv03_1.bias)

    def _upsampler(self, cin: int, cout: int) -> nn.Module:
        if self.cfg.upsample == "deconv":
            return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        return ResizeConv2d(cin, cout, self.cfg.resize_mode)

    def _residual(self, x: torch.Tensor, r: str) -> torch.Tensor:  # (B, C3, h, w) -> (B, C3, h, w)
        y = F.relu(self.get_submodule(f"in{r}_1")(self.get_submodule(f"conv{r}_1")(x)))
        y = self.get_submodule(f"in{r}_2")(self.get_submodule(f"conv{r}_2")(y))
        return x + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [-1, 1], (B, 3, H, W) -> cartoon RGB in [-1, 1], (B, 3, H, W).

        With ``cfg.prior = "abstraction"``, ``x`` is the abstraction of the photo (not the photo) and the
        output is ``clamp(x + trunk(x), -1, 1)``: the trunk draws a correction of the classical cartoon.
        Fast inference: pass a channels-last ``x`` (and ``model.to(memory_format=torch.channels_last)``);
        every layer then stays channels-last (see ``ops.py``).
        """
        h, w = x.shape[-2:]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"CartoonGenerator: input {h}x{w} is too small (need H, W >= {MIN_SIDE})")
        if frame_by_frame(x):
            return torch.cat([self(x[i : i + 1]) for i in range(len(x))])  # (B, 3, H, W) channels-last
        y = self.conv01_1(_pad_to_multiple(x, 4))  # (B, C1, H4, W4)
        return self.finish(self.trunk(y)[..., :h, :w], x)  # (B, 3, H, W)

    def finish(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output ``y`` and the input ``x`` (both (B, 3, H, W) RGB) -> the output: the prior
        plus the correction (``prior``), then the chroma anchor (``chroma``)."""
        if self.cfg.prior != "none":
            y = (x + y).clamp(-1.0, 1.0)  # (B, 3, H, W): the abstraction plus the learned correction
        return y if self.cfg.chroma == "free" else anchor_chroma(y, x, self.cfg.chroma)

    def trunk(self, y: torch.Tensor) -> torch.Tensor:
        """Everything after the flat conv ``conv01_1``: (B, C1, H4, W4) -> (B, 3, H4, W4) in [-1, 1]."""
        y = F.relu(self.in01_1(y))  # (B, C1, H4, W4)
        y = F.relu(self.in02_1(self.conv02_2(self.conv02_1(y))))  # (B, C2, H4/2, W4/2)
        y = F.relu(self.in03_1(self.conv03_2(self.conv03_1(y))))  # (B, C3, H4/4, W4/4)
        for r in self.res_ids:
            y = self._residual(y, r)  # (B, C3, H4/4, W4/4)
        up1, up2 = (self.get_submodule(f"in{i}_1") for i in self.up_norm_ids)
        y = F.relu(up1(self.deconv01_2(self.deconv01_1(y))))  # (B, C2, H4/2, W4/2)
        y = F.relu(up2(self.deconv02_2(self.deconv02_1(y))))  # (B, C1, H4, W4)
        return torch.tanh(self.deconv03_1(y))  # (B, 3, H4, W4)


# ----------------------------------------------------------------------------------------------
# discriminator

    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> Path:
        """``{"model": state_dict, "config": asdict(cfg), "version", "arch", **extra}``, atomically."""
        return _save_checkpoint(path, self, self.cfg, extra)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
                        ) -> CartoonGenerator:
        """Rebuild the generator from the config inside its own checkpoint (eval mode)."""
        return _from_checkpoint(path, map_location)

class CartoonDiscriminator(nn.Module):
    """PatchGAN-like discriminator of paper Fig. 2; returns one LOGIT per patch at 1/4 resolution.

    k3n32s1 -> [k3n64s2, k3n128s1 + norm] -> [k3n128s2, k3n256s1 + norm] -> k3n256s1 + norm -> k3n1s1,
    LeakyReLU(0.2) after every conv but the last. No sigmoid: the losses use BCE-with-logits
    (``deeperfour.losses.cartoon``), which is numerically stable. Instance norm is the default because
    the three batches of Eqs. (4)-(6) (cartoons, edge-smoothed, generated) are usually fed separately,
    and batch statistics would then tell D which batch it is looking at.
    Input RGB in [-1, 1], (B, 3, H, W) -> (B, 1, ceil(H/4), ceil(W/4)).
    """

    def __init__(self, cfg: CartoonGANConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CartoonGANConfig()
        c = cfg.d_base_channels

        def norm(ch: int) -> nn.Module:
            if cfg.d_norm == "batch":
                return nn.BatchNorm2d(ch)
            return nn.InstanceNorm2d(ch, affine=True)

        def conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, stride, 1)

        act = nn.LeakyReLU(0.2)
        self.layers = nn.Sequential(
            conv(3, c), act,  # (B, c, H, W)
            conv(c, 2 * c, 2), act, conv(2 * c, 4 * c), norm(4 * c), act,  # (B, 4c, H/2, W/2)
            conv(4 * c, 4 * c, 2), act, conv(4 * c, 8 * c), norm(8 * c), act,  # (B, 8c, H/4, W/4)
            conv(8 * c, 8 * c), norm(8 * c), act,  # (B, 8c, H/4, W/4)
            conv(8 * c, 1),  # (B, 1, H/4, W/4) logits
        )
        _init_gan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1, ceil(H/4), ceil(W/4))
        return self.layers(x)


# ----------------------------------------------------------------------------------------------
# our own checkpoints


def _save_checkpoint(
    path: str | os.PathLike, model: nn.Module, cfg: CartoonGANConfig, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``{"model": state_dict, "config": asdict(cfg), "version": 1, "arch": ..., **extra}``.

    Atomic: written to a temporary file in the same folder, then ``os.replace``-d over ``path``, so an
    interrupted run never leaves a truncated checkpoint under the final name.
    """
    path = Path(path)
    extra = dict(extra or {})
    reserved = {"model", "config", "version", "arch"} & set(extra)
    if reserved:
        raise ValueError(f"save: extra may not override reserved keys {sorted(reserved)}")
    ckpt = {"model": model.state_dict(), "config": asdict(cfg), "version": CHECKPOINT_VERSION,
            "arch": type(model).__name__, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` (weights only, no arbitrary unpickling) with a one-line error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CartoonGANWeightsError(path, f"not a readable torch file (truncated or not a .pth?): "
                                           f"{first_line}") from e


def config_from_dict(d: Mapping[str, Any]) -> CartoonGANConfig:
    """Rebuild a config from ``asdict`` output, ignoring keys this version does not know."""
    known = {f.name for f in fields(CartoonGANConfig)}
    return CartoonGANConfig(**{k: v for k, v in d.items() if k in known})


def _from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CartoonGenerator:
    """Rebuild a :class:`CartoonGenerator` from its own checkpoint (architecture from the stored config)."""
    path = Path(path)
    ckpt = _torch_load(path, map_location)
    if not isinstance(ckpt, dict) or not {"model", "config", "version"} <= set(ckpt):
        hint = " (a released CartoonGAN file? use load_released_cartoongan)" if isinstance(ckpt, dict) else ""
        raise CartoonGANWeightsError(path, f"not a DeeperFour checkpoint: no model/config/version{hint}")
    if ckpt["version"] != CHECKPOINT_VERSION:
        found, want = ckpt["version"], CHECKPOINT_VERSION
        raise CartoonGANWeightsError(path, f"checkpoint version {found}, this code reads version {want}")
    if ckpt.get("arch", "CartoonGenerator") != "CartoonGenerator":
        raise CartoonGANWeightsError(path, f"holds a {ckpt['arch']}, not a CartoonGenerator")
    model = CartoonGenerator(config_from_dict(ckpt["config"]))
    _check_state_dict(path, ckpt["model"], model)
    model.load_state_dict(ckpt["model"])
    return model


# ----------------------------------------------------------------------------------------------
# released weights (Yijunmaverick/CartoonGAN-Test-Pytorch-Torch: <Style>_net_G_float.pth)


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _check_state_dict(path: Path, sd: Any, model: nn.Module) -> None:
    """Raise a one-line error unless ``sd`` has exactly ``model``'s keys and shapes."""
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CartoonGANWeightsError(path, "not a state_dict (expected a dict of tensors)")
    if any(str(k).startswith("layers.") for k in sd):
        raise CartoonGANWeightsError(path, "looks like a DeOldify colorizer (keys 'layers.*'), not a "
                                           "CartoonGAN generator; load it with deeperfour.models.deoldify")
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)}!={list(v.shape)}" for k, v in expected.items()
             if k in sd and sd[k].shape != v.shape]
    problems = [f"{len(missing)} missing ({_few(missing)})" if missing else "",
                f"{len(unexpected)} unexpected ({_few(unexpected)})" if unexpected else "",
                f"{len(wrong)} wrong shape ({_few(wrong)})" if wrong else ""]
    problems = [p for p in problems if p]
    if problems:
        raise CartoonGANWeightsError(path, f"keys do not match the {len(expected)}-key CartoonGAN "
                                           f"generator: {'; '.join(problems)}")


class ReleasedCartoonGAN(nn.Module):
    """A released CartoonGAN generator behind the project interface: RGB in [-1, 1] in and out.

    The released nets were trained on BGR input in [-1, 1] and produce BGR; this wrapper flips the
    channel order on the way in and out, so it can replace a :class:`CartoonGenerator` anywhere.
    Unlike the reference ``test.py`` it crops the output back to the input size.
    """

    def __init__(self, net: CartoonGenerator, path: str | os.PathLike | None = None):
        super().__init__()
        self.net = net
        self.cfg = net.cfg
        self.path = Path(path) if path else None
        name = self.path.name if self.path else ""
        self.style = name.split("_net_G")[0] if "_net_G" in name else None  # "Hayao", ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) RGB [-1, 1] -> same
        bgr = x.flip(1)  # RGB -> BGR: the released nets' channel order
        return self.net(bgr).flip(1)  # BGR -> RGB


def load_released_cartoongan(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                             ) -> ReleasedCartoonGAN:
    """Strict-load ``<Style>_net_G_float.pth`` (a bare 94-key state_dict) into the paper generator.

    Raises :class:`CartoonGANWeightsError` (one line, naming the file) for an unreadable or truncated
    file, a DeOldify file, a DeeperFour checkpoint, or missing/unexpected keys and wrong shapes.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    if isinstance(obj, dict) and isinstance(obj.get("model"), Mapping):
        if "config" in obj and "version" in obj:
            raise CartoonGANWeightsError(path, "is a DeeperFour checkpoint, not a released file; "
                                               "load it with CartoonGenerator.from_checkpoint()")
        obj = obj["model"]  # {'model': sd, 'opt': ...} wrappers (fastai style)
    net = CartoonGenerator(CartoonGANConfig(variant="paper"))
    _check_state_dict(path, obj, net)
    net.load_state_dict(obj, strict=True)
    return ReleasedCartoonGAN(net, path).eval()


# ----------------------------------------------------------------------------------------------
# the generators' pixel range: RGB in [-1, 1]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> float RGB in [-1, 1] (B, 3, h, w): the generator's input range."""
    return x.float() / 127.5 - 1.0


def to_uint8(y: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] (B, 3, h, w) -> (B, h, w, 3) uint8, rounded."""
    return ((y.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
