"""Instances, reference solves and measurements shared by the ``conic.*`` claims and ``optimlab bench conic``.

Graphs come from networkx (bundled graphs and seeded ``gnp_random_graph``); every other instance is drawn from a
``numpy.random.Generator`` seeded by the claim's seed. SCS (through CVXPY, ``solver="SCS"``) gives the references.
Peak memory of SCS is the peak RSS of a child process minus its RSS after imports (SCS allocates in C, which
``tracemalloc`` cannot see); low-rank MOCO's is the ``tracemalloc`` peak of the solve (all its arrays are numpy).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
import tracemalloc
from typing import Any

import numpy as np

from optimlab.conic import (
    MatrixCompletionSDP,
    MaxCutSDP,
    NonnegLeastSquares,
    PhaseLift,
    lowrank_moco,
    solve_with_cvxpy,
)

PAPER = ("Li, Giannakis, Conic Descent Redux for Memory-Efficient Optimization, Asilomar 2023, arXiv:2308.07343; "
         "Duchi, Hinder, Naber, Ye, Conic Descent, NeurIPS 2020")
NOTE = ("MOCO's update is an UNVERIFIED reconstruction (heavy-ball Frank-Wolfe style, delta_t = 2/(t+2)): only the "
        "MOCO paper's abstract was read; conic descent follows the reference code AndrewTNaber/memeffpsd (loop order, "
        "defaults); the certificates are derived here. No tuning: every method runs the same searches, eigensolver "
        "settings, iteration cap and stopping rule.")


def graph(name: str, seed: int = 0, n: int = 100, p: float = 0.1) -> Any:
    """``karate``, ``lesmis`` (weights dropped: unweighted) or ``gnp`` (G(n, p) from ``seed``)."""
    import networkx as nx

    if name == "karate":
        g = nx.karate_club_graph()
    elif name == "lesmis":
        g = nx.les_miserables_graph()
    else:
        g = nx.gnp_random_graph(n, p, seed=seed)
    g = nx.convert_node_labels_to_integers(g)
    for e in g.edges:
        g.edges[e].pop("weight", None)
    return g


def completion(seed: int, n: int = 60, rank: int = 3, p: float = 0.3, mu: float = 1.0) -> MatrixCompletionSDP:
    """Rank-``rank`` V Vᵀ, V ~ N(0, 1), entries observed with probability ``p`` (upper triangle), trace penalty
    ``mu`` (chosen before any run so that the SCS solution has rank ≈ 3 at n = 60: rank 3 in the project's check)."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, rank))
    mask = np.triu(rng.random((n, n)) < p)
    return MatrixCompletionSDP(mask, V @ V.T, trace_penalty=mu)


def neurips_mc(seed: int, n: int = 100) -> MatrixCompletionSDP:
    """The conic-descent reference code's completion set-up: X♮ = VVᵀ, V ∈ ℝ^{n×3} N(0, 1); top-left 10×10 upper
    triangle always observed, other upper-triangle entries with p = 0.1; noise of 10 % relative norm; loss
    ‖P_Ω(X) − b‖²/(2m), no trace penalty."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((n, 3))
    M = V @ V.T
    mask = np.triu(rng.random((n, n)) < 0.1)
    mask[:10, :10] |= np.triu(np.ones((10, 10), dtype=bool))
    b = M[mask]
    noise = rng.standard_normal(b.shape)
    b = b + 0.1 * np.linalg.norm(b) / np.linalg.norm(noise) * noise
    return MatrixCompletionSDP(mask, b, 0.0, normalize=True)


def phaselift(seed: int, n: int = 8, m: int = 40, mu: float = 1.0) -> PhaseLift:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    A = rng.standard_normal((m, n))
    return PhaseLift(A, (A @ x) ** 2, trace_penalty=mu)


def nnls(seed: int, m: int = 60, n: int = 30) -> NonnegLeastSquares:
    rng = np.random.default_rng(seed)
    return NonnegLeastSquares(rng.standard_normal((m, n)), rng.standard_normal(m))


def reference(problem: Any, eps: float = 1e-8) -> Any:
    """SCS through CVXPY (``solver="SCS"``)."""
    return solve_with_cvxpy(problem, eps=eps)


def true_rel_gaps(res: Any, ref_value: float, maxcut: bool) -> list[float]:
    """Per iterate |objective − reference| / max(1, |reference|); MaxCut: the larger of that and ‖diag X − 1‖∞."""
    scale = max(1.0, abs(ref_value))
    gaps = [abs(o - ref_value) / scale for o in res.history["objective"]]
    if maxcut:
        gaps = [max(g, v) for g, v in zip(gaps, res.history["constraint_violation"])]
    return gaps


def first_below(values: list[float], tol: float, cap: int) -> int:
    return next((i for i, v in enumerate(values) if v <= tol), cap)


def lowrank_peak(problem: MaxCutSDP, *, memory_iters: int = 30, **kw: Any) -> tuple[Any, float, float]:
    """(result, seconds, peak bytes) of :func:`lowrank_moco`: the seconds of the full solve without tracing
    (``tracemalloc`` slows Python-level loops several-fold), the ``tracemalloc`` peak of a second run capped at
    ``memory_iters`` iterations (≥ 3 certificate checks, so every allocation phase — eigensolve, sketch
    reconstruction, mixing refinement, certificate — is traced; per-iteration storage is the same O(n·k) after)."""
    t0 = time.perf_counter()
    res = lowrank_moco(problem, **kw)
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        lowrank_moco(problem, **{**kw, "max_iter": min(memory_iters, kw.get("max_iter", memory_iters))})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return res, seconds, float(peak)


_SCS_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    from optimlab.conic import MaxCutSDP, solve_with_cvxpy
    from optimlab.experiments._conic_runs import graph
    import cvxpy, scs
    n, p, seed, eps, limit = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    prob = MaxCutSDP(graph("gnp", seed, int(n), p))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = solve_with_cvxpy(prob, eps=eps, time_limit=limit)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": res.seconds, "objective": res.objective, "status": res.status,
                      "rss_bytes": 1024.0 * (peak - base)}))
""")


def scs_maxcut_child(n: int, p: float, seed: int, eps: float = 1e-3, limit: float = 120.0, *,
                     child: bool = True) -> dict[str, float]:
    """SCS on MaxCut G(n, p) in a child process: seconds, objective, status, peak RSS growth (bytes). A run past
    ``limit`` seconds (or killed) is reported with ``status = "out of budget"`` and NaN numbers. ``child=False``
    (smoke scale) solves in this process and reports NaN memory."""
    if not child:
        res = solve_with_cvxpy(MaxCutSDP(graph("gnp", seed, n, p)), eps=eps, time_limit=limit)
        return {"seconds": res.seconds, "objective": res.objective, "status": res.status, "rss_bytes": math.nan}
    try:
        out = subprocess.run([sys.executable, "-c", _SCS_CHILD, str(n), str(p), str(seed), str(eps), str(limit)],
                             capture_output=True, text=True, timeout=limit + 60)
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        return {"seconds": math.nan, "objective": math.nan, "status": "out of budget", "rss_bytes": math.nan}
    if data["status"] not in ("converged", "inaccurate"):
        data.update(seconds=math.nan, objective=math.nan)
    return data


def median(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.median(vals)) if vals else math.nan
