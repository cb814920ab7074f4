"""Conic programming: cones with linear-minimisation oracles, conic descent, momentum conic descent (MOCO), its
memory-efficient low-rank form for SDPs, and stopping certificates.

Conic descent: Duchi, Hinder, Naber, Ye, NeurIPS 2020 (reference code github.com/AndrewTNaber/memeffpsd).
MOCO: Li, Giannakis, "Conic Descent Redux for Memory-Efficient Optimization", arXiv:2308.07343 (UNVERIFIED beyond
its abstract: the momentum update is a heavy-ball Frank–Wolfe-style reconstruction). The certificates are derived
here (see :mod:`optimlab.conic.certificate`). NumPy/SciPy, float64; CVXPY only in :func:`solve_with_cvxpy`.

    import networkx as nx
    from optimlab.conic import MaxCutSDP, lowrank_moco, goemans_williamson
    g = nx.gnp_random_graph(2000, 0.01, seed=0)
    res = lowrank_moco(MaxCutSDP(g), sketch_rank=10, tol=1e-2, generator=0)
    print(res.status, res.objective, res.certificate["gap_bound"], res.constraint_violation)
    print("cut", goemans_williamson(res.factors, g, n_rounds=100, generator=0))
"""

from optimlab.conic.cd import conic_descent
from optimlab.conic.certificate import averaged_weights, momentum_schedule, rel_gap
from optimlab.conic.cones import (
    Cone,
    EigenPair,
    NonnegativeOrthant,
    Product,
    PSDCone,
    SecondOrderCone,
    min_eigenpair,
)
from optimlab.conic.cvxpy_ref import solve_with_cvxpy
from optimlab.conic.lowrank import lowrank_moco
from optimlab.conic.maxcut import MaxCutSDP, laplacian
from optimlab.conic.moco import moco
from optimlab.conic.problems import (
    ConicProblem,
    MatrixCompletionSDP,
    NonnegLeastSquares,
    PhaseLift,
    QuadraticProgram,
    golden_section,
)
from optimlab.conic.result import ConicResult
from optimlab.conic.rounding import goemans_williamson, mixing_refine
from optimlab.conic.sketch import NystromSketch, nystrom_reconstruct

__all__ = [
    "Cone",
    "ConicProblem",
    "ConicResult",
    "EigenPair",
    "MatrixCompletionSDP",
    "MaxCutSDP",
    "NonnegLeastSquares",
    "NonnegativeOrthant",
    "NystromSketch",
    "PSDCone",
    "PhaseLift",
    "Product",
    "QuadraticProgram",
    "SecondOrderCone",
    "averaged_weights",
    "conic_descent",
    "goemans_williamson",
    "golden_section",
    "laplacian",
    "lowrank_moco",
    "min_eigenpair",
    "mixing_refine",
    "moco",
    "momentum_schedule",
    "nystrom_reconstruct",
    "rel_gap",
    "solve_with_cvxpy",
]
