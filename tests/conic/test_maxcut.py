"""MaxCut SDP: agreement with SCS, the dual bound, low-rank MOCO against dense MOCO, the sketch, rounding."""

import networkx as nx
import numpy as np
import pytest

from optimlab.conic import (
    MaxCutSDP,
    NystromSketch,
    conic_descent,
    goemans_williamson,
    lowrank_moco,
    moco,
    nystrom_reconstruct,
)


def _karate():
    g = nx.karate_club_graph()
    for e in g.edges:
        g.edges[e].pop("weight", None)
    return g


@pytest.fixture(scope="module")
def karate_scs():
    cp = pytest.importorskip("cvxpy")
    pytest.importorskip("scs")
    del cp
    from optimlab.conic import solve_with_cvxpy

    return solve_with_cvxpy(MaxCutSDP(_karate()), eps=1e-8)


def test_karate_lowrank_moco_matches_scs(karate_scs):
    res = lowrank_moco(MaxCutSDP(_karate()), tol=1e-4, max_iter=3000, generator=0)
    assert res.converged
    assert abs(res.objective - karate_scs.objective) <= 1e-4 * karate_scs.objective
    assert res.constraint_violation <= 1e-4
    assert res.certificate["upper_bound"] >= karate_scs.objective - 1e-6 * karate_scs.objective


def test_karate_dual_bound_is_above_scs_on_every_iterate(karate_scs):
    for solver in (conic_descent, moco):
        res = solver(MaxCutSDP(_karate()), tol=1e-3, max_iter=400)
        upper = np.asarray(res.history["objective"]) + np.asarray(res.history["gap_bound"])
        assert np.all(upper >= karate_scs.objective * (1 - 1e-7))
        # and the SCS solution is PSD-feasible (our comparison point): the returned X is PSD too
        assert np.linalg.eigvalsh(res.x)[0] >= -1e-9


def test_lowrank_moco_equals_dense_moco_on_n50():
    g = nx.gnp_random_graph(50, 0.2, seed=3)
    prob = MaxCutSDP(g)
    dense = moco(prob, tol=0.0, max_iter=40, generator=0)
    low = lowrank_moco(prob, tol=0.0, max_iter=40, refine=None, generator=0)
    np.testing.assert_allclose(low.diag, np.diag(dense.x), atol=1e-8)
    assert low.certificate["tracked_objective"] == pytest.approx(dense.objective, abs=1e-8)


def test_sketch_reconstructs_a_rank_k_matrix_exactly():
    rng = np.random.default_rng(0)
    n, k = 60, 5
    sk = NystromSketch(n, 8, generator=1)
    X = np.zeros((n, n))
    for _ in range(k):
        u = rng.standard_normal(n)
        tau = rng.random()
        sk.add(tau, u)
        X += tau * np.outer(u, u)
        sk.scale(0.7)  # running scale factor (ray steps)
        X *= 0.7
    U, lam = sk.reconstruct()
    np.testing.assert_allclose((U * lam) @ U.T, X, atol=1e-10 * np.abs(X).max())
    U2, lam2 = nystrom_reconstruct(X @ sk.Omega, sk.Omega)
    np.testing.assert_allclose((U2 * lam2) @ U2.T, X, atol=1e-10 * np.abs(X).max())


def test_goemans_williamson_cut_is_at_least_0878_of_the_rounded_sdp_value():
    g = _karate()
    res = lowrank_moco(MaxCutSDP(g), tol=1e-3, generator=0)
    cut, signs = goemans_williamson(res.factors, g, n_rounds=100, generator=0, return_signs=True)
    prob = MaxCutSDP(g)
    assert cut == pytest.approx(prob.cut_value(signs))
    assert cut >= 0.878 * res.certificate["feasible_objective"]
    assert cut <= res.certificate["upper_bound"] + 1e-9
