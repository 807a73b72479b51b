"""Lai et al.'s temporal consistency network: shapes, shot reset, gradients, checkpoints, size."""

from __future__ import annotations

import pytest
import torch

from deeperfour.models.convlstm import (
    ConvLSTMCell,
    ConvLSTMConfig,
    StreamState,
    TemporalConsistencyNet,
    count_parameters,
)

TINY = ConvLSTMConfig(nf=4, n_res_blocks=1)


def tiny_net(seed: int = 0) -> TemporalConsistencyNet:
    torch.manual_seed(seed)
    return TemporalConsistencyNet(TINY)


def frames(n: int, h: int, w: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, h, w, generator=g) for _ in range(n)]  # (B, C, H, W) each


def run(net, P, I, state=None):
    """Step through a clip starting with a shot start; return outputs and the final state."""
    outs, o_prev, i_prev = [], None, None
    for p, i in zip(P, I, strict=True):
        o, state = net.step(p, o_prev, i, i_prev, state)
        outs.append(o)
        o_prev, i_prev = o, i
    return outs, state


def test_output_shape_matches_odd_input_sizes():
    net = tiny_net()
    P, I = frames(3, 13, 17), frames(3, 13, 17, seed=1)
    outs, state = run(net, P, I)
    assert all(o.shape == (2, 3, 13, 17) for o in outs)
    h, c = state.hidden
    assert h.shape == c.shape == (2, 4 * TINY.nf, 4, 5)  # padded 16x20, then / 4


def test_shot_start_returns_processed_frame_exactly():
    net = tiny_net()
    P, I = frames(3, 12, 12), frames(3, 12, 12, seed=1)
    outs, _ = run(net, P, I)
    assert torch.equal(outs[0], P[0])  # O_0 = P_0
    assert not torch.equal(outs[1], P[1])  # afterwards the residual is active
    o, state = net.step(P[2], outs[1], I[2], I[1], None)  # a cut: state dropped
    assert torch.equal(o, P[2]) and isinstance(state, StreamState) and state.hidden is None
    with pytest.raises(ValueError):
        net.step(P[1], None, I[1], None, StreamState())


def test_gradients_reach_every_parameter():
    net = tiny_net()
    P, I = frames(3, 12, 12), frames(3, 12, 12, seed=1)
    outs, _ = run(net, P, I)  # steps 2 and 3 run the net; step 3 has a non-zero ConvLSTM state
    sum(((o - p) ** 2).mean() for o, p in zip(outs[1:], P[1:], strict=True)).backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_convlstm_cell_zero_state():
    cell = ConvLSTMCell(3, 5)
    h, (h2, c) = cell(torch.rand(1, 3, 4, 6), None)
    assert h.shape == c.shape == (1, 5, 4, 6) and torch.equal(h, h2)


def test_checkpoint_round_trip(tmp_path):
    net = tiny_net(seed=3).eval()
    path = net.save(tmp_path / "ckpt" / "convlstm.pt", extra={"step": 7})
    assert sorted(p.name for p in path.parent.iterdir()) == ["convlstm.pt"]  # no temp file left
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["version"] == 1 and ckpt["config"]["nf"] == TINY.nf and ckpt["step"] == 7
    loaded = TemporalConsistencyNet.from_checkpoint(path)
    assert loaded.config == TINY
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    P, I = frames(3, 9, 11), frames(3, 9, 11, seed=1)
    with torch.no_grad():
        a, _ = run(net, P, I)
        b, _ = run(TemporalConsistencyNet.from_checkpoint(path), P, I)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_paper_size_is_about_3m_parameters():
    n = count_parameters(TemporalConsistencyNet(ConvLSTMConfig()))  # nf = 32, 5 residual blocks
    print(f"TemporalConsistencyNet(nf=32): {n:,} parameters")
    assert 2.5e6 < n < 3.5e6


def test_flow_guided_variant_blends_the_aligned_past_through_its_gate():
    """warp_prev: O_t = P_t + sigmoid(g) (O_prev - P_t) + residual; a zero last conv means g = 0 -> half."""
    torch.manual_seed(0)
    net = TemporalConsistencyNet(ConvLSTMConfig(nf=4, n_res_blocks=1, warp_prev=True))
    assert net.out.out_channels == 4  # RGB residual + gate logit
    torch.nn.init.zeros_(net.out.weight)
    torch.nn.init.zeros_(net.out.bias)
    P, O_prev, I = torch.rand(1, 3, 12, 20), torch.rand(1, 3, 12, 20), torch.rand(1, 3, 12, 20)
    O, _ = net(P, O_prev, I, I)
    torch.testing.assert_close(O, P + 0.5 * (O_prev - P))
