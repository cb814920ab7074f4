"""Hessian metrics against exact Hessians and known spectra (PyHessian, arXiv:1912.07145)."""

import numpy as np
import pytest
import torch
from torch import nn

from optimlab.metrics import (
    dataset_hvp,
    exact_hessian,
    hessian_trace,
    hutchinson_from_hvp,
    hvp,
    top_eigenvalues,
    top_eigenvalues_from_hvp,
)
from optimlab.result import CONVERGED, MAX_ITER, IterativeResult


def small(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    g = torch.Generator().manual_seed(1)
    X = torch.randn(64, 4, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=g)
    return model, X, y


def exact(model, X, y):
    return exact_hessian(lambda: nn.functional.cross_entropy(model(X), y), list(model.parameters()))


def test_hvp_matches_exact_hessian_and_batched_equals_full():
    model, X, y = small()
    H = exact(model, X, y)
    assert torch.allclose(H, H.T, atol=1e-10)
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    params = list(model.parameters())
    vs = list(v.split([p.numel() for p in params]))
    vs = [a.view_as(p) for a, p in zip(vs, params)]
    full = torch.cat([h.reshape(-1) for h in hvp(lambda: nn.functional.cross_entropy(model(X), y), params, vs)])
    torch.testing.assert_close(full, H @ v, rtol=1e-5, atol=1e-10)
    batched = dataset_hvp(model, nn.CrossEntropyLoss(), [(X[:10], y[:10]), (X[10:], y[10:])], params, vs)
    torch.testing.assert_close(torch.cat([b.reshape(-1) for b in batched]), full, rtol=1e-5, atol=1e-10)


def test_hutchinson_within_5_percent_of_exact_trace():
    model, X, y = small()
    true = float(torch.trace(exact(model, X, y)))
    est = hessian_trace(model, nn.CrossEntropyLoss(), (X, y), max_samples=400, min_samples=400,
    generator=torch.Generator().manual_seed(0))
    assert est.n_samples == 400
    assert abs(est.value - true) <= 0.05 * abs(true)
    assert abs(est.value - true) <= 4 * est.stderr


def test_lanczos_top_eigenvalue_within_1e_4_of_eigvalsh():
    model, X, y = small()
    lam = float(torch.linalg.eigvalsh(exact(model, X, y))[-1])
    res = top_eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=1, tol=1e-10, max_iter=200)
    assert res.converged and res.which == "largest_algebraic"
    assert abs(res.values[0] - lam) <= 1e-4 * abs(lam)


def spectrum_matrix(eigs, seed=0):
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), dtype=torch.float64,
    generator=torch.Generator().manual_seed(seed)))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def test_lanczos_finds_largest_algebraic_and_power_largest_magnitude():
    H = spectrum_matrix([5.0, 3.0, 1.0, -7.0])
    lan = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=1, method="lanczos", tol=1e-12)
    assert lan.values[0] == pytest.approx(5.0, abs=1e-8)
    pw = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=1, method="power", tol=1e-12, max_iter=500)
    assert pw.values[0] == pytest.approx(-7.0, abs=1e-6) and pw.which == "largest_magnitude"
    two = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=2, method="power", tol=1e-12, max_iter=1000)
    assert two.values[1] == pytest.approx(5.0, abs=1e-5)


def test_hutchinson_exact_on_diagonal_and_unbiased_on_dense():
    d = torch.tensor([1.0, -2.0, 3.5, 0.25], dtype=torch.float64)
    res = hutchinson_from_hvp(lambda v: d * v, 4, max_samples=20, min_samples=20)
    assert res.value == pytest.approx(float(d.sum()), abs=1e-12) and res.stderr == 0
    A = torch.randn(50, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    H = A @ A.T
    res = hutchinson_from_hvp(lambda v: H @ v, 50, max_samples=2000, min_samples=2000,
    generator=torch.Generator().manual_seed(4))
    assert abs(res.value - float(torch.trace(H))) <= 4 * res.stderr
    # Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for Rademacher v, so stderr must be ≈ sqrt(that / k)
    expected_se = (2 * (H.square().sum() - H.diag().square().sum()) / 2000).sqrt().item()
    assert res.stderr == pytest.approx(expected_se, rel=0.1)


def test_metrics_restore_mode_and_weights_and_are_reproducible():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = hessian_trace(model, nn.CrossEntropyLoss(), (X, y), generator=torch.Generator().manual_seed(5))
    top_eigenvalues(model, nn.CrossEntropyLoss(), (X, y))
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    b = hessian_trace(model, nn.CrossEntropyLoss(), (X, y), generator=torch.Generator().manual_seed(5))
    assert a == b


def test_exact_hessian_of_a_known_function_and_unused_params():
    A = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    A = A + A.T
    w = nn.Parameter(torch.randn(5, dtype=torch.float64))
    unused = nn.Parameter(torch.ones(2, dtype=torch.float64))
    f = lambda: 0.5 * w @ A @ w + (w**3).sum()  # H = A + diag(6 w)
    H = exact_hessian(f, [w, unused])
    expected = torch.zeros(7, 7, dtype=torch.float64)
    expected[:5, :5] = A + torch.diag(6 * w.detach())
    torch.testing.assert_close(H, expected, rtol=1e-12, atol=1e-12)
    out = hvp(f, [w, unused], [torch.ones(5, dtype=torch.float64), torch.ones(2, dtype=torch.float64)])
    torch.testing.assert_close(torch.cat(out), expected @ torch.ones(7, dtype=torch.float64))
    with pytest.raises(ValueError, match="scalar"):
        hvp(lambda: w * 2, [w], [w.detach()])


def test_lanczos_k_equal_dim_and_top_k_order():
    H = spectrum_matrix([5.0, 3.0, 1.0, -7.0])
    full = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=4)
    assert full.values == pytest.approx([5.0, 3.0, 1.0, -7.0], abs=1e-10) and full.converged
    top2 = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=2, tol=1e-12)
    assert top2.values == pytest.approx([5.0, 3.0], abs=1e-8)
    for lam, vec in zip(top2.values, top2.vectors):
        torch.testing.assert_close(H @ vec, lam * vec, atol=1e-7, rtol=0)


