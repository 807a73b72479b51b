"""Layout- and precision-preserving ops: same values as the stock ops, channels-last kept, bf16 kept."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator
from deeperfour.models.convlstm import ConvLSTMConfig, TemporalConsistencyNet
from deeperfour.models.ops import Pad2d, PadConv2d, instance_norm, is_channels_last, pad

CL = torch.channels_last


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_pad_keeps_bf16_under_autocast_with_the_same_values(mode):
    x = rand(2, 8, 9, 11).bfloat16().contiguous(memory_format=CL)
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        stock = F.pad(x, (1, 2, 3, 1), mode=mode)  # autocast-fp32 op on CPU
        ours = pad(x, (1, 2, 3, 1), mode)
    assert stock.dtype == torch.float32 and ours.dtype == torch.bfloat16 and is_channels_last(ours)
    torch.testing.assert_close(ours.float(), stock, rtol=0, atol=0)  # a pad only copies values


def test_pad_keeps_the_stock_path_when_a_gradient_flows():
    x = rand(1, 4, 6, 6).requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        assert pad(x.bfloat16(), (1, 1, 1, 1), "reflect").dtype == torch.float32  # autocast's own rule


@pytest.mark.parametrize("batch", [1, 3])
def test_instance_norm_channels_last_equals_stock_and_keeps_layout(batch):
    x = rand(batch, 16, 12, 10).mul(3).add(1)
    w, b = rand(16, seed=1).abs() + 0.5, rand(16, seed=2)
    want = F.instance_norm(x, weight=w, bias=b, eps=1e-9)
    got = instance_norm(x.contiguous(memory_format=CL), w, b, 1e-9)
    assert is_channels_last(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(instance_norm(x, w, b, 1e-9), want)  # NCHW: the stock op itself


def test_instance_norm_bf16_channels_last_matches_fp32_to_bf16_precision():
    x = rand(2, 32, 20, 24).mul(2).add(0.5)
    w, b = torch.ones(32), torch.zeros(32)
    want = F.instance_norm(x, weight=w, bias=b, eps=1e-9)
    got = instance_norm(x.bfloat16().contiguous(memory_format=CL), w, b, 1e-9)
    assert got.dtype == torch.bfloat16 and is_channels_last(got)
    torch.testing.assert_close(got.float(), want, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
def test_pad_conv_has_conv2d_keys_init_and_values(mode):
    torch.manual_seed(0)
    stock = nn.Conv2d(5, 7, 3, padding=1, padding_mode=mode)
    torch.manual_seed(0)
    ours = PadConv2d(5, 7, 3, padding=1, padding_mode=mode)
    ours_sd, stock_sd = ours.state_dict(), stock.state_dict()
    assert list(ours_sd) == list(stock_sd) and all(torch.equal(ours_sd[k], stock_sd[k]) for k in stock_sd)
    x = rand(2, 5, 9, 8)
    assert torch.equal(ours(x), stock(x))  # fp32: the very same ops
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        torch.testing.assert_close(ours(x), stock(x), rtol=0, atol=0)  # bf16: the same conv input


def test_pad2d_is_replication_pad():
    x = rand(1, 3, 5, 6)
    assert torch.equal(Pad2d((1, 0, 1, 0))(x), nn.ReplicationPad2d((1, 0, 1, 0))(x))
    assert Pad2d((1, 0, 1, 0)).state_dict() == {}


@pytest.mark.parametrize("variant", ["light", "paper"])
def test_cartoon_generator_channels_last_inference_matches_nchw(variant):
    torch.manual_seed(0)
    cfg = CartoonGANConfig(variant=variant, base_channels=8, n_res_blocks=2)
    net = CartoonGenerator(cfg).eval()
    x = rand(3, 3, 22, 30).tanh()  # odd batch, sides not multiples of 4
    with torch.inference_mode():
        want = net(x)  # NCHW: the training layout and ops
        fast = net.to(memory_format=CL)(x.contiguous(memory_format=CL))  # frame by frame, channels-last
        assert fast.shape == x.shape and is_channels_last(fast)
        torch.testing.assert_close(fast, want, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", torch.bfloat16):
            half = net(x.contiguous(memory_format=CL))
    torch.testing.assert_close(half.float(), want, rtol=0, atol=0.1)  # bf16 rounding only


def test_convlstm_channels_last_bf16_step_matches_fp32():
    torch.manual_seed(0)
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1)).eval()
    p, o, i, i0 = (rand(1, 3, 18, 22, seed=s).sigmoid() for s in range(4))
    with torch.inference_mode():
        want, _ = net(p, o, i, i0)
        net.to(memory_format=CL)
        with torch.autocast("cpu", torch.bfloat16):
            got, _ = net(*(t.contiguous(memory_format=CL) for t in (p, o, i, i0)))
    torch.testing.assert_close(got.float(), want, rtol=0, atol=0.03)
