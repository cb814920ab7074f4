"""The result of an iterative method: a status, how long it took, what it recorded, and its certificate.

Modelled on SCS/CVXPY: a solver returns an object with a status and certificates (residuals, gaps) next to the
solution, never only an array. Families extend :class:`IterativeResult` with their solution fields
(``MFResult`` adds the factors, ``EigResult`` the eigenpairs, the conic family its objective and gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONVERGED",
    "DIVERGED",
    "INACCURATE",
    "INFEASIBLE",
    "MAX_ITER",
    "STALLED",
    "STATUSES",
    "UNBOUNDED",
    "IterativeResult",
]

CONVERGED = "converged"  # the stopping test was met
MAX_ITER = "max_iter"  # the iteration budget ran out first
DIVERGED = "diverged"  # the iterates or the objective became non-finite or blew up
STALLED = "stalled"  # no progress for the configured window
INFEASIBLE = "infeasible"  # a certificate of primal infeasibility was found
UNBOUNDED = "unbounded"  # a certificate of unboundedness (dual infeasibility) was found
INACCURATE = "inaccurate"  # stopped near a solution without meeting the requested tolerance
STATUSES = (CONVERGED, MAX_ITER, DIVERGED, STALLED, INFEASIBLE, UNBOUNDED, INACCURATE)


@dataclass(frozen=True, kw_only=True)
class IterativeResult:
    """Outcome of an iterative method.

    Attributes:
        status: one of :data:`STATUSES`.
        iterations: iterations taken (the start is iteration 0 and is not counted).
        seconds: wall time of the run.
        history: per-iteration records, ``{name: [value at iteration 0, 1, ...]}``.
        certificate: scalars that certify the outcome (residuals, gaps, a numerical rank, ...).
    """

    status: str
    iterations: int
    seconds: float = 0.0
    history: dict[str, list[float]] = field(default_factory=dict)
    certificate: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{type(self).__name__}: status must be one of {STATUSES}, got {self.status!r}")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"{type(self).__name__}: iterations must be an integer >= 0, got {self.iterations!r}")

    @property
    def converged(self) -> bool:
        """True when ``status == CONVERGED``."""
        return self.status == CONVERGED

    def iterations_to(self, key: str, tol: float) -> int | None:
        """First iteration at which ``history[key]`` is ≤ ``tol`` (``None`` if never reached in this run)."""
        if key not in self.history:
            raise ValueError(f"iterations_to: key must be one of {sorted(self.history)}, got {key!r}")
        return next((i for i, v in enumerate(self.history[key]) if v <= tol), None)

    def final(self, key: str) -> float:
        """The last recorded value of ``history[key]`` (NaN if nothing was recorded)."""
        values = self.history.get(key)
        if values is None:
            raise ValueError(f"final: key must be one of {sorted(self.history)}, got {key!r}")
        return float(values[-1]) if values else math.nan

    def to_numpy(self) -> Any:
        """Subclasses return their solution as numpy arrays; the base result has none."""
        raise NotImplementedError(f"{type(self).__name__} has no solution array")