def test_lanczos_top1_budget_and_power_agree_on_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    g = torch.Generator().manual_seed(7)
    X, y = torch.randn(256, 16, generator=g), torch.randint(0, 4, (256,), generator=g)
    lan = top_eigenvalues(model, nn.CrossEntropyLoss(), (X, y), tol=1e-3)
    assert lan.converged and lan.iterations <= 40  # project target: top-1 within 40 HVPs
    pw = top_eigenvalues(model, nn.CrossEntropyLoss(), (X, y), method="power", tol=1e-6, max_iter=300)
    assert pw.values[0] == pytest.approx(lan.values[0], rel=1e-2)  # top of a loss Hessian near init is positive


def test_hutchinson_stop_rule():
    H = torch.diag(torch.arange(1.0, 6.0, dtype=torch.float64)) + 0.1
    loose = hutchinson_from_hvp(lambda v: H @ v, 5, min_samples=7, max_samples=50, tol=10.0)
    assert loose.n_samples == 7
    strict = hutchinson_from_hvp(lambda v: H @ v, 5, min_samples=7, max_samples=50, tol=0.0)
    assert strict.n_samples == 50
    with pytest.raises(ValueError, match="min_samples"):
        hutchinson_from_hvp(lambda v: v, 3, min_samples=11, max_samples=10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_params_with_cpu_generator_match_cpu():
    model, X, y = small()
    cpu = hessian_trace(model, nn.CrossEntropyLoss(), (X, y), generator=torch.Generator().manual_seed(3))
    cpu_eig = top_eigenvalues(model, nn.CrossEntropyLoss(), (X, y), tol=1e-10, generator=torch.Generator())
    model.cuda()
    gpu = hessian_trace(model, nn.CrossEntropyLoss(), (X.cuda(), y.cuda()), generator=torch.Generator().manual_seed(3))
    gpu_eig = top_eigenvalues(model, nn.CrossEntropyLoss(), (X.cuda(), y.cuda()), tol=1e-10,
    generator=torch.Generator())
    assert gpu.n_samples == cpu.n_samples and gpu.value == pytest.approx(cpu.value, rel=1e-9)
    assert gpu_eig.values[0] == pytest.approx(cpu_eig.values[0], rel=1e-8)


def test_bad_arguments():
    H = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        top_eigenvalues_from_hvp(lambda v: H @ v, 3, method="qr")
    with pytest.raises(ValueError, match="k"):
        top_eigenvalues_from_hvp(lambda v: H @ v, 3, k=0)
    with pytest.raises(ValueError, match="max_samples"):
        hutchinson_from_hvp(lambda v: v, 3, max_samples=0)
    with pytest.raises(ValueError, match="tol"):
        hutchinson_from_hvp(lambda v: v, 3, tol=float("nan"))
    with pytest.raises(ValueError, match="k must be <="):
        top_eigenvalues_from_hvp(lambda v: v, 3, k=4)
    big = [nn.Parameter(torch.zeros(5001))]
    with pytest.raises(ValueError, match="5000"):
        exact_hessian(lambda: (big[0] ** 2).sum(), big)


def test_eig_result_is_an_iterative_result_with_a_status():
    H = torch.diag(torch.tensor([5.0, 3.0, 1.0, -7.0], dtype=torch.float64))
    capped = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=1, method="power", tol=1e-12, max_iter=3)
    assert isinstance(capped, IterativeResult) and capped.status == MAX_ITER and not capped.converged
    assert capped.iterations == 3  # operator applications
    done = top_eigenvalues_from_hvp(lambda v: H @ v, 4, k=2, method="lanczos", tol=1e-12)
    assert done.status == CONVERGED and done.converged and done.iterations >= 2
    values, vectors = done.to_numpy()
    assert values.shape == (2,) and vectors.shape == (4, 2)
    np.testing.assert_allclose(values, [5.0, 3.0], atol=1e-10)
