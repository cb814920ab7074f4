"""optimlab._numerics: foreach global norm against a reference, finiteness, EMA and bias correction."""

import math

import pytest
import torch

from optimlab._numerics import all_finite, bias_correction, ema_, global_norm


def reference_norm(tensors):
    return math.sqrt(sum(float(t.double().square().sum()) for t in tensors))


def test_global_norm_matches_reference_across_dtypes():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(3, 4, generator=g), torch.randn(7, generator=g).half() * 100,
          torch.randn(2, 2, generator=g).bfloat16(), torch.randn(5, generator=g)]
    n = global_norm(ts)
    assert n.dtype == torch.float32 and n.ndim == 0
    assert float(n) == pytest.approx(reference_norm(ts), rel=1e-6)
    n64 = global_norm([*ts, torch.randn(3, dtype=torch.float64, generator=g)])
    assert n64.dtype == torch.float64


def test_fp16_values_whose_squares_overflow_fp16_do_not_overflow():
    ts = [torch.full((4,), 60000.0, dtype=torch.float16)]
    assert float(global_norm(ts)) == pytest.approx(120000.0, rel=1e-3)


def test_empty_and_integer_inputs():
    assert float(global_norm([])) == 0.0
    assert float(global_norm([torch.tensor([3, 4])])) == 5.0


def test_all_finite():
    assert all_finite([torch.ones(3), torch.zeros(2)])
    assert all_finite([])
    for bad in (math.nan, math.inf, -math.inf):
        assert not all_finite([torch.ones(3), torch.tensor([1.0, bad])])


def test_ema_in_place_and_limits():
    b = [torch.ones(3), torch.ones(2, dtype=torch.float64)]
    ids = [id(t) for t in b]
    out = ema_(b, [torch.zeros(3), torch.full((2,), 2.0, dtype=torch.float64)], 0.9)
    assert [id(t) for t in out] == ids
    assert torch.allclose(b[0], torch.full((3,), 0.9)) and torch.allclose(b[1], torch.full((2,), 1.1, dtype=torch.float64))
    c = [torch.ones(2)]
    ema_(c, [torch.full((2,), 5.0)], 0.0)
    assert torch.equal(c[0], torch.full((2,), 5.0))
    with pytest.raises(ValueError, match="same length"):
        ema_([torch.ones(1)], [], 0.5)


def test_bias_correction():
    assert bias_correction(0.9, 1) == pytest.approx(0.1)
    assert bias_correction(0.9, 2) == pytest.approx(0.19)
    for bad in (0, True, 1.0):
        with pytest.raises(ValueError, match="t must be an integer >= 1"):
            bias_correction(0.9, bad)
