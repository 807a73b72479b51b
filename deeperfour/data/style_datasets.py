"""Cartoon style datasets and the photo domain (paper §2 step 3, "generating datasets with different
styles"; §4 and Fig. 3: edge-smoothed cartoons).

CartoonGAN learns a map from photos p_k to cartoons c_i and needs, per style, the edge-smoothed
cartoons e_j of Eq. (5). This module builds them once, as lossless PNG crops, into::

    <out>/manifest.json                    counts, sources, settings (what the stage built)
    <out>/styles/<style>/crops/NNNNN.png   random crop x crop cartoon crops c_i
    <out>/styles/<style>/smooth/NNNNN.png  the same crops edge-smoothed, e_j (deeperfour.data.edges)
    <out>/photo/train/NNNNN.png            photo crops p_k the generator trains on
    <out>/photo/test/NNNNN.png             held-out photo crops (metrics and the snapshot grid)

Style sources (``deeperfour.data.samples.style_sources``): the built-in ``bunny`` (Big Buck Bunny) and every
folder ``data/cartoons/<style>/`` of images or videos; videos are streamed, every k-th frame kept.
Optional ``clipart`` (when ``<art_dir>/openclipart`` exists; ``make data`` writes it,
``deeperfour.data.openclipart``): public-domain clip art (animals, people, food, buildings, ...) as SVGs,
rendered with cairosvg when that package is importable (skipped with a note otherwise). Its crops draw
from their own seeded generator, so adding it leaves every other style's crops and the photo domain as
they were.
Optional ``scratch`` (when ``art_dir`` is given and ``<art_dir>/scratch`` exists; ``make data`` writes it,
``deeperfour.data.debian_art``): the flat cartoon scenes and the ink-outline sprites of Debian's
``scratch`` package (CC-BY-SA-3.0, MIT), sprites composited over white; built last, so the styles
before it get the same crops with or without it. Its cut-out photographs are not used here.

Photo domain: the stills (with ``art_dir``: then the scratch photographs, ``art/scratch/photos``)
plus every frame-k of the real training clips that are not cartoon sources (``bigbuckbunny`` is a
cartoon; the demo film ``bikes`` is never used: it is kept for evaluation). Held out: a seeded
``holdout`` fraction of the stills (one permutation over all of them, scratch photos included) and,
per clip, its last ``holdout`` fraction of the sampled frames (later frames of a shot are
near-copies of earlier ones, so a random frame split would leak).

Everything is deterministic from ``seed``: sources in sorted order, one numpy Generator for every
crop offset. Sources are shrunk so the longer side is at most ``max_side`` before cropping, so a
crop holds a comparable amount of scene whatever the source resolution.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from deeperfour.data import openclipart, samples
from deeperfour.data.debian_art import load_art
from deeperfour.data.edges import edge_mask, edge_smooth, random_crops
from deeperfour.film.resize import shrink
from deeperfour.film.video import probe, read_frames

MANIFEST = "manifest.json"
CLIPART_STYLE = "clipart"
# art/scratch as deeperfour.data.debian_art.materialize_scratch writes it
SCRATCH_STYLE = "scratch"
SCRATCH_STYLE_KINDS = ("scenes", "sprites")  # drawn: the style (cutouts/ are photographs: never used here)
SCRATCH_PHOTOS = "photos"  # photographs: photo-domain stills
SCRATCH_SOURCE = "SOURCE.json"  # package, version, licence, copyright
ART_SUFFIXES = (*samples.IMAGE_SUFFIXES, ".gif")


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of ``build_datasets`` (the ``prepare_datasets`` params section)."""

    seed: int = 0  # seed of every crop offset and of the held-out stills
    crop: int = 256  # crop side, px (CartoonGAN: 256)
    max_side: int = 512  # sources shrunk so the longer side <= max_side px before cropping (0 = never)
    style_frame_stride: int = 4  # keep every k-th frame of a style video
    style_crops_per_image: int = 4  # random crops per style image / kept frame
    photo_frame_stride: int = 4  # keep every k-th frame of a photo-domain clip
    photo_crops_per_image: int = 8  # random crops per still
    photo_crops_per_frame: int = 1  # random crops per kept clip frame
    holdout: float = 0.25  # fraction of stills and of each clip's (last) frames held out, 0..0.9
    clipart_max: int = 200  # SVGs rendered for the optional clipart style (0 = skip it)

    def __post_init__(self):
        if self.crop < 16:
            raise ValueError(f"crop={self.crop}: expected at least 16 px")
        if not 0.0 <= self.holdout < 0.9:
            raise ValueError(f"holdout={self.holdout}: expected 0 <= holdout < 0.9")
        for name in ("style_frame_stride", "photo_frame_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")


