"""Data-parallel training: 2 torchrun processes (gloo, CPU) follow the 1-process loss curve, and
checkpoints move between process counts.

One ``torchrun --nproc-per-node 2`` launch runs this very file as its worker (``__main__`` below): the
global-batch layers against the plain ones, the tiny colorizer and CartoonGAN runs straight, stopped
early (for 1-process resumes) and, for CartoonGAN, resumed from a 1-process checkpoint. The pytest
process runs the 1-process references meanwhile, fp32 throughout, so only the order of float sums
differs. CartoonGAN's losses follow to ~1e-6 (relative). The colorizer's follow to ~1e-6 while its
encoder is frozen, then to ~1e-4: Adam turns gradients that are mathematically ~0 but rounding noise
in practice (biases cancelled by a later batch norm, dead channels of the newly unfrozen encoder) into
lr-sized steps whose sign depends on that noise, and the GAN phase (Adam beta1 = 0) amplifies this;
its tolerance is rtol 1e-3 + atol 1e-4. Another seed, for scale, moves the losses by tens of percent.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeperfour.models.cartoongan import CartoonGenerator, to_unit
from deeperfour.models.colorizer import ColorizerConfig
from deeperfour.train import distributed
from deeperfour.train.cartoongan import STATE_FILE, TrainConfig, to_tensor, train
from deeperfour.train.colorizer import NoGANConfig, train_colorizer
from deeperfour.train.common import Checkpointer, read_curves
from deeperfour.train.distributed import DistContext

from helpers import blobs, start_torchrun_worker, tiny_features

# ----------------------------------------------------------------------------------------------
# tiny configurations (global batches divisible by 2)


COLOR_IMAGES = list(blobs(4, 2, size=48))
NOGAN = NoGANConfig(sizes=(16, 32), batch=(4, 2), steps_frozen=2, steps_unfrozen=2, steps_critic=1,
                    steps_gan=2, precision="fp32", checkpoint_every=100, layer_weights={"relu2_2": 0.1})
COLOR_MODEL = ColorizerConfig(width=16)
COLOR_STOP = 3  # stopped in phase gen_unfrozen
PHOTOS, CARTOONS = blobs(6, 0), blobs(6, 1)
SMOOTH = CARTOONS[:, ::-1].copy()  # any aligned second set will do here
CARTOON = TrainConfig(style="toy", base_channels=4, n_res_blocks=1, d_base_channels=4, crop=24, batch=4,
                      init_steps=3, gan_steps=4, lr=2e-3, lr_d=4e-3, init_pixel=1.0, precision="fp32",
                      n_snapshots=1, log_every=1, checkpoint_every=100)
CARTOON_STOP = 5  # both ways: stopped in the GAN phase


def colorize(out: Path, **kw):
    return train_colorizer(COLOR_IMAGES, out, COLOR_MODEL, NOGAN, seed=3, progress=False, pretrained=False,
                           **kw)


def cartoonize(out: Path, **kw):
    return train(CARTOON, PHOTOS, CARTOONS, SMOOTH, PHOTOS[:2], tiny_features, out, progress=False, **kw)


# ----------------------------------------------------------------------------------------------
# the torchrun worker: this file run as a script


def layer_checks(ctx: DistContext) -> dict[str, torch.Tensor]:
    """Global batch norm and dropout on this rank's rows of seeded global batches."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5)  # (B, C, H, W) global batch
    target = torch.randn(4, 3, 5, 5)
    bn = distributed.globalize(nn.BatchNorm2d(3))
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    xl = ctx.shard(x).clone().requires_grad_(True)
    y = bn(xl)
    ((y - ctx.shard(target)) ** 2).mean().backward()  # the rank's mean loss
    grads = torch.cat([bn.weight.grad, bn.bias.grad])
    torch.distributed.all_reduce(grads)  # averaged as DDP does
    torch.manual_seed(5)
    drop2d = distributed.GlobalDropout(0.3, feature=True)(ctx.shard(torch.ones(4, 6, 3, 3)))
    drop = distributed.GlobalDropout(0.3)(ctx.shard(torch.ones(4, 6, 3, 3)))
    return {"y": y.detach(), "x_grad": xl.grad / ctx.world_size, "param_grad": grads / ctx.world_size,
            "running": torch.cat([bn.running_mean, bn.running_var]), "dropout2d": drop2d, "dropout": drop,
            "rng_after": torch.rand(3)}


