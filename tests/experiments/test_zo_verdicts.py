"""Verdict paths of the ZO claims on hand-made numbers (holds / does not hold / inconclusive), and the equal-loss
protocol on synthetic trajectories."""

from __future__ import annotations

import math

import torch

from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.experiments import _zo_verdicts as v
from optimlab.experiments._zo_runs import Logistic, Perspective, gd_chains, toy, toy_grad, zo_chains


def test_smoothing_verdict_paths():
    assert v.smoothing_verdict([0.99, 0.97], [15.0, 12.0]).verdict == HOLDS
    assert v.smoothing_verdict([0.99, 0.85], [15.0, 12.0]).verdict == DOES_NOT_HOLD
    assert v.smoothing_verdict([0.99, 0.97], [15.0, 2.0]).verdict == DOES_NOT_HOLD
    assert v.smoothing_verdict([0.99, 0.92], [15.0, 12.0]).verdict == INCONCLUSIVE
    assert v.smoothing_verdict([0.99, 0.97], [15.0, 5.0]).verdict == INCONCLUSIVE


def test_toy_verdict_paths():
    keep = [1.0] * 5
    assert v.toy_verdict(keep, keep, [0.6, 0.6, 0.7, 0.5, 0.9]).verdict == HOLDS
    assert v.toy_verdict(keep, keep, [1.1, 1.0, 1.2, 1.05, 0.6]).verdict == DOES_NOT_HOLD
    assert v.toy_verdict(keep, keep, [0.6, 0.6, 0.9, 0.9, 1.1]).verdict == INCONCLUSIVE
    gate = v.toy_verdict([0.5] * 5, keep, [0.6] * 5)  # GD lost the trace: the comparison means nothing
    assert gate.verdict == INCONCLUSIVE and gate.reason


def test_convex_verdict_paths():
    assert v.convex_verdict([1e-6] * 5, [1.01] * 5, [3.1] * 5).verdict == HOLDS
    assert v.convex_verdict([1e-6] * 5, [3.0] * 5, [2.5] * 5).verdict == DOES_NOT_HOLD
    assert v.convex_verdict([1e-6] * 5, [1.2] * 5, [3.0] * 5).verdict == INCONCLUSIVE
    assert v.convex_verdict([1e-6, 1e-3, 0, 0, 0], [1.01] * 5, [3.0] * 5).verdict == INCONCLUSIVE


def test_glm_verdict_paths():
    ok = v.glm_checks(0.68, 0.68, 0.225, 0.246, 0.45, 0.6832 * 0.68 / 0.6832)
    assert ok == {"a": True, "b": True, "c": True}
    assert v.glm_verdict([ok]).verdict == HOLDS
    no_trade = v.glm_checks(0.68, 0.68, 0.225, 0.2251, 0.67, 0.68)
    assert v.glm_verdict([no_trade]).verdict == INCONCLUSIVE
    premise = v.glm_checks(0.68, 0.70, 0.225, 0.246, 0.45, 0.68)
    assert v.glm_verdict([premise]).verdict == DOES_NOT_HOLD


def test_memory_verdict_paths():
    assert v.memory_verdict(1.02, 2.3).verdict == HOLDS
    assert v.memory_verdict(1.2, 2.3).verdict == DOES_NOT_HOLD
    assert v.memory_verdict(1.02, 1.5).verdict == DOES_NOT_HOLD
    assert v.memory_verdict(math.nan, 2.3).verdict == INCONCLUSIVE


def test_step_matched_and_loss_matched_comparisons_differ():
    """Pitfall 9: a run that trails in loss looks flatter at equal steps, not at equal loss."""
    steps = torch.arange(100.0)
    loss_a, loss_b = torch.exp(-steps / 10), torch.exp(-steps / 30)  # a converges faster
    tr_a, tr_b = 1 + 0.9 * loss_a ** 0.2, 1 + 1.0 * loss_b ** 0.2  # traces shrink with the loss; b is sharper at equal loss
    at_step = 50
    step_matched = float(tr_a[at_step] / tr_b[at_step])
    level = 0.05
    ia, ib = int((loss_a <= level).nonzero()[0]), int((loss_b <= level).nonzero()[0])
    loss_matched = float(tr_a[ia] / tr_b[ib])
    assert step_matched < 1.0 and loss_matched < 1.0
    tr_b2 = 1 + 0.8 * loss_b ** 0.2  # b flatter at equal loss, yet sharper at equal steps
    assert float(tr_a[at_step] / tr_b2[at_step]) < 1.0 < float(tr_a[ia] / tr_b2[ib])


