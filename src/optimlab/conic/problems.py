"""Smooth convex problems min_{x ∈ K} f(x) for conic descent: value, gradient and the exact step searches.

Every problem here is quadratic along a direction, f(x + t·d) = f(x) + t⟨∇f(x), d⟩ + ½t²·curvature(d), so the
searches of conic descent (Duchi, Hinder, Naber, Ye, NeurIPS 2020; reference code AndrewTNaber/memeffpsd) are in
closed form:

    ray step    s = argmin_{s ≥ 0} f(s·x)            = max(0, 1 − ⟨∇f(x), x⟩ / curvature(x))
    line step   τ = argmin_{τ ≥ 0} f(x + τ·v)        = max(0, −⟨∇f(x), v⟩ / curvature(v))   (∞: unbounded)
    joint step  (α, β) = argmin_{α, β ≥ 0} f(α·x + β·v)   (a 2-variable nonnegative QP, solved by enumeration)

A problem without ``curvature`` falls back on golden-section search (bracket from 1.1, doubled while f decreases,
tolerance 1e-8, as in the reference code). ``radius(x)`` is a bound R ≥ size(x*) in the cone's slice functional
(None when unknown); with a trace penalty μ·tr(X) and a nonnegative data term, R = f(x)/μ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optimlab.conic.cones import Cone, NonnegativeOrthant, PSDCone

__all__ = ["ConicProblem", "MatrixCompletionSDP", "NonnegLeastSquares", "PhaseLift", "QuadraticProgram",
           "golden_section"]


def _inner(a: Any, b: Any) -> float:
    return float(np.vdot(np.asarray(a), np.asarray(b)))


def golden_section(phi: Any, *, tol: float = 1e-8, max_doublings: int = 60) -> float:
    """argmin over t ≥ 0 of a convex ``phi``: bracket [0, h] with h = 1.1 doubled while phi decreases, then golden
    section to ``tol`` (relative to the bracket). Returns inf when phi keeps decreasing."""
    h, prev = 1.1, phi(0.0)
    for _ in range(max_doublings):
        cur = phi(h)
        if not cur < prev:
            break
        prev, h = cur, 2.0 * h
    else:
        return math.inf
    a, b = 0.0, h
    r = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = phi(c), phi(d)
    while b - a > tol * max(1.0, b):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = phi(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = phi(d)
    t = 0.5 * (a + b)
    return t if phi(t) <= phi(0.0) else 0.0


class ConicProblem:
    """Base class: min f(x) over ``self.cone``. Subclasses define ``value``, ``grad`` and, when f is quadratic
    along lines, ``curvature(d) = ⟨d, ∇²f d⟩``."""

    cone: Cone
    trace_penalty: float = 0.0
    quadratic: bool = True

    def value(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def curvature(self, d: np.ndarray) -> float:
        raise NotImplementedError

    def objective(self, x: np.ndarray) -> float:
        """The objective in the problem's own sense (f itself unless a subclass says otherwise)."""
        return self.value(x)

    def radius(self, x: np.ndarray) -> float | None:
        """R ≥ size(x*) in the cone's slice functional, or None. Trace penalty: μ·size(x*) ≤ f* ≤ f(x)."""
        if self.trace_penalty > 0:
            return self.value(x) / self.trace_penalty
        return None

    def start(self) -> np.ndarray:
        return self.cone.zeros()

    # ------------------------------------------------------------------ searches
    def ray_search(self, x: np.ndarray, G: Any = None) -> float:
        """s = argmin_{s ≥ 0} f(s·x)."""
        if not np.any(x):
            return 1.0
        if self.quadratic:
            G = self.grad(x) if G is None else G
            curv = self.curvature(x)
            slope = _inner(G, x)
            if curv <= 0:
                return math.inf if slope < 0 else (1.0 if slope == 0 else 0.0)
            return max(0.0, 1.0 - slope / curv)
        return golden_section(lambda s: self.value(s * x))

    def line_search(self, x: np.ndarray, v: np.ndarray, G: Any = None) -> float:
        """τ = argmin_{τ ≥ 0} f(x + τ·v) (inf when f decreases without bound along v)."""
        if self.quadratic:
            G = self.grad(x) if G is None else G
            slope, curv = _inner(G, v), self.curvature(v)
            if slope >= 0:
                return 0.0
            return math.inf if curv <= 0 else -slope / curv
        return golden_section(lambda t: self.value(x + t * v))

    def joint_search(self, x: np.ndarray, v: np.ndarray, G: Any = None) -> tuple[float, float]:
        """(α, β) = argmin_{α, β ≥ 0} f(α·x + β·v); f(αx + βv) = f(x + (α−1)x + βv) is a 2-D quadratic."""
        if not self.quadratic:
            raise ValueError(f"{type(self).__name__}: step='joint' needs a quadratic problem")
        G = self.grad(x) if G is None else G
        gx, gv = _inner(G, x), _inner(G, v)
        cxx, cvv = self.curvature(x), self.curvature(v)
        cxv = 0.5 * (self.curvature(x + v) - cxx - cvv)
        # q(a, b) = (a−1)gx + b gv + ½[(a−1)² cxx + 2(a−1)b cxv + b² cvv]; candidates on the faces of a, b ≥ 0
        def q(a: float, b: float) -> float:
            e = a - 1.0
            return e * gx + b * gv + 0.5 * (e * e * cxx + 2 * e * b * cxv + b * b * cvv)

        cands = [(0.0, 0.0)]
        if cxx > 0:
            cands.append((max(0.0, 1.0 - gx / cxx), 0.0))
        if cvv > 0:
            cands.append((0.0, max(0.0, -(gv - cxv) / cvv)))
        elif gv - cxv < 0:
            return 0.0, math.inf
        det = cxx * cvv - cxv * cxv
        if det > 1e-14 * max(1.0, cxx * cvv):
            # gradient zero: cxx e + cxv b = −gx, cxv e + cvv b = −gv
            e = (-gx * cvv + gv * cxv) / det
            b = (-gv * cxx + gx * cxv) / det
            if e + 1.0 >= 0 and b >= 0:
                cands.append((e + 1.0, b))
        return min(cands, key=lambda ab: q(*ab))


