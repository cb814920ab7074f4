"""Matrix factorisation problems: construction, losses and gradients, targets, blocked errors, bad input."""

import numpy as np
import pytest
import torch

from optimlab.matfac import AsymmetricMF, SymmetricMF, random_init, residual_norm


def test_random_symmetric_problem_has_the_requested_spectrum_and_is_seeded():
    prob = SymmetricMF.random(40, 4, kappa=100.0, generator=3)
    np.testing.assert_allclose(prob.eigvals[-4:].flip(0).numpy(), np.geomspace(1, 0.01, 4), rtol=1e-12)
    assert prob.rank == 4 and prob.A.dtype == torch.float64 and torch.equal(prob.A, prob.A.T)
    assert torch.equal(prob.A, SymmetricMF.random(40, 4, kappa=100.0, generator=3).A)
    assert not torch.equal(prob.A, SymmetricMF.random(40, 4, kappa=100.0, generator=4).A)
    lam = [3.0, 2.0, 0.5]
    np.testing.assert_allclose(SymmetricMF.random(20, 3, eigvals=lam).eigvals[-3:].flip(0).numpy(), lam, rtol=1e-12)


def test_random_asymmetric_problem_singular_values():
    prob = AsymmetricMF.random(30, 20, 3, kappa=10.0, top=2.0, generator=1)
    np.testing.assert_allclose(prob.S[:3].numpy(), 2 * np.geomspace(1, 0.1, 3), rtol=1e-12)
    assert prob.rank == 3 and prob.spectral_norm == pytest.approx(2.0)
    sv = AsymmetricMF.random(30, 20, 2, singular_values=[5.0, 1.0]).S[:2]
    np.testing.assert_allclose(sv.numpy(), [5.0, 1.0], rtol=1e-12)


def test_one_generator_drives_problem_and_init_and_equal_int_seeds_reuse_one_stream():
    def out_of_range(prob, X0):
        U = prob.eigvecs[:, -5:]
        return float(torch.linalg.matrix_norm(X0 - U @ (U.T @ X0))) / float(torch.linalg.matrix_norm(X0))

    g = torch.Generator().manual_seed(0)  # one generator: independent draws for A and the init
    prob = SymmetricMF.random(50, 5, generator=g)
    assert out_of_range(prob, random_init(prob, 5, generator=g)) > 0.5
    # the documented pitfall: two equal ints redraw the Gaussian whose QR gave A's eigenvectors
    prob = SymmetricMF.random(50, 5, generator=0)
    assert out_of_range(prob, random_init(prob, 5, generator=0)) <= 1e-10
    state = torch.random.get_rng_state()
    a, b = SymmetricMF.random(20, 3), SymmetricMF.random(20, 3)  # None: non-deterministic, global RNG untouched
    assert not torch.equal(a.A, b.A) and torch.equal(torch.random.get_rng_state(), state)


