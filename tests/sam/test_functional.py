"""The list-level numerics of the SAM family: the perturbation, the preconditioners, the finiteness check and the
BatchNorm guard, each against a per-tensor reference computation (bit for bit where the code promises it)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import batch, closure_for, mlp, params_of
from optimlab._numerics import global_norm, group_by_device_and_dtype
from optimlab.sam import SAM, batchnorm_guard, perturbation
from optimlab.sam.functional import directions, grads_finite, scale
from optimlab.sam.preconditioners import (
    asam_scale,
    asam_scales,
    ema_direction,
    ema_directions,
    fisher_scale,
    fisher_scales,
    snr_flat,
    snr_weight,
    snr_weights,
)

SHAPES = [(5, 3), (7,), (1,), (33,), (4, 4), (17,)]


def tensors(seed, dtypes=(torch.float32,), shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtypes[i % len(dtypes)]) for i, s in enumerate(shapes)]


def reference_perturbation(u, rhos, cs, eps):
    """The per-tensor formula of the landed code: one global norm of c ⊙ u (per-tensor norms, stacked), then
    ε = (c ⊙ (c ⊙ u)) · ρ/(N + eps), the scale in the norm's precision."""
    scaled = [x if c is None else c * x for x, c in zip(u, cs)]
    acc = torch.float64 if any(t.dtype == torch.float64 for t in scaled) else torch.float32
    norm = torch.stack([t.to(acc).norm(2) for t in scaled]).norm(2)
    out = []
    for x, c, r in zip(scaled, cs, rhos):
        e = x if c is None else c * x
        s = r / (norm + eps)
        out.append(e.mul(s) if e.dtype == s.dtype else e.to(s.dtype).mul(s).to(e.dtype))
    return out


# ------------------------------------------------------------------------------------------- perturbation
@pytest.mark.parametrize("dtypes", [(torch.float32,), (torch.float64,)])
@pytest.mark.parametrize("with_c", [False, True])
def test_foreach_perturbation_equals_the_per_tensor_formula_bit_for_bit(dtypes, with_c):
    u = tensors(0, dtypes)
    cs = [None if i % 3 == 0 else t.abs() + 0.5 for i, t in enumerate(tensors(1, dtypes))] if with_c else \
        [None] * len(u)
    rhos = [0.05 if i < 3 else 0.2 for i in range(len(u))]
    got = perturbation(u, rhos, c=cs if with_c else None)
    for a, b in zip(got, reference_perturbation(u, rhos, cs, 1e-12)):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_perturbation_mixed_and_low_precision_dtypes():
    u = tensors(2, (torch.float32, torch.float16, torch.bfloat16))
    got = perturbation(u, 0.1)
    ref = reference_perturbation(u, [0.1] * len(u), [None] * len(u), 1e-12)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=0)
    total = math.sqrt(sum(float((e.double() ** 2).sum()) for e in got))
    assert total == pytest.approx(0.1, rel=1e-2)


def test_perturbation_leaves_inputs_and_scale_inplace_overwrites_only_what_it_is_told():
    u = tensors(3)
    before = [t.clone() for t in u]
    perturbation(u, 0.3, c=[t.abs() for t in u])
    assert all(torch.equal(a, b) for a, b in zip(u, before))
    scaled, twice = directions(u, None)
    assert twice is u
    groups = group_by_device_and_dtype(twice)
    norm = global_norm(scaled, groups=groups)
    assert torch.equal(norm, global_norm(u))
    flags = [i % 2 == 0 for i in range(len(u))]
    eps = scale(twice, [0.3] * len(u), norm, 1e-12, groups=groups, inplace=flags)
    for e, t, b, inplace in zip(eps, u, before, flags):
        assert (e is t) == inplace
        assert torch.equal(e, b * (0.3 / (global_norm(before) + 1e-12)))
    assert all(torch.equal(t, b) for t, b, f in zip(u, before, flags) if not f)


def test_perturbation_function_zero_norm_gives_zero():
    out = perturbation([torch.zeros(3), torch.zeros(2, 2)], 0.05)
    assert all(torch.equal(o, torch.zeros_like(o)) for o in out)
    with pytest.raises(ValueError, match="rho"):
        perturbation([torch.ones(2)], [0.1, 0.2])


