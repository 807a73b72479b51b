"""DeOldify-compatible colorization generator: loads the released ``Colorize*_gen.pth`` files.

The released generators (reference.md section 1; /work/shared/deoldify/README.md) are fastai v1
U-Nets on a torchvision ResNet. This module rebuilds them from its own small blocks so that the
``state_dict`` keys and shapes are exactly DeOldify's (the key names are the public interface):

    layers.0   ResNet body (torchvision children minus avgpool/fc)
    layers.1   BatchNorm on the body output, layers.2 ReLU
    layers.3   middle: 2 x [SN 3x3 conv, ReLU, BN], width x2 then back
    layers.4-7 U-Net up-blocks (skips: layer3, layer2, layer1, stem); self-attention in layers.5
    layers.8   PixelShuffle x2 with a weight-norm 1x1 conv
    layers.9   dense merge: concatenate the network input (3 channels)
    layers.10  residual block, layers.11 final SN 1x1 conv -> 3, layers.12 SigmoidRange(-3, 3)

"deep" = the artistic model (ResNet34, nf_factor 1.5, two convs per block, ~64 M parameters);
"wide" = the stable and video models (ResNet101, width 1024, one conv per block, ~218 M).
Spectral norm is torch's hook-based ``spectral_norm``, whose keys are the released ones
(``weight_orig``, ``weight_u``, ``weight_v``); in eval mode it uses the stored u, v without power
iteration: W = weight_orig / sigma, sigma = u . (W_mat @ v).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from deeperfour.models.blocks import (
    MergeLayer,
    PixelShuffleUp,
    ResBlock,
    SigmoidRange,
    UnetBlockDeep,
    UnetBlockWide,
    batchnorm_2d,
    conv_block,
    settle_spectral_norm,
    spectral_norm_modules,
)

CHECKPOINT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the model's input/output space: ImageNet-normalized RGB
IMAGENET_STD = (0.229, 0.224, 0.225)
RENDER_BASE = 16  # model input side = 16 * render_factor (DeOldify ColorizerFilter)
RELEASED_FILES = {"ColorizeArtistic_gen.pth": "artistic", "ColorizeStable_gen.pth": "stable",
                  "ColorizeVideo_gen.pth": "video"}
RESNETS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3)),
           101: (Bottleneck, (3, 4, 23, 3)), 152: (Bottleneck, (3, 8, 36, 3))}
SKIP_IDX = (2, 4, 5, 6)  # body children whose outputs feed the up-blocks: stem ReLU, layer1, layer2, layer3
CARTOONGAN_HINT_KEYS = ("conv01_1.weight", "in01_1.scale", "deconv03_1.weight")


class DeOldifyWeightsError(ValueError):
    """A file that is not a loadable DeOldify generator; the message names the file and the mismatch."""


@dataclass
class DeOldifyConfig:
    """Everything needed to rebuild a generator; saved inside our own checkpoints.

    The released files carry no config: ``infer_config`` reads it back from their key shapes.
    """

    arch: str = "wide"  # "deep" = artistic (conv1/conv2 per block) | "wide" = stable/video (one `conv`)
    resnet: int = 101  # encoder depth: 18 | 34 (artistic) | 50 | 101 (stable/video) | 152
    body_width: int = 64  # encoder stem width; 64 = torchvision's ResNet, smaller only for tiny test models
    nf_factor: float = 2.0  # deep: block width = int(in_channels * nf_factor); wide: nf = 512 * nf_factor
    nf: int | None = None  # wide only: decoder width (1024 for stable/video); None -> 512 * nf_factor
    y_range: tuple[float, float] = (-3.0, 3.0)  # SigmoidRange of the output, ImageNet-normalized RGB

    def __post_init__(self):
        if self.arch not in ("deep", "wide"):
            raise ValueError(f"arch must be 'deep' or 'wide', got {self.arch!r}")
        if self.resnet not in RESNETS:
            raise ValueError(f"resnet must be one of {sorted(RESNETS)}, got {self.resnet}")
        if self.arch == "deep" and self.nf is not None:
            raise ValueError("nf is a knob of the wide decoder; the deep one is sized by nf_factor")
        if self.arch == "wide":  # canonical: nf set, nf_factor = nf / 512, so inferred configs compare equal
            self.nf = int(self.nf) if self.nf is not None else int(512 * self.nf_factor)
            self.nf_factor = self.nf / 512
        self.y_range = tuple(float(v) for v in self.y_range)

    @property
    def width(self) -> int:
        """Wide decoder width nf (U-Net blocks output nf/2, the last one nf/4)."""
        return int(self.nf)

    @classmethod
    def preset(cls, name: str) -> DeOldifyConfig:
        """The released layouts: 'artistic' (gen_inference_deep) or 'stable'/'video' (gen_inference_wide)."""
        if name == "artistic":
            return cls(arch="deep", resnet=34, nf_factor=1.5)
        if name in ("stable", "video"):
            return cls(arch="wide", resnet=101, nf_factor=2.0)
        raise ValueError(f"unknown DeOldify preset {name!r} (artistic, stable, video)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeOldifyConfig:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def resnet_body(depth: int, width: int = 64) -> nn.Sequential:
    """torchvision ResNet without avgpool/fc (built with weights=None: nothing is downloaded).

    ``width`` != 64 builds the same layout (same key names) from torchvision's blocks with all
    channels scaled, for tiny test models.
    """
    if width == 64:
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        return nn.Sequential(*list(net.children())[:-2])
    block, counts = RESNETS[depth]
    stem = [nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]
    stages, inplanes = [], width
    for i, n in enumerate(counts):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        blocks = []
        for j in range(n):
            down = None
            if j == 0 and (stride != 1 or inplanes != planes * block.expansion):
                down = nn.Sequential(conv1x1(inplanes, planes * block.expansion, stride),
                                     nn.BatchNorm2d(planes * block.expansion))
            blocks.append(block(inplanes, planes, stride if j == 0 else 1, down))
            inplanes = planes * block.expansion
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stem, *stages)


def _body_channels(body: nn.Sequential) -> list[int]:
    """Output channels of the stem and layer1..layer4."""
    last = [stage[-1] for stage in body[4:8]]
    return [body[1].num_features] + [(b.bn3 if hasattr(b, "bn3") else b.bn2).num_features for b in last]


# ---------------------------------------------------------------- the generator


class DeOldifyGenerator(nn.Module):
    """The DeOldify U-Net; ``forward``: ImageNet-normalized gray-as-RGB (B, 3, H, W) -> same space.

    H and W must be even (the final x2 upsample is concatenated with the input).
    """

    def __init__(self, config: DeOldifyConfig):
        super().__init__()
        self.config = config
        body = resnet_body(config.resnet, config.body_width)
        stem_c, l1_c, l2_c, l3_c, l4_c = _body_channels(body)
        skips = [l3_c, l2_c, l1_c, stem_c]  # deepest first, as the decoder meets them
        middle = nn.Sequential(conv_block(l4_c, 2 * l4_c), conv_block(2 * l4_c, l4_c))
        blocks, up_in = [], l4_c
        for i, skip_in in enumerate(skips):
            final = i == len(skips) - 1
            sa = i == 1  # fastai: self_attention and i == len(sfs_idxs) - 3
            if config.arch == "deep":
                block = UnetBlockDeep(up_in, skip_in, config.nf_factor, not final, self_attention=sa)
            else:
                n_out = config.width if not final else config.width // 2
                block = UnetBlockWide(up_in, skip_in, n_out, self_attention=sa)
            blocks.append(block)
            up_in = block.out_channels
        ni = up_in + 3  # after the dense merge with the input
        self.layers = nn.ModuleList([
            body, batchnorm_2d(l4_c), nn.ReLU(), middle, *blocks,
            PixelShuffleUp(up_in, up_in, norm="weight"), MergeLayer(), ResBlock(ni),
            conv_block(ni, 3, ks=1, bias=True, relu=False, bn=False), SigmoidRange(*config.y_range),
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"DeOldify needs even H and W, got {tuple(x.shape[-2:])}")
        body, bn, relu, middle, *blocks, shuf, merge, res, final, out_range = self.layers
        skips, h = [], x
        for i, m in enumerate(body):
            h = m(h)
            if i in SKIP_IDX:
                skips.append(h)  # (B, c, H/2, W/2), (H/4), (H/8), (H/16)
        h = middle(relu(bn(h)))  # (B, C4, H/32, W/32)
        for block, skip in zip(blocks, reversed(skips), strict=True):
            h = block(h, skip)  # up to (B, c, H/2, W/2)
        h = merge(shuf(h), x)  # (B, c + 3, H, W)
        return out_range(final(res(h)))  # (B, 3, H, W)


def build_deoldify(config: DeOldifyConfig | str, device: str | torch.device | None = None
                   ) -> DeOldifyGenerator:
    """A new generator: ``config`` or a preset name ('artistic', 'stable', 'video').

    ``device="meta"`` builds the layout without memory (for key checks and fast loading).
    """
    config = DeOldifyConfig.preset(config) if isinstance(config, str) else config
    with torch.device(device or "cpu"):
        model = DeOldifyGenerator(config)
    if torch.device(device or "cpu").type != "meta":
        settle_spectral_norm(model)
    return model


# ---------------------------------------------------------------- loading


def _few(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def _read_checkpoint(path: Path, map_location: Any) -> tuple[dict[str, torch.Tensor], DeOldifyConfig | None]:
    """(state_dict, stored config or None) from a released fastai file or from ``save_deoldify``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (put the released DeOldify weights under models/)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DeOldifyWeightsError(f"{path}: cannot be read as a torch checkpoint (truncated, corrupt "
                                   f"or not a .pth file?): {type(e).__name__}: {first}") from e
    config = None
    if isinstance(obj, Mapping) and set(obj) == {"model", "opt"}:
        obj = obj["model"]  # fastai Learner.save(with_opt=True)
    elif isinstance(obj, Mapping) and "model" in obj and "config" in obj:
        config = DeOldifyConfig.from_dict(obj["config"])  # our own save_deoldify
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, Mapping) else f"dict with keys {_few(list(obj))}"
        raise DeOldifyWeightsError(f"{path}: expected a DeOldify generator state_dict (bare or in "
                                   f"{{'model','opt'}}), found a {kind}")
    if any(k in obj for k in CARTOONGAN_HINT_KEYS):
        raise DeOldifyWeightsError(f"{path}: this looks like a CartoonGAN generator (keys like "
                                   "'conv01_1.weight'), not a DeOldify colorizer; use the CartoonGAN loader")
    if not any(k.startswith("layers.") for k in obj):
        raise DeOldifyWeightsError(f"{path}: expected DeOldify keys 'layers.<i>.*', found {_few(list(obj))}")
    return dict(obj), config


