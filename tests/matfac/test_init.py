"""Initialisations: Nyström sketch shapes, scale and range; random and spectral baselines; determinism; bad input."""

import math

import numpy as np
import pytest
import torch

from optimlab.matfac import AsymmetricMF, SymmetricMF, nystrom_init, random_init, spectral_init


def gen(s=0):
    return torch.Generator().manual_seed(100 + s)


def out_of_range(prob, X, k):
    U = prob.eigvecs[:, -k:]
    return float(torch.linalg.matrix_norm(X - U @ (U.T @ X)))


def test_nystrom_is_xi_a_omega_with_the_right_shapes():
    prob = SymmetricMF.random(30, 4, generator=0)
    X0 = nystrom_init(prob, 6, xi=2.5, generator=gen())
    omega = torch.randn(30, 6, generator=gen(), dtype=torch.float64)  # the same draw, recomputed
    assert X0.shape == (30, 6) and X0.dtype == torch.float64
    torch.testing.assert_close(X0, 2.5 * (prob.A @ omega), rtol=1e-14, atol=0)
    a = AsymmetricMF.random(30, 20, 4, generator=0)
    X0, Y0 = nystrom_init(a, 5, xi=0.5, generator=gen())
    omega = torch.randn(20, 5, generator=gen(), dtype=torch.float64)  # Ω is n×r for an m×n target
    assert X0.shape == (30, 5) and Y0.shape == (20, 5) and not Y0.any()
    torch.testing.assert_close(X0, 0.5 * (a.A @ omega), rtol=1e-14, atol=0)


def test_t2_nystrom_lies_in_range_and_random_does_not():
    prob = SymmetricMF.random(50, 5, kappa=100.0, generator=0)
    for r in (3, 5, 10):
        X0 = nystrom_init(prob, r, generator=gen(r))
        assert out_of_range(prob, X0, 5) <= 1e-12 * float(torch.linalg.matrix_norm(X0))
    X0 = random_init(prob, 5, generator=gen())  # not projected onto range(A)
    assert out_of_range(prob, X0, 5) > 0.5 * float(torch.linalg.matrix_norm(X0))


def test_nystrom_match_norm_and_perturbation_size():
    prob = SymmetricMF.random(60, 5, kappa=10.0, generator=1)
    for xi in (1e-3, 1.0, 1e3):
        X0 = nystrom_init(prob, 8, xi=xi, match_norm=True, generator=gen())
        assert float(torch.linalg.matrix_norm(X0, ord=2)) ** 2 == pytest.approx(prob.spectral_norm, rel=1e-12)
    a = AsymmetricMF.random(40, 30, 3, top=4.0, generator=1)
    X0, _ = nystrom_init(a, 3, match_norm=True, generator=gen())
    assert float(torch.linalg.matrix_norm(X0, ord=2)) ** 2 == pytest.approx(4.0, rel=1e-12)
    base = nystrom_init(prob, 8, match_norm=True, generator=gen())
    pert = nystrom_init(prob, 8, match_norm=True, perturb=1e-3, generator=gen())
    rel = float(torch.linalg.matrix_norm(pert - base) / torch.linalg.matrix_norm(base))
    assert 0.7e-3 < rel < 1.3e-3  # δ·‖X0‖_F/√(mr) × a Gaussian m×r matrix (norm ≈ √(mr))
    assert out_of_range(prob, pert, 5) > 1e-4 * float(torch.linalg.matrix_norm(pert))  # it leaves range(A)


def test_perturb_mode_absolute_has_entry_variance_delta2_xi2_over_m_and_leaves_the_range():
    prob = SymmetricMF.random(200, 5, kappa=10.0, generator=2)
    delta = 1e-2
    for xi in (1.0, 30.0):
        base = nystrom_init(prob, 50, xi=xi, generator=gen(3))  # 200 × 50 = 10^4 draws
        noise = nystrom_init(prob, 50, xi=xi, perturb=delta, perturb_mode="absolute", generator=gen(3)) - base
        var = delta**2 * xi**2 / 200
        assert abs(float(noise.mean())) < 4 * math.sqrt(var / noise.numel())  # mean 0 (4 standard errors)
        assert float(noise.var()) == pytest.approx(var, rel=0.05)  # sd of the sample variance: √(2/10^4) ≈ 1.4%
        assert out_of_range(prob, noise, 5) > 0.9 * float(torch.linalg.matrix_norm(noise))  # 195 of 200 dims
    rel = nystrom_init(prob, 50, perturb=delta, perturb_mode="relative", generator=gen(3))
    assert torch.equal(rel, nystrom_init(prob, 50, perturb=delta, generator=gen(3)))  # "relative" is the default
    assert not torch.equal(rel, nystrom_init(prob, 50, perturb=delta, perturb_mode="absolute", generator=gen(3)))


