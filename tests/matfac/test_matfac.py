"""Matrix factorisation: closed-form steps, range, Newton identity, one-step identity, invariances, rates, input."""

import numpy as np
import pytest
import torch

from optimlab.matfac import (
    AsymmetricMF,
    ScaledGD,
    SymmetricMF,
    contraction,
    gd,
    nystrom_init,
    random_init,
    scaled_gd,
    spectral_init,
    tail_iterations,
)


def gen(s=0):
    # offset: SymmetricMF.random(seed=s) draws from a generator seeded s; an init must not redraw the same matrix
    return torch.Generator().manual_seed(1000 + s)


def test_t1_closed_form_step_numpy_and_optimizer():
    prob = SymmetricMF.random(30, 4, kappa=10, seed=1)
    X0 = random_init(prob, 4, generator=gen(2))
    res = scaled_gd(prob, X0, eta=0.5, max_iter=1, tol=1e-300)
    A, X = prob.A.numpy(), X0.numpy()
    expected = X - 0.5 * (X @ X.T - A) @ X @ np.linalg.pinv(X.T @ X)
    np.testing.assert_allclose(res.X.numpy(), expected, rtol=1e-12, atol=1e-14)
    P = torch.nn.Parameter(X0.clone())
    opt = ScaledGD([P], lr=0.5, symmetric=True)
    (0.25 * ((P @ P.T - prob.A) ** 2).sum()).backward()
    opt.step()
    torch.testing.assert_close(P.detach(), res.X, rtol=1e-12, atol=1e-14)
    # asymmetric: simultaneous update, and the optimizer on ½‖XYᵀ − A‖²
    a = AsymmetricMF.random(20, 15, 3, seed=3)
    X0, Y0 = random_init(a, 3, generator=gen(4))
    r = scaled_gd(a, X0, Y0, eta=0.3, max_iter=1, tol=1e-300)
    An, Xn, Yn = a.A.numpy(), X0.numpy(), Y0.numpy()
    R = Xn @ Yn.T - An
    np.testing.assert_allclose(r.X.numpy(), Xn - 0.3 * R @ Yn @ np.linalg.inv(Yn.T @ Yn), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(r.Y.numpy(), Yn - 0.3 * R.T @ Xn @ np.linalg.inv(Xn.T @ Xn), rtol=1e-11, atol=1e-13)
    PX, PY = torch.nn.Parameter(X0.clone()), torch.nn.Parameter(Y0.clone())
    opt = ScaledGD([PX, PY], lr=0.3, symmetric=False)
    (0.5 * ((PX @ PY.T - a.A) ** 2).sum()).backward()
    opt.step()
    torch.testing.assert_close(PX.detach(), r.X, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(PY.detach(), r.Y, rtol=1e-12, atol=1e-14)


def test_t2_nystrom_stays_in_range_and_t3_newton_identity():
    prob = SymmetricMF.random(50, 5, kappa=100, seed=0)
    U = prob.eigvecs[:, -5:]
    X0 = nystrom_init(prob, 5, generator=gen())
    proj = lambda X: float(torch.linalg.matrix_norm(X - U @ (U.T @ X)))
    assert proj(X0) <= 1e-12 * float(torch.linalg.matrix_norm(X0))
    scaled_gd(prob, X0, eta=0.5, max_iter=10, callback=lambda it, X, Y, e: (_ for _ in ()).throw(AssertionError)
              if proj(X) > 1e-10 * float(torch.linalg.matrix_norm(X)) else None)
    # P⁺ − Σ = ¼ (P − Σ) P⁻¹ (P − Σ) at η = ½ for X = U Q
    Sigma = torch.diag(prob.eigvals[-5:])
    Q = torch.randn(5, 5, generator=gen(1), dtype=torch.float64) + 2 * torch.eye(5, dtype=torch.float64)
    X1 = scaled_gd(prob, U @ Q, eta=0.5, max_iter=1, tol=1e-300).X
    Q1 = U.T @ X1
    P, P1 = Q @ Q.T, Q1 @ Q1.T
    torch.testing.assert_close(P1 - Sigma, 0.25 * (P - Sigma) @ torch.linalg.inv(P) @ (P - Sigma),
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("rank_a, r", [(4, 4), (4, 8), (8, 4)])
def test_t4_asymmetric_one_step_projects_onto_the_sketch(rank_a, r):
    a = AsymmetricMF.random(60, 40, rank_a, seed=5, singular_values=np.geomspace(1, 0.05, rank_a))
    X0, Y0 = nystrom_init(a, r, generator=gen(6))
    res = scaled_gd(a, X0, Y0, eta=1.0, max_iter=1, tol=1e-300)
    Qx, _ = torch.linalg.qr(X0)
    torch.testing.assert_close(res.X @ res.Y.T, Qx @ (Qx.T @ a.A), rtol=0, atol=1e-10)
    if r >= rank_a:
        assert res.errors[-1] <= 1e-10


def test_t5_invariances_scaledgd_yes_gd_no():
    a = AsymmetricMF.random(20, 15, 3, seed=7)
    X, Y = random_init(a, 3, generator=gen(8))
    Q = torch.randn(3, 3, generator=gen(9), dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    assert torch.linalg.cond(Q) < 1e3
    Qi = torch.linalg.inv(Q).T
    for fn, invariant in ((lambda *z: scaled_gd(a, *z, eta=0.5, max_iter=1, tol=1e-300), True),
                          (lambda *z: gd(a, *z, eta=0.5, max_iter=1, tol=1e-300), False)):
        r1, r2 = fn(X, Y), fn(X @ Q, Y @ Qi)
        dev = float(torch.linalg.matrix_norm(r1.X @ r1.Y.T - r2.X @ r2.Y.T))
        assert (dev <= 1e-9) if invariant else (dev >= 1e-3)
    prob = SymmetricMF.random(20, 3, seed=1)
    X = random_init(prob, 3, generator=gen(2))
    orth, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(3), dtype=torch.float64))
    r1 = scaled_gd(prob, X, max_iter=1, tol=1e-300)
    r2 = scaled_gd(prob, X @ orth, max_iter=1, tol=1e-300)
    torch.testing.assert_close(r1.X @ r1.X.T, r2.X @ r2.X.T, rtol=1e-10, atol=1e-12)


def test_quadratic_from_nystrom_and_linear_at_eta_03():
    prob = SymmetricMF.random(100, 5, kappa=1000, seed=0)
    res = scaled_gd(prob, nystrom_init(prob, 10, generator=gen()), eta=0.5, tol=1e-12, max_iter=600)
    assert res.converged and tail_iterations(res.errors) <= 6
    rnd = scaled_gd(prob, random_init(prob, 5, std=1e-3, generator=gen()), eta=0.5, tol=1e-12, max_iter=600)
    assert tail_iterations(rnd.errors) >= 15
    slow = scaled_gd(prob, nystrom_init(prob, 5, generator=gen()), eta=0.3, tol=1e-12, max_iter=600)
    assert abs(contraction(slow.errors) - 0.4) <= 0.02  # |1 − 2η| (specs/matfac.md §3.4)


def test_r1_scaledgd_is_condition_free_gd_is_not():
    its = {}
    for kappa in (10.0, 100.0, 1000.0):  # reference (specs/matfac.md §5 R1): ScaledGD 30 vs 30-31, GD ~3600 vs 375
        prob = SymmetricMF.random(100, 5, kappa=kappa, seed=0)
        X0 = spectral_init(prob, 5, noise=0.1, generator=gen())
        its[("s", kappa)] = scaled_gd(prob, X0, eta=0.5, tol=1e-10, max_iter=2000).iterations
        if kappa < 1000:
            its[("g", kappa)] = gd(prob, X0, eta=0.5, tol=1e-10, max_iter=20000).iterations
    assert its[("s", 1000.0)] <= 1.2 * its[("s", 10.0)]
    assert its[("g", 100.0)] >= 5 * its[("g", 10.0)]


def test_t7_determinism_and_numpy_input():
    prob = SymmetricMF.random(30, 3, seed=0)
    state = torch.random.get_rng_state()
    a, b = nystrom_init(prob, 3, generator=gen(5)), nystrom_init(prob, 3, generator=gen(5))
    random_init(prob, 3, generator=gen(1))
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)
    r1 = scaled_gd(prob, a, max_iter=5)
    r2 = scaled_gd(SymmetricMF(prob.A.numpy()), a.numpy(), max_iter=5)
    assert r1.errors == r2.errors


def test_bad_input():
    with pytest.raises(ValueError, match="symmetric"):
        SymmetricMF(np.arange(9.0).reshape(3, 3))
    with pytest.raises(ValueError, match="positive semidefinite"):
        SymmetricMF(-np.eye(3))
    with pytest.raises(ValueError, match="square"):
        SymmetricMF(np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        SymmetricMF(np.full((2, 2), np.nan))
    prob = SymmetricMF.random(10, 2, seed=0)
    with pytest.raises(ValueError, match="r must be"):
        nystrom_init(prob, 11)
    with pytest.raises(ValueError, match="rank"):
        SymmetricMF.random(5, 6)
    X0 = nystrom_init(prob, 2)
    for kwargs, name in (({"eta": 0}, "eta"), ({"tol": 0}, "tol"), ({"max_iter": 0}, "max_iter"),
                         ({"inverse": "qr"}, "inverse"), ({"damping": -1.0}, "damping")):
        with pytest.raises(ValueError, match=name):
            scaled_gd(prob, X0, **kwargs)
    with pytest.raises(ValueError, match="rows"):
        scaled_gd(prob, X0[:5])
    with pytest.raises(ValueError, match="pinv"):
        scaled_gd(prob, nystrom_init(SymmetricMF.random(10, 2, seed=0), 4), inverse="inv")
    with pytest.raises(ValueError, match="2 parameters"):
        ScaledGD([torch.nn.Parameter(torch.ones(3, 2))], symmetric=False)


def test_divergence_is_flagged_not_raised_unless_asked():
    prob = SymmetricMF.random(20, 2, seed=0)
    X0 = spectral_init(prob, 2, noise=0.5, generator=gen())
    res = gd(prob, X0, eta=50.0, max_iter=200)
    assert res.status == "diverged"
    with pytest.raises(FloatingPointError):
        gd(prob, X0, eta=50.0, max_iter=200, raise_on_divergence=True)


def test_scaledgd_optimizer_state_dict_round_trip():
    prob = SymmetricMF.random(20, 2, seed=0)
    P = torch.nn.Parameter(nystrom_init(prob, 2))
    opt = ScaledGD([P], lr=0.4, symmetric=True)
    opt2 = ScaledGD([torch.nn.Parameter(P.detach().clone())], lr=0.1, symmetric=True)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == 0.4


def test_noisy_targets_and_best_rank_target():
    sym = SymmetricMF.random(40, 3, kappa=10, seed=0, noise=0.05)
    E = sym.A - SymmetricMF.random(40, 3, kappa=10, seed=0).A
    assert abs(float(torch.linalg.matrix_norm(E)) / float(torch.linalg.matrix_norm(sym.A - E)) - 0.05) < 1e-12
    assert torch.equal(sym.A, sym.A.T) and int(torch.linalg.matrix_rank(sym.A)) == 40
    res = scaled_gd(sym, nystrom_init(sym, 3, generator=gen()), eta=0.5, tol=1e-10, target="best", max_iter=500)
    assert res.converged  # converges to the best rank-3 approximation of the noisy target
    asym = AsymmetricMF.random(20, 15, 3, seed=0, noise=0.1)
    assert int(torch.linalg.matrix_rank(asym.A)) == 15
    with pytest.raises(ValueError, match="noise"):
        AsymmetricMF.random(20, 15, 3, noise=-1.0)