def test_fp16_parameters_get_a_finite_perturbation():
    w = nn.Parameter(torch.full((8,), 1e-3, dtype=torch.float16))
    opt = SAM([w], base=torch.optim.SGD([w], lr=0.0), rho=0.05)
    w.grad = torch.full((8,), 1e-7, dtype=torch.float16)  # ‖g‖² underflows in fp16; the norm is taken in fp32
    opt.first_step(zero_grad=False)
    assert torch.isfinite(w).all() and not torch.equal(w.detach(), torch.full((8,), 1e-3, dtype=torch.float16))
    opt.restore()


def test_two_groups_use_one_global_norm():
    """Pitfall 7: splitting the parameters into two groups must not change ε (the norm is global)."""
    x, y = batch(dtype=torch.float64)
    eps = []
    for split in (False, True):
        model = mlp(dtype=torch.float64)
        groups = ([{"params": list(model[0].parameters())}, {"params": list(model[-1].parameters())}] if split
                  else [{"params": list(model.parameters())}])
        opt = SAM(base=torch.optim.SGD(groups, lr=0.1), rho=0.05)
        before = params_of(model)
        F.cross_entropy(model(x), y).backward()
        opt.first_step()
        eps.append(torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(model.parameters(), before)]))
        opt.restore()
    torch.testing.assert_close(eps[0], eps[1], rtol=0, atol=0)


def test_bf16_parameters_get_a_finite_perturbation():
    w = nn.Parameter(torch.full((8,), 1.0, dtype=torch.bfloat16))
    opt = SAM([w], base=torch.optim.SGD([w], lr=0.0), rho=0.5)
    w.grad = torch.full((8,), 1e-3, dtype=torch.bfloat16)
    opt.first_step(zero_grad=False)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.detach().float(), torch.full((8,), 1.0 + 0.5 / 8**0.5), rtol=1e-2, atol=0)
    opt.restore()
    assert torch.equal(w.detach(), torch.full((8,), 1.0, dtype=torch.bfloat16))