# ----------------------------------------------------------------------------------------------
# reading sources


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in samples.VIDEO_SUFFIXES


def _video_frames(path: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) of every ``stride``-th frame, streamed (one decoded frame in memory)."""
    for i, frame in enumerate(read_frames(path)):
        if i % stride == 0:
            yield i, frame


def _render_svg(path: Path, size: int) -> np.ndarray:
    """Render an SVG with cairosvg at ``size`` px wide, alpha-composited over white: (H, W, 3) uint8."""
    import cairosvg  # optional dependency: callers check clipart_available() first

    png = cairosvg.svg2png(url=str(path), output_width=size)
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cairosvg produced no image")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGRA)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    alpha = img[..., 3:4].astype(np.float32) / 255.0  # (H, W, 1)
    rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32)  # (H, W, 3)
    return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _clipart_image(path: Path, side: int, scale: float = 1.25) -> np.ndarray:
    """An SVG drawn so that its longer side is ``scale`` x the crop ``side``, on a white canvas of at least
    ``side`` x ``side``: every random crop then shows most of the drawing. Rendered larger (at
    ``max_side``, as before), a 256-px crop of clip art was often the empty white around it."""
    img = _render_svg(path, 2 * side)  # (h, 2 side, 3): cairosvg renders by width
    h, w = img.shape[:2]
    f = scale * side / max(h, w)
    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    canvas = np.full((max(h, side), max(w, side), 3), 255, np.uint8)
    y, x = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[y : y + h, x : x + w] = img
    return canvas  # (>= side, >= side, 3) uint8


def clipart_available() -> bool:
    """True when cairosvg can be imported (it needs the cairo C library as well)."""
    if importlib.util.find_spec("cairosvg") is None:
        return False
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _sprite_or_scene(path: Path, side: int) -> np.ndarray:
    """A scratch scene or sprite (``debian_art.load_art``: transparency over white). A sprite smaller
    than the crop is pasted, at its own size, in the middle of a white ``side``-px canvas instead of
    being upscaled (most are 20-250 px: an upscale would blur the ink lines the style should teach)."""
    img = load_art(path)  # (h, w, 3)
    h, w = img.shape[:2]
    if min(h, w) >= side:
        return img
    canvas = np.full((max(h, side), max(w, side), 3), 255, np.uint8)
    y, x = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
    canvas[y : y + h, x : x + w] = img
    return canvas


def scratch_sources(art_dir: str | os.PathLike | None) -> dict[str, list[Path]]:
    """{'scenes', 'sprites', 'photos': image files, each sorted} of ``<art_dir>/scratch``; {} when
    ``art_dir`` is None or holds no scratch folder (``make data`` / ``deeperfour data art`` write it)."""
    if art_dir is None or not (Path(art_dir) / SCRATCH_STYLE).is_dir():
        return {}
    root = Path(art_dir) / SCRATCH_STYLE
    return {k: sorted(p for p in (root / k).rglob("*") if p.is_file() and p.suffix.lower() in ART_SUFFIXES)
            if (root / k).is_dir() else [] for k in (*SCRATCH_STYLE_KINDS, SCRATCH_PHOTOS)}


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (manifests must not depend on the checkout)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


# ----------------------------------------------------------------------------------------------
# writing crops


class _CropWriter:
    """Numbered lossless PNGs ``NNNNN.png`` in one or two parallel folders (crops and smooth)."""

    def __init__(self, folder: Path, smooth_folder: Path | None = None):
        self.folder, self.smooth_folder = folder, smooth_folder
        folder.mkdir(parents=True, exist_ok=True)
        if smooth_folder is not None:
            smooth_folder.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.edge_fraction_sum = 0.0

    def add(self, crops: np.ndarray) -> None:
        """crops: (n, s, s, 3) uint8 RGB; also writes the edge-smoothed copies when asked."""
        for c in crops:
            name = f"{self.n:05d}.png"
            _imwrite(self.folder / name, c)
            if self.smooth_folder is not None:
                self.edge_fraction_sum += float(edge_mask(c).mean())
                _imwrite(self.smooth_folder / name, edge_smooth(c))  # Eq. (5) negatives e_j
            self.n += 1


def _imwrite(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"{path}: could not write the PNG (disk full or folder not writable?)")


# ----------------------------------------------------------------------------------------------
# the datasets


def _build_style(name: str, files: Sequence[Path], out: Path, cfg: DatasetConfig,
                 rng: np.random.Generator, data_root: Path, progress: bool,
                 load: Callable[[Path], np.ndarray] = samples.load_image) -> dict:
    """Crops and edge-smoothed crops of one style from its image / video / SVG files (images read
    with ``load``; ``sources`` in the result are relative to ``data_root``)."""
    writer = _CropWriter(out / "crops", out / "smooth")
    n_images = 0
    for f in tqdm(files, desc=f"style {name}", disable=not progress, leave=False):
        if _is_video(f):
            images: Iterator[np.ndarray] = (fr for _, fr in _video_frames(f, cfg.style_frame_stride))
        elif f.suffix.lower() == ".svg":
            images = iter([_clipart_image(f, cfg.crop)])
        else:
            images = iter([load(f)])
        for img in images:
            img = shrink(img, cfg.max_side)
            writer.add(random_crops(img, cfg.crop, cfg.style_crops_per_image, rng))  # (n, s, s, 3)
            n_images += 1
    if writer.n == 0:
        raise ValueError(f"style {name!r}: no image could be read from {[str(f) for f in files]}")
    return {"n_crops": writer.n, "n_images": n_images, "n_files": len(files),
            "sources": [_rel(f, data_root) for f in files],
            "edge_fraction": writer.edge_fraction_sum / writer.n,
            "crops": f"styles/{name}/crops", "smooth": f"styles/{name}/smooth"}


def photo_sources(data_dir: str | os.PathLike, art_dir: str | os.PathLike | None = None
                  ) -> tuple[list[Path], list[Path]]:
    """(stills, clips) of the photo domain: never a style source, never the demo film. The stills of
    ``data_dir`` come first, then (``art_dir``) the scratch photographs, each group sorted."""
    data_dir = Path(data_dir)
    styles = {p.resolve() for files in samples.style_sources(data_dir).values() for p in files}
    stills = [p for p in samples.training_stills(data_dir) if p.resolve() not in styles]
    stills += scratch_sources(art_dir).get(SCRATCH_PHOTOS, [])
    clips = [p for p in samples.training_clips(data_dir).values()
             if p.exists() and p.resolve() not in styles and "bikes" not in p.name]
    return stills, clips


def _split_count(n: int, frac: float) -> int:
    """How many of ``n`` items to hold out: round(frac * n), at least 1 when frac > 0 and n > 1."""
    if frac <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(frac * n)))


def _build_photos(data_dir: Path, out: Path, cfg: DatasetConfig, rng: np.random.Generator,
                  progress: bool, art_dir: Path | None = None) -> dict:
    """Photo crops, split into train and held-out test (see the module docstring)."""
    stills, clips = photo_sources(data_dir, art_dir)
    art = set(scratch_sources(art_dir).get(SCRATCH_PHOTOS, []))
    if not stills and not clips:
        raise FileNotFoundError(f"{data_dir}: no photo stills or clips (run `deeperfour data samples`)")
    held = set(rng.permutation(len(stills))[: _split_count(len(stills), cfg.holdout)].tolist())
    writers = {"train": _CropWriter(out / "train"), "test": _CropWriter(out / "test")}
    sources: dict[str, list[str]] = {"train": [], "test": []}
    for i, p in enumerate(tqdm(stills, desc="photo stills", disable=not progress, leave=False)):
        split = "test" if i in held else "train"
        img = shrink(load_art(p) if p in art else samples.load_image(p), cfg.max_side)
        writers[split].add(random_crops(img, cfg.crop, cfg.photo_crops_per_image, rng))
        sources[split].append(_rel(p, art_dir.parent) if p in art else _rel(p, data_dir))
    for clip in clips:
        n = -(-probe(clip).n_frames // cfg.photo_frame_stride)  # frames kept
        first_test = n - _split_count(n, cfg.holdout)
        frames = _video_frames(clip, cfg.photo_frame_stride)
        for k, (i, frame) in enumerate(tqdm(frames, total=n, desc=f"photo {clip.name}",
                                            disable=not progress, leave=False)):
            split = "test" if k >= first_test else "train"
            img = shrink(frame, cfg.max_side)
            writers[split].add(random_crops(img, cfg.crop, cfg.photo_crops_per_frame, rng))
            if k in (0, first_test):
                sources[split].append(f"{_rel(clip, data_dir)}@{i}")  # clip@first frame of the split
    return {split: {"n_crops": w.n, "dir": f"photo/{split}", "sources": sources[split]}
            for split, w in writers.items()}


def _art_record(art_dir: Path, scratch: dict[str, list[Path]]) -> dict:
    """The manifest's ``art.scratch``: where the files are, how many of each kind, their licence."""
    root = art_dir / SCRATCH_STYLE
    try:
        source = json.loads((root / SCRATCH_SOURCE).read_text())
    except (OSError, ValueError):
        source = {"package": "scratch", "licence": "CC-BY-SA-3.0",
                  "note": f"no readable {SCRATCH_SOURCE}: rewrite it with `deeperfour data art --source DIR`"}
    return {**source, "dir": _rel(root, art_dir.parent),
            "counts": {k: len(v) for k, v in scratch.items()},
            "used": {"scenes": f"style {SCRATCH_STYLE}", "sprites": f"style {SCRATCH_STYLE} (over white)",
                     "photos": "photo domain stills", "cutouts": "not used (real-vs-drawn probe)"}}


