"""Smoke test: every numbered notebook runs through papermill with tiny parameters and records
its metrics; source notebooks stay free of outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest

from deeperfour import demo_film
from deeperfour.config import ROOT, load_params
from deeperfour.data import materialize_samples

from .conftest import make_clip

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STAGE_OF = {p.name: p.stem[3:] for p in NOTEBOOKS}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Sample data and a tiny `frames` stage output (a 24-frame clip with one cut) in a temp dir."""
    root = tmp_path_factory.mktemp("nb")
    materialize_samples(root / "data" / "samples")
    clip = make_clip(root / "clip.mp4", n=24, size=(96, 64), cut_at=(12,))
    params = load_params("frames") | {"source": str(clip)}
    demo_film.run(params, root / "build" / "frames", root / "metrics" / "frames.json",
                  root / "figures" / "frames", progress=False)
    return root


def tiny_parameters(stage: str, root: Path) -> dict:
    common = {"figures_dir": str(root / "figures" / stage),
              "metrics_path": str(root / "metrics" / f"{stage}.json")}
    paths = {"frames_dir": str(root / "build" / "frames"), "data_dir": str(root / "data")}
    extra = {
        "colorize": {"eval_stride": 6, "n_preview": 2},
        "prepare_datasets": {"n_preview": 1, "crop": 64, "style_frame_stride": 16},
        "train_cartoongan": {"n_preview": 1},
        "temporal_loss": {"n_consecutive": 3},
        "convlstm": {"n_consecutive": 1},
        "evaluate": {"n_strip": 2, "metrics_dir": str(root / "metrics"),
                     "figures_root": str(root / "figures"), "report_path": str(root / "README.md")},
    }[stage]
    return common | paths | extra


def test_stages_match_notebooks_and_params():
    """One name threads notebook, dvc.yaml stage and params.yaml section."""
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = load_params()
    for nb, stage in STAGE_OF.items():
        assert stage in stages, f"{nb}: no dvc stage '{stage}'"
        assert stage in params, f"{nb}: no params.yaml section '{stage}'"
        assert f"notebooks/{nb}" in stages[stage]["cmd"]
        assert f"reports/notebooks/{nb}" in stages[stage]["cmd"]
        for key in params[stage]:  # every param of the section is passed explicitly
            assert f"-p {key} ${{{stage}.{key}}}" in stages[stage]["cmd"], f"{stage}.{key} not passed"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_is_clean(nb):
    book = nbformat.read(nb, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs committed"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for c in code:
        assert not any(line.lstrip().startswith(("def ", "class ")) for line in c.source.splitlines())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(nb, workspace):
    stage = STAGE_OF[nb.name]
    out = workspace / "executed" / nb.name
    out.parent.mkdir(exist_ok=True)
    papermill.execute_notebook(str(nb), str(out), parameters=tiny_parameters(stage, workspace),
                               kernel_name="python3", progress_bar=False, cwd=str(workspace))
    metrics = json.loads((workspace / "metrics" / f"{stage}.json").read_text())
    assert metrics
    assert list((workspace / "figures" / stage).glob("*.png"))
    if stage == "colorize":
        assert metrics["gray"]["colorfulness"] == 0.0 and metrics["ground_truth"]["colorfulness"] > 0
    if stage in ("temporal_loss", "convlstm"):
        assert metrics["source_ewarp"] >= 0
    if stage == "evaluate":
        assert "frames" in metrics
        assert (workspace / "README.md").read_text().startswith("# DeeperFour report")