class QuadraticProgram(ConicProblem):
    """f(x) = ½xᵀPx + qᵀx over a vector cone (orthant, SOC, product), P symmetric PSD (P = 0: linear, possibly
    unbounded below). ``radius`` is a user bound on size(x*) (None: no certificate)."""

    def __init__(self, P: Any, q: Any, cone: Cone, *, radius: float | None = None) -> None:
        q = np.asarray(q, dtype=np.float64)
        P = np.asarray(P, dtype=np.float64)
        if not isinstance(cone, Cone) or len(cone.shape) != 1:
            raise ValueError(f"QuadraticProgram: cone must be a vector Cone, got {cone!r}")
        n = cone.shape[0]
        if q.shape != (n,):
            raise ValueError(f"QuadraticProgram: q must have shape ({n},), got {q.shape}")
        if P.shape != (n, n):
            raise ValueError(f"QuadraticProgram: P must have shape ({n}, {n}), got {P.shape}")
        if not np.allclose(P, P.T, atol=1e-12 * max(1.0, np.abs(P).max(initial=0.0))):
            raise ValueError("QuadraticProgram: P must be symmetric")
        if radius is not None and not (isinstance(radius, (int, float)) and radius >= 0 and math.isfinite(radius)):
            raise ValueError(f"QuadraticProgram: radius must be a finite number >= 0 or None, got {radius!r}")
        self.P, self.q, self.cone, self._radius = P, q, cone, radius

    def value(self, x: np.ndarray) -> float:
        return float(0.5 * x @ (self.P @ x) + self.q @ x)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.P @ x + self.q

    def curvature(self, d: np.ndarray) -> float:
        return float(d @ (self.P @ d))

    def radius(self, x: np.ndarray) -> float | None:
        return self._radius


class NonnegLeastSquares(ConicProblem):
    """f(x) = ½‖Ax − b‖² over x ≥ 0. ``radius(x)``: for A with full column rank, any x* has
    ‖Ax*‖ ≤ ‖b‖ + √(2f(x)), so 1ᵀx* ≤ √n·‖x*‖₂ ≤ √n(‖b‖ + √(2f(x)))/σ_min(A) (ℓ₁, the orthant's functional);
    a user ``radius`` takes precedence; None when A is rank deficient."""

    def __init__(self, A: Any, b: Any, *, radius: float | None = None) -> None:
        A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise ValueError(f"NonnegLeastSquares: A must be 2-D and b of shape (rows of A,), got {A.shape}, {b.shape}")
        self.A, self.b, self.cone, self._radius = A, b, NonnegativeOrthant(A.shape[1]), radius
        s = np.linalg.svd(A, compute_uv=False)
        full = A.shape[0] >= A.shape[1] and s[-1] > 1e-10 * s[0]
        self._smin = float(s[-1]) if full else 0.0

    def value(self, x: np.ndarray) -> float:
        r = self.A @ x - self.b
        return float(0.5 * r @ r)

    def grad(self, x: np.ndarray) -> np.ndarray:
        return self.A.T @ (self.A @ x - self.b)

    def curvature(self, d: np.ndarray) -> float:
        Ad = self.A @ d
        return float(Ad @ Ad)

    def radius(self, x: np.ndarray) -> float | None:
        if self._radius is not None:
            return self._radius
        if self._smin == 0.0:
            return None
        n = self.A.shape[1]
        return math.sqrt(n) * (np.linalg.norm(self.b) + math.sqrt(2 * self.value(x))) / self._smin


