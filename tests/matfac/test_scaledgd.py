"""ScaledGD and GD: closed-form steps (T1), range (T2), Newton identity (T3), one step (T4), invariances (T5), rates
(T6, quadratic ratio, R1), damping (T8), pitfalls P1-P7, divergence, memory, bad input (the ScaledGD optimizer's
checkpoints, non-finite policy and groups: test_optimizer.py)."""


import numpy as np
import pytest
import torch

from optimlab.matfac import (
    BLOCK_ELEMENTS,
    AsymmetricMF,
    ScaledGD,
    SymmetricMF,
    contraction,
    gd,
    gram_inverse,
    nystrom_init,
    quadratic_ratios,
    random_init,
    scaled_gd,
    scaled_gd_step,
    spectral_init,
    tail_iterations,
)
from optimlab.metrics.memory import largest_allocation
from optimlab.result import CONVERGED, DIVERGED, MAX_ITER, IterativeResult


def gen(s=0):
    return torch.Generator().manual_seed(1000 + s)


def one(prob, X0, Y0=None, **kw):
    return scaled_gd(prob, X0, Y0, max_iter=1, tol=1e-300, **kw)


# ------------------------------------------------------------------------------------------ T1 closed form
def test_heron_by_hand_on_a_1x1_problem():
    # A = [[4]], X = [[1]]: X⁺ = X − ½(X² − 4)X/X² = (X + 4/X)/2, Heron's iteration for √4: 1 → 2.5 → 2.05 → ...
    res = scaled_gd(SymmetricMF([[4.0]]), [[1.0]], lr=0.5, max_iter=3, tol=1e-300)
    x = 1.0
    for _ in range(3):
        x = (x + 4 / x) / 2
    assert res.X.item() == pytest.approx(x, rel=1e-15) and one(SymmetricMF([[4.0]]), [[1.0]]).X.item() == 2.5


