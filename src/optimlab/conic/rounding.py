"""Goemans–Williamson random-hyperplane rounding (Goemans, Williamson, JACM 1995) and the mixing-method refinement
of a MaxCut factor.

For a feasible X = VVᵀ (unit rows v_i), a cut from sign(Vg), g ~ N(0, I), has expected weight ≥ 0.878·¼⟨L, X⟩
(edge by edge, for nonnegative weights). :func:`mixing_refine` is the block-coordinate (mixing) method of Wang,
Chang, Kolter (arXiv:1706.00476) on the Burer–Monteiro form min ⟨C, VVᵀ⟩, ‖v_i‖ = 1: v_i ← −g_i/‖g_i‖ with
g_i = Σ_{j≠i} C_ij v_j; O(nnz·r) per sweep, O(n·r) memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimlab._random import check_generator
from optimlab.conic.maxcut import laplacian

__all__ = ["factor", "goemans_williamson", "mixing_refine", "normalize_rows"]


def normalize_rows(V: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (a zero row becomes e_1)."""
    V = np.array(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1)
    zero = norms == 0
    V[zero] = 0.0
    V[zero, 0] = 1.0
    norms[zero] = 1.0
    return V / norms[:, None]


def factor(factors_or_X: Any) -> np.ndarray:
    """V with VVᵀ = X from ``(U, lam)`` or a PSD matrix X (eigendecomposition, small n)."""
    if isinstance(factors_or_X, tuple):
        U, lam = factors_or_X
        return np.asarray(U) * np.sqrt(np.maximum(np.asarray(lam), 0.0))
    X = np.asarray(factors_or_X, dtype=np.float64)
    w, Q = np.linalg.eigh(0.5 * (X + X.T))
    keep = w > 1e-12 * max(1.0, w.max(initial=0.0))
    return Q[:, keep] * np.sqrt(w[keep])


def goemans_williamson(factors_or_X: Any, graph: Any, n_rounds: int = 100, generator: Any = None,
                       *, return_signs: bool = False) -> Any:
    """Best cut weight over ``n_rounds`` random hyperplanes through the row-normalised factor of X (feasible X̃).

    ``graph``: a networkx graph or a Laplacian. Returns the cut weight (and the ±1 signs with ``return_signs``).
    """
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"goemans_williamson: n_rounds must be an integer >= 1, got {n_rounds!r}")
    L = laplacian(graph, owner="goemans_williamson")
    V = normalize_rows(factor(factors_or_X))
    if V.shape[0] != L.shape[0]:
        raise ValueError(f"goemans_williamson: the factor has {V.shape[0]} rows but the graph {L.shape[0]} nodes")
    rng = check_generator(generator, kind="numpy")
    S = np.sign(V @ rng.standard_normal((V.shape[1], n_rounds)))
    S[S == 0] = 1.0
    cuts = 0.25 * np.einsum("ij,ij->j", S, L @ S)
    best = int(np.argmax(cuts))
    return (float(cuts[best]), S[:, best]) if return_signs else float(cuts[best])


def mixing_refine(L: Any, V: np.ndarray, sweeps: int = 10) -> np.ndarray:
    """``sweeps`` Gauss–Seidel sweeps of the mixing method on min ⟨−L/4, VVᵀ⟩, ‖v_i‖ = 1 (module docstring);
    returns the refined V (unit rows; X = VVᵀ is feasible)."""
    L = L.tocsr()
    V = normalize_rows(V)
    indptr, indices, data = L.indptr, L.indices, L.data
    for _ in range(sweeps):
        for i in range(V.shape[0]):
            a, b = indptr[i], indptr[i + 1]
            cols, w = indices[a:b], data[a:b]
            off = cols != i
            g = w[off] @ V[cols[off]]  # Σ_j L_ij v_j = −Σ_j w_ij v_j, so −g_i ∝ −Σ_j w_ij v_j ∝ this g
            norm = np.linalg.norm(g)
            if norm > 0:
                V[i] = g / norm
    return V
