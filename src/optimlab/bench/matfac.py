"""``optimlab bench matfac``: cost of ScaledGD with each initialisation, against plain GD and a direct eigensolver
(specs/matfac.md §6). All measured in one run, float64, one thread."""

from __future__ import annotations

import time

import torch

from optimlab.experiments.common import torch_threads
from optimlab.experiments.registry import RunContext, register_bench
from optimlab.matfac import SymmetricMF, nystrom_init, random_init, scaled_gd, spectral_init
from optimlab.matfac.scaledgd import gram_inverse
from optimlab.metrics import compare_step_times
from optimlab.report.schema import ClaimResult

SIZE = {"smoke": 100, "quick": 2000, "full": 4000}  # spec §6: m = 2000
PER_ITER_TARGET = 1.3  # spec §6: time per iteration ScaledGD / GD <= 1.3 (extra work is O(mr^2 + r^3) vs O(m^2 r))


@register_bench(
    id="matfac.init", paper="Li, Zhang, Mokhtari, He, ICLR 2025, arXiv:2410.18965; Tong, Ma, Chi arXiv:2005.08898",
    seeds={"smoke": 1, "quick": 3, "full": 5},
    statement="Iterations and wall time to 1e-10 of ScaledGD from Nystrom, random and spectral starts (symmetric, "
    "rank 5, r = 10, kappa = 100), per-iteration cost against GD, and wall time against scipy's eigh.",
    metric="ratios to Nystrom (iterations, seconds); ScaledGD/GD time per iteration; ScaledGD+Nystrom / eigh time",
    criterion="target (spec §6): ScaledGD/GD time per iteration <= 1.3 -> holds; the other ratios are reported, not "
    "gated (a direct eigensolver is the right tool for plain MF; ScaledGD is a pattern for sensing/LoRA)",
)
def init_bench(ctx: RunContext) -> ClaimResult:
    import scipy.linalg

    m = SIZE[ctx.scale]
    numbers: dict[str, list[float]] = {}
    with torch_threads(1):
        for seed in ctx.seeds:
            g = torch.Generator().manual_seed(seed)
            prob = SymmetricMF.random(m, 5, kappa=100.0, generator=g)
            inits = {"nystrom": nystrom_init(prob, 10, generator=g),
                     "random": random_init(prob, 10, std=1e-3, generator=g),
                     "spectral": spectral_init(prob, 10, noise=0.1, generator=g)}
            for name, X0 in inits.items():
                t0 = time.perf_counter()
                res = scaled_gd(prob, X0, eta=0.5, tol=1e-10, max_iter=600)
                numbers.setdefault(f"{name}_seconds", []).append(time.perf_counter() - t0)
                numbers.setdefault(f"{name}_iterations", []).append(res.iterations if res.converged else 600)
            A = prob.A.numpy()
            t0 = time.perf_counter()
            scipy.linalg.eigh(A, subset_by_index=[m - 10, m - 1])
            numbers.setdefault("eigh_seconds", []).append(time.perf_counter() - t0)
        X = inits["random"]
        reps = (2, 2, 1) if ctx.scale == "smoke" else (10, 5, 3)
        timing = compare_step_times(
            {"gd": lambda: X - 0.5 * prob.grad(X),
             "scaledgd": lambda: X - 0.5 * (prob.grad(X) @ gram_inverse(X.T @ X))},
            baseline="gd", repeats=reps[0], block=reps[1], warmup=reps[2])
    med = {k: float(torch.tensor(v).median()) for k, v in numbers.items()}
    summary = {
        "per_iteration_scaledgd_over_gd": timing.ratio["scaledgd"],
        "iterations_random_over_nystrom": med["random_iterations"] / med["nystrom_iterations"],
        "iterations_spectral_over_nystrom": med["spectral_iterations"] / med["nystrom_iterations"],
        "seconds_random_over_nystrom": med["random_seconds"] / med["nystrom_seconds"],
        "seconds_spectral_over_nystrom": med["spectral_seconds"] / med["nystrom_seconds"],
        "seconds_nystrom_over_eigh": med["nystrom_seconds"] / med["eigh_seconds"],
        **{k: v for k, v in med.items() if k.endswith("iterations")},
    }
    numbers["per_iteration_ratio_rounds"] = [a / b for a, b in zip(timing.per_round["scaledgd"],
                                                                   timing.per_round["gd"])]
    verdict = "holds" if summary["per_iteration_scaledgd_over_gd"] <= PER_ITER_TARGET else "does not hold"
    return ClaimResult(claim_id="matfac.init", verdict=verdict, numbers=numbers, summary=summary,
                       notes=f"m = {m}, float64, one thread. Random runs that do not reach 1e-10 in 600 iterations "
                       "count 600 (over-parameterised random starts stall, specs/matfac.md §3.5). The eigh ratio is "
                       "reported as is: for plain matrix factorisation a direct eigensolver is the right tool.")