@pytest.mark.parametrize("lr", [0.5, 0.3])
def test_t1_step_matches_numpy_formula_and_the_optimizer(lr):
    eta = lr
    prob = SymmetricMF.random(30, 4, kappa=10, generator=1)
    X0 = random_init(prob, 4, generator=gen(2))
    A, X = prob.A.numpy(), X0.numpy()
    expected = X - eta * (X @ X.T - A) @ X @ np.linalg.pinv(X.T @ X)
    res = one(prob, X0, lr=eta)
    np.testing.assert_allclose(res.X.numpy(), expected, rtol=1e-13, atol=1e-15)
    P = torch.nn.Parameter(X0.clone())
    opt = ScaledGD([P], lr=eta, symmetric=True)
    (0.25 * ((P @ P.T - prob.A) ** 2).sum()).backward()
    opt.step()
    torch.testing.assert_close(P.detach(), res.X, rtol=1e-12, atol=1e-14)
    a = AsymmetricMF.random(20, 15, 3, generator=3)
    X0, Y0 = random_init(a, 3, generator=gen(4))
    An, Xn, Yn = a.A.numpy(), X0.numpy(), Y0.numpy()
    R = Xn @ Yn.T - An  # simultaneous update from the old iterate
    r = one(a, X0, Y0, lr=eta)
    np.testing.assert_allclose(r.X.numpy(), Xn - eta * R @ Yn @ np.linalg.inv(Yn.T @ Yn), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(r.Y.numpy(), Yn - eta * R.T @ Xn @ np.linalg.inv(Xn.T @ Xn), rtol=1e-13, atol=1e-15)
    PX, PY = torch.nn.Parameter(X0.clone()), torch.nn.Parameter(Y0.clone())
    opt = ScaledGD([PX, PY], lr=eta, symmetric=False)
    (0.5 * ((PX @ PY.T - a.A) ** 2).sum()).backward()
    opt.step()
    torch.testing.assert_close(PX.detach(), r.X, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(PY.detach(), r.Y, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------ T2, T3, T4
def test_t2_iterates_stay_in_range_and_t3_newton_identity():
    prob = SymmetricMF.random(50, 5, kappa=100, generator=0)
    U = prob.eigvecs[:, -5:]

    def check(it, X, Y, e):
        assert float(torch.linalg.matrix_norm(X - U @ (U.T @ X))) <= 1e-10 * float(torch.linalg.matrix_norm(X))

    assert scaled_gd(prob, nystrom_init(prob, 5, generator=gen()), callback=check).converged
    Sigma = torch.diag(prob.eigvals[-5:])
    for r in (5, 8):  # exact and OP (Q wide, P = QQᵀ invertible, pinv)
        Q = torch.randn(5, r, generator=gen(r), dtype=torch.float64)
        Q[:, :5] += 2 * torch.eye(5, dtype=torch.float64)
        Q1 = U.T @ one(prob, U @ Q).X
        P, P1 = Q @ Q.T, Q1 @ Q1.T
        torch.testing.assert_close(P1 - Sigma, 0.25 * (P - Sigma) @ torch.linalg.inv(P) @ (P - Sigma),
                                   rtol=0, atol=1e-10)


@pytest.mark.parametrize("rank_a, r", [(4, 4), (4, 8), (8, 4)])
def test_t4_one_step_projects_onto_the_sketch_and_p6_p7(rank_a, r):
    a = AsymmetricMF.random(60, 40, rank_a, generator=5, singular_values=np.geomspace(1, 0.05, rank_a))
    X0, Y0 = nystrom_init(a, r, generator=gen(6))
    res = one(a, X0, Y0, lr=1.0)
    assert torch.equal(res.X, X0)  # P7: Y0 = 0 gives a zero X-gradient, pinv(0) = 0, so X1 = X0 bit for bit
    Q, _ = torch.linalg.qr(X0)
    PA = Q @ (Q.T @ a.A)
    torch.testing.assert_close(res.X @ res.Y.T, PA, rtol=0, atol=1e-10)
    if r >= rank_a:
        assert res.history["rel_error"][-1] <= 1e-10
    else:  # UP: the range-finder error, at least the Eckart-Young error
        assert res.history["rel_error"][-1] >= float(torch.linalg.matrix_norm(a.A - a.best_rank(r)) / torch.linalg.matrix_norm(a.A))
    half = one(a, X0, Y0, lr=0.5)  # P6: with η ≠ 1 one step gives η·P_{col(AΩ)}A
    torch.testing.assert_close(half.X @ half.Y.T, 0.5 * PA, rtol=0, atol=1e-10)
    if r == rank_a:  # P7 in "inv" mode: no division by YᵀY = 0
        assert torch.equal(one(a, X0, Y0, lr=1.0, inverse="inv").X, X0)


# ------------------------------------------------------------------------------------------ T5 invariances
def test_t5_scaledgd_is_gl_invariant_and_gd_is_not():
    a = AsymmetricMF.random(20, 15, 3, generator=7)
    X, Y = random_init(a, 3, generator=gen(8))
    O1, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(9), dtype=torch.float64))
    O2, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(10), dtype=torch.float64))
    Q = O1 @ torch.diag(torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)) @ O2  # cond(Q) = 100 <= 1e3
    Qi = torch.linalg.inv(Q).T
    s1, s2 = one(a, X, Y), one(a, X @ Q, Y @ Qi)
    assert float(torch.linalg.matrix_norm(s1.X @ s1.Y.T - s2.X @ s2.Y.T)) <= 1e-9
    g1, g2 = (gd(a, X_, Y_, lr=0.5, max_iter=1, tol=1e-300) for X_, Y_ in ((X, Y), (X @ Q, Y @ Qi)))
    assert float(torch.linalg.matrix_norm(g1.X @ g1.Y.T - g2.X @ g2.Y.T)) >= 1e-3
    prob = SymmetricMF.random(20, 3, generator=1)
    X = random_init(prob, 3, generator=gen(2))
    orth, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(3), dtype=torch.float64))
    r1, r2 = one(prob, X), one(prob, X @ orth)
    torch.testing.assert_close(r1.X @ r1.X.T, r2.X @ r2.X.T, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ rates
def test_quadratic_ratio_bounded_from_nystrom_unbounded_from_random():
    prob = SymmetricMF.random(100, 5, kappa=10.0, generator=0)
    lam_min, fro = float(prob.eigvals[-5]), float(torch.linalg.matrix_norm(prob.A))
    eps0, bound = 0.1 * lam_min / fro, fro / (3.6 * lam_min)  # derived in experiments/nora.py (claim 1)
    nys, rnd = [], []
    for s in range(3):
        for r in (5, 10):
            res = scaled_gd(prob, nystrom_init(prob, r, generator=gen(s)), tol=1e-12, max_iter=50)
            assert res.converged and tail_iterations(res.history["rel_error"]) <= 6
            nys += quadratic_ratios(res.history["rel_error"], hi=eps0)
        rres = scaled_gd(prob, random_init(prob, 5, std=1e-3, generator=gen(s)), tol=1e-12, max_iter=200)
        assert tail_iterations(rres.history["rel_error"]) >= 15
        rnd += quadratic_ratios(rres.history["rel_error"], hi=eps0)
    assert nys and max(nys) <= bound
    assert max(rnd) > 100 * bound  # linear: e⁺/e² = ρ/e_t grows without bound


def test_t6_linear_rate_at_eta_03_is_one_minus_two_eta():
    prob = SymmetricMF.random(60, 5, kappa=100, generator=0)
    res = scaled_gd(prob, nystrom_init(prob, 5, generator=gen()), lr=0.3, tol=1e-12, max_iter=300)
    assert res.converged and abs(contraction(res.history["rel_error"]) - 0.4) <= 0.02  # |1 − 2η|, derived


def test_r1_scaledgd_is_condition_free_and_gd_is_not():
    its = {}  # project reference runs: ScaledGD 30 vs 30-31 iterations; GD about 3600 vs 375
    for kappa in (10.0, 100.0, 1000.0):
        prob = SymmetricMF.random(100, 5, kappa=kappa, generator=0)
        X0 = spectral_init(prob, 5, noise=0.1, generator=gen())
        its["s", kappa] = scaled_gd(prob, X0, lr=0.5, tol=1e-10, max_iter=2000).iterations
        if kappa < 1000:
            its["g", kappa] = gd(prob, X0, lr=0.5, tol=1e-10, max_iter=20000).iterations
    assert its["s", 1000.0] <= 1.2 * its["s", 10.0]
    assert its["g", 100.0] >= 5 * its["g", 10.0]


def test_asymmetric_scaledgd_beats_gd_on_ill_conditioned_targets():
    a = AsymmetricMF.random(40, 30, 3, kappa=100.0, generator=0)
    X0, Y0 = spectral_init(a, 3, noise=0.1, generator=gen())
    s = scaled_gd(a, X0, Y0, lr=0.5, tol=1e-10, max_iter=500)
    g = gd(a, X0, Y0, lr=0.5, tol=1e-10, max_iter=500)
    assert s.converged and not g.converged


# ------------------------------------------------------------------------------------------ T8 damping, P2
@pytest.mark.parametrize("r", [5, 10])
def test_t8_damping_keeps_the_fixed_point_and_makes_the_tail_linear(r):
    prob = SymmetricMF.random(60, 5, kappa=100.0, generator=0)  # λ_min = 0.01
    X0 = nystrom_init(prob, r, match_norm=True, generator=gen())
    for lam in (1e-4, 1e-3, 3e-3):
        res = scaled_gd(prob, X0, inverse="damped", damping=lam, tol=1e-12, max_iter=400)
        assert res.converged
    e = [x for x in res.history["rel_error"] if 1e-11 < x < 1e-4]
    rate = (e[-1] / e[0]) ** (1 / (len(e) - 1))
    assert abs(rate - 3e-3 / (0.01 + 3e-3)) <= 0.02  # λ/(λ_min + λ) = 0.231 (derived; reference runs 0.2308)


def test_p2_op_needs_pinv_with_its_default_rtol():
    prob = SymmetricMF.random(100, 5, kappa=1000.0, generator=0)
    X0 = nystrom_init(prob, 10, generator=gen())
    with pytest.raises(ValueError, match="pinv"):
        scaled_gd(prob, X0, inverse="inv")
    res = scaled_gd(prob, X0, tol=1e-12, max_iter=600)
    assert res.converged and res.certificate["rank_gram"] == 5  # the rank found
    bad = scaled_gd(prob, X0, tol=1e-12, max_iter=100, rtol=1e-18)  # admits round-off eigenvalues
    assert not bad.converged


def test_gram_inverse_modes():
    G = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(gram_inverse(G), torch.diag(torch.tensor([0.25, 1.0, 0.0], dtype=torch.float64)))
    torch.testing.assert_close(gram_inverse(G, "damped", 1.0),
                               torch.diag(torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)))
    with pytest.raises(ValueError, match="singular"):
        gram_inverse(G, "inv")
    torch.testing.assert_close(gram_inverse(G[:2, :2], "inv"), torch.diag(torch.tensor([0.25, 1.0],
                                                                                          dtype=torch.float64)))


