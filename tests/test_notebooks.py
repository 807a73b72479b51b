"""Smoke test: every numbered notebook runs through papermill with tiny parameters and records
its metrics; source notebooks stay free of outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest

from deeperfour.core.config import ROOT, load_params
from deeperfour.data.samples import materialize_samples
from deeperfour.film import frames
from deeperfour.film.video import probe
from deeperfour.report import frames as frames_report

from .conftest import make_clip, make_faces

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))  # 01_colorize, 01b_colorize_reference..
STAGE_OF = {p.name: p.stem.split("_", 1)[1] for p in NOTEBOOKS}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Sample data and a tiny `frames` stage output (a 24-frame clip with one cut) in a temp dir."""
    root = tmp_path_factory.mktemp("nb")
    materialize_samples(root / "data" / "samples")
    clip = make_clip(root / "clip.mp4", n=24, size=(96, 64), cut_at=(12,))
    params = load_params("frames") | {"source": str(clip)}
    frames.run(params, root / "build" / "frames", root / "metrics" / "frames.json", progress=False)
    frames_report.draw(root / "build" / "frames", root / "figures" / "frames")
    make_faces(root / "faces" / "pyfeat")
    return root


def tiny_parameters(stage: str, root: Path) -> dict:
    common = {"figures_dir": str(root / "figures" / stage),
              "metrics_path": str(root / "metrics" / f"{stage}.json")}
    paths = {"frames_dir": str(root / "build" / "frames"), "data_dir": str(root / "data")}
    if stage in ("prepare_datasets", "train_cartoongan", "colorize"):  # no drawn art in the workspace
        paths["art_dir"] = str(root / "art")
    if stage == "colorize":
        paths["faces_dir"] = str(root / "faces" / "pyfeat")
    extra = {
        "colorize": {"eval_stride": 6, "n_preview": 2, "ensemble": 2,  # later stages load the 2-seed ensemble
                     "out_dir": str(root / "build" / "colorize")},
        "colorize_reference": {"colorize_dir": str(root / "build" / "colorize"),
                               "out_dir": str(root / "build" / "colorize_reference"), "every": 8, "far": 4},
        "prepare_datasets": {"n_preview": 1, "crop": 64, "max_side": 128, "style_frame_stride": 16,
                             "photo_frame_stride": 16, "photo_crops_per_image": 1,
                             "out_dir": str(root / "build" / "prepare_datasets")},
        "train_cartoongan": {"n_preview": 2, "crop": 32, "batch": 2, "init_steps": 2, "gan_steps": 2,
                             "recipe": "whitebox", "chroma": "input", "omega_structure": 0.2, "w_color": 1.0,
                             "prior": "abstraction", "structure": "abstraction", "paper_init_steps": 1,
                             "datasets_dir": str(root / "build" / "prepare_datasets"),
                             "film_path": str(root / "build" / "frames" / "color.mkv"),
                             "out_dir": str(root / "build" / "train_cartoongan")},
        "temporal_loss": {"colorize_dir": str(root / "build" / "colorize"),
                          "colorized_path": str(root / "build" / "frames" / "color.mkv"),  # its film_path
                          "cartoon_dir": str(root / "build" / "train_cartoongan"),
                          "out_dir": str(root / "build" / "temporal_loss")},
        "convlstm": {"clips_dir": str(root / "build" / "temporal_loss" / "clips"),
                     "colorized_path": str(root / "build" / "colorize" / "colorized.mkv"),
                     "cartoon_path": str(root / "build" / "train_cartoongan" / "cartoon.mkv"),
                     "out_dir": str(root / "build" / "convlstm")},
        "evaluate": {"n_strip": 2, "metrics_dir": str(root / "metrics"),
                     "temporal_dir": str(root / "build" / "temporal_loss"),
                     "convlstm_dir": str(root / "build" / "convlstm"),
                     "out_dir": str(root / "build" / "evaluate"),
                     "colorized_path": str(root / "build" / "colorize" / "colorized.mkv"),
                     "reference_dir": str(root / "build" / "colorize_reference"),
                     "cartoon_path": str(root / "build" / "train_cartoongan" / "cartoon.mkv"),
                     "figures_root": str(root / "figures"), "report_path": str(root / "README.md"),
                     "site_dir": str(root / "site")},
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
        cmd = stages[stage]["cmd"]
        book = nbformat.read(ROOT / "notebooks" / nb, as_version=4)
        cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
        declared = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line}
        missing = set(params[stage]) - declared
        assert not missing, f"{nb}: params.yaml keys not in the parameters cell: {missing}"
        for key in params[stage]:  # every param of the section is passed explicitly
            ref = f"${{{stage}.{key}}}"
            assert f"-p {key} {ref}" in cmd or f'-p {key} "{ref}"' in cmd, f"{stage}.{key} not passed"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebook_is_clean(nb):
    book = nbformat.read(nb, as_version=4)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs committed"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    for c in code:
        assert not any(line.lstrip().startswith(("def ", "class ")) for line in c.source.splitlines())


