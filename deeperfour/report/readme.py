"""The exported report: every stage's metrics in one JSON, and ``reports/README.md`` with figures.

All numbers in the Markdown are formatted from the same values written to
``reports/metrics/evaluate.json``, so the report and the JSON cannot disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

from deeperfour.core.results import read_json

STAGES = ("frames", "colorize", "colorize_reference", "prepare_datasets", "train_cartoongan", "temporal_loss",
          "convlstm")
TITLES = {
    "frames": "1. Cutting the film into frames and shots",
    "colorize": "2. Colorization (DeOldify-style)",
    "colorize_reference": "2b. Reference-guided colorization: keyframes carried through each shot",
    "prepare_datasets": "3. Cartoon style datasets",
    "train_cartoongan": "4. Cartoonization (CartoonGAN)",
    "temporal_loss": "5a. Stabilization: temporal loss (Ruder et al.)",
    "convlstm": "5b. Stabilization: ConvLSTM (Lai et al.)",
}


def gather_metrics(metrics_dir: str | os.PathLike, stages=STAGES) -> dict[str, dict]:
    """{stage: metrics} for every stage whose ``<stage>.json`` exists."""
    metrics_dir = Path(metrics_dir)
    return {s: read_json(metrics_dir / f"{s}.json") for s in stages if (metrics_dir / f"{s}.json").exists()}


def flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dict -> [("a.b.c", scalar)]; lists of scalars are kept as one value."""
    rows: list[tuple[str, object]] = []
    for k in sorted(d):
        v, key = d[k], f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flatten(v, key + ".")
        else:
            rows.append((key, v))
    return rows


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def metrics_table(metrics: dict) -> str:
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| `{k}` | {_fmt(v)} |" for k, v in flatten(metrics)]
    return "\n".join(rows)


METHODS = ("per_frame", "flow_blend", "temporal_loss", "convlstm")