# ------------------------------------------------------------------------------------------ P1, P4, P5, divergence
def test_p1_half_loss_with_lr_half_is_eta_one_and_does_not_converge():
    prob = SymmetricMF.random(50, 5, kappa=10.0, generator=0)
    X0 = nystrom_init(prob, 5, generator=gen())

    def run(lr):
        X = torch.nn.Parameter(X0.clone())
        opt = ScaledGD([X], lr=lr, symmetric=True)
        errs = []
        for _ in range(30):
            opt.zero_grad()
            (0.5 * ((X @ X.T - prob.A) ** 2).sum()).backward()
            opt.step()
            errs.append(prob.rel_error(X.detach()))
        return errs

    errs = run(0.5)  # effectively η = 1: the in-range map P ↦ ΣP⁻¹Σ cycles between two values
    assert min(errs[-6:]) > 0.1 and abs(errs[-1] - errs[-3]) <= 1e-6 * errs[-1] and abs(errs[-1] - errs[-2]) > 0.1
    assert run(0.25)[-1] <= 1e-12  # lr = 0.25 with the ½-loss is the η = ½ iteration


def test_p4_transient_rise_is_not_divergence():
    prob = SymmetricMF.random(60, 5, kappa=100.0, generator=0)
    small = scaled_gd(prob, nystrom_init(prob, 5, xi=1e-3, generator=gen()), tol=1e-12, max_iter=100)
    # P ≪ Σ: P⁺ ≈ ¼ΣP⁻¹Σ, the error first grows
    assert max(small.history["rel_error"]) > 10 * small.history["rel_error"][0]
    assert small.status == CONVERGED
    large = scaled_gd(prob, nystrom_init(prob, 5, xi=1e3, generator=gen()), tol=1e-12, max_iter=100)
    assert large.status == CONVERGED and large.history["rel_error"][0] > 1e5  # P ≫ Σ: P⁺ ≈ P/4, log₄(mismatch) steps