@pytest.mark.integration
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
        for variant in ("model", "gray", "mean_chroma", "shuffled"):
            assert set(metrics[variant]) == {"psnr", "ssim", "ciede2000", "colorfulness", "cdc"}
        assert metrics["fps"] > 0 and "mean of 2 seeds" in metrics["colorizer"]
        film = workspace / "build" / "colorize" / "colorized.mkv"
        assert probe(film).n_frames == probe(workspace / "build" / "frames" / "bw.mkv").n_frames
    if stage == "colorize_reference":
        methods = {"gray", "copy", "chain_warp", "classical", "refined", "default"}
        keys = {"ciede2000", "psnr", "ssim", "colorfulness", "cdc", "ewarp"}
        for case in ("first_frame", "every_50", "cross_reference"):
            assert set(metrics[case]) == methods and all(set(v) == keys for v in metrics[case].values())
        assert metrics["first_frame"]["gray"]["colorfulness"] == 0.0
        assert set(metrics["auto"]) == {"per_frame", "keyframes"} and metrics["luma_within_1"]
        assert metrics["fps_classical"] > 0 and metrics["fps_refined"] > 0 and metrics["drift"]
        film = workspace / "build" / "colorize_reference" / "colorized_keyframes.mkv"
        assert probe(film).n_frames == probe(workspace / "build" / "frames" / "bw.mkv").n_frames
        assert (workspace / "build" / "colorize_reference" / "refiner.pt").is_file()
    if stage == "prepare_datasets":
        assert metrics["styles"]["bunny"]["n_crops"] > 0 and metrics["photo"]["test"]["n_crops"] >= 2
        assert (workspace / "build" / "prepare_datasets" / "manifest.json").is_file()
    if stage == "train_cartoongan":
        bunny = metrics["styles"]["bunny"]
        assert bunny["style_distance_input"] > 0 and bunny["content_distance"] >= 0
        assert set(bunny["stats"]) == {"input", "output", "style_set"} and bunny["steps"] == 4
        film = workspace / "build" / "train_cartoongan" / "cartoon.mkv"
        assert probe(film).n_frames == probe(workspace / "build" / "frames" / "color.mkv").n_frames
        systems = {"identity", "abstraction", "paper", "default", "bunny"}
        assert set(metrics["cartoon_ness"]) == set(metrics["cartoon_ness_film"]) == systems
        assert metrics["cartoon_ness"]["identity"]["color_shift"] == 0.0
        assert metrics["default_style"] == "bunny"
        assert metrics["probe_auc"] is None  # no drawn art in the workspace: no probe, no P(drawn)
        assert metrics["cartoon_ness"]["default"]["drawn_probability"] is None
        assert not metrics["cartoon_acceptance"]["all_met"] and metrics["recipe"] == "whitebox"
        assert (workspace / "build" / "train_cartoongan" / "paper" / "bunny" / "generator.pt").is_file()
    if stage in ("temporal_loss", "convlstm"):
        assert metrics["source_ewarp"] >= 0
        methods = {"temporal_loss": ("per_frame", "flow_blend", "temporal_loss"),
                   "convlstm": ("per_frame", "flow_blend", "convlstm")}[stage]
        videos = ("cartoon",) if stage == "temporal_loss" else ("cartoon", "colorized")
        for video in videos:
            assert set(metrics[video]) == set(methods)
            for m in methods:
                keys = {"ewarp", "psnr_to_per_frame", "perceptual_to_per_frame", "cdc"}
                assert set(metrics[video][m]) == keys
                assert metrics[video][m]["ewarp"] >= 0
            assert float(metrics[video]["per_frame"]["psnr_to_per_frame"]) == float("inf")  # "inf" in JSON
        n_bw = probe(workspace / "build" / "frames" / "bw.mkv").n_frames
        for film in (workspace / "build" / stage).glob("*.mkv"):
            assert probe(film).n_frames == n_bw, film
    if stage == "convlstm":
        assert metrics["shot_start_equals_per_frame"] == {"colorized": True, "cartoon": True}
    if stage == "evaluate":
        assert "frames" in metrics
        assert (workspace / "README.md").read_text().startswith("# DeeperFour report")
        film = metrics["parallel_film"]
        assert film["same_length_and_rate_as_input"] and film["n_frames"] == metrics["frames"]["n_frames"]
        assert (workspace / "figures" / "evaluate" / "stabilizers_cartoon.png").is_file()
