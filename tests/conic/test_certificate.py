"""The certificate is never below the true gap: random small instances, every cone, CD and both MOCO modes."""

import numpy as np
import pytest
import scipy.optimize

from optimlab.conic import (
    MatrixCompletionSDP,
    NonnegativeOrthant,
    NonnegLeastSquares,
    Product,
    QuadraticProgram,
    SecondOrderCone,
    conic_descent,
    moco,
)

RUNS = {"cd": lambda p: conic_descent(p, tol=1e-4, max_iter=300),
        "moco averaged": lambda p: moco(p, certificate="averaged", tol=1e-4, max_iter=300),
        "moco exact": lambda p: moco(p, certificate="exact", tol=1e-4, max_iter=300)}


def _assert_bound(res, f_star):
    obj, gap = np.asarray(res.history["objective"]), np.asarray(res.history["gap_bound"])
    slack = 1e-7 * max(1.0, abs(f_star))
    assert np.all(obj - f_star <= gap + slack), (obj - f_star - gap).max()


@pytest.mark.parametrize("seed", range(6))
def test_nnls_l1_radius_certificate_bounds_the_true_gap(seed):
    rng = np.random.default_rng(seed)
    A, b = rng.standard_normal((30, 12)), rng.standard_normal(30)
    x_star, rnorm = scipy.optimize.nnls(A, b)
    f_star = 0.5 * rnorm**2
    for run in RUNS.values():
        _assert_bound(run(NonnegLeastSquares(A, b)), f_star)  # the computed l1 radius
        _assert_bound(run(NonnegLeastSquares(A, b, radius=float(x_star.sum()))), f_star)  # the exact 1'x*


def test_nnls_radius_is_in_the_l1_norm_not_l2():
    # documents pitfall 7: R must bound 1'x*; ||x*||_2 <= 1'x* is a smaller, possibly invalid radius
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((30, 12)), rng.standard_normal(30)
    x_star, _ = scipy.optimize.nnls(A, b)
    l1, l2 = x_star.sum(), np.linalg.norm(x_star)
    assert l2 <= l1
    prob = NonnegLeastSquares(A, b)
    assert prob.radius(np.zeros(12)) >= l1


@pytest.mark.parametrize("seed", range(3))
def test_soc_and_product_certificates_bound_the_true_gap(seed):
    cp = pytest.importorskip("cvxpy")
    pytest.importorskip("scs")
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((6, 6))
    P, q = B @ B.T + 0.1 * np.eye(6), rng.standard_normal(6)
    for cone in (SecondOrderCone(6), Product([NonnegativeOrthant(2), SecondOrderCone(4)])):
        x = cp.Variable(6)
        cons = [cp.SOC(x[5], x[:5])] if isinstance(cone, SecondOrderCone) else [x[:2] >= 0, cp.SOC(x[5], x[2:5])]
        pr = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, P) + q @ x), cons)
        pr.solve(solver="SCS", eps_abs=1e-10, eps_rel=1e-10)
        size = cone.size(np.asarray(x.value))
        prob = QuadraticProgram(P, q, cone, radius=float(max(size, 0.0)) * 1.01 + 1e-9)
        for run in RUNS.values():
            _assert_bound(run(prob), pr.value)


@pytest.mark.parametrize("seed", range(3))
def test_psd_certificates_bound_the_true_gap(seed):
    pytest.importorskip("cvxpy")
    pytest.importorskip("scs")
    from optimlab.conic import solve_with_cvxpy

    rng = np.random.default_rng(seed)
    n = 8
    V = rng.standard_normal((n, 2))
    prob = MatrixCompletionSDP(rng.random((n, n)) < 0.5, V @ V.T, trace_penalty=0.3)
    ref = solve_with_cvxpy(prob, eps=1e-10)
    for run in RUNS.values():
        res = run(prob)
        _assert_bound(res, ref.objective)
        assert np.linalg.eigvalsh(res.x)[0] >= -1e-10