def _clipart_record(art_dir: Path, n_files: int, n_used: int) -> dict:
    """The manifest's ``art.clipart``: where the SVGs are, how many were rendered, their licence."""
    root = art_dir / openclipart.CLIPART_DIR.name
    try:
        source = json.loads((root / openclipart.SOURCE_FILE).read_text())
    except (OSError, ValueError):
        source = {"package": openclipart.APT_PACKAGE, "licence": openclipart.LICENCE,
                  "note": f"no readable {openclipart.SOURCE_FILE}: rewrite it with `deeperfour data clipart`"}
    return {**source, "dir": _rel(root, art_dir.parent), "counts": {"svgs": n_files, "rendered": n_used},
            "used": {"svgs": f"style {CLIPART_STYLE} (over white; real-vs-drawn probe)"}}


def build_datasets(data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: DatasetConfig,
                   styles: Sequence[str] | None = None, progress: bool = True,
                   art_dir: str | os.PathLike | None = None) -> dict:
    """Build every style dataset and the photo domain into ``out_dir``; return the manifest.

    ``styles``: names to build (default: all sources found, plus ``clipart`` when available).
    ``art_dir``: the folder holding ``scratch/`` (``art``; ``make data``): adds the style ``scratch``
    (scenes + sprites) after the others and the scratch photos to the photo stills; the manifest's
    ``art`` records their package, version, licence and counts.
    The tree is built in ``<out_dir>.partial`` and renamed at the end, so a failed run never leaves
    a half-built dataset under the final name.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    art_dir = None if art_dir is None else Path(art_dir)
    rng = np.random.default_rng(cfg.seed)
    sources = samples.style_sources(data_dir)
    notes: dict[str, str] = {}
    art: dict[str, dict] = {}
    loaders: dict[str, Callable[[Path], np.ndarray]] = {}
    roots: dict[str, Path] = {}
    svgs = openclipart.clipart_files(art_dir)
    if svgs and cfg.clipart_max > 0 and (styles is None or CLIPART_STYLE in styles):
        if clipart_available():  # at most clipart_max, evenly spaced over the categories
            n = min(cfg.clipart_max, len(svgs))
            keep = np.unique(np.linspace(0, len(svgs) - 1, n).round().astype(int))
            sources[CLIPART_STYLE] = [svgs[i] for i in keep]
            roots[CLIPART_STYLE] = art_dir.parent
            art[CLIPART_STYLE] = _clipart_record(art_dir, len(svgs), len(keep))
        else:
            notes[CLIPART_STYLE] = ("skipped: cairosvg is not importable, so the openclipart SVGs "
                                    "cannot be rendered (pip install cairosvg to add this style)")
    scratch = scratch_sources(art_dir)
    if scratch:
        art[SCRATCH_STYLE] = _art_record(art_dir, scratch)
        drawn = [p for k in SCRATCH_STYLE_KINDS for p in scratch[k]]  # scenes, then sprites
        if SCRATCH_STYLE in sources:
            notes[SCRATCH_STYLE] = (f"the folder data/cartoons/{SCRATCH_STYLE}/ is the style "
                                    f"{SCRATCH_STYLE!r}; the Debian scratch scenes and sprites are not "
                                    "used (rename that folder to use both)")
        elif drawn:
            sources[SCRATCH_STYLE] = drawn
            loaders[SCRATCH_STYLE] = lambda path: _sprite_or_scene(path, cfg.crop)
            roots[SCRATCH_STYLE] = art_dir.parent
        else:
            notes[SCRATCH_STYLE] = f"skipped: no scene or sprite image under {art_dir / SCRATCH_STYLE}"
    elif art_dir is not None:
        notes[SCRATCH_STYLE] = (f"skipped: no {art_dir / SCRATCH_STYLE} (run `make data`, or "
                                "`deeperfour data art --source DIR` on an unpacked Debian scratch package)")
    if styles is not None:
        unknown = [s for s in styles if s not in sources and s not in notes]
        if unknown:
            raise KeyError(f"unknown style(s) {unknown}; found: {', '.join(sources)} "
                           f"(add a folder data/cartoons/<style>/ of images or videos; style "
                           f"{SCRATCH_STYLE!r} needs art_dir with {SCRATCH_STYLE}/ from `make data`)")
        sources = {s: sources[s] for s in styles if s in sources}
        if SCRATCH_STYLE not in styles:
            notes.pop(SCRATCH_STYLE, None)
    order = [s for s in sources if s != SCRATCH_STYLE] + [s for s in sources if s == SCRATCH_STYLE]
    sources = {s: sources[s] for s in order}  # scratch last: the styles before it keep their crops

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = {"config": asdict(cfg), "styles": {}, "notes": notes, "art": art}
        for name, files in sources.items():
            # clipart crops from a generator of their own: the other styles and the photos keep theirs
            style_rng = np.random.default_rng([cfg.seed, 1]) if name == CLIPART_STYLE else rng
            manifest["styles"][name] = _build_style(
                name, files, tmp / "styles" / name, cfg, style_rng, roots.get(name, data_dir), progress,
                load=loaders.get(name, samples.load_image))
        manifest["photo"] = _build_photos(data_dir, tmp / "photo", cfg, rng, progress, art_dir)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return manifest


# ----------------------------------------------------------------------------------------------
# reading the datasets back (stage train_cartoongan)


def read_manifest(out_dir: str | os.PathLike) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dataset manifest; build the datasets first "
                                "(dvc repro prepare_datasets)")
    return json.loads(path.read_text())


def _read_pngs(folder: Path, limit: int | None = None) -> np.ndarray:
    files = sorted(folder.glob("*.png"))[:limit]
    if not files:
        raise FileNotFoundError(f"{folder}: no PNG crops; rebuild the datasets (dvc repro prepare_datasets)")
    return np.stack([samples.load_image(f) for f in files])  # (N, s, s, 3) uint8


def load_style(out_dir: str | os.PathLike, style: str, limit: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """(crops, smooth): the cartoon crops c_i and their edge-smoothed e_j, each (N, s, s, 3) uint8."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    if style not in manifest["styles"]:
        raise KeyError(f"{out_dir / MANIFEST}: no style {style!r} (built: {', '.join(manifest['styles'])})")
    entry = manifest["styles"][style]
    return _read_pngs(out_dir / entry["crops"], limit), _read_pngs(out_dir / entry["smooth"], limit)


def load_photos(out_dir: str | os.PathLike, split: str = "train", limit: int | None = None) -> np.ndarray:
    """Photo crops of ``split`` ('train' or 'test'): (N, s, s, 3) uint8."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    read_manifest(out_dir)
    return _read_pngs(Path(out_dir) / "photo" / split, limit)
