"""benchmarks.helpers helpers and the benchmark script's contract, on tiny inputs (no speed is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks import helpers as bench
from benchmarks import run as bench_run

# ------------------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 1), (2, 0, 1), (1, 2, 4)])
def test_conv_flops_match_the_formula(stride, padding, groups):
    x = torch.randn(2, 8, 11, 13)
    w = torch.randn(12, 8 // groups, 3, 3)
    flops, y = bench.count_flops(F.conv2d, x, w, stride=stride, padding=padding, groups=groups)
    _, c_out, h, w_out = y.shape
    assert flops == bench.conv2d_flops(2, 8, c_out, 3, h, w_out, groups=groups)


def test_matmul_and_transposed_conv_flops():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    assert bench.count_flops(torch.mm, a, b)[0] == bench.matmul_flops(5, 7, 3) == 210
    deconv = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
    flops, y = bench.count_flops(deconv, torch.randn(1, 6, 5, 5))
    assert y.shape[-2:] == (10, 10)
    assert flops == 2 * 6 * 4 * 9 * 5 * 5  # one multiply-add per input pixel, kernel tap and channel pair


def test_flops_are_counted_under_bf16_autocast_and_inference_mode():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        flops, y = bench.count_flops(conv, torch.randn(1, 3, 6, 6))
    assert y.dtype == torch.bfloat16
    assert flops == bench.conv2d_flops(1, 3, 4, 3, 6, 6)


# ------------------------------------------------------------------------------------------- timing


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    times = bench.time_calls(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)


def test_repeats_for_clamps_to_the_range():
    assert bench.repeats_for(10.0, budget_s=8.0) == 3  # expensive: still a median of 3
    assert bench.repeats_for(0.001, budget_s=8.0) == 10  # cheap: capped
    assert bench.repeats_for(1.0, budget_s=5.0) == 5
    assert bench.repeats_for(1.0, budget_s=0.0, lo=1, hi=1) == 1
    with pytest.raises(ValueError):
        bench.repeats_for(1.0, 1.0, lo=3, hi=2)


def test_pipeline_fps_is_the_harmonic_composition():
    assert bench.pipeline_fps([2.0, 2.0]) == pytest.approx(1.0)
    assert bench.pipeline_fps([10.0, 10.0, 5.0]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        bench.pipeline_fps([1.0, 0.0])


def test_fraction_of_peak_and_targets():
    assert bench.fraction_of_peak(10.0, 3.0, 100.0) == pytest.approx(0.3)
    assert bench.fraction_of_peak(None, 3.0, 100.0) is None
    assert bench.target(6.0, 5.0) == {"value": 6.0, "target": 5.0, "met": True, "margin": 1.0}
    assert bench.target(4.0, 5.0)["met"] is False
    low = bench.target(20.0, 50.0, higher_is_better=False)  # memory growth: lower is better
    assert low["met"] and low["margin"] == 30.0
    assert bench.target(None, 5.0)["met"] is None


@pytest.mark.parametrize("kind", ["matmul", "conv"])
def test_measure_peak_reports_positive_gflops(kind):
    r = bench.measure_peak(kind, "fp32", size=32, min_seconds=0.0)
    assert r["calls"] >= 3 and r["gflops"] >= r["gflops_median"] > 0
    flops = bench.matmul_flops(32, 32, 32) if kind == "matmul" else bench.conv2d_flops(1, 256, 256, 3, 32, 32)
    assert r["gflop_per_call"] == pytest.approx(flops / 1e9)


# ------------------------------------------------------------------------------------- memory, machine


def test_rss_sampler_sees_an_allocation():
    with bench.RSSSampler(interval=0.01) as rss:
        block = torch.ones(64, 2**20, dtype=torch.uint8)  # 64 MB, touched
        total = int(block.sum())
        del block
    assert total == 64 * 2**20
    assert rss.samples and rss.timeline()[-1][0] == 1.0
    assert bench.max_rss_mb() >= max(r for _, r in rss.samples) - 1


def test_run_isolated_runs_in_a_fresh_process():
    assert bench.run_isolated(os.getpid) != os.getpid()
    assert bench.run_isolated(os.getpid, isolate=False) == os.getpid()


def test_machine_info_has_the_contract_keys():
    m = bench.machine_info()
    for key in ("cpu_model", "logical_cores", "physical_cores", "torch", "torch_threads"):
        assert m[key], key
    assert m["torch"] == torch.__version__


# ---------------------------------------------------------------------------------------- the script


def test_summarize_computes_speedup_and_targets():
    run = bench_run
    s = run.Settings.make(quick=True)
    stages = {}
    for name in {n for names in run.pipelines(s).values() for n in names}:
        ours = not ("deoldify" in name or "paper" in name or "lai" in name)
        stages[name] = {"family": "default" if ours else "reference", "group": name.split("_")[0],
                        "fps": 10.0 if ours else 1.0, "gflop_per_frame": 1.0, "precision": "fp32",
                        "peak_memory_mb": 100.0, "baseline_memory_mb": 50.0}
    short, long_ = (f"convert_{s.size_name}_{t}s" for t in s.lengths_s)
    stages[short] = {"group": "convert", "family": "default", "fps": 1.0, "peak_memory_mb": 900.0,
                     "baseline_memory_mb": 600.0}
    stages[long_] = {**stages[short], "peak_memory_mb": 1000.0, "fps": 1.6}
    stages[f"{long_}_before"] = {**stages[short], "fps": 1.0}
    eager = f"cartoonize_light_{s.size_name}"
    stages[f"{eager}_compiled"] = {**stages[eager], "gflop_per_frame": None, "fps": 12.0}
    result = {"peak": {"fp32": {"peak_gflops": 20.0}}, "stages": stages}
    run.summarize(result, s)
    assert result["convert_speedup"] == pytest.approx(1.6) and result["targets"]["convert_speedup"]["met"]
    compiled = result["stages"][f"{eager}_compiled"]  # the FLOPs of its eager self, 1.2x its speed
    assert compiled["speedup_vs_eager"] == pytest.approx(1.2)
    assert compiled["fraction_of_peak"] == pytest.approx(0.6)
    assert result["speedup_vs_reference"] == pytest.approx(10.0)
    assert result["targets"]["speedup_vs_reference"]["met"] is True
    assert result["stages"][f"colorize_rf{s.rf_default}"]["fraction_of_peak"] == pytest.approx(0.5)
    assert result["targets"]["fraction_of_peak"]["all_met"] is True
    mem = result["targets"]["convert_memory_flat"]
    assert mem["value"] == 100.0 and mem["met"] is False  # grew by 100 MB > max(50 MB, 5 % of 900 MB)


def test_synthesized_film_has_the_asked_length(tmp_path):
    from deeperfour.film.video import probe

    run = bench_run
    info = probe(run.synthesize_film(tmp_path / "f.mp4", seconds=2, fps=5, size=(48, 32), n_source=4))
    assert (info.n_frames, info.width, info.height, info.fps) == (10, 48, 32, 5)


@pytest.mark.integration
def test_quick_run_writes_the_contract(tmp_path):
    out = tmp_path / "bench.json"
    root = Path(bench_run.__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--no-isolate", "--no-convert",
           "--out", str(out)]
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    r = json.loads(out.read_text())
    assert r["quick"] is True and r["speedup_vs_reference"] > 0
    for key in ("cpu_model", "logical_cores", "torch", "torch_threads"):
        assert key in r["machine"]
    for prec in ("fp32", "bf16"):
        assert r["peak"][prec]["peak_gflops"] > 0
    assert {"default", "reference"} <= set(r["pipelines"])
    groups = {e["group"] for e in r["stages"].values()}
    assert {"colorize", "cartoonize", "stabilize"} <= groups
    for name, e in r["stages"].items():
        for key in ("fps", "peak_memory_mb", "gflop_per_frame", "fraction_of_peak"):
            assert key in e, (name, key)
        assert e["fps"] > 0 and e["peak_memory_mb"] > 0
        if e["precision"] != "none":  # torch stages have FLOPs, OpenCV flow has none
            assert e["gflop_per_frame"] > 0 and e["fraction_of_peak"] > 0
    assert {"speedup_vs_reference", "fraction_of_peak", "convert_memory_flat"} <= set(r["targets"])
    assert out.with_suffix(".png").stat().st_size > 0