def test_problems_gradients_and_traces():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, generator=g, dtype=torch.float64)
    assert torch.allclose(toy_grad(x), torch.func.grad(lambda v: toy(v).sum())(x))
    A, b = torch.randn(3, 4, 6, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    P = Perspective(A, b)
    xs = torch.randn(3, 7, generator=g, dtype=torch.float64)
    xs[:, -1] = torch.tensor([0.5, 2.0, 5.0])
    assert torch.allclose(P.grad(xs), torch.func.grad(lambda v: P(v).sum())(xs))
    H = torch.func.hessian(lambda v: P(v.reshape(1, -1).expand(3, -1))[2])
    assert torch.allclose(P.trace(xs)[2], torch.diagonal(H(xs[2])).sum(), rtol=1e-8)
    assert float(P(torch.cat([xs[:, :-1], -torch.ones(3, 1, dtype=torch.float64)], 1))[0]) == math.inf
    Xl, yl = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.sign(torch.randn(20, generator=g))
    L = Logistic(Xl, yl.double())
    w = torch.randn(5, generator=g, dtype=torch.float64)
    assert torch.allclose(L.grad(w), torch.func.grad(L)(w))
    assert torch.allclose(L.trace(w), torch.diagonal(torch.func.hessian(L)(w)).sum())
    from optimlab.experiments._zo_flat import MLP

    net = MLP(Xl[:, :4], torch.randint(0, 3, (20,), generator=g))
    xm = torch.randn(2, net.d, generator=g, dtype=torch.float64)
    assert torch.allclose(net.grad(xm), torch.func.grad(lambda u: net(u).sum())(xm), rtol=1e-10, atol=1e-12)


def test_zo_chain_raises_when_probes_leave_the_domain():
    A, b = torch.randn(1, 2, 3, dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64)
    P = Perspective(A, b)
    x0 = torch.tensor([[0.0, 0.0, 0.0, 1e-3]], dtype=torch.float64)
    import pytest

    with pytest.raises(FloatingPointError, match="step"):
        zo_chains(P, x0, lr=1e-3, eps=1.0, steps=50, generator=torch.Generator().manual_seed(0))
    x, _, gn = gd_chains(toy, torch.ones(1, 4, dtype=torch.float64) * 0.5, lr=0.1, steps=2000, tol=1e-10,
                         grad=toy_grad)
    assert gn <= 1e-10 and float(toy(x)) < 1e-18


def test_balancing_verdict_paths():
    inside = [0.97, 1.0, 1.03] * 10
    assert v.balancing_verdict(1e-4, inside, inside).verdict == HOLDS
    assert v.balancing_verdict(1e-4, inside, [1.5, 1.6, 1.55] * 10).verdict == DOES_NOT_HOLD
    assert v.balancing_verdict(1e-4, inside, [0.8, 1.0, 0.9] * 3).verdict == INCONCLUSIVE  # across the edge
    gated = v.balancing_verdict(0.05, inside, inside)
    assert gated.verdict == INCONCLUSIVE and gated.reason


def test_equal_loss_verdict_paths():
    one = [1.0] * 5
    assert v.equal_loss_verdict(2, one, [0.8] * 5, [0.6] * 5).verdict == HOLDS
    assert v.equal_loss_verdict(2, one, [1.0] * 5, [1.05] * 5).verdict == DOES_NOT_HOLD
    assert v.equal_loss_verdict(2, one, [1.02] * 5, [0.6] * 5).verdict == INCONCLUSIVE  # ZO(0.1) not below GD
    assert v.equal_loss_verdict(2, one, [0.5] * 5, [0.6] * 5).verdict == INCONCLUSIVE  # order reversed
    assert v.equal_loss_verdict(2, [1.3] * 5, [0.8] * 5, [0.6] * 5).verdict == INCONCLUSIVE  # DD gate
    assert v.equal_loss_verdict(0, [math.nan] * 5, [math.nan] * 5, [math.nan] * 5).verdict == INCONCLUSIVE
