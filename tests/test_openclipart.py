"""openclipart (art/openclipart, `make data`): the fixed, evenly spaced selection, byte-for-byte copies,
the source record, and the error that says how to get the package."""

from __future__ import annotations

import gzip
import json

import pytest

from deeperfour.data import openclipart


def fake_package(root, per_category: int = 5):
    """An unpacked openclipart-svg: SVGs in every category, plus one the selection must skip."""
    svg_dir = root / openclipart.SVG_DIR
    for c in (*openclipart.CATEGORIES, "signs_and_symbols"):
        for k in range(per_category):
            (svg_dir / c / "sub").mkdir(parents=True, exist_ok=True)
            (svg_dir / c / "sub" / f"{c}{k}.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg"><!--{c}{k}--></svg>')
    doc = root / openclipart.DOC
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Public Domain Dedication\n")
    with gzip.open(doc / "changelog.Debian.gz", "wt") as f:
        f.write("openclipart (1:0.18+dfsg-99) unstable; urgency=medium\n")
    return root


def test_selection_is_evenly_spaced_over_the_scene_categories(tmp_path):
    src = fake_package(tmp_path / "unpacked")
    n_all = 5 * len(openclipart.CATEGORIES)
    sel = openclipart.selection(src, n=7)
    assert len(sel) == 7 and sel == sorted(sel)
    assert sel[0].name == "animals0.svg" and sel[-1].name == "transportation4.svg"  # both ends, evenly
    assert not any("signs_and_symbols" in str(p) for p in sel)
    assert len(openclipart.selection(src, n=10_000)) == n_all  # never more than there are


def test_materialize_copies_byte_for_byte_with_the_source_record(tmp_path):
    src = fake_package(tmp_path / "unpacked")
    root = tmp_path / "art" / "openclipart"
    out = openclipart.materialize_openclipart(root, src, n=4)
    assert len(out) == 4
    for p in out:
        assert p.read_bytes() == (src / openclipart.SVG_DIR / p.relative_to(root)).read_bytes()
    record = json.loads((root / openclipart.SOURCE_FILE).read_text())
    assert record["version"] == "1:0.18+dfsg-99" and "public domain" in record["licence"]
    assert (root / "copyright").read_text() == "Public Domain Dedication\n"
    assert openclipart.clipart_files(tmp_path / "art") == sorted(out)
    assert openclipart.materialize_openclipart(root, src, n=4) == out  # again: verified, unchanged


def test_missing_package_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get download openclipart-svg"):
        openclipart.selection(tmp_path)
    assert openclipart.clipart_files(tmp_path / "none") == [] and openclipart.clipart_files(None) == []