def test_nystrom_accepts_a_plain_matrix_for_sensing():
    prob = SymmetricMF.random(20, 3, generator=0)
    torch.testing.assert_close(nystrom_init(prob.A.numpy(), 4, generator=gen()), nystrom_init(prob, 4, generator=gen()),
                               rtol=0, atol=0)


def test_random_init_std_and_pair():
    prob = SymmetricMF.random(400, 3, generator=0)
    X0 = random_init(prob, 10, generator=gen())
    assert float(X0.std()) == pytest.approx(1 / math.sqrt(400), rel=0.05)
    assert float(random_init(prob, 10, std=1e-3, generator=gen()).std()) == pytest.approx(1e-3, rel=0.05)
    X0, Y0 = random_init(AsymmetricMF.random(30, 20, 3, generator=0), 4, std=0.1, generator=gen())
    assert X0.shape == (30, 4) and Y0.shape == (20, 4) and Y0.abs().sum() > 0


def test_spectral_init_is_optimal_without_noise_and_zero_beyond_the_rank():
    prob = SymmetricMF.random(30, 4, kappa=50.0, generator=0)
    X0 = spectral_init(prob, 4)
    assert prob.rel_error(X0) <= 1e-13
    X0 = spectral_init(prob, 7)  # OP: the extra columns are exactly zero
    assert not X0[:, 4:].any() and prob.rel_error(X0) <= 1e-13
    a = AsymmetricMF.random(25, 15, 3, generator=0)
    X0, Y0 = spectral_init(a, 3)
    assert a.rel_error(X0, Y0) <= 1e-13
    Xn = spectral_init(prob, 4, noise=0.1, generator=gen())
    rel = float(torch.linalg.matrix_norm(Xn - spectral_init(prob, 4)) / torch.linalg.matrix_norm(spectral_init(prob, 4)))
    assert 0.07 < rel < 0.13


def test_t7_determinism_global_rng_untouched_numpy_and_dtype():
    prob = SymmetricMF.random(30, 3, generator=0)
    a = AsymmetricMF.random(30, 20, 3, generator=0)
    state = torch.random.get_rng_state()
    for fn in (nystrom_init, random_init, lambda p, r, generator: spectral_init(p, r, noise=0.1, generator=generator)):
        x1, x2 = fn(prob, 3, generator=gen(5)), fn(prob, 3, generator=gen(5))
        assert torch.equal(x1, x2)
        (x1, y1), (x2, y2) = fn(a, 3, generator=gen(5)), fn(a, 3, generator=gen(5))
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    nystrom_init(prob, 3)  # None: a fresh generator, seeded without the global RNG
    assert torch.equal(nystrom_init(prob, 3, generator=7), nystrom_init(prob, 3, generator=gen(-93)))  # int = seed
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(nystrom_init(SymmetricMF(prob.A.numpy()), 3, generator=gen()), nystrom_init(prob, 3, generator=gen()))
    p32 = SymmetricMF(prob.A, dtype=torch.float32)
    assert nystrom_init(p32, 3).dtype == torch.float32 and random_init(p32, 3).dtype == torch.float32


@pytest.mark.parametrize("call, match", [
    (lambda p: nystrom_init(p, 11), r"rank must be an integer in \[1, 10\]"),
    (lambda p: nystrom_init(p, 0), "rank must be"),
    (lambda p: random_init(p, 11), "rank must be"),
    (lambda p: spectral_init(p, 11), "rank must be"),
    (lambda p: nystrom_init(AsymmetricMF.random(10, 6, 2), 7), r"\[1, 6\]"),
    (lambda p: nystrom_init(p, 2, xi=0.0), "xi"),
    (lambda p: nystrom_init(p, 2, xi=float("nan")), "xi"),
    (lambda p: nystrom_init(p, 2, match_norm="match"), "match_norm"),
    (lambda p: nystrom_init(p, 2, match_norm=1), "match_norm"),
    (lambda p: nystrom_init(p, 2, perturb=-1.0), "perturb"),
    (lambda p: nystrom_init(p, 2, perturb=1e-3, perturb_mode="paper"), r"perturb_mode.*relative.*absolute.*paper"),
    (lambda p: random_init(p, 2, std=0.0), "std"),
    (lambda p: spectral_init(p, 2, noise=-0.1), "noise"),
    (lambda p: random_init(p, 2, generator=-1), "generator"),
    (lambda p: random_init(p, 2, generator=np.random.default_rng(0)), "generator"),
    (lambda p: random_init(p.A, 2), "problem"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(SymmetricMF.random(10, 2, generator=0))
