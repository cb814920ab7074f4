"""Cones: LMO against brute force, projections, dual violation, eigen-residual against dense eigh."""


import numpy as np
import pytest

from optimlab.conic import NonnegativeOrthant, Product, PSDCone, SecondOrderCone, min_eigenpair


def _sym(rng, n):
    A = rng.standard_normal((n, n))
    return 0.5 * (A + A.T)


def test_orthant_lmo_is_the_best_vertex_of_the_slice():
    rng = np.random.default_rng(0)
    cone = NonnegativeOrthant(6)
    for _ in range(20):
        g = rng.standard_normal(6)
        v, val, _ = cone.lmo(g)
        # the slice {x >= 0, 1'x <= 1} has vertices 0 and e_i: brute force over them
        best = min([0.0] + list(g))
        assert val == pytest.approx(best)
        assert g @ v == pytest.approx(best)
        assert cone.size(v) <= 1 + 1e-12 and cone.contains(v)


def test_soc_lmo_matches_brute_force_on_the_slice():
    rng = np.random.default_rng(1)
    cone = SecondOrderCone(3)
    angles = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    for _ in range(10):
        g = rng.standard_normal(3)
        v, val, _ = cone.lmo(g)
        cands = [0.0] + [g[0] * np.cos(a) + g[1] * np.sin(a) + g[2] for a in angles]  # s = 1, ||u|| = 1
        assert val == pytest.approx(min(min(cands), 0.0), abs=1e-5)
        assert cone.contains(v, tol=1e-9) and cone.size(v) <= 1 + 1e-12


def test_psd_lmo_is_the_bottom_eigenvector_and_residual_matches_eigh():
    rng = np.random.default_rng(2)
    for n in (5, 80, 150):
        G = _sym(rng, n)
        cone = PSDCone(n)
        v, val, info = cone.lmo(G, tol=1e-10)
        lam = np.linalg.eigvalsh(G)[0]
        assert val == pytest.approx(min(lam, 0.0), abs=1e-8)
        assert np.trace(v) == pytest.approx(1.0)
        assert info["eig_residual"] <= 1e-6
        # a loose eigensolve (warm start fixed): the residual is ||Gu - θu|| and θ − ρ stays below λ_min
        pair = min_eigenpair(G, n, v0=rng.standard_normal(n), tol=1e-3)
        assert pair.residual == pytest.approx(np.linalg.norm(G @ pair.u - pair.theta * pair.u), rel=1e-8)
        assert pair.lower <= lam + 1e-12
        assert pair.theta >= lam - 1e-12


def test_projections_are_idempotent_and_land_in_the_cone():
    rng = np.random.default_rng(3)
    for cone, x in ((NonnegativeOrthant(5), rng.standard_normal(5)), (SecondOrderCone(4), rng.standard_normal(4)),
                    (PSDCone(4), _sym(rng, 4)),
                    (Product([NonnegativeOrthant(2), SecondOrderCone(3)]), rng.standard_normal(5))):
        p = cone.project(x)
        assert cone.contains(p, tol=1e-9)
        np.testing.assert_allclose(cone.project(p), p, atol=1e-12)


def test_dual_violation_is_zero_on_the_dual_cone_and_positive_off_it():
    rng = np.random.default_rng(4)
    B = rng.standard_normal((4, 4))
    cases = [(NonnegativeOrthant(3), np.array([0.5, 0.0, 2.0]), np.array([0.5, -1.0, 2.0])),
             (SecondOrderCone(3), np.array([0.3, 0.4, 0.6]), np.array([0.3, 0.4, 0.4])),
             (PSDCone(4), B @ B.T + np.eye(4), B @ B.T - 10 * np.eye(4))]
    for cone, inside, outside in cases:  # each of these cones is self-dual
        assert cone.dual_violation(inside) == 0.0
        assert cone.dual_violation(outside) > 0.0


def test_product_lmo_picks_the_most_negative_factor():
    cone = Product([NonnegativeOrthant(2), SecondOrderCone(3)])
    g = np.array([-0.5, 1.0, 3.0, 4.0, 1.0])  # SOC part: 1 - 5 = -4 < -0.5
    v, val, _ = cone.lmo(g)
    assert val == pytest.approx(-4.0)
    np.testing.assert_allclose(v, [0, 0, -0.6, -0.8, 1.0])
    brute = min(0.0, *(g[i] for i in range(2)), g[4] - np.linalg.norm(g[2:4]))
    assert val == pytest.approx(brute)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_cone_dimension_is_validated(bad):
    with pytest.raises(ValueError, match="n must be"):
        NonnegativeOrthant(bad)
