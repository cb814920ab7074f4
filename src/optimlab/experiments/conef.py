"""Claims of Li, Zheng, Raman, Shrivastava, Giannakis, "Contractive error feedback for gradient compression"
(ConEF, arXiv:2312.08538), run with the real DDP hook on 2 local gloo processes.

* ``conef.memory_saving``  — "saves 80%–90% of the extra memory in EFSGD" (abstract): persistent memory measured
  after real hook steps on four models, against ``predict_memory`` and PyTorch's PowerSGD state, and the peak
  (persistent + transient, measured with :func:`optimlab.metrics.peak_memory`) against EF's.
* ``conef.accuracy_vs_sgd`` — "almost no loss on test performance" (abstract): digits MLP, 2 workers, 3 seeds.
* ``conef.bytes_per_step`` — communication through biased, all-reducible compression: elements handed to
  collectives, counted in the workers with :func:`optimlab.metrics.count_collectives`.
* ``conef.speedup``        — "1.3x–5x speedup of SGD" (abstract): a bandwidth model fed with measured CPU times;
  always inconclusive here (a model, not a cluster measurement).
* ``conef.sketch_contraction`` — the premise that the scaled count sketch contracts on average exactly where
  λ < 2/(1+κ), with factor (1−λ)² + λ²κ (derived here).

What was checked against the paper: only its abstract was available offline (the 80–90% memory saving, "almost no
loss", 1.3x–5x, biased all-reducible compression, ZeRO-3 motivation). The algorithm's exact form (incremental sketch
update), the per-table hyperparameters and the paper's statement of the sketch's contraction remain UNVERIFIED;
the mechanics follow the authors' reference code (github.com/BingcongLi/ConEF, read but not copied).
Each verdict is a pure function of the measured numbers (``*_verdict``), unit-tested on known numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from optimlab.distributed import run_local
from optimlab.evidence import AllChecks, AtLeast, AtMost, Gate, Outcome, RunContext, register_claim
from optimlab.experiments import _conef_plots as plots
from optimlab.experiments._conef_fixtures import (
    START_ITER,
    WORKERS,
    analytic_counts,
    contraction_cells,
    digits_mlp,
    max_nan,
    median_nan_low,
    modeled_step,
)
from optimlab.experiments._conef_workers import ACCURACY_METHODS, accuracy_worker, costs
from optimlab.report.schema import ClaimResult

PAPER = ("Li, Zheng, Raman, Shrivastava, Giannakis, Contractive error feedback for gradient compression, "
         "arXiv:2312.08538")
ABSTRACT_ONLY = "UNVERIFIED beyond the abstract: only the abstract could be read offline"
NOTES_PAPER = ("Checked against the paper: only the abstract was available offline. UNVERIFIED: the algorithm box "
               "(incremental vs overwrite sketch update), per-table s and lambda, the paper's contraction statement. "
               "Mechanics follow the authors' reference code (github.com/BingcongLi/ConEF).")
SEEDS_1 = {"smoke": 1, "quick": 1, "full": 1}


def _start_iter(ctx: RunContext) -> int:
    return 2 if ctx.scale == "smoke" else START_ITER


# ----------------------------------------------------------------------------------------------------------------
# Claim 1: memory saving
# ----------------------------------------------------------------------------------------------------------------
# Criterion fixed before running. On every model and s (fp32 tables): ratio_to_ef <= s + 0.005 (the 0.005 covers
# the W >= 1 floor on skinny tensors); the measured persistent bytes equal predict_memory's; and ConEF's peak
# (persistent + transient of one aggregate step, measured) is strictly below EF's. The persistent part holds almost
# by construction (W = floor(s m)); the peak is the substantive part: a small table is no saving if its transients
# exceed EF's buffer. The paper's "80-90% saving" (arXiv:2312.08538, abstract) is 1 - s at s in {0.1, 0.2}.
FLOOR_SLACK = 0.005
MEMORY_CRITERION = AllChecks(
    ratio=AtMost(FLOOR_SLACK, what="the largest (ConEF bytes / fp32 EF bytes − s) over models and s (fp32 tables)"),
    predicted=AtMost(0, what="the number of configurations whose measured bytes differ from predict_memory's"),
    peak=AtMost(0, what="the number of (model, s) whose ConEF peak (persistent + transient) is not below EF's"),
)


def memory_verdict(rows: Sequence[Mapping[str, Any]]) -> Outcome:
    """:data:`MEMORY_CRITERION` on process 0's memory rows (see ``_conef_workers``); fp16 rows are reported apart
    and only their persistent bytes are compared with ``predict_memory``. A NaN peak ratio is inconclusive."""
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    peaks = [float(r["peak_ratio_to_ef"]) for r in fp32]
    return MEMORY_CRITERION.evaluate(
        ratio=max_nan([r["ratio_to_ef"] - r["s"] for r in fp32]),
        predicted=sum((r["error_bytes"], r["cache_bytes"], r["ef_reference_bytes"]) !=
                      (r["pred_error_bytes"], r["pred_cache_bytes"], r["pred_ef_reference_bytes"]) for r in rows),
        peak=math.nan if any(math.isnan(p) for p in peaks) else sum(p >= 1 for p in peaks),
    )


@register_claim(
    id="conef.memory_saving", paper=PAPER,
    statement="ConEF saves 80%-90% of the extra memory of EFSGD (abstract), and its peak memory (persistent + "
              "transient) stays below EF's.",
    paper_reported="Abstract: ConEF 'saves 80%-90% of the extra memory in EFSGD'; read here as persistent memory "
                   f"with fp32 tables at s in {{0.1, 0.2}}; the denominator and s per table are {ABSTRACT_ONLY}.",
    metric="ConEF / fp32 EF bytes after DDP hook steps (2 gloo processes): persistent, and peak (persistent + "
           "transient of one aggregate step, measured with optimlab.metrics.peak_memory)",
    criterion=MEMORY_CRITERION, seeds=SEEDS_1, group="conef.costs",
    headline=(("max_ratio_to_ef_s0.2", "ConEF / EF persistent memory, s=0.2 (worst model)", "×"),
              ("max_peak_ratio_to_ef", "ConEF / EF peak memory (worst model and s)", "×"),
              ("min_saving_pct_s0.2_fp32", "persistent saving", "%")))
def memory_saving(ctx: RunContext) -> ClaimResult:
    res = costs(ctx)
    rows = res[0]["memory"]
    outcome = memory_verdict(rows)
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    labels = [f"{r['model']}/s={r['s']}/{r['dtype']}" for r in rows]
    numbers = {
        "ratio_to_ef": [r["ratio_to_ef"] for r in rows],
        "saving_pct": [100 * (1 - r["ratio_to_ef"]) for r in rows],
        "error_bytes": [r["error_bytes"] for r in rows],
        "predicted_error_bytes": [r["pred_error_bytes"] for r in rows],
        "ef_reference_bytes": [r["ef_reference_bytes"] for r in rows],
        "ratio_to_whole_bucket_ef": [r["error_bytes"] / r["bucket_reference_bytes"] for r in rows],
        "scratch_peak_bytes": [r["scratch_peak_bytes"] for r in rows],
    }
    for key in ("peak_ratio_to_ef", "conef_persistent_bytes", "conef_transient_bytes", "conef_peak_bytes",
                "ef_persistent_bytes", "ef_transient_bytes", "ef_peak_bytes"):
        numbers[key] = [r[key] for r in fp32]
    fp32_fp16 = {(r["model"], r["s"]): r["error_bytes"] for r in fp32}
    fp16_half = all(2 * r["error_bytes"] == fp32_fp16[(r["model"], r["s"])] for r in rows if r["dtype"] == "float16")
    same = all(a["error_bytes"] == b["error_bytes"] for a, b in zip(rows, res[1]["memory"]))
    pt = res[0]["bytes"]["pytorch_powersgd2"]["persistent_bytes"]
    ours_rb = next(r for r in rows if r["model"] == "digits_mlp" and r["s"] == 0.2 and r["dtype"] == "float32")
    summary = {
        "max_ratio_to_ef_s0.2": max(r["ratio_to_ef"] for r in fp32 if r["s"] == 0.2),
        "max_peak_ratio_to_ef": max_nan(numbers["peak_ratio_to_ef"]),
        "min_saving_pct_s0.2_fp32": min(100 * (1 - r["ratio_to_ef"]) for r in rows
                                        if r["s"] == 0.2 and r["dtype"] == "float32"),
        "fp16_exactly_half": float(fp16_half), "processes_hold_same_bytes": float(same),
        "measured_equals_predicted": float(outcome.details["predicted_value"] == 0),
        "pytorch_powersgd_state_bytes": pt,
        "conef_s0.2_over_pytorch_powersgd_state": ours_rb["error_bytes"] / pt,
        "powersgd2+conef_over_pytorch_powersgd_state": res[0]["bytes"]["powersgd2+conef"]["persistent_bytes"] / pt,
        "max_scratch_peak_bytes": max(r["scratch_peak_bytes"] for r in rows),
    }
    for r in fp32:
        summary[f"peak_ratio_to_ef_{r['model']}_s{r['s']}"] = r["peak_ratio_to_ef"]
    fig = plots.bar_figure(labels, numbers["ratio_to_ef"], [r["s"] + FLOOR_SLACK for r in rows],
                           "ConEF bytes / fp32 EF bytes (dash: s+0.005)", "conef.memory_saving")
    peaks = "; ".join(f"{r['model']}/s={r['s']}: persistent {r['ratio_to_ef']:.3f}, peak {r['peak_ratio_to_ef']:.3f} "
                      f"(ConEF {r['conef_persistent_bytes']} + {r['conef_transient_bytes']} B, EF "
                      f"{r['ef_persistent_bytes']} + {r['ef_transient_bytes']} B)" for r in fp32)
    notes = (f"Configurations, in order: {', '.join(labels)}. Q = random block 10%, lambda = 0.1, start_iter "
             f"{_start_iter(ctx)}; persistent bytes measured on the tensors held by each process after the steps "
             f"(both processes equal: {same}; fp16 tables exactly half: {fp16_half}; fp16 tables are reported apart, "
             "never part of the 80-90%). ConEF / EF, persistent and peak, fp32 tables: " + peaks + ". Peak_X = "
             "persistent_X + (peak of one aggregate step with X - the same step with no memory), both measured with "
             "optimlab.metrics.peak_memory on the same gradients (tensor storages), ConEF at its default row "
             "chunking. scratch_peak_bytes is the hook's own estimate from the buffer sizes it allocates, reported "
             "beside and not gated. The persistent part holds almost by construction (W = floor(s m)); the peak "
             "part and conef.accuracy_vs_sgd are the substantive tests. The full-scale GPU run was not run. "
             + NOTES_PAPER)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary, figure=fig, notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# Claim 2: accuracy
# ----------------------------------------------------------------------------------------------------------------
# Criterion fixed before running: median ConEF test accuracy >= median SGD - 1.5 points and
# >= median EF - 1.5 points (1.5 ≈ 2 binomial SE at 97% on 450 test images); inconclusive if the no-memory control
# scores above median SGD - 2.0 (the compression is then too mild to discriminate). A diverged run's accuracy is NaN
# and ranks below every number in a median.
MARGIN = 1.5
CONTROL_GAP = 2.0
ACCURACY_CRITERION = Gate(
    AtLeast(CONTROL_GAP, what="median SGD − median no-memory test accuracy", unit="pt"),
    AllChecks(vs_sgd=AtLeast(-MARGIN, what="median ConEF − median SGD test accuracy", unit="pt"),
              vs_ef=AtLeast(-MARGIN, what="median ConEF − median EF test accuracy", unit="pt")),
    why="the biased no-memory control must lose ≥ 2 points to SGD, else the compression is too mild to tell "
        "error feedback from none",
)


def _gap(a: float, b: float) -> float:
    """a − b with a NaN median read as −inf (diverged): NaN only when both diverged."""
    lo = lambda v: -math.inf if math.isnan(v) else v
    return lo(a) - lo(b)


def accuracy_verdict(acc: Mapping[str, Sequence[float]]) -> Outcome:
    """:data:`ACCURACY_CRITERION` on per-seed test accuracies ``{"sgd": [...], "ef": [...], "conef": [...],
    "none": [...]}`` (NaN for a diverged run)."""
    med = {m: median_nan_low(acc[m]) for m in ACCURACY_METHODS}
    gaps = {"vs_sgd": _gap(med["conef"], med["sgd"]), "vs_ef": _gap(med["conef"], med["ef"])}
    out = ACCURACY_CRITERION.evaluate(_gap(med["sgd"], med["none"]), gaps)
    return Outcome(out.verdict, {**{f"median_{m}": v for m, v in med.items()}, **out.details}, out.reason)


@register_claim(
    id="conef.accuracy_vs_sgd", paper=PAPER,
    statement="ConEF trains with almost no loss of test accuracy against uncompressed SGD (abstract).",
    paper_reported=f"Abstract: 'almost no loss on test performance'; per-table accuracies not retrieved "
                   f"({ABSTRACT_ONLY}). The digits MLP is this project's proxy, not the paper's set-up.",
    metric="test accuracy (%) of a digits MLP after 30 epochs, 2 gloo workers, random-block 10% compression",
    criterion=ACCURACY_CRITERION, seeds={"smoke": 1, "quick": 3, "full": 5},
    headline=(("median_conef", "ConEF test accuracy", "%"), ("median_sgd", "SGD", "%"), ("median_ef", "EF", "%")))
def accuracy_vs_sgd(ctx: RunContext) -> ClaimResult:
    epochs = 1 if ctx.scale == "smoke" else 30  # ConEF converges slowly: 1.5 pt behind at 20
    ctx.progress(f"spawning 2 gloo workers: 4 methods x {len(ctx.seeds)} seeds x {epochs} epochs")
    res = run_local(accuracy_worker, world_size=WORKERS, backend="gloo",
                    args=(list(ctx.seeds), epochs, _start_iter(ctx)), timeout=300 if ctx.scale == "smoke" else 900)
    r0 = res[0]
    numbers = {f"{m}_acc": [r0[f"{m}/{s}"]["acc"] for s in ctx.seeds] for m in ACCURACY_METHODS}
    outcome = accuracy_verdict({m: numbers[f"{m}_acc"] for m in ACCURACY_METHODS})
    med = {m: outcome.details[f"median_{m}"] for m in ACCURACY_METHODS}
    same = all(r0[k]["acc"] == res[1][k]["acc"] or (math.isnan(r0[k]["acc"]) and math.isnan(res[1][k]["acc"]))
               for k in r0)
    diverged = [k for k, v in r0.items() if v["diverged"]]
    summary = {f"median_{m}": med[m] for m in ACCURACY_METHODS}
    summary.update(conef_minus_sgd=med["conef"] - med["sgd"], conef_minus_ef=med["conef"] - med["ef"],
                   none_minus_sgd=med["none"] - med["sgd"], diverged_runs=len(diverged))
    fig = plots.accuracy_figure(numbers, ACCURACY_METHODS, ctx.seeds,
                                {m: [r0[f"{m}/{s}"]["curve"] for s in ctx.seeds] for m in ACCURACY_METHODS})
    notes = ("Methods: plain DDP all-reduce (SGD); random block 10% with full EF (fp32); with ConEF (s=0.2, "
             "lambda=0.1, incremental); with no memory (the biased control). SGD lr 0.3, momentum 0, 32 per worker, "
             f"start_iter {_start_iter(ctx)}. Both processes ended with identical accuracies: {same}. Diverged runs "
             f"(accuracy NaN, ranked lowest in the medians): {', '.join(diverged) or 'none'}. Momentum-0.9 and the "
             "full-scale sweep were not run. " + NOTES_PAPER)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary, figure=fig, notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# Claim 3: bytes per step
# ----------------------------------------------------------------------------------------------------------------
# Criterion fixed before running: the payload of every step after warm-up equals the analytic
# counts exactly: random block Σ⌊0.1 d_t⌋ + vectors (8,447 + 522 = 8,969 on the digits MLP) for EF and ConEF alike,
# PowerSGD rank 2 Σ(n+m)·2 + uncompressed = 2,718 and the same for PyTorch's powerSGD_hook (counted, and from its
# compression_stats); the hook's own report equals the count.
def _off(what: str) -> AtMost:
    return AtMost(0, what=f"the largest |{what}| over the steps after warm-up", unit="elements")


BYTES_CRITERION = AllChecks(
    randomblock_ef=_off("random block + EF elements per step − analytic count"),
    randomblock_conef=_off("random block + ConEF elements per step − analytic count"),
    powersgd2_ef=_off("our PowerSGD rank 2 + EF elements per step − analytic count"),
    pytorch_powersgd2_counted=_off("PyTorch powerSGD_hook rank 2 elements per step − analytic count"),
    pytorch_powersgd2_stats=AtMost(0, what="|PyTorch compression_stats elements per step − analytic count|",
                                   unit="elements"),
    report_matches_count=AtMost(0, what="|ConEF hook's comm_report payload − counted payload|", unit="elements"),
)


def bytes_verdict(counted: Mapping[str, Sequence[int]], expected_randomblock: int, expected_powersgd: int,
                  pytorch_stats_per_step: float, conef_report_numel: int) -> Outcome:
    """:data:`BYTES_CRITERION`; ``counted[name]`` holds the elements handed to collectives at every step after
    warm-up, for ``randomblock+ef``, ``randomblock+conef``, ``powersgd2+ef`` and ``pytorch_powersgd2``."""
    def worst(name, expected):
        return max_nan([abs(c - expected) for c in counted[name]])

    return BYTES_CRITERION.evaluate(
        randomblock_ef=worst("randomblock+ef", expected_randomblock),
        randomblock_conef=worst("randomblock+conef", expected_randomblock),
        powersgd2_ef=worst("powersgd2+ef", expected_powersgd),
        pytorch_powersgd2_counted=worst("pytorch_powersgd2", expected_powersgd),
        pytorch_powersgd2_stats=abs(pytorch_stats_per_step - expected_powersgd),
        report_matches_count=abs(conef_report_numel - counted["randomblock+conef"][-1]),
    )


@register_claim(
    id="conef.bytes_per_step", paper=PAPER,
    statement="ConEF communicates through biased, all-reducible compression: one all-reduce of the compressed "
              "payload per step, the same payload as EF.",
    paper_reported="no number in the paper (derived here: analytic payload counts from the parameter shapes)",
    metric="elements handed to all_reduce/all_gather per step (counted in the 2 gloo workers)",
    criterion=BYTES_CRITERION, seeds=SEEDS_1, group="conef.costs",
    headline=(("randomblock_numel", "random-block payload per step", "elements"),
              ("randomblock_fraction_of_dense", "fraction of dense", ""),
              ("powersgd2_numel", "PowerSGD rank 2 (PyTorch: same)", "elements")))
def bytes_per_step(ctx: RunContext) -> ClaimResult:
    res = costs(ctx)
    b = res[0]["bytes"]
    warm = _start_iter(ctx)
    rb_expected, ps_expected = analytic_counts(digits_mlp(0))
    counted = {k: [s[0] for s in v["per_step"][warm:]] for k, v in b.items()}
    outcome = bytes_verdict(counted, rb_expected, ps_expected, b["pytorch_powersgd2"]["stats_after_per_step"],
                            b["randomblock+conef"]["report_numel"])
    last = {k: v["per_step"][-1] for k, v in b.items()}
    names = list(b)
    numbers = {"payload_numel_per_step": [last[k][0] for k in names],
               "payload_bytes_per_step": [last[k][1] for k in names],
               "collectives_per_step": [last[k][2] for k in names],
               "analytic": [rb_expected, ps_expected]}
    dense = sum(p.numel() for p in digits_mlp(0).parameters())
    summary = {"randomblock_numel": last["randomblock+conef"][0], "randomblock_expected": rb_expected,
               "randomblock_fraction_of_dense": last["randomblock+conef"][0] / dense,
               "powersgd2_numel": last["powersgd2+ef"][0], "pytorch_powersgd2_numel": last["pytorch_powersgd2"][0],
               "powersgd2_expected": ps_expected, "allreduce_numel": last["allreduce_hook"][0],
               "conef_wire_bytes_ring_N2": b["randomblock+conef"]["wire_bytes"],
               "steps_checked": len(counted["randomblock+conef"])}
    fig = plots.bar_figure(names, numbers["payload_numel_per_step"], None, "elements handed to collectives per step",
                           "conef.bytes_per_step (digits MLP, after warm-up)", logy=True)
    notes = (f"Order: {', '.join(names)}. Every step from {warm} (the end of warm-up) to the last is checked; the "
             "numbers are those of the last step. Wire bytes per worker for a ring all-reduce are 2(N-1)/N x payload "
             "bytes; all-gather compressors (top-k, sign, QSGD) would send (N-1) x payload. " + NOTES_PAPER)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary, figure=fig, notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# Claim 4: speedup (a model)
# ----------------------------------------------------------------------------------------------------------------
# The model, fixed before running: step = compute + hook + 2(N-1)/N · bytes / B + 50 µs · collectives, for
# N = 8 and B in {1, 10, 100} Gb/s (our choices, not the paper's set-up), compute and hook timed on this CPU.
# Inconclusive by construction: the paper's 1.3x-5x is a measurement on real clusters, and this is a model
# (full scale: >= 1.3x wall-clock against allreduce_hook on >= 2 GPUs or links of <= 10 Gb/s).
N_MODEL = 8
BANDWIDTHS_GBPS = (1.0, 10.0, 100.0)
LATENCY_S = 50e-6
SPEEDUP_CRITERION = Gate(
    AtLeast(1, what="the number of clusters measured (epoch wall-clock on >= 2 GPUs with NCCL, or links of "
                    "<= 10 Gb/s)"),
    AtLeast(1.3, what="the speedup of ConEF over all-reduce SGD", unit="×"),
    why="the paper's 1.3x-5x is a cluster measurement; on CPU the step time is only modelled",
)


def speedup_verdict(clusters_measured: int, speedup: float) -> Outcome:
    """:data:`SPEEDUP_CRITERION`: inconclusive unless a cluster was measured (never, at smoke or quick scale)."""
    return SPEEDUP_CRITERION.evaluate(clusters_measured, speedup)


@register_claim(
    id="conef.speedup", paper=PAPER,
    statement="ConEF achieves a 1.3x-5x speedup over SGD, depending on bandwidth (abstract).",
    paper_reported=f"Abstract: '1.3x-5x speedup of SGD'; GPUs, interconnect and task not retrieved ({ABSTRACT_ONLY}).",
    metric="modeled step-time ratio SGD / ConEF at N=8 from measured compute and hook times",
    criterion=SPEEDUP_CRITERION, seeds=SEEDS_1, group="conef.costs",
    headline=(("digits_mlp_conef_speedup_10Gbps", "modelled ConEF speedup at 10 Gb/s, digits MLP", "×"),
              ("digits_mlp_conef_speedup_100Gbps", "at 100 Gb/s", "×"),
              ("synthetic_mlp_conef_speedup_10Gbps", "1.6M-parameter MLP at 10 Gb/s", "×")))
def speedup(ctx: RunContext) -> ClaimResult:
    timing = costs(ctx)[0]["timing"]
    numbers: dict[str, list[float]] = {}
    summary: dict[str, float] = {}
    slowdowns: list[str] = []
    modelled: list[str] = []
    hooks: list[str] = []
    for model_name, t in timing.items():
        sec = t["seconds"]
        for method in ("ef", "conef"):
            sp = []
            for bw in BANDWIDTHS_GBPS:
                base = modeled_step(sec["compute"], sec["sgd"], t["dense_bytes"], 1, N_MODEL, bw, LATENCY_S)
                comp = modeled_step(sec["compute"], sec[method], t["compressed_bytes"], t["collectives"], N_MODEL, bw,
                                    LATENCY_S)
                sp.append(base / comp)
            numbers[f"{model_name}_{method}_speedup"] = sp
        for k, v in sec.items():
            summary[f"{model_name}_{k}_ms"] = 1e3 * v
        for method in ("ef", "conef"):
            for bw, sp in zip(BANDWIDTHS_GBPS, numbers[f"{model_name}_{method}_speedup"]):
                summary[f"{model_name}_{method}_speedup_{bw:g}Gbps"] = sp
                modelled.append(f"{model_name} {method.upper()} at {bw:g} Gb/s: {sp:.2f}x"
                                + (" (a SLOWDOWN predicted by the model itself)" if sp < 1 else ""))
                if sp < 1 and method == "conef":
                    slowdowns.append(f"{model_name} at {bw:g} Gb/s ({sp:.2f})")
        summary[f"{model_name}_conef_hook_over_ef_hook"] = sec["conef"] / sec["ef"]
        summary[f"{model_name}_conef_hook_over_compute"] = sec["conef"] / sec["compute"]
        hooks.append(f"{model_name}: ConEF hook {1e3 * sec['conef']:.2f} ms = {sec['conef'] / sec['ef']:.1f}x EF's "
                     f"({1e3 * sec['ef']:.2f} ms) and {sec['conef'] / sec['compute']:.2f}x the compute "
                     f"({1e3 * sec['compute']:.2f} ms)")
    outcome = speedup_verdict(0, summary.get("digits_mlp_conef_speedup_10Gbps", math.nan))
    notes = ("A model, not a measurement of a cluster: compute = forward+backward of one worker's batch of 32, hook = "
             "the hook's own work on one bucket (compensate, compress, pack, decode, memory update) with the "
             "collective replaced by the identity, on this CPU; sgd's hook time is the dense path of the same code "
             "(allreduce_hook's in-place division). Payload bytes from the hook's own report (random block 10%). "
             f"N=8 and B in {{1, 10, 100}} Gb/s are this project's choices, not the paper's set-up. Every modelled "
             f"speedup over all-reduce SGD: {'; '.join(modelled)}. ConEF slowdowns (below 1x, predicted by the "
             f"model itself): {', '.join(slowdowns) or 'none'}. Hook times: {'; '.join(hooks)}. " + NOTES_PAPER)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary,
                      figure=plots.speedup_figure(numbers, BANDWIDTHS_GBPS), notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# Claim 5: contraction of the count-sketch error compressor
# ----------------------------------------------------------------------------------------------------------------
# Criterion fixed before running. The premise is our derivation (fixed hash, inputs with i.i.d. zero-mean entries),
# not the paper's: E‖λSᵀSx − x‖²/E‖x‖² = (1−λ)² + λ²κ, κ = Σ_b c_b(c_b−1)/m from the actual bucket counts, which
# is below 1 exactly where λ < 2/(1+κ). (a) The measured factor is within 2% (relative) of the formula in every cell
# (project tolerance, fixed before any run because 2,000 Gaussian rows give a sampling error far below it; a
# prototype's largest error was 0.14%). (b) The factor is below 1 in every cell the formula predicts contractive and
# above 1 in every cell it predicts expansive; a cell predicted within 2% of 1 (the same tolerance) is judged by (a)
# only, since its side of 1 is within the sampling error. Cells predicted non-contractive are not failures.
REL_TOL = 0.02
SKETCH_CRITERION = AllChecks(
    formula=AtMost(REL_TOL, what="the largest relative error of the measured factor against (1−λ)² + λ²κ over "
                                 "the cells (m in {64, 512, 4096}, s in {0.05, 0.1, 0.2, 0.5}, λ in {0.1, auto})"),
    contractive=AtMost(0, what="the number of cells predicted contractive (λ < 2/(1+κ), factor below 1 − 2%) whose "
                               "measured factor is ≥ 1"),
    expansive=AtMost(0, what="the number of cells predicted expansive (λ > 2/(1+κ), factor above 1 + 2%) whose "
                             "measured factor is ≤ 1"),
)


def sketch_verdict(measured: Sequence[float], predicted: Sequence[float]) -> Outcome:
    """:data:`SKETCH_CRITERION` on the measured and predicted factors of every cell ((1−λ)² + λ²κ < 1 iff
    λ < 2/(1+κ), so the predicted factor tells which side of the bound a cell lies on)."""
    rel = [abs(f - p) / p for f, p in zip(measured, predicted)]
    if any(math.isnan(v) for v in rel):  # a NaN factor: every check is inconclusive
        return SKETCH_CRITERION.evaluate(formula=math.nan, contractive=math.nan, expansive=math.nan)
    return SKETCH_CRITERION.evaluate(
        formula=max(rel),
        contractive=sum(f >= 1 for f, p in zip(measured, predicted) if p < 1 - REL_TOL),
        expansive=sum(f <= 1 for f, p in zip(measured, predicted) if p > 1 + REL_TOL))


@register_claim(
    id="conef.sketch_contraction", paper=PAPER,
    statement="The scaled count sketch used as ConEF's error compressor contracts on average exactly where "
              "lambda < 2/(1+kappa): for a fixed hash and inputs with i.i.d. zero-mean entries, "
              "E||lambda S^T S x - x||^2 / E||x||^2 = (1-lambda)^2 + lambda^2 kappa (premise derived here; the "
              "paper's statement is UNVERIFIED; no contraction holds for every x).",
    paper_reported="no number in the paper (derived here: the expected contraction factor of a fixed hash)",
    metric="measured ||lambda S^T S x - x||^2 / ||x||^2 over rows of Gaussian x, fixed fmix32 hash",
    criterion=SKETCH_CRITERION, seeds=SEEDS_1,
    headline=(("max_relative_error", "largest relative error against the formula", ""),
              ("cells_disagreeing", "cells on the wrong side of 1", ""),
              ("cells_predicted_not_contractive", "cells the formula predicts non-contractive", "")))
def sketch_contraction(ctx: RunContext) -> ClaimResult:
    smoke = ctx.scale == "smoke"
    rows = 200 if smoke else 2000
    generator = torch.Generator().manual_seed(ctx.seeds[0] if ctx.seeds else 0)
    cells, measured, predicted, kappas = contraction_cells((64, 512) if smoke else (64, 512, 4096),
                                                           (0.05, 0.1, 0.2, 0.5), rows, generator)
    outcome = sketch_verdict(measured, predicted)
    rel = [abs(f - p) / p for f, p in zip(measured, predicted)]
    numbers = {"measured": measured, "predicted": predicted, "relative_error": rel, "kappa": kappas,
               "bound_2_over_1_plus_kappa": [2 / (1 + k) for k in kappas]}
    i = cells.index("m=512/s=0.2/lam=0.1") if "m=512/s=0.2/lam=0.1" in cells else 0
    above = [c for c, f in zip(cells, measured) if f >= 1]
    predicted_above = [c for c, p in zip(cells, predicted) if p >= 1]
    summary = {"max_relative_error": max_nan(rel), "max_factor": max_nan(measured),
               "cells_not_contractive": len(above), "cells_predicted_not_contractive": len(predicted_above),
               "cells_disagreeing": outcome.details["contractive_value"] + outcome.details["expansive_value"],
               "factor_m512_s0.2_lam0.1": measured[i], "predicted_m512_s0.2_lam0.1": predicted[i]}
    notes = (f"Cells with a measured factor >= 1: {', '.join(above) or 'none'}; cells the formula predicts "
             f"non-contractive (lambda >= 2/(1+kappa)): {', '.join(predicted_above) or 'none'}. These are the "
             "formula's own prediction, not failures of the claim. 'auto' cells use ConEFMemory(lam='auto').lam_for, "
             f"min(1/(1+kappa), 2/max_b c_b). Cells in order: {', '.join(cells)}; {rows} Gaussian rows per m "
             "(float64). The factor holds on average over x with i.i.d. zero-mean entries: for a fixed hash, any x "
             "orthogonal to the signs within each bucket is erased (delta = 0 at worst). " + NOTES_PAPER)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary,
                      figure=plots.contraction_figure(predicted, measured), notes=notes)
