"""core/precision.py: auto picks bf16 only where the device computes it natively; one clear error
otherwise."""

import pytest
import torch

from deeperfour.core import precision as prec


@pytest.fixture(autouse=True)
def fresh_cache():
    prec.native_bf16.cache_clear()
    yield
    prec.native_bf16.cache_clear()


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [(True, False, "bf16"), (False, True, "bf16"),
                                                              (False, False, "fp32")])
def test_auto_follows_the_cpu_capability(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert prec.resolve_precision("auto", "cpu") == expected
    assert prec.resolve_precision("fp32", "cpu") == "fp32" and prec.resolve_precision("bf16", "cpu") == "bf16"


def test_autocast_is_a_no_op_in_fp32_and_bf16_where_native(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    x = torch.ones(2, 2)
    with prec.autocast("cpu", "auto"):
        assert (x @ x).dtype == torch.float32  # emulated bf16 would be ~100x slower: fp32
    with prec.autocast("cpu", "bf16"):
        assert (x @ x).dtype == torch.bfloat16  # forced


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(ValueError, match="precision must be one of auto, bf16, fp32, got 'fp16'"):
        prec.resolve_precision("fp16", "cpu")


def test_budget_steps_shortens_only_the_fp32_schedule():
    assert prec.budget_steps("bf16", 0.5, 550, 30, 0) == (550, 30, 0)
    assert prec.budget_steps("fp32", 0.5, 550, 30, 0, 1) == (275, 15, 0, 1)  # a phase with steps keeps >= 1
    assert prec.budget_steps("fp32", 1.0, 150) == (150,)
    assert prec.budget_steps("fp32", 0.4, 5) == (2,)


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_budget_steps_rejects_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match=r"fp32_steps must be in \(0, 1\]"):
        prec.budget_steps("fp32", share, 100)


def test_budget_steps_wants_a_resolved_precision():
    with pytest.raises(ValueError, match="resolved precision"):
        prec.budget_steps("auto", 0.5, 100)
