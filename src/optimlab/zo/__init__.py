"""Zeroth-order optimisation: two-point estimators, ZO-SGD/ZO-Adam with seeded in-place perturbations,
seed-and-scalar data parallelism, a running Hessian-trace estimate, and seed-log replay.

Zhang, Li, Thekumparampil, Oh, Muehlebach, He, "Zeroth-Order Optimization Finds Flat Minima", NeurIPS 2025,
arXiv:2506.05454; MeZO (Malladi et al., arXiv:2305.17333). ``import optimlab.zo`` needs only torch.
"""

from optimlab.zo.base import ZOOptimizer, ZOStepInfo
from optimlab.zo.distributed import agree_seed, gather_scalars, reduce_losses, replica_checksum
from optimlab.zo.estimators import (
    ZOEstimate,
    directional_derivative,
    one_sided_trace_probe,
    sample_directions,
    smoothing_weight,
    trace_probe,
    two_point,
)
from optimlab.zo.modes import zo_closure, zo_eval, zo_param_groups
from optimlab.zo.optim import ZOSGD, ZOAdam
from optimlab.zo.replay import replay

__all__ = [
    "ZOSGD",
    "ZOAdam",
    "ZOEstimate",
    "ZOOptimizer",
    "ZOStepInfo",
    "agree_seed",
    "directional_derivative",
    "gather_scalars",
    "one_sided_trace_probe",
    "reduce_losses",
    "replay",
    "replica_checksum",
    "sample_directions",
    "smoothing_weight",
    "trace_probe",
    "two_point",
    "zo_closure",
    "zo_eval",
    "zo_param_groups",
]
