"""Conic descent and MOCO on vector and matrix problems: NNLS against scipy, the loop order, status handling."""

import numpy as np
import pytest
import scipy.optimize

from optimlab.conic import (
    MatrixCompletionSDP,
    NonnegativeOrthant,
    NonnegLeastSquares,
    PhaseLift,
    QuadraticProgram,
    averaged_weights,
    conic_descent,
    moco,
)
from optimlab.result import UNBOUNDED


def _nnls(seed, m=40, n=15):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    b = rng.standard_normal(m)
    return A, b


@pytest.mark.parametrize("step", ["sequential", "joint"])
def test_nnls_by_conic_descent_equals_scipy_nnls(step):
    A, b = _nnls(0)
    x_ref, _ = scipy.optimize.nnls(A, b)
    res = conic_descent(NonnegLeastSquares(A, b), step=step, tol=1e-12, max_iter=5000)
    np.testing.assert_allclose(res.x, x_ref, atol=1e-6)
    assert res.converged


def test_ray_step_zeroes_the_complementarity_at_every_lmo_point():
    rng = np.random.default_rng(1)
    n = 10
    mask = rng.random((n, n)) < 0.5
    V = rng.standard_normal((n, 2))
    prob = MatrixCompletionSDP(mask, V @ V.T, trace_penalty=0.1)
    for step in ("sequential", "joint"):
        res = conic_descent(prob, step=step, tol=0.0, max_iter=30)
        # history["complementarity"] = |<grad f(x_t), x_t>| at each LMO point; x_0 = 0 gives 0 trivially
        assert max(res.history["complementarity"]) <= 1e-10 * max(1.0, max(res.history["objective"]))


def test_linear_objective_unbounded_on_the_cone_reports_status_not_crash():
    prob = QuadraticProgram(np.zeros((3, 3)), np.array([1.0, -1.0, 2.0]), NonnegativeOrthant(3))
    for solver in (conic_descent, moco):
        res = solver(prob, max_iter=10)
        assert res.status == UNBOUNDED
        assert res.objective == -np.inf


def test_ray_step_to_zero_restarts_from_the_origin():
    # f(x) = 1/2||x||^2 + q'x, x0 = e1: f(s e1) = s^2/2 + s is minimised at s = 0, then CD restarts from 0
    prob = QuadraticProgram(np.eye(2), np.array([1.0, -1.0]), NonnegativeOrthant(2), radius=10.0)
    res = conic_descent(prob, x0=np.array([1.0, 0.0]), tol=1e-10, max_iter=50)
    assert res.converged
    np.testing.assert_allclose(res.x, [0.0, 1.0], atol=1e-10)
    assert np.all(np.isfinite(res.history["objective"]))


@pytest.mark.parametrize("momentum", ["2/(t+2)", "1/(t+1)", 0.5, 1.0, lambda t: 1.0 / np.sqrt(t + 1)])
def test_averaged_weights_sum_to_one(momentum):
    for t in (0, 1, 5, 50):
        w = averaged_weights(momentum, t)
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(w >= 0)
    if momentum == "2/(t+2)":
        t = 7
        np.testing.assert_allclose(averaged_weights(momentum, t), [2 * (j + 1) / ((t + 1) * (t + 2)) for j in
                                                                   range(t + 1)], atol=1e-14)


def _completion(seed, n=20, rank=2, p=0.5, mu=0.5):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, rank))
    mask = rng.random((n, n)) < p
    return MatrixCompletionSDP(mask, V @ V.T, trace_penalty=mu)


@pytest.mark.parametrize("mode", ["averaged", "exact"])
def test_moco_converges_on_completion_with_certificate(mode):
    res = moco(_completion(0), certificate=mode, tol=1e-2, max_iter=3000)
    assert res.converged, res.status
    assert res.certificate["rel_gap_bound"] <= 1e-2
    assert np.linalg.eigvalsh(res.x)[0] >= -1e-10  # PSD feasibility of the returned solution


def test_phaselift_objective_decreases_monotonically():
    rng = np.random.default_rng(2)
    n, m = 8, 40
    x = rng.standard_normal(n)
    A = rng.standard_normal((m, n))
    res = conic_descent(PhaseLift(A, (A @ x) ** 2, trace_penalty=0.05), tol=0.0, max_iter=200)
    obj = np.asarray(res.history["objective"])
    assert np.all(np.diff(obj) <= 1e-9 * obj[0])
    assert obj[-1] < 0.01 * obj[0]
