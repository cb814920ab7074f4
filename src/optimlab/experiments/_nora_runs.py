"""Helpers of the ``nora.*`` claims (:mod:`optimlab.experiments.nora`): scales, seeded generators, run statistics,
and the error-vs-iteration figure.

Li, Zhang, Mokhtari, He, "On the Crucial Role of Initialization for Matrix Factorization", ICLR 2025,
arXiv:2410.18965. Nothing here decides a verdict; the claims' criteria and ``_verdict`` functions live in
:mod:`optimlab.experiments.nora`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np
import torch

from optimlab.matfac import MFResult, tail_iterations

PAPER = "Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965"
SEEDS = {"smoke": 2, "quick": 5, "full": 20}  # 5 seeds (0-4) at quick, 20 at full
SIZE = {"smoke": 30, "quick": 100, "full": 1000}  # m; quick 100 (as the reference runs), smoke 30
MAX_ITER = {"smoke": 200, "quick": 600, "full": 600}  # 600 as the reference runs; smoke only proves it runs
NOTE = ("Checked against arXiv:2410.18965: abstract-level statements only (quadratic convergence of ScaledGD "
        "with Nystrom initialisation in the symmetric exact/OP settings; fast, even one-step, convergence in "
        "the asymmetric setting). The theorem constants, the step-size condition (eta = 1/2 here), the "
        "sketch scale xi and the under-parameterised statement are UNVERIFIED; thresholds come from the "
        "project's own derivation (optimlab.matfac.scaledgd) and its float64 reference runs (m = 100, 5 "
        "seeds), fixed before running.")

__all__ = ["MAX_ITER", "NOTE", "PAPER", "SEEDS", "SIZE", "error_figure", "generator", "median", "n_to",
           "ratios_over_bound", "require_float64", "tail", "worst"]


def require_float64(problem) -> None:
    """``ValueError`` unless the problem is float64: the 1e-12 tolerances of these claims are out of reach in
    float32."""
    if problem.A.dtype != torch.float64:
        raise ValueError(f"the nora claims need float64 problems (1e-12 is out of reach in float32), got "
                         f"{problem.A.dtype}")


def generator(seed: int) -> torch.Generator:
    """The one generator of a seed: it draws A, then every initialisation, in a fixed order."""
    return torch.Generator().manual_seed(seed)


def tail(errors: list[float], max_iter: int) -> int:
    """Iterations from 1e-2 to 1e-12 (:func:`~optimlab.matfac.tail_iterations`), ``max_iter`` if not reached."""
    t = tail_iterations(errors)
    return max_iter if t is None else t


def n_to(res: MFResult, tol: float, max_iter: int) -> int:
    """First iteration with relative error ≤ ``tol``; a run that never reaches it counts ``max_iter``."""
    n = res.iterations_to("rel_error", tol)
    return max_iter if n is None else n


def median(xs: Iterable[float]) -> float:
    """Median as a float (NaN if any value is NaN)."""
    xs = [float(x) for x in xs]
    return math.nan if any(math.isnan(x) for x in xs) else float(statistics.median(xs))


def worst(values: Iterable[float], pick=max) -> float:
    """``pick(values)`` (``max`` or ``min``), NaN if any value is NaN (Python's max/min would depend on order)."""
    values = [float(v) for v in values]
    return math.nan if not values or any(math.isnan(v) for v in values) else float(pick(values))


def ratios_over_bound(errors: list[float], lam_min: float, fro: float) -> list[float]:
    """(e_{t+1}/e_t²)/B_t for every t with 1e-6 ≤ e_t ≤ ε₀ = ½λ_min/‖A‖_F, where B_t = ‖A‖_F/(4(λ_min − e_t‖A‖_F))
    is the derived per-step bound of a quadratic (Newton/Heron) step (see ``nora.sym_quadratic``)."""
    hi = 0.5 * lam_min / fro
    return [(b / (a * a)) * 4 * (lam_min - a * fro) / fro for a, b in zip(errors[:-1], errors[1:]) if 1e-6 <= a <= hi]


def error_figure(panels: dict[str, dict[str, list[list[float]]]], title: str,
                 ylabel: str = "relative error ‖XXᵀ − A‖_F/‖A‖_F"):
    """Error vs iteration on a log scale, one panel per cell, one line per (init, seed); returns the Figure."""
    from optimlab.report.plots import new_figure

    fig, axes = new_figure(1, len(panels), figsize=(4.0 * len(panels), 3.6))
    for ax, (name, curves) in zip(np.atleast_1d(axes), panels.items()):
        for i, (label, runs) in enumerate(curves.items()):
            for j, errs in enumerate(runs):
                ax.semilogy(np.maximum(np.asarray(errs, dtype=float), 1e-17), color=f"C{i}", alpha=0.65, lw=1.2,
                            marker="." if len(errs) <= 40 else None, label=label if j == 0 else None)
        ax.set_title(name, fontsize="small")
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel, fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    return fig