def worker(root: Path) -> None:
    ctx = distributed.init_from_env("cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo"
    torch.save(layer_checks(ctx), root / f"layers_{ctx.rank}.pt")
    colorize(root / "color_2")
    colorize(root / "color_2to1", stop_after=COLOR_STOP)
    cartoonize(root / "cartoon_2")
    cartoonize(root / "cartoon_1to2")  # resumes the 1-process checkpoint pytest wrote before the launch
    cartoonize(root / "cartoon_2to1", stop_after=CARTOON_STOP)
    distributed.cleanup()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(Path(sys.argv[2]))
    sys.exit(0)


# ----------------------------------------------------------------------------------------------
# the tests


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch the 2-process worker, run the 1-process references meanwhile, then the 1-process resumes."""
    root = tmp_path_factory.mktemp("ddp")
    cartoonize(root / "cartoon_1to2", stop_after=CARTOON_STOP)
    proc = start_torchrun_worker(__file__, root)
    try:
        colorize(root / "color_1")
        cartoonize(root / "cartoon_1")
        train(TrainConfig(**{**CARTOON.__dict__, "seed": 1}), PHOTOS, CARTOONS, SMOOTH, PHOTOS[:2],
              tiny_features, root / "cartoon_1_seed1", progress=False)  # the control: another batch order
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-4000:]
    # 2 -> 1: copies, so that the 2-process checkpoints stay inspectable
    for name in ("color_2to1", "cartoon_2to1"):
        shutil.copytree(root / name, root / f"{name}_resumed")
    colorize(root / "color_2to1_resumed")
    cartoonize(root / "cartoon_2to1_resumed")
    return root


def curve_difference(a: Path, b: Path) -> dict[str, tuple[float, float]]:
    """{metric: (largest |b - a|, largest |b - a| / |a|)} of two runs' loss logs (same metrics, steps)."""
    ca, cb = read_curves(a / "dvclive"), read_curves(b / "dvclive")
    assert set(ca) == set(cb)
    out = {}
    for k, (steps, values) in ca.items():
        np.testing.assert_array_equal(steps, cb[k][0], err_msg=k)  # no row missing or written twice
        diff = np.abs(cb[k][1] - values)
        out[k] = float(diff.max()), float(np.max(diff / np.maximum(np.abs(values), 1e-12)))
    return out


def assert_same_curves(a: Path, b: Path, rtol: float, atol: float) -> tuple[float, float]:
    """Every logged value of ``b`` within ``atol + rtol |a|`` of ``a``'s; returns the worst (abs, rel)."""
    diff = curve_difference(a, b)
    ca, cb = read_curves(a / "dvclive"), read_curves(b / "dvclive")
    for k in ca:
        np.testing.assert_allclose(cb[k][1], ca[k][1], rtol=rtol, atol=atol, err_msg=f"{b.name}: {k}")
    return max(d[0] for d in diff.values()), max(d[1] for d in diff.values())


def generator_outputs(path: Path) -> torch.Tensor:
    """G(photos) (6, 3, 32, 32) of a saved generator: what training should agree on (some weights, the
    biases that instance norm cancels, take noise-driven Adam steps and need not)."""
    with torch.no_grad():
        return CartoonGenerator.from_checkpoint(path)(to_unit(to_tensor(PHOTOS)))


def test_global_layers_match_one_process(runs):
    torch.manual_seed(0)
    x, target = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x.requires_grad_(True)
    y = bn(x)
    ((y - target) ** 2).mean().backward()
    torch.manual_seed(5)
    drop2d = F.dropout2d(torch.ones(4, 6, 3, 3), 0.3)
    drop = F.dropout(torch.ones(4, 6, 3, 3), 0.3)
    rng_after = torch.rand(3)
    ranks = [torch.load(runs / f"layers_{r}.pt") for r in range(2)]
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad, rtol=1e-4, atol=1e-7)
    for r in ranks:
        torch.testing.assert_close(r["param_grad"], torch.cat([bn.weight.grad, bn.bias.grad]))
        torch.testing.assert_close(r["running"], torch.cat([bn.running_mean, bn.running_var]))
        torch.testing.assert_close(r["rng_after"], rng_after, rtol=0, atol=0)  # RNG states stay in step
    for key, ref in (("dropout2d", drop2d), ("dropout", drop)):  # the single process's masks, exactly
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]), ref, rtol=0, atol=0)


