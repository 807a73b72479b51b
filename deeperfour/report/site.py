"""The report people watch: ``reports/site/index.html``, every version of the demo film played in sync.

One page, no network: each film is re-encoded next to the page as a small H.264 MP4 (``yuv420p``, even
size, the film's exact frame rate and frame count), and one inline script drives every ``<video>`` from
one play/pause button, one scrubber, -1/+1 frame steps and the shot buttons. The figures
(``reports/figures/<stage>/*.png``) are linked relative to the page (``../figures/...``) and the metrics
tables are those of ``reports/README.md`` (:func:`deeperfour.report.readme.headline`), from the same
dict that is written to ``reports/metrics/evaluate.json``.

The page is written atomically: everything goes to a hidden sibling folder that replaces ``out_dir``
only when complete, so a failure leaves the previous site (or none), never half of one.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from deeperfour.film.resize import resize
from deeperfour.film.video import VideoWriter, probe, read_frames
from deeperfour.report.readme import STAGES, flatten, headline, metrics_table

INDEX = "index.html"
TITLE = "DeeperFour: the demo film, every version"
FIGURE_STAGES = (*STAGES, "evaluate")  # shown first, in the pipeline's order; any other folder after
SKIP_FIGURES = ("site",)  # the page's own screenshot (for the README) is not a figure of the report


def even_size(width: int, height: int, target_height: int) -> tuple[int, int]:
    """(w, h) with h = ``target_height`` (or the film's own height when smaller), aspect kept, both even."""
    h = max(2, 2 * (min(int(target_height), height) // 2))
    return max(2, 2 * round(width * h / height / 2)), h


def slug(label: str) -> str:
    """'colorized · per_frame' -> 'colorized-per-frame'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "film"


def encode_preview(src: str | os.PathLike, dst: str | os.PathLike, height: int = 180, crf: int = 26) -> Path:
    """``src`` (any film) -> ``dst`` (.mp4): H.264 yuv420p, ``height`` px (even size), same fps and count."""
    info = probe(src)
    w, h = even_size(info.width, info.height, height)
    with VideoWriter(dst, info.fps, w, h, lossless=False, crf=crf) as out:
        for frame in read_frames(src):
            out.write(resize(frame, (h, w)))
    return Path(dst)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_tables(md: str) -> list[list[list[str]]]:
    """The Markdown tables of ``md`` as [table][row][cell] text (header row first, separator dropped)."""
    tables, rows = [], []
    for line in [*md.splitlines(), ""]:
        if line.lstrip().startswith("|"):
            cells = _cells(line)
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _inline(text: str) -> str:
    """Escape, then Markdown `code` -> <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def tables_html(md: str, css_class: str) -> str:
    """Every Markdown table of ``md`` as an HTML table, cell text unchanged."""
    out = []
    for rows in markdown_tables(md):
        head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
        body = "\n".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        out.append(f'<table class="{css_class}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
                   "</table>")
    return "\n".join(out)


def metrics_html(metrics: Mapping[str, dict]) -> str:
    """The headline tables (exactly ``readme.headline``), then every stage's metrics, folded."""
    parts = ['<section id="headline">', "<h2>Headline</h2>", tables_html(headline(dict(metrics)), "headline"),
             "</section>", '<section id="all-metrics">', "<h2>All metrics</h2>"]
    order = [s for s in STAGES if s in metrics] + sorted(s for s in metrics if s not in STAGES)
    for stage in order:
        m = metrics[stage] if isinstance(metrics[stage], dict) else {stage: metrics[stage]}
        parts.append(f"<details><summary>{html.escape(stage)} ({len(flatten(m))} values)</summary>\n"
                     f"{tables_html(metrics_table(m), 'metrics')}\n</details>")
    parts.append("</section>")
    return "\n".join(parts)


def figure_files(figures_root: str | os.PathLike) -> dict[str, list[Path]]:
    """{stage: sorted PNGs} under ``figures_root/<stage>/``, stages in the pipeline's order."""
    root = Path(figures_root)
    dirs = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    order = [s for s in FIGURE_STAGES if s in dirs] + [d for d in dirs if d not in FIGURE_STAGES]
    found = {s: sorted((root / s).glob("*.png")) for s in order if s not in SKIP_FIGURES}
    return {s: f for s, f in found.items() if f}


def figures_html(figures_root: str | os.PathLike, page_dir: Path) -> str:
    parts = ['<section id="figures">', "<h2>Figures</h2>"]
    for stage, files in figure_files(figures_root).items():
        parts.append(f'<h3 id="fig-{slug(stage)}">{html.escape(stage)}</h3>\n<div class="figs">')
        for f in files:
            rel = html.escape(Path(os.path.relpath(os.path.abspath(f), os.path.abspath(page_dir))).as_posix())
            name = html.escape(f"{stage}: {f.stem}")
            parts.append(f'<figure><a href="{rel}"><img src="{rel}" alt="{name}" loading="lazy"></a>'
                         f"<figcaption>{html.escape(f.stem)}</figcaption></figure>")
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


CSS = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { margin: 0 0 .2em; } .sub { color: #555; margin: 0 0 1em; }
.controls, .shots { display: flex; flex-wrap: wrap; gap: .4em; align-items: center; margin: .4em 0; }
.controls input[type=range] { flex: 1 1 20em; }
button { font: inherit; padding: .2em .7em; cursor: pointer; }
#note { background: #fff3cd; padding: .4em .8em; }
#frame-label { font-variant-numeric: tabular-nums; min-width: 16em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(var(--w), 1fr)); gap: .6em; }
.grid figure { margin: 0; background: #111; color: #eee; }
.grid video { width: 100%; height: auto; display: block; }  /* aspect from width/height */
.grid figcaption, .figs figcaption { padding: .2em .5em; font-size: .9em; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs figure { margin: 0; max-width: 46em; } .figs img { max-width: 100%; border: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6em 0 1.2em; background: #fff; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: left; }
td { font-variant-numeric: tabular-nums; }
"""

# One clock: the first video. Followers are nudged (playback rate) or, when far off, seeked to it while
# playing; pausing, seeking and stepping put every video on the centre of one frame, (k + 0.5) / fps.
SCRIPT = """
(() => {
  const root = document.getElementById("player");
  const fps = Number(root.dataset.fpsNum) / Number(root.dataset.fpsDen);
  const n = Number(root.dataset.frames);
  const shots = JSON.parse(root.dataset.shots);
  const videos = Array.from(root.querySelectorAll("video"));
  const master = videos[0];
  const scrub = document.getElementById("scrub");
  const label = document.getElementById("frame-label");
  const playBtn = document.getElementById("play");
  let playing = false;
  const clamp = (k) => Math.max(0, Math.min(n - 1, k));
  const frameAt = (t) => clamp(Math.floor(t * fps + 1e-6));
  const shotOf = (k) => shots.filter((s) => s <= k).length;
  function show(k) {
    scrub.value = String(k);
    const shot = shots.length ? ` · shot ${shotOf(k)} of ${shots.length}` : "";
    label.textContent = `frame ${k} / ${n - 1} · ${(k / fps).toFixed(2)} s${shot}`;
  }
  function seekTime(t) {
    t = Math.max(0, Math.min(t, n / fps));
    for (const v of videos) v.currentTime = t;
    show(frameAt(t));
  }
  const seekFrame = (k) => seekTime((clamp(k) + 0.5) / fps);
  function pause() {
    playing = false;
    for (const v of videos) { v.pause(); v.playbackRate = 1; }
    playBtn.textContent = "\\u25B6 play";
    seekFrame(frameAt(master.currentTime));
  }
  function play() {
    if (playing) return;
    if (frameAt(master.currentTime) >= n - 1) seekFrame(0);
    playing = true;
    playBtn.textContent = "\\u23F8 pause";
    for (const v of videos) v.play().catch(() => {});
    requestAnimationFrame(tick);
  }
  function tick() {
    if (!playing) return;
    const t = master.currentTime;
    for (const v of videos.slice(1)) {
      const d = t - v.currentTime;
      if (Math.abs(d) > 0.25) { v.currentTime = t; v.playbackRate = 1; }
      else if (Math.abs(d) > 0.25 / fps) v.playbackRate = 1 + Math.max(-0.5, Math.min(0.5, 2 * d));
      else v.playbackRate = 1;
    }
    show(frameAt(t));
    requestAnimationFrame(tick);
  }
  const step = (d) => { if (playing) pause(); seekFrame(frameAt(master.currentTime) + d); };
  function checkSeekable() {  // a server without byte ranges: seekable is empty or [0, 0]
    const s = master.seekable;
    const ok = s.length > 0 && s.end(s.length - 1) >= master.duration - 1 / fps;
    document.getElementById("note").hidden = ok || master.readyState < 1;
  }
  master.addEventListener("loadedmetadata", checkSeekable);
  master.addEventListener("canplaythrough", checkSeekable);
  master.addEventListener("ended", () => { if (playing) pause(); });
  playBtn.addEventListener("click", () => (playing ? pause() : play()));
  document.getElementById("prev").addEventListener("click", () => step(-1));
  document.getElementById("next").addEventListener("click", () => step(1));
  scrub.addEventListener("input", () => { if (playing) pause(); seekFrame(Number(scrub.value)); });
  for (const b of document.querySelectorAll("button[data-frame]")) {
    b.addEventListener("click", () => { if (playing) pause(); seekFrame(Number(b.dataset.frame)); });
  }
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLButtonElement) return;
    if (e.key === " ") { e.preventDefault(); playing ? pause() : play(); }
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
  });
  window.deeperfour = { fps, frames: n, videos, play, pause, seekTime, seekFrame, step,
                        frame: () => frameAt(master.currentTime), playing: () => playing };
  seekFrame(0);
  checkSeekable();
})();
"""


def page_html(players: Sequence[tuple[str, str]], fps, n_frames: int, size: tuple[int, int],
              shot_starts: Sequence[int], metrics: Mapping[str, dict], figures: str, title: str) -> str:
    """The page; ``players``: (label, mp4 file name next to the page)."""
    fps_txt = f"{fps.numerator}/{fps.denominator}" if fps.denominator != 1 else str(fps.numerator)
    videos = "\n".join(f'<figure><video src="{html.escape(src)}" muted playsinline preload="auto" '
                       f'width="{size[0]}" height="{size[1]}"></video><figcaption>{html.escape(label)}'
                       "</figcaption></figure>" for label, src in players)
    starts = sorted({int(s) for s in shot_starts if 0 <= int(s) < n_frames})
    shot_buttons = "".join(f'<button data-frame="{s}" title="frame {s}">shot {i + 1}</button>'
                           for i, s in enumerate(starts))
    seconds = n_frames / fps
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="sub">Every version of the demo film, side by side and in sync: {n_frames} frames at {fps_txt} fps
({float(seconds):.2f} s), shown at {size[0]}x{size[1]} px (H.264 previews of the stages' lossless films).
Space plays or pauses, the arrow keys step one frame.</p>
<section id="player" data-fps-num="{fps.numerator}" data-fps-den="{fps.denominator}" data-frames="{n_frames}"
 data-shots="{html.escape(json.dumps(starts))}" style="--w: {max(round(0.85 * size[0]), 280)}px">
<div class="controls">
<button id="play">&#x25B6; play</button>
<button id="prev" title="one frame back">&minus;1 frame</button>
<button id="next" title="one frame on">+1 frame</button>
<input id="scrub" type="range" min="0" max="{n_frames - 1}" step="1" value="0" aria-label="frame">
<span id="frame-label">frame 0 / {n_frames - 1}</span>
</div>
<p id="note" hidden>This server does not send parts of files (HTTP byte ranges), so the players cannot seek:
open <code>index.html</code> directly from disk, or serve it with a server that does.</p>
<div class="shots">{"shots: " + shot_buttons if starts else ""}</div>
<div class="grid">
{videos}
</div>
</section>
{metrics_html(metrics)}
{figures}
<script>{SCRIPT}</script>
</body>
</html>
"""


def write_site(out_dir: str | os.PathLike, films: Mapping[str, str | os.PathLike],
               metrics: Mapping[str, dict], figures_root: str | os.PathLike, shot_starts: Sequence[int] = (),
               height: int = 180, crf: int = 26, title: str = TITLE) -> Path:
    """Write ``out_dir/index.html`` and one ``NN-<label>.mp4`` per film; returns the page's path.

    ``films``: {label: film}, every version of one film (same frame rate and frame count, checked), the
    first one being the page's clock; ``metrics``: the dict written to evaluate.json; ``figures_root``:
    ``reports/figures``; ``shot_starts``: first frame of every shot (``shots.json``'s ``starts``).
    """
    if not films:
        raise ValueError("write_site: no film to show")
    out_dir = Path(out_dir)
    infos = {label: probe(path) for label, path in films.items()}
    first_label, first = next(iter(infos.items()))
    for label, info in infos.items():
        if (info.fps, info.n_frames) != (first.fps, first.n_frames):
            raise ValueError(f"{info.path}: {label!r} has {info.n_frames} frames at {info.fps} fps, "
                             f"{first_label!r} ({first.path}) {first.n_frames} at {first.fps}: "
                             "the page plays versions of one film")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        players = []
        for i, (label, path) in enumerate(films.items()):
            name = f"{i:02d}-{slug(label)}.mp4"
            encode_preview(path, tmp / name, height, crf)
            players.append((label, name))
        size = probe(tmp / players[0][1])
        page = page_html(players, first.fps, first.n_frames, (size.width, size.height), shot_starts, metrics,
                         figures_html(figures_root, out_dir), title)
        (tmp / INDEX).write_text(page, encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the site is for reading
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if old is not None:
                os.replace(old, out_dir)  # put the previous site back
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir / INDEX