def test_agrees_with_pytorch_optimizer_sam():
    po = pytest.importorskip("pytorch_optimizer")
    m1, m2 = mlp(), mlp()
    ours = SAM(base=torch.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    theirs = po.SAM(m2.parameters(), base_optimizer=torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for t in range(5):
        x, y = batch(t)
        ours.step(closure_for(m1, x, y))
        theirs.zero_grad()
        F.cross_entropy(m2(x), y).backward()
        theirs.first_step(zero_grad=True)
        F.cross_entropy(m2(x), y).backward()
        theirs.second_step(zero_grad=True)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_explicit_first_step_keeps_the_gradients_when_asked():
    """ε may overwrite the gradients only when they are discarded (zero_grad=True)."""
    model = mlp()
    x, y = batch()
    opt = SAM(base=torch.optim.SGD(model.parameters(), lr=0.1))
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.first_step(zero_grad=False)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    opt.restore()


# ------------------------------------------------------------------------------------------- finiteness
def test_grads_finite_detects_nan_and_both_infinities_without_changing_values():
    ts = tensors(4, (torch.float32, torch.float64, torch.float16))
    before = [t.clone() for t in ts]
    assert grads_finite(ts)
    assert all(torch.equal(a, b) for a, b in zip(ts, before))
    for bad in (float("nan"), float("inf"), float("-inf")):
        ts[3][0] = bad
        assert not grads_finite(ts)
        ts[3][0] = 0.0
    assert grads_finite([])
    expanded = torch.zeros(1).expand(6)  # overlapping memory: the fused check refuses it, the fallback answers
    assert grads_finite([expanded]) and not grads_finite([torch.full((1,), float("nan")).expand(6)])


# ------------------------------------------------------------------------------------------- preconditioners
def test_list_preconditioners_equal_the_per_tensor_ones_bit_for_bit():
    ps, gs, ds = tensors(5), tensors(6), tensors(7)
    for a, p in zip(asam_scales(ps, 0.01), ps):
        assert torch.equal(a, p.abs() + 0.01) and torch.equal(a, asam_scale(p, 0.01))
    for f, g in zip(fisher_scales(gs, 0.7), gs):
        assert torch.equal(f, g.square().mul_(0.7).add_(1.0).rsqrt_()) and torch.equal(f, fisher_scale(g, 0.7))
    prev = [None if i % 2 else d for i, d in enumerate(ds)]
    for e, d, g in zip(ema_directions(prev, gs, 0.3), prev, gs):
        ref = g.clone() if d is None else d.mul(0.7).add_(g, alpha=0.3)
        assert torch.equal(e, ref) and torch.equal(e, ema_direction(d, g, 0.3))


def _snr_reference(m, s, g, t, beta, delta):
    m = g.mul(1.0 - beta) if m is None else m.mul(beta).add_(g, alpha=1.0 - beta)
    dev = (g - m).square_()
    s = dev.mul_(1.0 - beta) if s is None else s.mul(beta).add_(dev, alpha=1.0 - beta)
    bias = 1.0 - beta**t
    m2 = m.square()
    return m2.div_(s.mul(bias).add_(m2).add_(bias * bias * delta)), m, s


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_snr_foreach_and_flat_paths_equal_the_per_tensor_formula(dtype):
    shapes = SHAPES * 4  # 24 tensors: long enough for the flat path
    ms = ss = [None] * len(shapes)
    for t in (1, 2, 3):
        gs = tensors(10 + t, (dtype,), shapes)
        ref = [_snr_reference(m, s, g, t, 0.8, 1e-6) for m, s, g in zip(ms, ss, gs)]
        for got_u, got_m, got_s in (snr_weights(ms, ss, gs, [t] * len(gs), 0.8, 1e-6),
                                    snr_weights(ms[:3], ss[:3], gs[:3], [t] * 3, 0.8, 1e-6)):
            for u, m, s, (o, rm, rs), g in zip(got_u, got_m, got_s, ref, gs):
                assert torch.equal(u, o * g) and torch.equal(m, rm) and torch.equal(s, rs)
        for (o, rm, rs), g, m, s in zip(ref, gs, ms, ss):
            one = snr_weight(m, s, g, t, 0.8, 1e-6)
            assert torch.equal(one[0], o) and torch.equal(one[1], rm) and torch.equal(one[2], rs)
        flat = None if t == 1 else (torch.cat([m.reshape(-1) for m in ms]), torch.cat([s.reshape(-1) for s in ss]))
        u, fm, fs = snr_flat(*(flat or (None, None)), gs, t, 0.8, 1e-6)
        assert all(torch.equal(a, o * g) and a.shape == g.shape for a, (o, _, _), g in zip(u, ref, gs))
        assert torch.equal(fm, torch.cat([r[1].reshape(-1) for r in ref]))
        assert torch.equal(fs, torch.cat([r[2].reshape(-1) for r in ref]))
        ms, ss = [r[1] for r in ref], [r[2] for r in ref]


# ------------------------------------------------------------------------------------------- BatchNorm guard
def test_batchnorm_guard_restores_buffers_on_exit_and_on_error():
    model = mlp(bn=True)
    bn = model[1]
    x, _ = batch()
    before = {k: b.clone() for k, b in bn.named_buffers()}
    with batchnorm_guard([bn], "snapshot"):
        model(x)
        assert int(bn.num_batches_tracked) == 1
    assert all(torch.equal(b, before[k]) for k, b in bn.named_buffers())
    with pytest.raises(RuntimeError, match="boom"), batchnorm_guard([bn], "snapshot"):
        model(x)
        raise RuntimeError("boom")
    assert all(torch.equal(b, before[k]) for k, b in bn.named_buffers())
    with batchnorm_guard([bn], "momentum0"):
        assert bn.momentum == 0.0
        model(x)
    assert bn.momentum == 0.1 and torch.equal(bn.running_mean, before["running_mean"])
    with batchnorm_guard([bn], "none"):
        model(x)
    assert not torch.equal(bn.running_mean, before["running_mean"])
    with pytest.raises(ValueError, match=r"bn must be one of .*got 'freeze'"), batchnorm_guard([bn], "freeze"):
        pass