def stabilizer_table(metrics: dict[str, dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{video: {method: scores}} merged from stages ``temporal_loss`` and ``convlstm`` (methods they share,
    per-frame and flow blend, are scored identically by both; ``convlstm``'s copy is kept)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for stage in ("temporal_loss", "convlstm"):
        for video in ("cartoon", "colorized"):
            for method, scores in metrics.get(stage, {}).get(video, {}).items():
                out.setdefault(video, {})[method] = scores
    return {v: {m: t[m] for m in METHODS if m in t} for v, t in out.items()}


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float | str) else float("nan")


def headline(metrics: dict[str, dict]) -> str:
    """The report's headline tables (Markdown), every number read from ``metrics`` (= evaluate.json)."""
    lines = []
    col = metrics.get("colorize")
    if col:
        lines += ["| colorization (demo film, vs. its color original) | CIEDE2000 ↓ | colorfulness | CDC ↓ |",
                  "|---|---|---|---|"]
        for key, name in (("model", "colorizer"), ("gray", "gray input"), ("shuffled", "shuffled chroma"),
                          ("ground_truth", "color original")):
            m = col.get(key, {})
            lines.append(f"| {name} | {_fmt(m.get('ciede2000', '—'))} | {_fmt(m.get('colorfulness', '—'))} | "
                         f"{_fmt(m.get('cdc', '—'))} |")
        lines.append("")
    ref = metrics.get("colorize_reference")
    if ref:
        lines += ["| reference colorization (each shot's first frame colored; other frames scored) | "
                  "CIEDE2000 ↓ | CIEDE2000, ≥ 30 frames away ↓ | CDC ↓ | E_warp ↓ |", "|---|---|---|---|---|"]
        for key, name in (("gray", "keyframes: gray input"), ("copy", "keyframes: chroma copied"),
                          ("chain_warp", "keyframes: chained flow warps"),
                          ("classical", "keyframes: classical propagation"),
                          ("refined", "keyframes: classical + refiner")):
            m, far = ref.get("first_frame", {}).get(key, {}), ref.get("first_frame_far", {}).get(key, {})
            lines.append(f"| {name}{' (default)' if key == ref.get('default_method') else ''} | "
                         f"{_fmt(m.get('ciede2000', '—'))} | {_fmt(far.get('ciede2000', '—'))} | "
                         f"{_fmt(m.get('cdc', '—'))} | {_fmt(m.get('ewarp', '—'))} |")
        for key, name in (("per_frame", "automatic: colorizer on every frame"),
                          ("keyframes", "automatic: colorizer on keyframes, propagated")):
            m = ref.get("auto", {}).get(key, {})
            lines.append(f"| {name} | {_fmt(m.get('ciede2000', '—'))} | | {_fmt(m.get('cdc', '—'))} | "
                         f"{_fmt(m.get('ewarp', '—'))} |")
        lines.append("")
    styles = metrics.get("train_cartoongan", {}).get("styles", {})
    if styles:
        lines += ["| cartoon style | style distance: input → output ↓ | content distance |", "|---|---|---|"]
        for name, m in styles.items():
            before, after = _fmt(m["style_distance_input"]), _fmt(m["style_distance_output"])
            lines.append(f"| {name} | {before} → {after} | {_fmt(m['content_distance'])} |")
        lines.append("")
    table = stabilizer_table(metrics)
    if table:
        source = metrics.get("convlstm", metrics.get("temporal_loss", {})).get("source_ewarp")
        lines += ["| stabilization | E_warp ↓ | vs. per-frame | PSNR to per-frame (dB) | perceptual to "
                  "per-frame ↓ | CDC ↓ |", "|---|---|---|---|---|---|"]
        for video, methods in table.items():
            base = _num(methods.get("per_frame", {}).get("ewarp"))
            for method, m in methods.items():
                change = "" if method == "per_frame" else f"{100 * (_num(m['ewarp']) / base - 1):+.0f} %"
                lines.append(f"| {video} · {method} | {_fmt(m['ewarp'])} | {change} | "
                             f"{_fmt(m['psnr_to_per_frame'])} | {_fmt(m['perceptual_to_per_frame'])} | "
                             f"{_fmt(m['cdc'])} |")
        if source is not None:
            lines.append(f"| color original (the floor) | {_fmt(source)} | | | | |")
        lines.append("")
    return "\n".join(lines)


def write_report(path: str | os.PathLike, metrics: dict[str, dict], figures_dir: str | os.PathLike,
                 strip: str | os.PathLike | None = None, site: str | os.PathLike | None = None) -> Path:
    """Write the Markdown report; figures (and the report site's ``index.html``, when given) are linked
    relative to the report's folder."""
    path = Path(path)
    base = path.parent
    figures_dir = Path(figures_dir)
    lines = ["# DeeperFour report", "",
             "Generated by `dvc repro` (stage `evaluate`, notebook `notebooks/06_evaluate.ipynb`) "
             "from the outputs of every stage. Numbers are those of `reports/metrics/evaluate.json`.", ""]
    if site:
        page = Path(os.path.relpath(site, base)).as_posix()
        lines += [f"**Watch it:** [{page}]({page}): every version of the demo film in sync, one play/pause, "
                  "one scrubber, frame steps (written by `dvc repro`; DVC-cached, not in git).", ""]
    if strip:
        lines += [f"![pipeline strip]({Path(os.path.relpath(strip, base)).as_posix()})", ""]
    lines += ["## Headline", "", headline(metrics), ""]
    cross = sorted(p for p in (figures_dir / "evaluate").glob("*.png") if not strip or p != Path(strip))
    if cross:
        lines += ["## Across stages: stabilizers (paper Fig. 5), E_warp against fidelity, flicker", ""]
        lines += [f"![evaluate: {f.stem}]({Path(os.path.relpath(f, base)).as_posix()})\n" for f in cross]
    film = metrics.get("parallel_film")
    if film:
        lines += [f"The parallel film (B&W | {film.get('colorized', 'colorized')} | cartoon, stabilizer "
                  f"`{film['stabilizer']}`): "
                  f"`{film['path']}`, {film['n_frames']} frames at {film['fps']} fps, "
                  f"{film['size'][0]}x{film['size'][1]} px.", ""]
    for stage in STAGES:
        if stage not in metrics:
            continue
        lines += [f"## {TITLES[stage]}", "", f"Stage `{stage}`.", "", metrics_table(metrics[stage]), ""]
        for fig in sorted((figures_dir / stage).glob("*.png")):
            rel = Path(os.path.relpath(fig, base)).as_posix()
            lines += [f"![{stage}: {fig.stem}]({rel})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path