class MatrixCompletionSDP(ConicProblem):
    """f(X) = ½‖P_Ω(X) − b‖² (÷ m = |Ω| with ``normalize=True``) + μ·tr(X) over X ⪰ 0.

    ``mask``: n×n booleans (Ω; need not be symmetric), ``values``: n×n (read on Ω) or the |Ω| observed values in
    row-major order of the mask. The gradient is symmetrised (only its symmetric part acts on symmetric X).
    """

    def __init__(self, mask: Any, values: Any, trace_penalty: float = 0.0, *, normalize: bool = False) -> None:
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or mask.dtype != bool:
            raise ValueError(f"MatrixCompletionSDP: mask must be a square boolean matrix, got {mask.dtype} "
                             f"{mask.shape}")
        values = np.asarray(values, dtype=np.float64)
        m = int(mask.sum())
        if values.shape == mask.shape:
            b = values[mask]
        elif values.shape == (m,):
            b = values
        else:
            raise ValueError(f"MatrixCompletionSDP: values must have the mask's shape {mask.shape} or ({m},), got "
                             f"{values.shape}")
        if isinstance(trace_penalty, bool) or not isinstance(trace_penalty, (int, float)) or not (
                trace_penalty >= 0 and math.isfinite(trace_penalty)):
            raise ValueError(f"MatrixCompletionSDP: trace_penalty must be a finite number >= 0, got {trace_penalty!r}")
        if m == 0:
            raise ValueError("MatrixCompletionSDP: mask must observe at least one entry")
        self.mask, self.b, self.trace_penalty = mask, b, float(trace_penalty)
        self.scale = 1.0 / m if normalize else 1.0
        self.cone = PSDCone(mask.shape[0])

    def _res(self, X: np.ndarray) -> np.ndarray:
        return X[self.mask] - self.b

    def value(self, X: np.ndarray) -> float:
        r = self._res(X)
        return float(0.5 * self.scale * r @ r + self.trace_penalty * np.trace(X))

    def grad(self, X: np.ndarray) -> np.ndarray:
        G = np.zeros_like(X)
        G[self.mask] = self.scale * self._res(X)
        G = 0.5 * (G + G.T)
        G[np.diag_indices_from(G)] += self.trace_penalty
        return G

    def curvature(self, D: np.ndarray) -> float:
        d = D[self.mask]
        return float(self.scale * d @ d)


class PhaseLift(ConicProblem):
    """f(X) = ½Σ_i (a_iᵀXa_i − b_i)² + μ·tr(X) over X ⪰ 0 (rows a_i of A); ∇f = Aᵀ diag(r) A + μI."""

    def __init__(self, A: Any, b: Any, trace_penalty: float = 0.0) -> None:
        A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise ValueError(f"PhaseLift: A must be 2-D and b of shape (rows of A,), got {A.shape}, {b.shape}")
        if isinstance(trace_penalty, bool) or not isinstance(trace_penalty, (int, float)) or not (
                trace_penalty >= 0 and math.isfinite(trace_penalty)):
            raise ValueError(f"PhaseLift: trace_penalty must be a finite number >= 0, got {trace_penalty!r}")
        self.A, self.b, self.trace_penalty = A, b, float(trace_penalty)
        self.cone = PSDCone(A.shape[1])

    def _meas(self, X: np.ndarray) -> np.ndarray:
        return np.einsum("ij,jk,ik->i", self.A, X, self.A)

    def value(self, X: np.ndarray) -> float:
        r = self._meas(X) - self.b
        return float(0.5 * r @ r + self.trace_penalty * np.trace(X))

    def grad(self, X: np.ndarray) -> np.ndarray:
        r = self._meas(X) - self.b
        return (self.A.T * r) @ self.A + self.trace_penalty * np.eye(self.A.shape[1])

    def curvature(self, D: np.ndarray) -> float:
        d = self._meas(D)
        return float(d @ d)
