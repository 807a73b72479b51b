"""The report site (fast tier, no browser): previews, local links only, the metrics of evaluate.json."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest
from site_fixture import FPS, METRICS, N_FRAMES, SHOTS, SIZE, frame_of_level, make_film, make_site

from deeperfour.core.config import ROOT
from deeperfour.core.results import read_json
from deeperfour.film.video import probe, read_frames
from deeperfour.report import readme, site


class Page(HTMLParser):
    """Tags with their attributes, and the text of every table cell per <table> (in order)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: list[list[list[str]]] = []
        self.table_ids: list[str | None] = []
        self._section: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._section = a.get("id")
        elif tag == "table":
            self.tables.append([])
            self.table_ids.append(self._section)
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def headline(self) -> list[list[list[str]]]:
        return [t for t, s in zip(self.tables, self.table_ids, strict=True) if s == "headline"]


def plain(md_tables):
    """Markdown cell text as the browser shows it (`code` -> code)."""
    return [[[c.replace("`", "") for c in row] for row in t] for t in md_tables]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    index, films = make_site(root, crf=10)
    return root, index, films


def test_previews_keep_fps_count_and_even_size(built):
    root, index, films = built
    videos = [a["src"] for t, a in Page(index.read_text()).tags if t == "video"]
    assert len(videos) == len(films)
    total = 0
    for src in videos:
        path = index.parent / src
        info = probe(path)
        assert path.suffix == ".mp4" and info.fps == FPS and info.n_frames == N_FRAMES
        assert (info.width, info.height) == SIZE and info.width % 2 == 0 == info.height % 2
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        frames = list(read_frames(path))
        assert [frame_of_level(f[:, 4:SIZE[0] // 2 - 4].mean()) for f in frames] == list(range(N_FRAMES))
        total += path.stat().st_size
    assert total < 2_000_000
    # nothing left behind: no partial folder, no partial file
    assert sorted(p.name for p in index.parent.iterdir()) == sorted(["index.html", *videos])
    assert not [p for p in index.parent.parent.iterdir() if p.name.startswith(".")]


def test_even_size_rule():
    assert site.even_size(640, 272, 180) == (424, 180)
    assert site.even_size(1920, 1080, 180) == (320, 180)
    assert site.even_size(65, 47, 180) == (64, 46)  # smaller than 180: kept, made even


def test_page_is_local_and_labelled(built):
    root, index, films = built
    text = index.read_text()
    assert not re.search(r"(?i)\b(https?:)?//[a-z0-9]", text.replace("</", "")), "a URL to another host"
    page = Page(text)
    for tag, a in page.tags:
        for key in ("src", "href"):
            ref = a.get(key)
            if ref is None or ref.startswith("data:"):
                continue
            assert not re.match(r"^[a-z]+:", ref) and not ref.startswith("/"), ref
            assert (index.parent / ref).is_file(), f"<{tag} {key}={ref}> does not exist"
    captions = re.findall(r"<figcaption>([^<]*)</figcaption></figure>", text)
    assert [c.replace("&amp;", "&") for c in captions[: len(films)]] == list(films)
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    assert imgs == ["../figures/colorize/curve.png"]
    assert [int(a["data-frame"]) for t, a in page.tags if t == "button" and "data-frame" in a] == SHOTS
    ids = {a.get("id") for _, a in page.tags}
    assert {"play", "prev", "next", "scrub", "frame-label", "player"} <= ids
    player = next(a for t, a in page.tags if a.get("id") == "player")
    assert (int(player["data-fps-num"]), int(player["data-fps-den"])) == (FPS.numerator, FPS.denominator)
    assert int(player["data-frames"]) == N_FRAMES


def check_headline(text: str, metrics: dict) -> None:
    """The page's headline tables are readme.headline's, and their numbers are the metrics dict's."""
    tables = Page(text).headline()
    assert tables and tables == plain(site.markdown_tables(readme.headline(metrics)))
    rows = {r[0]: r[1:] for t in tables for r in t[1:]}

    def same(cell: str, value) -> None:
        assert cell == f"{value:.6g}" if isinstance(value, float) else cell == str(value), (cell, value)
        if isinstance(value, float):
            assert float(cell) == pytest.approx(value, rel=1e-5)

    col = metrics["colorize"]
    for key, name in (("model", "colorizer"), ("gray", "gray input"), ("shuffled", "shuffled chroma")):
        for cell, metric in zip(rows[name], ("ciede2000", "colorfulness", "cdc"), strict=True):
            same(cell, col[key][metric])
    ref = metrics.get("colorize_reference")
    if ref:  # issue 15's table: case (a) per method (all frames, frames >= 30 away, CDC, E_warp), then auto
        default = " (default)" if ref["default_method"] == "classical" else ""
        cells = rows["keyframes: classical propagation" + default]
        for cell, value in zip(cells, (ref["first_frame"]["classical"]["ciede2000"],
                                       ref["first_frame_far"]["classical"]["ciede2000"],
                                       ref["first_frame"]["classical"]["cdc"],
                                       ref["first_frame"]["classical"]["ewarp"]), strict=True):
            same(cell, value)
        same(rows["automatic: colorizer on keyframes, propagated"][0], ref["auto"]["keyframes"]["ciede2000"])
    for name, m in metrics["train_cartoongan"]["styles"].items():
        assert rows[name][0] == f"{m['style_distance_input']:.6g} → {m['style_distance_output']:.6g}"
        same(rows[name][1], m["content_distance"])
    n_stab = 0
    for video, methods in readme.stabilizer_table(metrics).items():
        for method, m in methods.items():
            cells = rows[f"{video} · {method}"]
            for i, key in enumerate(("ewarp", "", "psnr_to_per_frame", "perceptual_to_per_frame", "cdc")):
                if not key:  # "vs. per-frame": a percentage computed by the report
                    continue
                same(cells[i], m[key])
            n_stab += 1
    assert n_stab == sum(1 for r in rows if " · " in r)
    same(rows["color original (the floor)"][0], metrics["convlstm"]["source_ewarp"])


def test_metrics_tables_equal_the_metrics(built):
    root, index, films = built
    check_headline(index.read_text(), METRICS)
    page = Page(index.read_text())
    all_tables = [t for t, s in zip(page.tables, page.table_ids, strict=True) if s == "all-metrics"]
    flat = {k: v for stage in METRICS for k, v in readme.flatten(METRICS[stage], f"{stage}.")}
    assert sum(len(t) - 1 for t in all_tables) == len(flat)
    for stage, t in zip(METRICS, all_tables, strict=True):
        for key, value in t[1:]:
            v = flat[f"{stage}.{key}"]
            assert value == (f"{v:.6g}" if isinstance(v, float) else str(v) if not isinstance(v, list)
                             else ", ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v))


def test_committed_metrics_json_equals_its_table():
    """The real reports/metrics/evaluate.json: the page shows exactly its values."""
    metrics = read_json(ROOT / "reports" / "metrics" / "evaluate.json")
    check_headline(site.metrics_html(metrics), metrics)


def test_failure_leaves_the_previous_site(built, tmp_path, monkeypatch):
    root, index, films = built
    out = tmp_path / "site"
    first = site.write_site(out, {"a": films["B&W input"]}, METRICS, root / "reports" / "figures")
    before = first.read_text()
    short = make_film(tmp_path / "short.mkv", 2, n=10)
    with pytest.raises(ValueError, match="10 frames"):
        site.write_site(out, {"a": films["B&W input"], "b": short}, METRICS, tmp_path)
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(np.zeros(100, np.uint8).tobytes())
    with pytest.raises(Exception, match="bad.mkv"):
        site.write_site(out, {"a": films["B&W input"], "bad": bad}, METRICS, tmp_path)
    calls = []

    def fail_second(src, dst, *args):
        calls.append(dst)
        if len(calls) == 2:
            raise RuntimeError("encoder died")
        return real(src, dst, *args)

    real = site.encode_preview
    monkeypatch.setattr(site, "encode_preview", fail_second)
    with pytest.raises(RuntimeError, match="encoder died"):
        site.write_site(out, {"a": films["B&W input"], "b": films["color original"]}, METRICS, tmp_path)
    assert first.read_text() == before and not calls[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert sorted(p.name for p in out.iterdir()) == ["00-a.mp4", "index.html"]


def test_figures_grouped_by_stage_in_pipeline_order(tmp_path):
    for stage in ("zzz", "evaluate", "frames", "colorize", "site"):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "b.png").write_bytes(b"")
        (tmp_path / stage / "a.png").write_bytes(b"")
    found = site.figure_files(tmp_path)
    assert list(found) == ["frames", "colorize", "evaluate", "zzz"]
    assert [p.name for p in found["frames"]] == ["a.png", "b.png"]
    html = site.figures_html(tmp_path, tmp_path / "page")
    assert html.index("../frames/a.png") < html.index("../colorize/a.png") < html.index("../zzz/b.png")
    assert "../site/" not in html


def test_local_refs_only_in_source():
    """No CDN, font or script from elsewhere in the page's template."""
    src = Path(site.__file__).read_text()
    assert "http://" not in src and "https://" not in src
