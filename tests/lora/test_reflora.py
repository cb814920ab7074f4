"""RefLoRA's metric, refactoring and gram_gap (pure functions; arXiv:2505.18877 in PEFT letters)."""

from __future__ import annotations

import pytest
import torch

from optimlab.lora import LoRALinear, find_lora_pairs
from optimlab.lora.reflora import balanced_metric, gram_gap, refactor_

D64 = torch.float64


def factors(seed: int, r: int = 8, d_in: int = 64, d_out: int = 48, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(r, d_in, generator=g, dtype=D64).to(dtype),
            torch.randn(d_out, r, generator=g, dtype=D64).to(dtype))


def random_invertible(seed: int, r: int = 8, cond: float = 1e3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=D64))
    V, _ = torch.linalg.qr(torch.randn(r, r, generator=g, dtype=D64))
    return U @ torch.diag(torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), r, dtype=D64)) @ V.T


@pytest.mark.parametrize("seed", range(5))
def test_metric_solves_riccati_and_inverts(seed):
    A, B = factors(seed)
    S, S_inv = balanced_metric(A, B)
    eye = torch.eye(8, dtype=D64)
    assert torch.allclose(S, S.T, atol=1e-12)
    assert float(torch.linalg.eigvalsh(S).min()) > 0
    lhs, rhs = S @ (A @ A.T) @ S, B.T @ B
    assert float(torch.linalg.matrix_norm(lhs - rhs) / torch.linalg.matrix_norm(rhs)) <= 1e-10
    assert float(torch.linalg.matrix_norm(S @ S_inv - eye)) <= 1e-10


def test_metric_rank_deficient_has_no_nan():
    A, B = factors(0)
    A[-2:] = 0.0  # rank r - 2
    S, S_inv = balanced_metric(A, B)
    assert bool(torch.isfinite(S).all()) and bool(torch.isfinite(S_inv).all())


def test_metric_negative_eigenvalue_from_rounding_has_no_nan():
    A, B = factors(1)
    A = torch.cat([A[:7], A[6:7] * (1 + 1e-16)])  # numerically rank r - 1; eigh may give -1e-9-like values
    S, S_inv = balanced_metric(A, B)
    assert bool(torch.isfinite(S).all()) and bool(torch.isfinite(S_inv).all())


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_metric_scale_equivariance_with_relative_floor(dtype, tol):
    """S(cA, B) = S(A, B)/c for c = 1e-6; an absolute floor (finfo.eps added to σ) fails the float32 case."""
    A, B = factors(2)
    c = 1e-6
    S1, _ = balanced_metric(A, B, dtype=dtype)
    S2, _ = balanced_metric(c * A, B, dtype=dtype)
    rel = float(torch.linalg.matrix_norm((c * S2 - S1).double()) / torch.linalg.matrix_norm(S1.double()))
    assert rel <= tol


def test_absolute_floor_would_fail_float32_equivariance():
    """The discriminating twin of the test above: adding finfo(float32).eps to σ_A breaks S(cA) = S/c."""
    A, B = factors(2)
    c = 1e-6
    eps = torch.finfo(torch.float32).eps

    def absolute(A, B):
        a, b = A.float(), B.float()
        lam, VA = torch.linalg.eigh(a @ a.T)
        sa = lam.clamp_min(0).sqrt() + eps
        M = sa[:, None] * (VA.T @ b.T @ b @ VA) * sa[None, :]
        lm, VM = torch.linalg.eigh(M)
        L = (VA / sa) @ VM
        return (L * lm.clamp_min(0).sqrt()) @ L.T

    rel = float(torch.linalg.matrix_norm((c * absolute(c * A, B) - absolute(A, B)).double())
                / torch.linalg.matrix_norm(absolute(A, B).double()))
    assert rel > 1e-4


def test_metric_does_not_depend_on_alpha():
    """S* does not depend on the scaling s (pitfall L4): same S for alpha = 8 and 32 on the same factors."""
    layers = [LoRALinear(16, 12, r=4, alpha=a, generator=0) for a in (8, 32)]
    for layer in layers:
        with torch.no_grad():
            layer.lora_B["default"].weight.copy_(torch.arange(48.0).reshape(12, 4) / 48)
    S = [balanced_metric(*find_lora_pairs(layer)[0].matrices())[0] for layer in layers]
    assert torch.equal(S[0], S[1])


@pytest.mark.parametrize("seed", range(5))
def test_refactor_keeps_product_and_balances(seed):
    A, B = factors(seed)
    BA = B @ A
    nuclear = float(torch.linalg.matrix_norm(BA, ord="nuc"))
    sv = torch.linalg.svdvals(BA)[:8]
    P = refactor_(A, B)
    assert P.shape == (8, 8)
    assert float(torch.linalg.matrix_norm(B @ A - BA) / torch.linalg.matrix_norm(BA)) <= 1e-12
    GA, GB = A @ A.T, B.T @ B
    assert float(torch.linalg.matrix_norm(GA - GB) / torch.linalg.matrix_norm(GB)) <= 1e-9
    assert torch.allclose(torch.diagonal(GA).sort(descending=True).values, sv, rtol=1e-9)
    energy = float(A.square().sum() + B.square().sum())
    assert abs(energy - 2 * nuclear) <= 1e-9 * nuclear
    assert gram_gap(A, B) <= 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_balanced_pair_minimises_energy_over_equivalent_pairs(seed):
    A, B = factors(seed)
    bal_A, bal_B = A.clone(), B.clone()
    refactor_(bal_A, bal_B)
    e_bal = float(bal_A.square().sum() + bal_B.square().sum())
    for k in range(10):
        P = random_invertible(100 * seed + k)
        e = float((P.T @ A).square().sum() + (B @ torch.linalg.inv(P).T).square().sum())
        assert e_bal <= e * (1 + 1e-12)


def test_gram_gap_values_and_errors():
    A, B = factors(3)
    assert 0 < gram_gap(A, B) < 1
    assert gram_gap(A, torch.zeros_like(B)) == pytest.approx(1.0)
    layer = LoRALinear(64, 48, r=8, generator=0)
    assert gram_gap(find_lora_pairs(layer)[0]) == pytest.approx(1.0)  # B = 0
    with pytest.raises(ValueError, match="both factors"):
        gram_gap(A)
    with pytest.raises(ValueError, match="same r"):
        gram_gap(A, B[:, :4])
    with pytest.raises(ValueError, match="rel_eps"):
        balanced_metric(A, B, rel_eps=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        balanced_metric(A, B, dtype=torch.float16)