def _resnet_depth(sd: Mapping[str, torch.Tensor]) -> int:
    """Body depth from the block counts of layers.0.4-7 and the block type (Bottleneck has conv3)."""
    counts = tuple(len({k.split(".")[3] for k in sd if k.startswith(f"layers.0.{s}.")}) for s in range(4, 8))
    block = Bottleneck if "layers.0.4.0.conv3.weight" in sd else BasicBlock
    for depth, layout in RESNETS.items():
        if layout == (block, counts):
            return depth
    raise KeyError(f"a ResNet body with {block.__name__}s {list(counts)}")


def infer_config(sd: Mapping[str, torch.Tensor]) -> DeOldifyConfig:
    """Read the architecture back from key names and shapes (the released files store no config).

    ``layers.4.conv1`` -> deep (artistic) with nf_factor = out/in of that conv; ``layers.4.conv`` ->
    wide (stable/video) with nf = 2 x its out channels. Body width from ``layers.0.0.weight``.
    Raises KeyError naming what it could not find.
    """
    if "layers.4.conv1.0.weight_orig" in sd:
        out, ni = sd["layers.4.conv1.0.weight_orig"].shape[:2]
        arch, extra = "deep", {"nf_factor": round(out / ni, 6)}
    elif "layers.4.conv.0.weight_orig" in sd:
        nf = 2 * sd["layers.4.conv.0.weight_orig"].shape[0]
        arch, extra = "wide", {"nf": nf}
    else:
        raise KeyError("'layers.4.conv1.0.weight_orig' (artistic) or 'layers.4.conv.0.weight_orig' (stable)")
    if "layers.0.0.weight" not in sd:
        raise KeyError("'layers.0.0.weight' (ResNet stem)")
    width = sd["layers.0.0.weight"].shape[0]
    return DeOldifyConfig(arch=arch, resnet=_resnet_depth(sd), body_width=width, **extra)


