"""The MaxCut SDP (Goemans–Williamson 1995) in penalised form, for conic descent and (low-rank) MOCO.

    max ¼⟨L, X⟩  s.t. diag(X) = 1, X ⪰ 0      ⇔      p* = min ⟨C, X⟩, C = −L/4, same constraints.

The solvers minimise, over X ⪰ 0 only, the augmented Lagrangian (``form="augmented_lagrangian"``) or the quadratic
penalty (``form="quadratic_penalty"``, y = 0)

    f(X) = ⟨C, X⟩ + yᵀ(diag X − 1) + (β/2)‖diag X − 1‖²,    ∇f(X) = C + Diag(ω),  ω = y + β(diag X − 1).

Certificate (derived here; valid for any ω ∈ ℝⁿ and any feasible X, since tr X = n):
⟨C, X⟩ = −1ᵀω + ⟨C + Diag(ω), X⟩ ≥ −1ᵀω + n·λ_min(C + Diag ω), so lower_bound = −1ᵀω + n·(θ − ρ) with the
LMO's own Ritz value θ and residual ρ, and the SDP value (max form) is at most ``−lower_bound``. The bound says
nothing about the infeasibility ‖diag X − 1‖∞ of an iterate, reported beside it; the row-normalised
X̃ = D^{-1/2} X D^{-1/2} (D = Diag(diag X)) is feasible and its value ¼⟨L, X̃⟩ is a true lower bound on the SDP value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from optimlab.conic.cones import PSDCone
from optimlab.conic.problems import ConicProblem

__all__ = ["MaxCutSDP", "laplacian"]

FORMS = ("augmented_lagrangian", "quadratic_penalty")


def laplacian(graph_or_laplacian: Any, *, owner: str = "MaxCutSDP") -> sp.csr_matrix:
    """The weighted Laplacian L = Diag(W1) − W as CSR, from a networkx graph (edge attribute ``weight``, default 1)
    or a symmetric Laplacian (array or sparse). Self-loops, negative weights and non-symmetric input raise
    ``ValueError``."""
    if hasattr(graph_or_laplacian, "nodes") and hasattr(graph_or_laplacian, "edges"):
        g = graph_or_laplacian
        if g.is_directed():
            raise ValueError(f"{owner}: graph must be undirected, got a directed graph")
        loops = [u for u, v in g.edges() if u == v]
        if loops:
            raise ValueError(f"{owner}: graph must have no self-loops, got loops at {loops[:5]}")
        index = {u: i for i, u in enumerate(g.nodes())}
        rows, cols, w = [], [], []
        for u, v, data in g.edges(data=True):
            wt = float(data.get("weight", 1.0))
            if not (wt >= 0 and math.isfinite(wt)):
                raise ValueError(f"{owner}: edge weights must be finite and >= 0, got {wt!r} on edge ({u}, {v})")
            rows += [index[u], index[v]]
            cols += [index[v], index[u]]
            w += [wt, wt]
        n = len(index)
        if n == 0:
            raise ValueError(f"{owner}: graph must have at least one node")
        W = sp.csr_matrix((w, (rows, cols)), shape=(n, n))
        return (sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W).tocsr()
    L = sp.csr_matrix(graph_or_laplacian, dtype=np.float64)
    if L.shape[0] != L.shape[1] or L.shape[0] == 0:
        raise ValueError(f"{owner}: the Laplacian must be a non-empty square matrix, got shape {L.shape}")
    if abs(L - L.T).max() > 1e-12 * max(1.0, abs(L).max()):
        raise ValueError(f"{owner}: the Laplacian (cost) must be symmetric")
    off = L - sp.diags(L.diagonal())
    if off.nnz and off.max() > 0:
        raise ValueError(f"{owner}: a Laplacian must have nonpositive off-diagonal entries (negative weights are "
                         "not allowed)")
    if np.abs(np.asarray(L.sum(axis=1)).ravel()).max() > 1e-9 * max(1.0, abs(L).max()):
        raise ValueError(f"{owner}: a Laplacian's rows must sum to 0 (no self-loops)")
    return L


class MaxCutSDP(ConicProblem):
    """MaxCut SDP on ``graph_or_laplacian`` solved as min f(X) over X ⪰ 0 (module docstring).

    ``beta``: penalty weight (default: the mean weighted degree, at least 1). ``y``: multipliers of the
    augmented Lagrangian (default 0); :meth:`with_multipliers` returns the same problem with new ones.
    """

    quadratic = True

    def __init__(self, graph_or_laplacian: Any, form: str = "augmented_lagrangian", beta: float | None = None, *,
                 y: Any = None) -> None:
        if form not in FORMS:
            raise ValueError(f"MaxCutSDP: form must be one of {FORMS}, got {form!r}")
        self.L = laplacian(graph_or_laplacian)
        self.n = self.L.shape[0]
        if beta is None:
            beta = max(1.0, float(self.L.diagonal().mean()))
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (beta > 0 and math.isfinite(beta)):
            raise ValueError(f"MaxCutSDP: beta must be a finite number > 0, got {beta!r}")
        self.form, self.beta = form, float(beta)
        y = np.zeros(self.n) if y is None else np.asarray(y, dtype=np.float64)
        if y.shape != (self.n,):
            raise ValueError(f"MaxCutSDP: y must have shape ({self.n},), got {y.shape}")
        if form == "quadratic_penalty" and np.any(y):
            raise ValueError("MaxCutSDP: y must be 0 for form='quadratic_penalty'")
        self.y = y
        self.cone = PSDCone(self.n)
        self.C = -0.25 * self.L

    def with_multipliers(self, y: np.ndarray) -> MaxCutSDP:
        """The same problem with multipliers ``y`` (shares L; the quadratic penalty keeps y = 0)."""
        new = object.__new__(MaxCutSDP)
        new.__dict__.update(self.__dict__)
        new.y = np.zeros(self.n) if self.form == "quadratic_penalty" else np.asarray(y, dtype=np.float64).copy()
        return new

    # -------------------------------------------------- scalar forms (shared by dense and low-rank solvers)
    def value_from(self, z: np.ndarray, c: float) -> float:
        """f from z = diag X and c = ⟨C, X⟩."""
        r = z - 1.0
        return float(c + self.y @ r + 0.5 * self.beta * r @ r)

    def omega(self, z: np.ndarray) -> np.ndarray:
        """ω = y + β(z − 1): ∇f(X) = C + Diag(ω)."""
        return self.y + self.beta * (z - 1.0)

    def ray_from(self, z: np.ndarray, c: float) -> float:
        """argmin_{s ≥ 0} f(sX) = (β1ᵀz + yᵀ... ) in closed form: d/ds = c + yᵀz + βzᵀ(sz − 1) = 0."""
        zz = float(z @ z)
        if zz == 0:
            return 1.0
        return max(0.0, (self.beta * z.sum() - c - self.y @ z) / (self.beta * zz))

    def dual_lower(self, omega: np.ndarray, lam_lower: float) -> float:
        """Lower bound on p* (min form): −1ᵀω + n·λ, λ ≤ λ_min(C + Diag ω)."""
        return float(-omega.sum() + self.n * lam_lower)

    def operator(self, omega: np.ndarray) -> spla.LinearOperator:
        """C + Diag(ω) as a LinearOperator (products with the sparse L only)."""
        C = self.C

        def mv(x: np.ndarray) -> np.ndarray:
            return C @ x + (omega * x if x.ndim == 1 else omega[:, None] * x)

        return spla.LinearOperator((self.n, self.n), matvec=mv, matmat=mv, dtype=np.float64)

    # -------------------------------------------------- dense interface (ConicProblem)
    def value(self, X: np.ndarray) -> float:
        return self.value_from(np.diag(X).copy(), float(self.C.multiply(X).sum()))

    def grad(self, X: np.ndarray) -> Any:
        omega = self.omega(np.diag(X).copy())
        G = self.C.toarray()
        G[np.diag_indices(self.n)] += omega
        return G

    def curvature(self, D: np.ndarray) -> float:
        d = np.diag(D)
        return float(self.beta * d @ d)

    def objective(self, X: np.ndarray) -> float:
        """¼⟨L, X⟩, the max-form SDP objective."""
        return float(0.25 * self.L.multiply(X).sum())

    def violation(self, X: np.ndarray) -> float:
        return float(np.abs(np.diag(X) - 1.0).max())

    def radius(self, X: np.ndarray) -> float | None:
        return float(self.n)  # tr X* = n for the constrained SDP; the certificate is dual_lower (module docstring)

    def normalized(self, X: np.ndarray) -> np.ndarray:
        """X̃ = D^{-1/2} X D^{-1/2} (feasible when diag X > 0; zero rows become e_i e_iᵀ)."""
        d = np.diag(X).copy()
        s = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
        Xt = X * s[:, None] * s[None, :]
        Xt[np.diag_indices(self.n)] = 1.0
        return Xt

    def cut_value(self, signs: np.ndarray) -> float:
        """Weight of the cut of ±1 ``signs``: ¼ xᵀLx."""
        return float(0.25 * signs @ (self.L @ signs))
