"""Claims of Zhang, Li, Giannakis, "RefLoRA: Refactored Low-Rank Adaptation for Efficient Fine-Tuning of Large
Models" (NeurIPS 2025, arXiv:2505.18877), in PEFT letters (ΔW = s·BA; the paper's A is our B, its B our Aᵀ).

What was checked: the authors' code (github.com/zhangyilang/RefLoRA: matrix mode as a pre-step hook, the scalar mode's
moment rescaling, warm-up 100) and the paper's abstract. UNVERIFIED: the theorem statements (optimal metric, Theorem
3; consistency, Theorem 6) rest on a secondary summary of arXiv v3; the MF figure's set-up and number; the model and
batch of the overhead figure. Criteria (with their sources) are in :mod:`optimlab.experiments._lora_verdicts`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from optimlab.bench.lora import overhead_models, time_methods
from optimlab.evidence import ClaimResult, RunContext, register_claim
from optimlab.experiments._fixtures import torch_threads
from optimlab.experiments._lora_exact import consistency_trial, flat_pair, iterations_to, mf_problem, mf_run
from optimlab.experiments._lora_finetune import curves_figure, shared_runs
from optimlab.experiments._lora_tasks import loss_of, median, teacher_student, train
from optimlab.experiments._lora_verdicts import CONSISTENT, FLATTER, MF, OVERHEAD, REFLORA_FINETUNE
from optimlab.metrics.hessian import hvp, top_eigenvalues_from_hvp

PAPER = "Zhang, Li, Giannakis, NeurIPS 2025, arXiv:2505.18877"
NOTE = ("PEFT letters: Delta W = s B A, A r x d_in, B d_out x r (the paper's A is our B, its B our A^T). "
        "UNVERIFIED: the theorem statements rest on a secondary summary of arXiv v3.")


def _figure(panels: dict[str, dict[str, list[float]]], ylabel: str, logy: bool = True):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for i, (name, ys) in enumerate(curves.items()):
            ax.plot(range(len(ys)), ys, label=name, color=f"C{i % 10}")
        if logy:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration / step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------- claim 4
@register_claim(
    id="reflora.consistent_balanced", paper=PAPER, criterion=CONSISTENT, seeds={"smoke": 1, "quick": 1, "full": 1},
    statement="RefLoRA's refactoring balances the factors (A'A'^T = B'^T B' = diag sigma(BA), energy 2||BA||_*, the "
    "least over equivalent factorisations) and its step depends on Delta W = BA only (consistency), matching the "
    "closed form Delta W+ = Delta W - eta[(Delta W Delta W^T)^1/2 G + G(Delta W^T Delta W)^1/2] + eta^2 G Delta W^T G; "
    "RefLoRA-S keeps BA and equalises the norms.",
    metric="float64, r = 8, d_in = 64, d_out = 48, SGD lr 1e-3, random G and P (cond 1e3); largest deviations over "
    "20 trials (2 at smoke)",
    paper_reported="exact statements (Theorem 3, optimal S; Theorem 6, consistency; from a secondary summary); no "
    "number in the paper (derived here)",
    headline=(("p_invariance_value", "max P-invariance deviation", ""),
              ("closed_form_value", "max closed-form deviation", ""),
              ("balance_value", "max Gram imbalance after refactor", "")),
)
def consistent_balanced(ctx: RunContext) -> ClaimResult:
    """Claim 4: exact identities; thresholds and sources at :data:`CONSISTENT`."""
    trials = 2 if ctx.scale == "smoke" else 20
    numbers: dict[str, list[float]] = {}
    with torch_threads(1):
        for k in range(trials):
            ctx.progress(f"trial {k}")
            for key, value in consistency_trial(1000 * ctx.seeds[0] + k).items():
                numbers.setdefault(key, []).append(value)
    inputs = {k: (min(v) if k == "plain_deviation" else max(v)) for k, v in numbers.items()}
    return ctx.result(verdict=CONSISTENT.evaluate(**inputs), numbers=numbers,
                      summary={f"{k} (worst)": v for k, v in inputs.items()},
                      notes=[NOTE, f"{trials} trials; each check is taken at its worst trial. 'energy_minimal' is "
                             "the largest relative excess of the balanced energy over 5 random equivalent pairs per "
                             "trial (negative: the balanced pair is lower)."])


# ------------------------------------------------------------------------------------------- claim 5
def _top_eig(A: torch.Tensor, B: torch.Tensor, task, seed: int) -> float:
    from optimlab.experiments._lora_tasks import lora_layer

    layer = lora_layer(task, seed, "peft")
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    with torch.no_grad():
        a.copy_(A)
        b.copy_(B)

    def loss():
        return loss_of(layer, task.x, task.t)

    def mv(v):
        va, vb = v[:a.numel()].view_as(a), v[a.numel():].view_as(b)
        return torch.cat([h.reshape(-1) for h in hvp(loss, [a, b], [va.float(), vb.float()])]).double()

    res = top_eigenvalues_from_hvp(mv, a.numel() + b.numel(), k=1, method="lanczos", tol=1e-4, max_iter=100,
                                   generator=seed)
    return float(res.values[0])


@register_claim(
    id="reflora.flatter", paper=PAPER, criterion=FLATTER, seeds={"smoke": 2, "quick": 3, "full": 5},
    statement="RefLoRA gives a flatter loss landscape: (a) at a zero-residual point the balanced pair's top Hessian "
    "eigenvalue in (A, B) is 2 s^2 sigma_1(BA), never above the imbalanced pair's; (b) training with RefLoRA-S ends "
    "at a smaller top eigenvalue than LoRA at matched training loss.",
    metric="(a) 10 imbalanced pairs 20x4x16, exact HVPs + Lanczos; (b) aligned teacher-student, lr 1e-2, top "
    "eigenvalue of the full-batch loss in (A, B) at each method's first checkpoint (every 20 steps) whose training "
    "loss is <= the larger of the two final losses",
    paper_reported="no number in the paper (derived here; the lambda_top formula is ours); the paper states the "
    "flatter landscape qualitatively",
    headline=(("training_median_diff", "median LoRA - RefLoRA-S lambda_top", ""),
              ("exact_formula_value", "max |lambda_bal - 2 sigma_1|/(2 sigma_1)", "")),
)
def flatter(ctx: RunContext) -> ClaimResult:
    """Claim 5; thresholds and sources at :data:`FLATTER`. RefLoRA-S only: matrix mode never balances the stored pair."""
    steps = {"smoke": 40, "quick": 600, "full": 600}[ctx.scale]
    n_pairs = 2 if ctx.scale == "smoke" else 10
    numbers: dict[str, list[float]] = {}
    curves: dict[str, list[float]] = {}
    with torch_threads(1):
        for k in range(n_pairs):
            res = flat_pair(k)
            numbers.setdefault("exact lambda before", []).append(res["before"])
            numbers.setdefault("exact lambda after", []).append(res["after"])
            numbers.setdefault("exact 2 sigma_1", []).append(res["two_sigma1"])
        for seed in ctx.seeds:
            ctx.progress(f"teacher-student seed {seed}")
            task = teacher_student(seed, "aligned", steps, d=64 if ctx.scale == "smoke" else 256)
            runs = {m: train(task, seed, m, 1e-2, checkpoint_every=20 if steps >= 20 else 1, init="peft")
                    for m in ("lora", "reflora-s")}
            level = max(runs["lora"].train_loss, runs["reflora-s"].train_loss)
            for m, run in runs.items():
                step, loss, A, B = next((c for c in run.checkpoints if c[1] <= level), run.checkpoints[-1])
                lam = _top_eig(A, B, task, seed)
                numbers.setdefault(f"{m} lambda_top", []).append(lam)
                numbers.setdefault(f"{m} matched step", []).append(step)
                numbers.setdefault(f"{m} matched train loss", []).append(loss)
                if seed == ctx.seeds[0]:
                    curves[m] = [c[1] for c in run.checkpoints]
    before, after, two = (numbers[k] for k in ("exact lambda before", "exact lambda after", "exact 2 sigma_1"))
    diffs = [a - b for a, b in zip(numbers["lora lambda_top"], numbers["reflora-s lambda_top"])]
    verdict = FLATTER.evaluate(exact_not_higher=max(a / b - 1 for a, b in zip(after, before)),
                               exact_formula=max(abs(a - t) / t for a, t in zip(after, two)), training=diffs)
    summary = {"median lambda_top lora": median(numbers["lora lambda_top"]),
               "median lambda_top reflora-s": median(numbers["reflora-s lambda_top"]),
               "median exact ratio before/after": median(b / a for a, b in zip(after, before))}
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      figure=_figure({"full-batch training loss at checkpoints (seed 0)": curves}, "training loss"),
                      notes=[NOTE, f"(b) {steps} steps, AdamW lr 1e-2, cosine; both from the PEFT init (B = 0), "
                             "RefLoRA-S warm-up 10. Reference values (project float32 runs): lambda_top 7.6-9.6 "
                             "(LoRA) vs 4.7-5.4 (RefLoRA-S) at the end of training."])


# ------------------------------------------------------------------------------------------- claim 6
@register_claim(
    id="reflora.mf_convergence", paper=PAPER, criterion=MF, seeds={"smoke": 1, "quick": 5, "full": 5},
    statement="On matrix factorisation RefLoRA's loss falls much faster than LoRA-GD's at the same step size, "
    "whatever the balance of the initial factors (its iterates depend on BA only).",
    metric="target 60x40, rank 4, singular values 10 geomspace(1, 1/20, 4); init N(0, 0.1^2), balanced or "
    "imbalanced (B x10, A /10); relative error ||BA - T||/||T||; iterations to 1e-3 (cap 3000)",
    paper_reported="MF figure (number UNVERIFIED): from loss ~1.5e3, RefLoRA reaches loss 1e-3 in ~11 (eta = 0.03) "
    "and ~37 (eta = 0.01) iterations; LoRA-GD diverges at 0.03 and barely moves at 0.01; ScaledGD run at the same "
    "eta barely moves in 100 iterations (not a tuned comparison; set-up UNVERIFIED)",
    headline=(("consistency_value", "RefLoRA curve gap balanced vs imbalanced", ""),
              ("speed_successes", "seeds where LoRA-GD fails or is >= 2x slower", "")),
)
def mf_convergence(ctx: RunContext) -> ClaimResult:
    """Claim 6; thresholds and sources at :data:`MF`. The reported eta grid has no held-out data (optimisation)."""
    cap = {"smoke": 300, "quick": 3000, "full": 3000}[ctx.scale]
    grid = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 0.5) if ctx.scale != "smoke" else (3e-2,)
    grid_seeds = ctx.seeds[:2] if ctx.scale == "quick" else ctx.seeds
    numbers: dict[str, list[float]] = {}
    panels: dict[str, dict[str, list[float]]] = {}
    gaps, succ, fail = [], 0, 0
    with torch_threads(1):
        for seed in ctx.seeds:
            ctx.progress(f"MF seed {seed}")
            T, A0, B0 = mf_problem(seed)
            bal = mf_run(T, A0, B0, "reflora", 0.03, cap, min_iter=min(500, cap))
            imb = mf_run(T, A0 / 10, B0 * 10, "reflora", 0.03, cap, min_iter=min(500, cap))
            n = min(len(bal), len(imb), 501)
            gaps.append(max(abs(x - y) / y for x, y in zip(bal[:n], imb[:n])))
            gd = mf_run(T, A0 / 10, B0 * 10, "gd", 0.03, cap)
            n_ref, n_gd = iterations_to(imb), iterations_to(gd)
            numbers.setdefault("reflora iterations (imbalanced, eta 0.03)", []).append(n_ref)
            numbers.setdefault("gd iterations (imbalanced, eta 0.03)", []).append(n_gd)
            fail += int(math.isfinite(n_gd) and n_gd <= n_ref)
            succ += int(math.isfinite(n_ref) and (math.isinf(n_gd) or n_gd >= 2 * n_ref))
            if seed == ctx.seeds[0]:
                panels["eta = 0.03, imbalanced init"] = {"RefLoRA (balanced init)": bal, "RefLoRA (imbalanced)": imb,
                                                         "LoRA-GD (imbalanced)": gd}
            if seed in grid_seeds:
                for method in ("reflora", "gd", "scaledgd"):
                    best = min(iterations_to(mf_run(T, A0, B0, method, lr, cap)) for lr in grid)
                    numbers.setdefault(f"{method} best-eta iterations (balanced)", []).append(best)
    numbers["reflora curve gap"] = gaps
    verdict = MF.evaluate(consistency=max(gaps), speed=(succ, fail, len(ctx.seeds)))
    summary = {f"median {k}": median(v) for k, v in numbers.items() if "iterations" in k}
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      figure=_figure(panels, "||BA - T||/||T||"),
                      notes=[NOTE, f"cap {cap} iterations (inf: never reached 1e-3). Reported without a verdict: each "
                             f"method's best eta in {grid} from the balanced init ({len(grid_seeds)} seeds). "
                             "RefLoRA's MF advantage here is robustness to imbalance: tuned GD and ScaledGD are close to "
                             "or faster than it from a balanced start (reference runs: ScaledGD 17 iterations at "
                             "eta 0.3, RefLoRA 399-540 at 0.03)."])


# ------------------------------------------------------------------------------------------- claim 7
@register_claim(
    id="reflora.finetune", paper=PAPER, criterion=REFLORA_FINETUNE, group="lora_finetune",
    seeds={"smoke": 2, "quick": 3, "full": 5},
    statement="RefLoRA (and RefLoRA-S) fine-tune faster and more stably than LoRA and reach a better model.",
    metric="held-out (test split) cross-entropy of MiniLM + LoRA on binary drug reviews: mean over the evaluation "
    "points (speed) and final; lr per method from the scale's grid chosen on a validation split of the training set",
    paper_reported="Table 2 (GLUE, DeBERTaV3-base, mean of 5 runs): RefLoRA 89.52, RefLoRA-S 89.19, LoRA 88.50; "
    "Table 3 (commonsense, LLaMA3-8B, r = 32): RefLoRA 85.68, RefLoRA-S 85.75 against LoRA 80.8 copied from other runs",
    headline=(("primary_median_diff", "median LoRA - RefLoRA mean test CE", "nats"),
              ("reflora_s_mean_median_diff", "median LoRA - RefLoRA-S mean test CE", "nats")),
)
def finetune(ctx: RunContext) -> ClaimResult:
    """Claim 7; thresholds and sources at :data:`REFLORA_FINETUNE`; RefLoRA-S gets its own sub-verdict (summary)."""
    with torch_threads(1):
        shared = shared_runs(ctx)
        runs = shared["runs"]
        ts: dict[str, list[float]] = {}
        steps = 60 if ctx.scale == "smoke" else 600
        for seed in ctx.seeds:
            task = teacher_student(seed, "aligned", steps, d=64 if ctx.scale == "smoke" else 256)
            for m in ("lora", "reflora", "reflora-s"):
                ts.setdefault(f"teacher-student error {m}", []).append(train(task, seed, m, 1e-2, init="peft").error)
    numbers = {f"{k} {m}": [getattr(r, k) for r in runs[m]] for m in ("lora", "reflora", "reflora-s")
               for k in ("mean", "final")}
    numbers.update(ts)

    def diffs(m, k):
        return [a - b for a, b in zip(numbers[f"{k} lora"], numbers[f"{k} {m}"])]

    verdict = REFLORA_FINETUNE.evaluate(diffs("reflora", "mean"), diffs("reflora", "final"))
    sub = REFLORA_FINETUNE.evaluate(diffs("reflora-s", "mean"), diffs("reflora-s", "final"))
    summary = {"reflora_s_verdict": sub.verdict, "reflora_s_mean_median_diff": sub.details["primary_median_diff"],
               "reflora_s_final_median_diff": sub.details["guard_median_diff"],
               **{f"median {k}": median(v) for k, v in numbers.items()},
               **{f"lr {m}": shared["lr"][m] for m in ("lora", "reflora", "reflora-s")}}
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      figure=curves_figure(shared, ("lora", "reflora", "reflora-s"), shared["backbone"].note),
                      notes=[NOTE, f"Backbone: {shared['backbone'].note}.", "RefLoRA warm-up = the LR warm-up (10% of "
                             "the steps). Teacher-student (aligned, lr 1e-2, warm-up 10) errors are reported without a "
                             "verdict (reference: small gains, 0.014-0.018 vs LoRA 0.014-0.020)."])


# ------------------------------------------------------------------------------------------- claim 8
@register_claim(
    id="reflora.overhead", paper=PAPER, criterion=OVERHEAD, seeds={"smoke": 1, "quick": 1, "full": 1},
    statement="RefLoRA costs little extra time over LoRA and RefLoRA-S almost none.",
    metric="step time (AdamW, r = 8, batch 16 x 32 tokens) on a randomly initialised MiniLM-shaped encoder (6 "
    "layers, d = 384, FFN 1536, 36 pairs), interleaved on the same batches; median ratio with a bootstrap 95% CI",
    paper_reported="overhead figure (throughput; model and batch UNVERIFIED): LoRA 2.26 it/s, RefLoRA 2.00 (1.13x "
    "time), RefLoRA-S 2.23; peak memory 8732 / 8864 / 8732 MB",
    headline=(("reflora_upper", "RefLoRA/LoRA time, upper CI", "x"),
              ("reflora_s_upper", "RefLoRA-S/LoRA time, upper CI", "x")),
)
def overhead(ctx: RunContext) -> ClaimResult:
    """Claim 8; thresholds and sources at :data:`OVERHEAD`."""
    with torch_threads(1):
        setup = overhead_models(ctx.scale, r=8)
        res = time_methods(setup, ("lora", "reflora", "reflora-s"), timed=5 if ctx.scale == "smoke" else 30)
    rng = np.random.default_rng(ctx.seeds[0])
    numbers, cis = {}, {}
    for m in ("reflora", "reflora-s"):
        ratios = np.array([a / b for a, b in zip(res.per_round[m], res.per_round["lora"])])
        boots = [float(np.median(rng.choice(ratios, len(ratios)))) for _ in range(2000)]
        cis[m] = (float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5)))
        numbers[f"{m} per-step ratio"] = ratios.tolist()
    verdict = OVERHEAD.evaluate(reflora=cis["reflora"], reflora_s=cis["reflora-s"])
    summary = {"seconds lora": res.seconds["lora"], "ratio reflora": res.ratio["reflora"],
               "ratio reflora-s": res.ratio["reflora-s"]}
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      notes=[NOTE, f"Model: {setup['note']}; one thread; {res.rounds} interleaved rounds (order "
                             "alternating) after 5 untimed steps each; the ratio is taken within each round."])


__all__ = ["consistent_balanced", "finetune", "flatter", "mf_convergence", "overhead"]
