"""Exact restore of the weights after a step's perturbations, low precision, and RNG hygiene."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optimlab.zo import ZOSGD, sample_directions


def _weights(dtype, n=500):
    p = nn.Parameter((0.02 * torch.randn(n, generator=torch.Generator().manual_seed(0))).to(dtype))
    return p


def _loss(p):
    return lambda: (p.float() * torch.linspace(-1, 1, p.numel())).sin().sum()


@pytest.mark.parametrize(("dtype", "kw"), [(torch.float32, {"perturb": "swap"}),
                                           (torch.bfloat16, {"perturb": "swap"}),
                                           (torch.float32, {"master_dtype": torch.float32}),
                                           (torch.bfloat16, {"master_dtype": torch.float32}),
                                           (torch.float16, {"master_dtype": torch.float32, "q": 2})])
def test_swap_and_master_restore_bit_exactly(dtype, kw):
    p = _weights(dtype)
    w0 = p.detach().clone()
    opt = ZOSGD([p], lr=0.0, eps=1e-3, chunk_numel=64, **kw)
    for _ in range(20):
        opt.step(_loss(p))
    assert torch.equal(p.detach(), w0)


def test_inplace_fp32_drift_is_small():
    p = _weights(torch.float32)
    w0 = p.detach().clone()
    opt = ZOSGD([p], lr=0.0, eps=1e-3)
    for _ in range(100):
        opt.step(_loss(p))
    assert float((p.detach() - w0).norm() / w0.norm()) <= 1e-5


def test_inplace_half_precision_without_master_is_refused():
    with pytest.raises(ValueError, match="master_dtype") as e:
        ZOSGD([_weights(torch.bfloat16)], lr=1e-3)
    assert "perturb='swap'" in str(e.value)
    ZOSGD([_weights(torch.bfloat16)], allow_low_precision=True)


def test_master_accumulates_updates_too_small_for_bf16():
    p = nn.Parameter(torch.ones(200, dtype=torch.bfloat16))
    opt = ZOSGD([p], lr=1e-7, eps=1e-3, master_dtype=torch.float32)
    a = torch.linspace(-1, 1, 200)
    for _ in range(1000):
        opt.step(lambda: (p.float() * a).sum())
    m = next(iter(opt.state.values()))["master"]
    assert m.dtype == torch.float32 and float((m - 1).abs().max()) > 1e-5


def test_global_rng_untouched_and_dropout_shared_by_the_two_probes():
    torch.manual_seed(123)
    p = nn.Parameter(torch.ones(50))
    drop = nn.Dropout(0.5)
    masks = []

    def closure():
        with torch.no_grad():
            m = drop(torch.ones(50))
        masks.append(m)
        return (p * m).sum()

    opt = ZOSGD([p], lr=0.1)
    state = torch.get_rng_state()
    opt.step(closure)
    opt.step(closure)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(masks[0], masks[1]) and torch.equal(masks[2], masks[3])
    assert not torch.equal(masks[0], masks[2])
    shuffled = torch.randperm(10)  # a data loader's shuffling still advances the untouched global stream
    torch.set_rng_state(state)
    assert torch.equal(shuffled, torch.randperm(10))


def test_golden_direction_values():
    """The direction stream of (seed 0, step 0, direction 0, param 0, chunk 0), CPU float32, must never change."""
    opt = ZOSGD([nn.Parameter(torch.zeros(8))])
    w = opt.regenerate(0, 0)[0][:4]
    assert w.tolist() == [0.4099777340888977, -1.0394283533096313, 0.768022894859314, 1.8259860277175903]


def test_chunk_size_changes_the_stream_not_the_statistics():
    def draws(chunk):
        opt = ZOSGD([nn.Parameter(torch.zeros(4000))], chunk_numel=chunk)
        return torch.cat([opt.regenerate(t, 0)[0] for t in range(20)])

    a, b = draws(1000), draws(4000)
    assert not torch.equal(a, b)
    for x in (a, b):
        assert abs(float(x.mean())) < 0.01 and abs(float(x.var()) - 1) < 0.02
    ref = sample_directions((80000,), generator=torch.Generator().manual_seed(0))
    assert abs(float(a.var()) - float(ref.var())) < 0.03