def test_gradients_match_autograd_of_the_stated_losses():
    prob = SymmetricMF.random(15, 3, generator=0)
    X = torch.randn(15, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (0.25 * ((X @ X.T - prob.A) ** 2).sum()).backward()
    torch.testing.assert_close(prob.grad(X.detach()), X.grad, rtol=1e-12, atol=1e-13)
    Xd = X.detach()
    assert prob.loss(Xd) == pytest.approx(0.25 * float(((Xd @ Xd.T - prob.A) ** 2).sum()), rel=1e-12)
    a = AsymmetricMF.random(12, 9, 3, generator=0)
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(12, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    Y = torch.randn(9, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    (0.5 * ((X @ Y.T - a.A) ** 2).sum()).backward()
    gX, gY = a.grad(X.detach(), Y.detach())
    torch.testing.assert_close(gX, X.grad, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(gY, Y.grad, rtol=1e-12, atol=1e-13)


def test_best_rank_is_eckart_young_and_best_target_is_used_in_up():
    prob = SymmetricMF.random(30, 6, kappa=10.0, generator=2)
    A = prob.A.numpy()
    w, V = np.linalg.eigh(A)
    np.testing.assert_allclose(prob.best_rank(3).numpy(), (V[:, -3:] * w[-3:]) @ V[:, -3:].T, atol=1e-13)
    L, _ = prob.best_factors(3)
    X = L / torch.sqrt(torch.linalg.vector_norm(L, dim=0))  # X Xᵀ = A_3
    assert prob.rel_error(X, target="best") <= 1e-13
    assert prob.rel_error(X, target="A") > 0.1  # under-parameterised: against A the error plateaus
    a = AsymmetricMF.random(20, 15, 5, generator=0)
    U, S, Vh = np.linalg.svd(a.A.numpy())
    np.testing.assert_allclose(a.best_rank(2).numpy(), (U[:, :2] * S[:2]) @ Vh[:2], atol=1e-13)


def test_blocked_residual_equals_dense():
    gen = torch.Generator().manual_seed(0)
    X, Y = (torch.randn(s, 3, dtype=torch.float64, generator=gen) for s in (400, 300))
    T = torch.randn(400, 300, dtype=torch.float64, generator=gen)  # 120000 entries > one block
    dense = torch.linalg.matrix_norm(X @ Y.T - T)
    torch.testing.assert_close(residual_norm(X, Y, T), dense, rtol=1e-13, atol=0)
    L, R = (torch.randn(s, 2, dtype=torch.float64, generator=gen) for s in (400, 300))
    torch.testing.assert_close(residual_norm(X, Y, L=L, R=R), torch.linalg.matrix_norm(X @ Y.T - L @ R.T),
                               rtol=1e-13, atol=0)


def test_slightly_asymmetric_target_is_symmetrised_once():
    prob = SymmetricMF.random(20, 3, generator=0)
    E = 1e-14 * torch.randn(20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sym = SymmetricMF(prob.A + E)
    assert torch.equal(sym.A, sym.A.T)


def test_numpy_float32_and_noisy_targets():
    prob = SymmetricMF.random(20, 3, generator=0)
    assert torch.equal(SymmetricMF(prob.A.numpy()).A, prob.A)
    assert SymmetricMF(prob.A, dtype=torch.float32).A.dtype == torch.float32
    noisy = SymmetricMF.random(40, 3, kappa=10, generator=0, noise=0.05)
    E = noisy.A - SymmetricMF.random(40, 3, kappa=10, generator=0).A
    assert float(torch.linalg.matrix_norm(E)) / float(torch.linalg.matrix_norm(noisy.A - E)) == pytest.approx(0.05)
    assert torch.equal(noisy.A, noisy.A.T) and int(torch.linalg.matrix_rank(noisy.A)) == 40
    assert int(torch.linalg.matrix_rank(AsymmetricMF.random(20, 15, 3, generator=0, noise=0.1).A)) == 15


@pytest.mark.parametrize("make, match", [
    (lambda: SymmetricMF(np.ones((3, 2))), "square"),
    (lambda: SymmetricMF(np.arange(9.0).reshape(3, 3)), "symmetric"),
    (lambda: SymmetricMF(-np.eye(3)), r"positive semidefinite.*λ_min = -1"),
    (lambda: SymmetricMF(np.full((2, 2), np.nan)), "NaN or inf"),
    (lambda: AsymmetricMF(np.array([[1.0, np.inf]])), "NaN or inf"),
    (lambda: SymmetricMF(np.ones(3)), "2-D"),
    (lambda: SymmetricMF.random(5, 6), r"rank must be an integer in \[1, 5\]"),
    (lambda: SymmetricMF.random(5, 0), "rank"),
    (lambda: AsymmetricMF.random(6, 4, 5), r"rank must be an integer in \[1, 4\]"),
    (lambda: SymmetricMF.random(5, 2, kappa=0.5), "kappa"),
    (lambda: SymmetricMF.random(5, 2, eigvals=[1.0]), "eigvals"),
    (lambda: SymmetricMF.random(5, 2, eigvals=[1.0, -1.0]), "eigvals"),
    (lambda: SymmetricMF.random(5, 2, noise=-1.0), "noise"),
    (lambda: SymmetricMF.random(5, 2, generator=-1), "generator"),
    (lambda: SymmetricMF.random(5, 2, generator="0"), "generator"),
    (lambda: SymmetricMF.random(0, 1), r"m must be an integer in \[1, inf\)"),
    (lambda: AsymmetricMF.random(5, 4, 2, singular_values=[1.0, 2.0, 3.0]), "singular_values"),
    (lambda: SymmetricMF(np.eye(3), dtype=torch.int64), "dtype"),
    (lambda: SymmetricMF.random(10, 2, generator=0).best_rank(11), r"rank must be an integer in \[1, 10\]"),
    (lambda: SymmetricMF.random(10, 2, generator=0).rel_error(torch.zeros(10, 2, dtype=torch.float64), "B"), "target"),
])
def test_bad_input_raises_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