def _check_layout(path: Path, sd: Mapping[str, torch.Tensor], model: nn.Module, what: str) -> None:
    """One-line error listing a few missing / unexpected / wrongly shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {list(sd[k].shape)} (expected {list(v.shape)})" for k, v in expected.items()
              if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing ({_few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_few(unexpected)})" if unexpected else "",
                 f"{len(shapes)} wrong shapes ({_few(shapes)})" if shapes else ""]
        raise DeOldifyWeightsError(f"{path}: does not match the expected {what} layout: "
                                   + "; ".join(p for p in parts if p))


def load_deoldify(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                  config: DeOldifyConfig | str | None = None) -> tuple[DeOldifyGenerator, DeOldifyConfig]:
    """Load ``ColorizeArtistic_gen.pth`` / ``ColorizeStable_gen.pth`` / ``ColorizeVideo_gen.pth``.

    Accepts a raw state_dict, fastai's ``{'model', 'opt'}`` wrapper, or a ``save_deoldify`` file.
    The architecture comes from the file (stored config, else key shapes) unless ``config`` (or a
    preset name) is given. Loads strictly, returns the model in eval mode on ``map_location``.
    Raises DeOldifyWeightsError with a one-line message naming the file otherwise.
    """
    path = Path(path)
    sd, stored = _read_checkpoint(path, map_location)
    if isinstance(config, str):
        config = DeOldifyConfig.preset(config)
    if config is None:
        config = stored
    if config is None:
        try:
            config = infer_config(sd)
        except KeyError as e:
            raise DeOldifyWeightsError(f"{path}: not a DeOldify generator: expected {e.args[0]}, found keys "
                                       f"{_few(sorted(sd), 4)}") from e
    model = build_deoldify(config, device="meta")  # layout only: the file supplies every value
    family = "artistic" if config.arch == "deep" else "stable/video"
    what = f"DeOldify {config.arch} ({family}, resnet{config.resnet})"
    _check_layout(path, sd, model, what)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}  # fp16 files -> float32
    model.load_state_dict(sd, strict=True, assign=True)
    model.to(map_location)
    for m in spectral_norm_modules(model):  # hook attribute `weight` still points at the meta tensor
        with torch.no_grad():
            m.weight = m.weight_orig / torch.dot(m.weight_u, m.weight_orig.flatten(1) @ m.weight_v)
    return model.eval(), config


def save_deoldify(path: str | os.PathLike, model: DeOldifyGenerator) -> Path:
    """Our format, {'model': state_dict, 'config': dict, 'version'}: the config travels with the weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": model.config.to_dict(), "version": CHECKPOINT_VERSION},
               path)
    return path


# ---------------------------------------------------------------- inference contract