def test_colorizer_two_processes_follow_one(runs):
    worst = assert_same_curves(runs / "color_1", runs / "color_2", rtol=1e-3, atol=1e-4)
    print(f"colorizer: largest loss difference 1 vs 2 processes {worst[0]:.1e} (relative {worst[1]:.1e})")
    assert len(read_curves(runs / "color_2" / "dvclive")["gan/adversarial"][0]) == NOGAN.steps_gan
    frozen = [rel for k, (_, rel) in curve_difference(runs / "color_1", runs / "color_2").items()
              if k.startswith("gen_frozen/")]
    assert max(frozen) < 1e-4  # while the encoder is frozen: ~1e-6


def test_colorizer_checkpoint_of_two_processes_resumes_in_one(runs):
    state = Checkpointer(runs / "color_2to1" / "train_state.pt").load(restore_rng=False)
    assert state["step"] == COLOR_STOP and state["phase_index"] == 1  # written by the 2 processes
    assert_same_curves(runs / "color_1", runs / "color_2to1_resumed", rtol=1e-3, atol=1e-4)
    finished = Checkpointer(runs / "color_2to1_resumed" / "train_state.pt").load(restore_rng=False)
    assert finished["phase_index"] == 4 and finished["step"] == sum(p[1] for p in NOGAN.phases())


def test_cartoongan_two_processes_follow_one(runs):
    worst = assert_same_curves(runs / "cartoon_1", runs / "cartoon_2", rtol=1e-4, atol=1e-6)
    control = max(rel for _, rel in curve_difference(runs / "cartoon_1", runs / "cartoon_1_seed1").values())
    print(f"CartoonGAN: largest relative loss difference 1 vs 2 processes {worst[1]:.1e} "
          f"(another seed: {control:.1e})")
    assert control > 1000 * worst[1]  # the same global batches, not merely similar ones
    assert (runs / "cartoon_2" / "generator.pt").is_file()
    assert sorted(p.name for p in (runs / "cartoon_2" / "snapshots").iterdir()) == sorted(
        p.name for p in (runs / "cartoon_1" / "snapshots").iterdir())


def test_cartoongan_checkpoints_move_between_process_counts(runs):
    assert Checkpointer(runs / "cartoon_2to1" / STATE_FILE).load(restore_rng=False)["step"] == CARTOON_STOP
    assert not (runs / "cartoon_2to1" / "generator.pt").exists()
    ref = generator_outputs(runs / "cartoon_1" / "generator.pt")
    for name in ("cartoon_2", "cartoon_1to2", "cartoon_2to1_resumed"):
        assert_same_curves(runs / "cartoon_1", runs / name, rtol=1e-4, atol=1e-6)
        # within one 8-bit level of the [-1, 1] output (measured ~1.5e-3: Adam steps on noise-level gradients)
        torch.testing.assert_close(generator_outputs(runs / name / "generator.pt"), ref, rtol=0, atol=2 / 255)