def test_p5_float32():
    prob = SymmetricMF.random(40, 3, generator=0, dtype=torch.float32)
    res = scaled_gd(prob, nystrom_init(prob, 3, generator=gen()), tol=1e-12, max_iter=60)
    assert res.X.dtype == torch.float32 and min(res.history["rel_error"]) < 1e-4
    assert tail_iterations([1.0, 1e-3, 1e-5, 1e-9], dtype=torch.float32) == 1  # lo raised to 1e3·eps ≈ 1.2e-4
    assert tail_iterations([1.0, 1e-3, 1e-5, 1e-9]) is None


def test_divergence_is_flagged_not_raised_unless_asked():
    prob = SymmetricMF.random(20, 2, generator=0)
    X0 = spectral_init(prob, 2, noise=0.5, generator=gen())
    res = gd(prob, X0, lr=50.0, max_iter=200)
    assert res.status == DIVERGED and not res.converged
    with pytest.raises(FloatingPointError, match="diverged"):
        gd(prob, X0, lr=50.0, max_iter=200, raise_on_divergence=True)


# ------------------------------------------------------------------------------------------ result, numpy, memory
def test_result_object_and_numpy_input():
    prob = SymmetricMF.random(30, 3, generator=0)
    X0 = nystrom_init(prob, 3, generator=gen(5))
    r1 = scaled_gd(prob, X0, tol=1e-10)
    r2 = scaled_gd(SymmetricMF(prob.A.numpy()), X0.numpy(), tol=1e-10)
    assert isinstance(r1, IterativeResult) and r1.converged and r1.status == CONVERGED
    assert r1.history["rel_error"] == r2.history["rel_error"] and not hasattr(r1, "errors")  # no alias
    assert r1.certificate == {"rel_error": r1.history["rel_error"][-1], "rank_gram": 3}
    assert r1.iterations == len(r1.history["rel_error"]) - 1 == r1.iterations_to("rel_error", 1e-10)
    assert r1.iterations_to("rel_error", 1e-300) is None
    assert r1.history["rel_error"] == scaled_gd(prob, X0, tol=1e-10).history["rel_error"]  # deterministic
    Xn, Yn = r1.to_numpy()
    assert isinstance(Xn, np.ndarray) and Yn is None and r1.seconds >= 0 and r1.tol == 1e-10
    capped = scaled_gd(prob, random_init(prob, 3, generator=gen()), max_iter=3)
    assert capped.status == MAX_ITER and capped.iterations == 3 and not capped.converged
    done = scaled_gd(prob, spectral_init(prob, 3), tol=1e-10)
    assert done.converged and done.iterations == 0  # already optimal: no step taken


