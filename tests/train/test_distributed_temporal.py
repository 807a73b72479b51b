"""Data-parallel training of the two temporal stages: 2 torchrun processes (gloo, CPU) follow the 1-process
loss curve of Lai et al.'s ConvLSTM stabilizer and of Ruder et al.'s temporal-loss fine-tuning, and their
checkpoints move between process counts.

One ``torchrun --nproc-per-node 2`` launch runs this very file as its worker (``__main__`` below): both
loops straight, stopped early (for 1-process resumes) and resumed from a 1-process checkpoint. The pytest
process runs the 1-process references meanwhile (and another seed, the scale of a real difference), fp32
throughout, so only the order of float sums differs. Same global batch of 4 windows in both cases: 2 per
rank. (The single-process loops themselves are covered, bit for bit, by test_train_convlstm.py and
test_train_temporal_loss.py.)
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deeperfour.models.convlstm import TemporalConsistencyNet
from deeperfour.models.temporal_cartoongan import TemporalCartoonGenerator
from deeperfour.train import distributed
from deeperfour.train.clips import Clip
from deeperfour.train.common import Checkpointer, read_curves
from deeperfour.train.convlstm import ConvLSTMTrainConfig, train_convlstm
from deeperfour.train.distributed import DistContext
from deeperfour.train.temporal_loss import TemporalLossConfig, finetune_temporal

from helpers import start_torchrun_worker, tiny_cartoon_generator, tiny_features

# ----------------------------------------------------------------------------------------------
# tiny configurations (global batches of 4 windows: 2 per rank)


def flickering_clip(name: str, seed: int, n: int = 10, size: int = 40, flicker: float = 0.3,
                    shot_starts=(0,)) -> Clip:
    """A smooth texture panning 1 px a frame (gray: its luma, steady) whose color frames get a random
    per-channel gain and a left-right tilt per frame (a global gain alone is cancelled by instance norm)."""
    rng = np.random.default_rng(seed)
    r = cv2.GaussianBlur(rng.random((size, size + n, 3)).astype(np.float32), (0, 0), 2.0)
    tex = ((r - r.min()) / (r.max() - r.min()) * 255 + 0.5).astype(np.uint8)  # (size, size + n, 3)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None]  # (1, W, 1)
    color = np.stack([tex[:, t : t + size] for t in range(n)])  # (T, H, W, 3)
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in color])  # (T, H, W)

    def flickered() -> np.ndarray:
        gain = 1 + flicker * rng.uniform(-1, 1, (n, 1, 1, 3))
        tilt = 1 + flicker * rng.uniform(-1, 1, (n, 1, 1, 1)) * ramp
        return np.clip(color * gain * tilt + 0.5, 0, 255).astype(np.uint8)  # (T, H, W, 3)

    return Clip(name, gray, flickered(), flickered(), list(shot_starts))


CLIPS = [flickering_clip("a", 0), flickering_clip("b", 1, shot_starts=(0, 5))]
CONV = ConvLSTMTrainConfig(nf=4, n_res_blocks=1, clip_len=4, crop=32, batch=4, steps=6, lr=3e-3,
                           precision="fp32", log_every=1, checkpoint_every=100)
TEMP = TemporalLossConfig(window=5, J="1,2,4", crop=32, batch=4, steps=6, lr=1e-3, pixel=10.0, gamma=300.0,
                          precision="fp32", log_every=1, checkpoint_every=100)
STOP = 3  # both ways: the run stopped (as if killed) after this many steps


def convlstm(out: Path, cfg: ConvLSTMTrainConfig = CONV, **kw):
    return train_convlstm(CLIPS, tiny_features, cfg, out, progress=False, **kw)


def temporal(out: Path, cfg: TemporalLossConfig = TEMP, **kw):
    return finetune_temporal(tiny_cartoon_generator(), CLIPS, tiny_features, cfg, out, progress=False, **kw)


# ----------------------------------------------------------------------------------------------
# the torchrun worker: this file run as a script


def worker(root: Path) -> None:
    ctx = distributed.init_from_env("cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    for name, train in (("conv", convlstm), ("temp", temporal)):
        train(root / f"{name}_2")
        train(root / f"{name}_1to2")  # resumes the 1-process checkpoint pytest wrote before the launch
        train(root / f"{name}_2to1", stop_after=STOP)
    distributed.cleanup()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(Path(sys.argv[2]))
    sys.exit(0)


# ----------------------------------------------------------------------------------------------
# the tests


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch the 2-process worker, run the 1-process references meanwhile, then the 1-process resumes."""
    root = tmp_path_factory.mktemp("ddp_temporal")
    convlstm(root / "conv_1to2", stop_after=STOP)
    temporal(root / "temp_1to2", stop_after=STOP)
    proc = start_torchrun_worker(__file__, root)
    try:
        convlstm(root / "conv_1")
        temporal(root / "temp_1")
        convlstm(root / "conv_1_seed1", replace(CONV, seed=1))  # the controls: another batch order
        temporal(root / "temp_1_seed1", replace(TEMP, seed=1))
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-4000:]
    for name in ("conv_2to1", "temp_2to1"):  # copies: the 2-process checkpoints stay inspectable
        shutil.copytree(root / name, root / f"{name}_resumed")
    assert convlstm(root / "conv_2to1_resumed").resumed_from == STOP
    assert temporal(root / "temp_2to1_resumed").resumed_from == STOP
    return root