def test_batch_must_split_evenly(monkeypatch, tmp_path):
    ctx = DistContext(rank=1, world_size=2)
    assert ctx.local_batch(6) == 3 and ctx.rows(6) == slice(3, 6)
    x = torch.arange(6)
    y, idx = ctx.shard(x, [10, 11, 12, 13, 14, 15])
    assert y.tolist() == [3, 4, 5] and idx == [13, 14, 15]
    with pytest.raises(ValueError, match="multiple of 2"):
        ctx.local_batch(3)
    assert list(distributed.ShardedBatches([[0, 1, 2, 3], [4, 5, 6, 7]], ctx)) == [[2, 3], [6, 7]]
    monkeypatch.setattr(distributed, "_CONTEXT", ctx)  # as if under a 2-process torchrun
    with pytest.raises(ValueError, match="does not split evenly"):
        train(TrainConfig(**{**CARTOON.__dict__, "batch": 3}), PHOTOS, CARTOONS, SMOOTH, PHOTOS[:2],
              tiny_features, tmp_path, progress=False)
    assert not (tmp_path / STATE_FILE).exists()


def test_single_process_is_a_no_op():
    ctx = distributed.current()
    assert ctx.world_size == 1 and ctx.is_main and distributed.is_main()
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout2d(0.2))
    assert ctx.prepare(m) is m and ctx.wrap(m) is m and isinstance(m[1], nn.BatchNorm2d)
    x = torch.zeros(3, 2)
    assert ctx.shard(x) is x and ctx.mean({"a": 0.25}) == {"a": 0.25}


def test_globalize_keeps_state_dict_keys():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.1))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    params = list(m.parameters())
    distributed.globalize(m)
    assert isinstance(m[1], distributed.GlobalBatchNorm) and isinstance(m[2], distributed.GlobalDropout)
    assert list(m.parameters()) == params and list(m.state_dict()) == list(before)
    x = torch.randn(2, 3, 6, 6)
    m.eval()
    conv = F.conv2d(x, m[0].weight, m[0].bias)  # (2, 4, 4, 4)
    plain = F.batch_norm(conv, before["1.running_mean"], before["1.running_var"], m[1].weight, m[1].bias)
    torch.testing.assert_close(m(x), plain)


def test_run_cli_builds_the_notebook_configs():
    from deeperfour.train import run
    from deeperfour.train.colorizer import NoGANConfig

    p = run.stage_params("colorize", overrides=run.parse_set(["steps_gan=7", "lr=5e-05", "weights="]))
    cfg = NoGANConfig.from_params(p)
    assert cfg.steps_gan == 7 and cfg.lr == 5e-05 and p["weights"] == "" and p["out_dir"] == "build/colorize"
    assert cfg.layer_weights == {"relu2_2": p["w_relu2_2"], "relu3_3": p["w_relu3_3"]}
    tc = TrainConfig.from_params(run.stage_params("train_cartoongan"), "bunny")
    assert tc.style == "bunny" and tc.batch == run.stage_params("train_cartoongan")["batch"]
    with pytest.raises(KeyError, match="unknown parameter"):
        run.stage_params("colorize", overrides={"stepz": 1})
    cmd = run.launch_command("train_cartoongan", 2, out_dir="/tmp/x", lr_d=None, styles="a,b")
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    sets = run.parse_set([a for a in cmd[cmd.index("train_cartoongan") + 1:] if a != "--set"])
    assert sets == {"out_dir": "/tmp/x", "lr_d": None, "styles": "a,b"}  # round trip through the CLI


def test_run_cli_takes_the_fp32_share_of_each_stages_steps_as_the_notebooks_do():
    from deeperfour.train import run

    p = run.stage_params("train_cartoongan", overrides={"gan_steps": 200, "paper_init_steps": 100,
                                                       "init_steps": 0, "fp32_steps": 0.5})
    fp32 = run.scheduled("train_cartoongan", {**p, "precision": "fp32"})
    assert (fp32["gan_steps"], fp32["paper_init_steps"], fp32["init_steps"]) == (100, 50, 0)
    assert run.scheduled("train_cartoongan", {**p, "precision": "bf16"})["gan_steps"] == 200
    c = run.scheduled("colorize", {**run.stage_params("colorize", overrides={
        "steps_frozen": 550, "steps_unfrozen": 30, "steps_critic": 50, "steps_gan": 150, "fp32_steps": 0.5}),
        "precision": "fp32"})
    assert [c[k] for k in run.STEP_KEYS["colorize"]] == [275, 15, 25, 75]
