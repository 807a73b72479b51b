"""The exported report: headline tables from the metrics, stabilizer table merge, README consistency."""

from __future__ import annotations

import re

import pytest

from deeperfour.core.config import ROOT
from deeperfour.core.results import read_json
from deeperfour.report import readme as report


def scores(ewarp: float, psnr: float | str) -> dict:
    return {"ewarp": ewarp, "psnr_to_per_frame": psnr, "perceptual_to_per_frame": 0.1, "cdc": 0.004}


METRICS = {
    "temporal_loss": {"cartoon": {"per_frame": scores(1e-3, "inf"), "flow_blend": scores(2e-4, 30.0),
                                  "temporal_loss": scores(5e-4, 28.0)}, "source_ewarp": 1.5e-4},
    "convlstm": {"cartoon": {"per_frame": scores(1e-3, "inf"), "flow_blend": scores(2e-4, 30.0),
                             "convlstm": scores(4e-4, 27.0)},
                 "colorized": {"per_frame": scores(2e-4, "inf"), "flow_blend": scores(6e-5, 35.0),
                               "convlstm": scores(1e-4, 33.0)}, "source_ewarp": 1.5e-4},
}


def test_stabilizer_table_merges_stages_in_method_order():
    table = report.stabilizer_table(METRICS)
    assert list(table["cartoon"]) == ["per_frame", "flow_blend", "temporal_loss", "convlstm"]
    assert list(table["colorized"]) == ["per_frame", "flow_blend", "convlstm"]


def test_headline_numbers_come_from_the_metrics():
    text = report.headline(METRICS)
    assert "| cartoon · convlstm | 0.0004 | -60 % | 27 |" in text
    assert "| cartoon · temporal_loss | 0.0005 | -50 % | 28 |" in text
    assert "| color original (the floor) | 0.00015 |" in text
    assert "colorization" not in text  # no colorize metrics given: no colorization table


def test_write_report_embeds_cross_stage_figures(tmp_path):
    figs = tmp_path / "figures"
    (figs / "evaluate").mkdir(parents=True)
    for name in ("pipeline_strip", "stabilizers_cartoon"):
        (figs / "evaluate" / f"{name}.png").write_bytes(b"png")
    strip = figs / "evaluate" / "pipeline_strip.png"
    path = report.write_report(tmp_path / "README.md", METRICS, figs, strip=strip)
    text = path.read_text()
    assert text.count("pipeline_strip.png") == 1 and "figures/evaluate/stabilizers_cartoon.png" in text
    assert "## Headline" in text


def test_repository_readme_quotes_the_current_headline():
    """The README's headline table is the one the committed evaluate.json gives (no stale numbers)."""
    metrics_path = ROOT / "reports" / "metrics" / "evaluate.json"
    if not metrics_path.exists():
        pytest.skip("no evaluate.json yet")
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- headline:start -->\n(.*?)<!-- headline:end -->", readme, re.S)
    assert m, "README.md lacks the <!-- headline:start/end --> block"
    assert m.group(1).strip() == report.headline(read_json(metrics_path)).strip()