def curve_difference(a: Path, b: Path) -> dict[str, float]:
    """{metric: largest |b - a| / |a|} of two runs' loss logs (same metrics, same steps)."""
    ca, cb = read_curves(a / "dvclive"), read_curves(b / "dvclive")
    assert set(ca) == set(cb)
    out = {}
    for k, (steps, values) in ca.items():
        np.testing.assert_array_equal(steps, cb[k][0], err_msg=k)  # no row missing or written twice
        out[k] = float(np.max(np.abs(cb[k][1] - values) / np.maximum(np.abs(values), 1e-12)))
    return out


def assert_same_curves(a: Path, b: Path, rtol: float, atol: float) -> float:
    """Every logged value of ``b`` within ``atol + rtol |a|`` of ``a``'s; returns the worst relative gap."""
    ca, cb = read_curves(a / "dvclive"), read_curves(b / "dvclive")
    for k in ca:
        np.testing.assert_allclose(cb[k][1], ca[k][1], rtol=rtol, atol=atol, err_msg=f"{b.name}: {k}")
    return max(curve_difference(a, b).values())


def convlstm_outputs(path: Path) -> torch.Tensor:
    """O_1 (1, 3, 40, 40) of a saved stabilizer on frames 0-1 of clip a (O_0 = P_0, no state)."""
    net = TemporalConsistencyNet.from_checkpoint(path)
    color = torch.from_numpy(CLIPS[0].colorized[:2]).permute(0, 3, 1, 2).float() / 255  # (2, 3, H, W)
    gray = torch.from_numpy(CLIPS[0].gray[:2]).float()[:, None].expand(-1, 3, -1, -1) / 255  # (2, 3, H, W)
    with torch.no_grad():
        return net(color[1:], color[:1], gray[1:], gray[:1])[0]


def generator_outputs(path: Path) -> torch.Tensor:
    """The fine-tuned generator on frame 1 of clip a, its output of frame 0 fed back: (1, 3, 40, 40)."""
    model = TemporalCartoonGenerator.from_checkpoint(path)
    x = torch.from_numpy(CLIPS[0].colorized[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (2, 3, H, W)
    with torch.no_grad():
        y0 = model(x[:1])
        return model(x[1:], y0, torch.ones(1, 1, *x.shape[-2:]))


@pytest.mark.parametrize(("name", "outputs", "model_file"), [
    ("conv", convlstm_outputs, "convlstm.pt"), ("temp", generator_outputs, "generator.pt")])
def test_two_processes_follow_one_and_checkpoints_move(runs, name, outputs, model_file):
    worst = assert_same_curves(runs / f"{name}_1", runs / f"{name}_2", rtol=1e-4, atol=1e-6)
    control = max(curve_difference(runs / f"{name}_1", runs / f"{name}_1_seed1").values())
    print(f"{name}: largest relative loss difference 1 vs 2 processes {worst:.1e} "
          f"(another seed: {control:.1e})")
    assert control > 1000 * worst  # the same global batches, not merely similar ones
    # checkpoints: written by 2 processes, resumed in 1, and the other way round
    stopped = Checkpointer(runs / f"{name}_2to1" / "train_state.pt").load(restore_rng=False)
    assert stopped["step"] == STOP and not (runs / f"{name}_2to1" / model_file).exists()
    ref = outputs(runs / f"{name}_1" / model_file)
    for run in (f"{name}_2", f"{name}_1to2", f"{name}_2to1_resumed"):
        assert_same_curves(runs / f"{name}_1", runs / run, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(outputs(runs / run / model_file), ref, rtol=1e-4, atol=1e-5, msg=run)


def test_batch_must_split_evenly(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "_CONTEXT", DistContext(rank=0, world_size=2))  # as if under torchrun
    with pytest.raises(ValueError, match="does not split evenly"):
        convlstm(tmp_path / "conv", replace(CONV, batch=3))
    with pytest.raises(ValueError, match="does not split evenly"):
        temporal(tmp_path / "temp", replace(TEMP, batch=3))
    assert not any(tmp_path.rglob("train_state.pt"))


def test_run_cli_builds_the_notebook_configs():
    from deeperfour.train import run

    p = run.stage_params("temporal_loss", overrides={"long_term": "1,2", "pixel_weight": 3.0, "window": 3})
    cfg = TemporalLossConfig.from_params(p)
    assert (cfg.J, cfg.js, cfg.pixel, cfg.window, cfg.gamma) == ("1,2", (1, 2), 3.0, 3, p["gamma"])
    assert (cfg.seed, cfg.precision, cfg.content_layer) == (p["seed"], p["precision"], p["content_layer"])
    assert p["out_dir"] == "build/temporal_loss" and p["cartoon_dir"] == "build/train_cartoongan"
    p = run.stage_params("convlstm", overrides={"nf": 8})
    cfg = ConvLSTMTrainConfig.from_params(p)
    assert (cfg.nf, cfg.n_res_blocks, cfg.clip_len, cfg.lr) == (8, p["n_res_blocks"], p["clip_len"], p["lr"])
    assert p["clips_dir"] == "build/temporal_loss/clips" and p["out_dir"] == "build/convlstm"
    cmd = run.launch_command("convlstm", 2, steps=4)
    assert cmd[-3:] == ["convlstm", "--set", "steps=4"]