def test_iteration_memory_is_o_of_m_plus_n_times_r():
    a = AsymmetricMF.random(1200, 1000, 2, generator=0)
    X, Y = random_init(a, 2, generator=gen())
    big = largest_allocation(lambda: a.rel_error(*scaled_gd_step(a, X, Y)))
    assert big <= BLOCK_ELEMENTS + 1000 < 1200 * 1000 / 10
    assert largest_allocation(lambda: a.A.T.contiguous()) == 1200 * 1000  # the probe does see big allocations


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"lr": 0}, "lr"), ({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": True}, "lr"), ({"tol": 0}, "tol"),
    ({"max_iter": 0}, "max_iter"), ({"max_iter": 2.5}, "max_iter"), ({"inverse": "qr"}, "inverse"),
    ({"damping": -1.0}, "damping"), ({"rtol": -1.0}, "rtol"), ({"target": "B"}, "target"),
])
def test_bad_solver_arguments(kwargs, match):
    prob = SymmetricMF.random(10, 2, generator=0)
    with pytest.raises(ValueError, match=match):
        scaled_gd(prob, nystrom_init(prob, 2), **kwargs)


def test_bad_factors_and_optimizer_groups():
    prob = SymmetricMF.random(10, 2, generator=0)
    a = AsymmetricMF.random(10, 6, 2, generator=0)
    X0 = nystrom_init(prob, 2)
    cases = [
        (lambda: scaled_gd(prob, X0[:5]), r"X0 must have shape \(m, r\) = \(10, r\)"),
        (lambda: scaled_gd(prob, torch.zeros(10, 11, dtype=torch.float64)), r"\[1, 10\]"),
        (lambda: scaled_gd(prob, X0 * float("nan")), "NaN"),
        (lambda: scaled_gd(prob, X0, X0), "Y0 must be None"),
        (lambda: scaled_gd(a, torch.ones(10, 2)), "Y0 is required"),
        (lambda: scaled_gd(a, torch.ones(10, 2), torch.ones(5, 2)), r"Y0 must have shape \(n, r\)"),
        (lambda: gd(prob, X0, lr=0.0), "lr"),
        (lambda: scaled_gd(prob.A, X0), "problem"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3, 2))], symmetric=False), "exactly 2 parameters"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3, 2)) for _ in range(3)], symmetric=False), "exactly 2 parameters"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3))], symmetric=True), "2-D"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3, 2))], lr=0.0, symmetric=True), "lr"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3, 2))], symmetric=1), "symmetric"),
        (lambda: ScaledGD([torch.nn.Parameter(torch.ones(3, 2))], symmetric=True, damping=-1.0), "damping"),
    ]
    for make, match in cases:
        with pytest.raises(ValueError, match=match):
            make()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_follows_the_input():
    prob = SymmetricMF.random(50, 3, generator=0, device="cuda")
    res = scaled_gd(prob, nystrom_init(prob, 3, generator=gen()), tol=1e-12)
    cpu = SymmetricMF.random(50, 3, generator=0)
    ref = scaled_gd(cpu, nystrom_init(cpu, 3, generator=gen()), tol=1e-12)
    assert res.X.device.type == "cuda" and res.converged and abs(res.iterations - ref.iterations) <= 1
