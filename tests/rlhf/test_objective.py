"""KL-regularised utilities: the sub-optimality identity, optimality, log-space stability, coverage (arXiv:2502.19255)."""

import math
from decimal import Decimal, getcontext

import pytest
import torch

from optimlab.rlhf import (
    coverage,
    coverage_bound,
    kappa,
    kl_divergence,
    kl_optimal_logprobs,
    kl_value,
    optimal_value,
    suboptimality,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _instance(g, B, Y, beta_range=(0.05, 2.0)):
    logp_ref = torch.log_softmax(torch.randn(B, Y, generator=g, dtype=torch.float64) * 2, -1)
    reward = torch.rand(B, Y, generator=g, dtype=torch.float64)
    logp = torch.log_softmax(torch.randn(B, Y, generator=g, dtype=torch.float64) * 2, -1)
    beta = float(beta_range[0] + (beta_range[1] - beta_range[0]) * torch.rand(1, generator=g))
    return logp, logp_ref, reward, beta


def test_identity_suboptimality_equals_value_gap_and_beta_kl():
    g = torch.Generator().manual_seed(0)
    for _ in range(80):
        Y = int(torch.randint(1, 30, (1,), generator=g))
        logp, logp_ref, r, beta = _instance(g, 4, Y)
        gap_direct = optimal_value(logp_ref, r, beta) - kl_value(logp, logp_ref, r, beta)
        star = kl_optimal_logprobs(logp_ref, r, beta)
        gap_kl = beta * kl_divergence(logp, star).mean()
        assert abs(float(suboptimality(logp, logp_ref, r, beta) - gap_direct)) <= 1e-10
        assert abs(float(gap_kl - gap_direct)) <= 1e-10
        if Y == 1:
            assert abs(float(gap_direct)) <= 1e-12


def test_identity_with_zero_reference_mass():
    g = torch.Generator().manual_seed(1)
    logp, logp_ref, r, beta = _instance(g, 3, 6)
    logp_ref[:, 0] = -math.inf
    logp_ref = torch.log_softmax(logp_ref, -1)
    logp = kl_optimal_logprobs(logp_ref, torch.rand(3, 6, generator=g, dtype=torch.float64), beta)  # also 0 on y0
    gap = suboptimality(logp, logp_ref, r, beta)
    direct = optimal_value(logp_ref, r, beta) - kl_value(logp, logp_ref, r, beta)
    assert torch.isfinite(gap) and abs(float(gap - direct)) <= 1e-10
    # a policy with mass where pi_ref = 0 has infinite KL: the gap is +inf, J is -inf
    bad = torch.log_softmax(torch.zeros(3, 6, dtype=torch.float64), -1)
    assert math.isinf(float(suboptimality(bad, logp_ref, r, beta)))


def test_optimal_policy_maximises_value_and_is_stationary():
    g = torch.Generator().manual_seed(2)
    _, logp_ref, r, beta = _instance(g, 5, 7)
    star = kl_optimal_logprobs(logp_ref, r, beta)
    assert torch.allclose(torch.logsumexp(star, -1), torch.zeros(5, dtype=torch.float64), atol=1e-14)
    j_star = kl_value(star, logp_ref, r, beta)
    lp = torch.log_softmax(torch.randn(500, 5, 7, generator=g, dtype=torch.float64) * 3, -1)  # 500 random pi
    j = ((lp.exp() * r).sum(-1) - beta * kl_divergence(lp, logp_ref.expand_as(lp))).mean(-1)
    assert float(kl_value(lp[0], logp_ref, r, beta)) == pytest.approx(float(j[0]), abs=1e-12)
    assert (j <= j_star + 1e-12).all()
    logits = star.clone().requires_grad_(True)
    kl_value(torch.log_softmax(logits, -1), logp_ref, r, beta).backward()
    assert logits.grad.abs().max() <= 1e-8


def test_log_space_stability_small_and_large_beta():
    g = torch.Generator().manual_seed(3)
    r = (torch.rand(6, 10, generator=g, dtype=torch.float64) * 2 - 1) * 1e3
    logp_ref = torch.log_softmax(torch.randn(6, 10, generator=g, dtype=torch.float64), -1)
    star = kl_optimal_logprobs(logp_ref, r, 1e-3)
    assert torch.isfinite(star.exp()).all()
    onehot = torch.nn.functional.one_hot(r.argmax(-1), 10).double()
    assert (star.exp() - onehot).abs().max() <= 1e-12
    for v in (optimal_value(logp_ref, r, 1e-3), suboptimality(logp_ref, logp_ref, r, 1e-3),
              kl_value(star, logp_ref, r, 1e-3)):
        assert math.isfinite(float(v))
    rs = torch.rand(6, 10, generator=g, dtype=torch.float64)
    assert torch.allclose(kl_optimal_logprobs(logp_ref, rs, 1e6), logp_ref, atol=1e-5)


def test_shift_invariance():
    g = torch.Generator().manual_seed(4)
    logp, logp_ref, r, beta = _instance(g, 4, 5)
    c = torch.randn(4, 1, generator=g, dtype=torch.float64) * 10
    assert torch.allclose(kl_optimal_logprobs(logp_ref, r, beta), kl_optimal_logprobs(logp_ref, r + c, beta),
                          atol=1e-12)
    assert abs(float(suboptimality(logp, logp_ref, r, beta) - suboptimality(logp, logp_ref, r + c, beta))) < 1e-10


def test_coverage_direct_sum_and_identity():
    g = torch.Generator().manual_seed(5)
    a = torch.log_softmax(torch.randn(3, 6, generator=g, dtype=torch.float64), -1)
    b = torch.log_softmax(torch.randn(3, 6, generator=g, dtype=torch.float64), -1)
    direct = ((a.exp() ** 2) / b.exp()).sum(-1).mean()
    chi2 = (((a.exp() - b.exp()) ** 2) / b.exp()).sum(-1).mean()
    assert abs(float(coverage(a, b) - direct)) < 1e-12 and abs(float(coverage(a, b) - 1 - chi2)) < 1e-12
    assert abs(float(coverage(a, a)) - 1.0) < 1e-12
    tiny = torch.tensor([[0.0, math.log(1e-300)]], dtype=torch.float64)
    star = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    val = float(coverage(star, torch.log_softmax(tiny, -1)))
    assert val > 1e290


def _kappa_direct(b):
    getcontext().prec = 60
    x = Decimal(b).exp()
    return float((x - 1) ** 2 / (x - 1 - Decimal(b)))


@pytest.mark.parametrize("B", [1e-6, 1e-3, 0.1, 0.49, 0.5, 1.0, 4.0, 29.0, 31.0, 50.0])
def test_kappa_matches_direct_formula(B):
    assert abs(kappa(B) / _kappa_direct(B) - 1) <= 1e-10
    assert kappa(0) == 2.0


def test_coverage_bound_on_kl_optimal_policies_and_mixtures():
    """Lemma 3.1 on 200 pi_{r'} instances and 200 mixtures of two (one prompt each, r in [0, 1] so R = 1)."""
    g = torch.Generator().manual_seed(6)
    worst = 0.0
    for k in range(10):
        Y, beta, n = 2 + 2 * k, 0.05 + 0.2 * k, 40
        logp_ref = torch.log_softmax(torch.randn(n, Y, generator=g, dtype=torch.float64), -1)
        r = torch.rand(n, Y, generator=g, dtype=torch.float64)
        star = kl_optimal_logprobs(logp_ref, r, beta)
        pi = kl_optimal_logprobs(logp_ref, torch.rand(n, Y, generator=g, dtype=torch.float64), beta)
        pi2 = kl_optimal_logprobs(logp_ref, torch.rand(n, Y, generator=g, dtype=torch.float64), beta)
        w = torch.rand(n, 1, generator=g, dtype=torch.float64)
        mix = torch.logaddexp(pi + w.log(), pi2 + torch.log1p(-w))
        pi = torch.where(torch.arange(n)[:, None] % 2 == 0, pi, mix)
        gaps = beta * kl_divergence(pi, star)  # per instance (identity tested above)
        covs = torch.logsumexp(2 * star - pi, -1).exp()
        assert abs(float(coverage(star, pi) - covs.mean())) <= 1e-10 * float(covs.mean())
        bound = torch.tensor([coverage_bound(float(v), 1.0, beta) for v in gaps], dtype=torch.float64)
        assert (covs <= bound * (1 + 1e-9) + 1e-12).all()
        ok = gaps > 1e-12
        worst = max(worst, float(((covs - 1)[ok] / (kappa(2 / beta) * gaps[ok] / beta)).max()))
    assert 0 < worst <= 1


@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-6])
def test_beta_zero_counterexample(eps):
    r = torch.tensor([[1.0, 1.0 - 2 * eps]], dtype=torch.float64)
    star = torch.tensor([[0.0, -math.inf]], dtype=torch.float64)  # beta -> 0 limit of pi_r: one-hot on y1
    pi = torch.tensor([[-math.inf, 0.0]], dtype=torch.float64)  # one-hot on y2
    gap = float((star.exp() * r).sum() - (pi.exp() * r).sum())
    assert abs(gap - 2 * eps) < 1e-12
    assert math.isinf(float(coverage(star, pi)))
    bounds = [coverage_bound(gap, 1.0, b) for b in (1.0, 0.1, 0.01, 1e-3)]
    assert all(b2 > b1 for b1, b2 in zip(bounds, bounds[1:])) and bounds[-1] == math.inf


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_beta_raises(bad):
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="beta"):
        kl_optimal_logprobs(x, x, bad)


def test_bad_shapes_and_dead_rows_raise():
    with pytest.raises(ValueError, match="shapes of logp_ref"):
        kl_optimal_logprobs(torch.zeros(2, 3), torch.zeros(2, 4), 0.1)
    dead = torch.tensor([[0.0, 0.0], [-math.inf, -math.inf]], dtype=torch.float64)
    with pytest.raises(ValueError, match="all -inf"):
        kl_optimal_logprobs(dead, torch.zeros(2, 2, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="R"):
        coverage_bound(0.1, 0.0, 0.1)
