"""Claims of Huang, Li, Dann, He, "Can RLHF be More Efficient with Imperfect Reward Models? A Policy Coverage
Perspective" (ICML 2025, arXiv:2502.19255): TPO, transfer from imperfect reward models in online RLHF.

Set-up (fixed before any run): the KL-bandit simulator of :mod:`optimlab.rlhf` (``KLBanditEnv.linear``: X = 40
prompts, Y = 24 responses, d = 8, β = 0.2, π_ref anti-aligned with r* (a = −0.8), sources of correlation ρ with
r*, outside the linear class), the ridge BT-MLE learner refit every 10 labels (π_t = π_{r̂} exactly), pairwise
Bradley–Terry labels, exact source policies π_{r^w}. Per seed every method sees the same env, prompt stream and
label uniforms (paired); every constant (UCB c = 1, null credit 0.55, optimistic γ = 1) is fixed in advance for
all methods (tuning budget zero). Generations differ by design and are reported beside every figure.
The honest baseline B* is the best of NoTransfer, Optimistic NoTransfer, RefControl (second response from π_ref)
and UniformControl, so transfer is never credited with what any second sampler gives.

What was checked (10 minutes, the authors' public annotation code of the empirical part, read only): the null
arm is credited 0.55, above the 0.5 of a policy against itself, to raise the bar for sources; arms are drawn
uniformly until the first UCB update, the UCB is refreshed every 50 prompts per process, a source play wins when
the gold-best of the K responses is one of the replaced (transfer) responses, and pairs are gold-best vs
gold-worst. The paper's PDF was not read: equation and lemma numbers, the exact early-regret term of Coro. 4.1,
which regret the paper plots, the block length and widths of the theoretical algorithm and the Table 1 numbers
(taken from the project's design notes) remain UNVERIFIED. The paper's own numbers are LM win rates, reported
beside ours in ``rlhf.sequence_dpo`` (and ``rlhf.robust_selection``); the simulator's thresholds come from the project's design notes
(a numpy prototype), never from these claims' runs (criteria in :mod:`optimlab.experiments._rlhf_verdicts`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from optimlab.evidence import ClaimResult, RunContext, register_claim
from optimlab.experiments._fixtures import torch_threads
from optimlab.experiments._rlhf_plots import misspec_figure, null_figure
from optimlab.experiments._rlhf_runs import (
    BAD,
    EARLY_T,
    HORIZON,
    METHODS,
    NOTE_THREADS,
    PAPER,
    SEEDS,
    SEEDS3,
    USUAL,
    at,
    costs,
    curves_figure,
    env_for,
    runs,
)
from optimlab.experiments._rlhf_sequence import (
    ITERATIONS,
    SEQ_METHODS,
    run_sequence,
    seq_env,
    sequence_figure,
)
from optimlab.experiments._rlhf_verdicts import (
    BSTAR,
    COMPLEX,
    EARLY,
    IDENTITY,
    MISSPEC,
    NO_NEG,
    NULL,
    ROBUST,
    SEQ,
    SEQ_BSTAR,
    complexity_verdict,
    early_verdict,
    identity_verdict,
    misspec_verdict,
    no_negative_verdict,
    null_verdict,
    robust_verdict,
    sequence_verdict,
    spearman,
)
from optimlab.rlhf import (
    KLBanditEnv,
    coverage,
    coverage_bound,
    kappa,
    kl_divergence,
    kl_optimal_logprobs,
    kl_value,
    optimal_value,
    suboptimality,
)

NO_NUMBER = "no number in the paper (derived here)"
TABLE1 = ("Table 1 (T5-small on XSum, gold RM FsfairX-LLaMA3-RM-v0.1, DPO, 3 iterations, 3 seeds, 95% CI; as "
          "summarised, UNVERIFIED against the PDF): empirical TPO's win rate, iterations 1/2/3, vs iterative DPO "
          "without transfer 52.1/53.3/54.0 %, vs the worst fixed source (ROUGE-Lsum) 53.1/54.5/53.3 %, vs the best "
          "fixed source (T5-large) 49.5/49.1/50.6 %")


def _med(v) -> float:
    return float(np.median(v))


# ------------------------------------------------------------------------------------------- claim 1
@register_claim(
    id="rlhf.subopt_identity", paper=PAPER, seeds=SEEDS, criterion=IDENTITY,
    statement="For every policy, J* − J(π) = β·KL(π‖π*) (exact), and for KL-optimal policies π_{r'} of bounded "
    "rewards and their mixtures the coverage obeys C(π*‖π) − 1 ≤ κ(e^{2R/β})(J* − J)/β (Lemma 3.1): coverage is "
    "controlled by sub-optimality.",
    metric="per seed: 400 random instances (Y in [2, 50], β in [0.05, 2], r in [0, 1] so R = 1, π a random "
    "softmax) for the identity; 200 π_{r'} instances and 200 mixtures of two for the bound; Spearman(sub-opt, C) "
    "over the 200 π_{r'} instances",
    paper_reported=NO_NUMBER + "; Lemma 3.1 is a bound, stated in the paper without a numerical check",
    headline=(("max_identity_error", "largest identity error", ""),
              ("median_spearman", "median Spearman(sub-opt, C)", ""),
              ("max_bound_ratio", "largest (C−1)/bound", "")),
)
def subopt_identity(ctx: RunContext) -> ClaimResult:
    """Claim 1 (exact property + Lemma 3.1; no method comparison)."""
    n_id, n_cov = (40, 20) if ctx.scale == "smoke" else (400, 200)
    numbers: dict[str, list[float]] = {k: [] for k in ("max identity error", "violations", "spearman",
                                                       "max (C-1)/bound", "max (C-1)/(gap/beta)")}
    with torch_threads(1):
        for seed in ctx.seeds:
            ctx.progress(f"seed {seed}")
            g = torch.Generator().manual_seed(seed)
            dt = torch.float64
            err = 0.0
            for _ in range(n_id):
                Y = int(torch.randint(2, 51, (1,), generator=g))
                beta = float(0.05 + 1.95 * torch.rand(1, generator=g))
                ref = torch.log_softmax(torch.randn(1, Y, generator=g, dtype=dt), -1)
                r = torch.rand(1, Y, generator=g, dtype=dt)
                lp = torch.log_softmax(2 * torch.randn(1, Y, generator=g, dtype=dt), -1)
                direct = optimal_value(ref, r, beta) - kl_value(lp, ref, r, beta)
                ident = beta * kl_divergence(lp, kl_optimal_logprobs(ref, r, beta)).mean()
                err = max(err, abs(float(direct - ident)), abs(float(suboptimality(lp, ref, r, beta) - direct)))
            viol, ratios, plain, sp_gap, sp_cov = 0, [], [], [], []
            for i in range(2 * n_cov):
                Y = int(torch.randint(2, 51, (1,), generator=g))
                beta = float(0.05 + 1.95 * torch.rand(1, generator=g))
                ref = torch.log_softmax(torch.randn(1, Y, generator=g, dtype=dt), -1)
                star = kl_optimal_logprobs(ref, torch.rand(1, Y, generator=g, dtype=dt), beta)
                pi = kl_optimal_logprobs(ref, torch.rand(1, Y, generator=g, dtype=dt), beta)
                if i >= n_cov:  # mixtures of two pi_{r'}
                    pi2 = kl_optimal_logprobs(ref, torch.rand(1, Y, generator=g, dtype=dt), beta)
                    w = float(torch.rand(1, generator=g))
                    pi = torch.logaddexp(pi + math.log(w), pi2 + math.log1p(-w))
                gap = float(beta * kl_divergence(pi, star).mean())
                c = float(coverage(star, pi))
                viol += int(c > coverage_bound(gap, 1.0, beta) * (1 + 1e-9) + 1e-12)
                if gap > 1e-12:
                    ratios.append((c - 1) / (kappa(2.0 / beta) * gap / beta))
                    plain.append((c - 1) / (gap / beta))
                if i < n_cov:
                    sp_gap.append(gap)
                    sp_cov.append(c)
            numbers["max identity error"].append(err)
            numbers["violations"].append(float(viol))
            numbers["spearman"].append(spearman(sp_gap, sp_cov))
            numbers["max (C-1)/bound"].append(max(ratios))
            numbers["max (C-1)/(gap/beta)"].append(max(plain))
    out = identity_verdict(max(numbers["max identity error"]), int(sum(numbers["violations"])), numbers["spearman"])
    summary = {"max_identity_error": max(numbers["max identity error"]),
               "bound_violations": int(sum(numbers["violations"])),
               "median_spearman": _med(numbers["spearman"]), "max_bound_ratio": max(numbers["max (C-1)/bound"]),
               "max_(C-1)/(gap/beta)": max(numbers["max (C-1)/(gap/beta)"])}
    return ctx.result(verdict=out, numbers=numbers, summary=summary,
                      notes=["Lemma 3.1 re-derived in optimlab.rlhf.objective (u = log(π*/π) ∈ [−2R/β, 2R/β]); "
                             "R = 1 because every reward is drawn in [0, 1].", NOTE_THREADS])


# ------------------------------------------------------------------------------------------- claim 2
@register_claim(
    id="rlhf.early_transfer", paper=PAPER, seeds=SEEDS, criterion=EARLY, group="rlhf.linear",
    statement="Early in online RLHF, TPO's policy is close to what the best source would give, without knowing "
    "which source is best, and well below no transfer; the gain survives against the honest baseline B* "
    "(including the π_ref and uniform second samplers).",
    metric="exact learner gap J* − J(π_t) at t = 50 labels (medians over seeds, paired bootstrap SE); sources "
    "ρ = (0.9, 0.5, 0, −0.5); T = 300 (quick)",
    paper_reported=NO_NUMBER + " (the statement is Coro. 4.1's qualitative early stage)",
    headline=(("tpo gap@50", "TPO gap@50", ""), ("bstar gap@50", "B* gap@50", ""),
              ("fixed_best gap@50", "Fixed-best gap@50", "")),
)
def early_transfer(ctx: RunContext) -> ClaimResult:
    """Claim 2. BlockTPO (the theoretical form) is run beside it and reported, not gated."""
    t50 = min(EARLY_T, HORIZON[ctx.scale])
    logs = runs(ctx, tuple(m for m in METHODS if m != "mixture"))
    gap50 = {m: at(rs, "learner_gap", t50) for m, rs in logs.items()}
    block = runs(ctx, ("block_tpo",), T=min(HORIZON[ctx.scale], 100 if ctx.scale != "full" else 300))
    out = early_verdict(gap50)
    meds = {f"{m} gap@50": _med(v) for m, v in gap50.items()}
    summary = {**meds, "bstar gap@50": min(meds[f"{m} gap@50"] for m in BSTAR),
               "block_tpo gap@50 (reported)": _med(at(block["block_tpo"], "learner_gap", t50)),
               **costs(logs)}
    numbers = {f"gap@50 {m}": v for m, v in gap50.items()}
    numbers["gap@50 block_tpo (reported)"] = at(block["block_tpo"], "learner_gap", t50)
    fig = curves_figure({**logs, **block}, "rlhf.early_transfer: median and 90% bootstrap band over seeds",
                        cost_note="generations per label: 2 for every method (exact source sampling); "
                        "source calls per label in the summary")
    return ctx.result(verdict=out, numbers=numbers, summary=summary, figure=fig,
                      notes=["BlockTPO (value-UCB blocks of 20, one online round per block, RPO self-candidate) "
                             "is run for 100 labels and reported, not gated.", NOTE_THREADS])


# ------------------------------------------------------------------------------------------- claim 3
@register_claim(
    id="rlhf.no_negative_transfer", paper=PAPER, seeds=SEEDS, criterion=NO_NEG, group="rlhf.linear",
    statement="TPO is no worse than standard online RLHF: with the usual sources its final gap is not above no "
    "transfer's, and when every source is bad its gap and regret stay within 10% of the honest baseline B*.",
    metric="exact learner gap at T and regret_pair at T (T = 300 quick), medians over seeds with paired bootstrap "
    "SE; bad sources ρ = (0, −0.5)",
    paper_reported=NO_NUMBER + " (the statement is Coro. 4.1's late stage and Coro. 4.5)",
    headline=(("bad tpo gap@T", "TPO gap@T, bad sources", ""), ("bad bstar gap@T", "B* gap@T, bad sources", ""),
              ("bad tpo null share", "null-arm share, bad sources", "")),
)
def no_negative_transfer(ctx: RunContext) -> ClaimResult:
    usual = runs(ctx, ("tpo", "no_transfer"))
    bad = runs(ctx, ("tpo", *BSTAR), rhos=BAD)
    gap_u = {m: at(rs, "learner_gap") for m, rs in usual.items()}
    gap_b = {m: at(rs, "learner_gap") for m, rs in bad.items()}
    reg_b = {m: at(rs, "regret_pair") for m, rs in bad.items()}
    out = no_negative_verdict(gap_u, gap_b, reg_b)
    null_share = [float(np.mean(np.array(r.history["arm"]) == len(BAD))) for r in bad["tpo"]]
    summary = {**{f"usual {m} gap@T": _med(v) for m, v in gap_u.items()},
               **{f"bad {m} gap@T": _med(v) for m, v in gap_b.items()},
               **{f"bad {m} regret": _med(v) for m, v in reg_b.items()},
               "bad bstar gap@T": min(_med(gap_b[m]) for m in BSTAR), "bad tpo null share": _med(null_share)}
    numbers = {**{f"usual gap@T {m}": v for m, v in gap_u.items()}, **{f"bad gap@T {m}": v for m, v in gap_b.items()},
               **{f"bad regret {m}": v for m, v in reg_b.items()}, "bad tpo null share": null_share}
    fig = curves_figure(bad, "rlhf.no_negative_transfer: only bad sources (rho = 0, -0.5)",
                        cost_note="generations per label: 2 for every method")
    return ctx.result(verdict=out, numbers=numbers, summary=summary, figure=fig, notes=[NOTE_THREADS])


# ------------------------------------------------------------------------------------------- claim 4
@register_claim(
    id="rlhf.robust_selection", paper=PAPER, seeds=SEEDS, criterion=ROBUST, group="rlhf.linear",
    statement="Selecting sources by win rate without prior knowledge beats committing: TPO's regret is close to "
    "the best of no transfer and the best fixed source, far below the worst fixed source and below TRL's fixed "
    "uniform mixture of reward models, and most early source plays go to the best source.",
    metric="regret_pair at T (T = 300 quick); share of source plays on the best source (smallest true gap of "
    "π_{r^w}) in rounds 1..100; reported: exact BT win rates of TPO's final policy over each comparator's final "
    "policy (the analogue of Table 1), per-third null-arm share and source win rates (Fig. 2's analogue)",
    paper_reported=TABLE1,
    headline=(("tpo regret", "TPO regret@T", ""), ("best-source share", "best-source share (1..100)", ""),
              ("win rate vs no_transfer", "TPO win rate vs NoTransfer", "")),
)
def robust_selection(ctx: RunContext) -> ClaimResult:
    logs = runs(ctx, METHODS)
    regret = {m: at(rs, "regret_pair") for m, rs in logs.items()}
    shares, thirds, win_rates = [], {}, {m: [] for m in ("no_transfer", "fixed_best", "fixed_worst", "ref")}
    for i, seed in enumerate(ctx.seeds):
        env = env_for(ctx.scale, seed)
        best = int(np.argmin(env.source_gaps))
        arms = np.array(logs["tpo"][i].history["arm"])
        wins = np.array(logs["tpo"][i].history["win"])
        early = arms[:100]
        src = early[early < len(USUAL)]
        shares.append(float(np.mean(src == best)) if src.size else math.nan)
        for k, part in enumerate(np.array_split(np.arange(len(arms)), 3)):
            thirds.setdefault(f"third {k + 1} null share", []).append(float(np.mean(arms[part] == len(USUAL))))
            for w in range(len(USUAL)):
                m = arms[part] == w
                thirds.setdefault(f"third {k + 1} win rate source {w}", []).append(
                    float(np.mean(wins[part][m])) if m.any() else math.nan)
        tpo_final = logs["tpo"][i].final_logp
        for m in win_rates:
            win_rates[m].append(env.win_rate(tpo_final, logs[m][i].final_logp))
    out = robust_verdict(regret, shares)
    summary = {**{f"{m} regret": _med(v) for m, v in regret.items()}, "best-source share": _med(shares),
               **{f"win rate vs {m}": _med(v) for m, v in win_rates.items()},
               **{k: float(np.nanmedian(v)) if np.isfinite(v).any() else math.nan for k, v in thirds.items()},
               **costs(logs)}
    numbers = {**{f"regret {m}": v for m, v in regret.items()}, "best-source share": shares,
               **{f"win rate vs {m}": v for m, v in win_rates.items()}}
    fig = curves_figure(logs, "rlhf.robust_selection: regret and gap, median and 90% bootstrap band",
                        cost_note="generations per label 2 (exact source sampling); TPO's source calls per label "
                        "in the summary")
    return ctx.result(verdict=out, numbers=numbers, summary=summary, figure=fig,
                      notes=["Win rates are exact BT win rates of TPO's final policy over each comparator's final "
                             "policy on the simulator, the analogue of the paper's Table 1 LM win rates (which "
                             "compare 3-iteration DPO runs on XSum); sizes are not comparable, signs are.",
                             NOTE_THREADS])


# ------------------------------------------------------------------------------------------- claim 5
@register_claim(
    id="rlhf.null_threshold", paper=PAPER, seeds=SEEDS, criterion=NULL, group="rlhf.linear",
    statement="The null arm's credit must sit above chance: crediting online learning 0.55 (the authors' code) "
    "gives no more regret than crediting it 0.5, where a useless source can win ties forever.",
    metric="regret_pair at T (T = 300 quick) of TPO with null credit 0.5, 0.55, 0.6 on the claim-2 environment",
    paper_reported=NO_NUMBER + " (the authors' code uses 0.55)",
    headline=(("regret null=0.55", "regret, null 0.55", ""), ("regret null=0.5", "regret, null 0.5", ""),
              ("regret null=0.6", "regret, null 0.6", "")),
)
def null_threshold(ctx: RunContext) -> ClaimResult:
    regret = {}
    for v in (0.5, 0.55, 0.6):
        regret[f"null={v:g}"] = at(runs(ctx, ("tpo",), null_score=v)["tpo"] if v != 0.55 else
                                   runs(ctx, ("tpo",))["tpo"], "regret_pair")
    out = null_verdict(regret)
    return ctx.result(verdict=out, numbers={f"regret {k}": v for k, v in regret.items()},
                      summary={f"regret {k}": _med(v) for k, v in regret.items()}, notes=[NOTE_THREADS],
                      figure=null_figure(regret))


# ------------------------------------------------------------------------------------------- claim 6
MISSPEC_RHOS = {"smoke": (1.0, 0.0), "quick": (1.0, 0.7, 0.3, 0.0, -0.5),
                "full": (1.0, 0.9, 0.7, 0.5, 0.3, 0.0, -0.5)}


@register_claim(
    id="rlhf.misspecification_sweep", paper=PAPER, seeds=SEEDS3, criterion=MISSPEC,
    statement="TPO's early benefit tracks the quality of its one source: large for a good source, none (but no "
    "harm beyond 10%) for a bad one.",
    metric="q(ρ) = median gap@50(TPO) / gap@50(B*) with one source of correlation ρ, T = 100 (quick)",
    paper_reported=NO_NUMBER,
    headline=(("q(rho=1)", "q at rho = 1", ""), ("q(rho=0)", "q at rho = 0", ""),
              ("spearman(rho, q)", "Spearman(rho, q)", "")),
)
def misspecification_sweep(ctx: RunContext) -> ClaimResult:
    rhos = MISSPEC_RHOS[ctx.scale]
    T = 60 if ctx.scale == "smoke" else 100
    gap50: dict[str, list[float]] = {}
    for rho in rhos:
        logs = runs(ctx, ("tpo", *BSTAR), rhos=(rho,), T=T, tag="one-source")
        for m, rs in logs.items():
            gap50[f"{rho:g}/{m}"] = at(rs, "learner_gap", EARLY_T)
    out = misspec_verdict(gap50, rhos)
    meds = {k: _med(v) for k, v in gap50.items()}
    qs = {f"q(rho={r:g})": meds[f"{r:g}/tpo"] / min(meds[f"{r:g}/{m}"] for m in BSTAR) for r in rhos}
    summary = {**qs, "spearman(rho, q)": spearman(rhos, list(qs.values())),
               **{f"gap@50 {k}": v for k, v in meds.items()}}
    return ctx.result(verdict=out, numbers={f"gap@50 {k}": v for k, v in gap50.items()}, summary=summary,
                      notes=[NOTE_THREADS], figure=misspec_figure(list(qs.values()), rhos))


# ------------------------------------------------------------------------------------------- claim 7
@register_claim(
    id="rlhf.sequence_dpo", paper=PAPER, seeds=SEEDS3, criterion=SEQ,
    statement="Empirical TPO with an online DPO update (Table 1's structure: iterations, best-of-n transfer, K = 8 "
    "best-vs-worst pairs, reference re-anchored per iteration) ends with a policy that beats online DPO without "
    "transfer, the π_ref second-sampler control and the worst fixed source, and ties with the best fixed source.",
    metric="exact BT win rate Σ π_a(y)π_b(y')σ(r*(y) − r*(y')) of TPO's policy over each comparator's at the end "
    "of each of 3 iterations; exact final gap; sequence env of 216 strings, 16 prompts, sources ρ = (0.9, 0.3, −0.5)",
    paper_reported=TABLE1 + "; Table 2, iteration 3 vs no transfer: IPO 55.3 %, XPO 52.2 %",
    headline=(("win rate vs no_transfer", "TPO win rate vs NoTransfer (it. 3)", ""),
              ("win rate vs fixed_worst", "vs Fixed-worst (it. 3)", ""),
              ("win rate vs fixed_best", "vs Fixed-best (it. 3, reported)", "")),
)
def sequence_dpo(ctx: RunContext) -> ClaimResult:
    """Claim 7 (the paper's Table 1 analogue); see :mod:`optimlab.experiments._rlhf_sequence` for the set-up."""
    per: dict[str, list] = {m: [] for m in SEQ_METHODS}
    envs = []
    with torch_threads(1):
        for seed in ctx.seeds:
            env = seq_env(ctx.scale, seed)
            envs.append(env)
            for m in SEQ_METHODS:
                ctx.progress(f"{m} seed {seed}")
                per[m].append(run_sequence(env, m, ctx.scale, seed))
    numbers: dict[str, list[float]] = {}
    win = {c: [] for c in ("no_transfer", "ref", "uniform", "fixed_best", "fixed_worst")}
    for i, env in enumerate(envs):
        best, worst = sorted(("fixed:0", "fixed:2"), key=lambda m: per[m][i]["gap"][-1])
        names = {"no_transfer": "no_transfer", "ref": "ref", "uniform": "uniform", "fixed_best": best,
                 "fixed_worst": worst}
        for c, m in names.items():
            for it in range(ITERATIONS):
                w = env.win_rate(per["tpo"][i]["logp"][it], per[m][i]["logp"][it])
                numbers.setdefault(f"win rate vs {c} it{it + 1}", []).append(w)
            win[c].append(numbers[f"win rate vs {c} it{ITERATIONS}"][-1])
    gap = {m: [r["gap"][-1] for r in per[m]] for m in ("tpo", *SEQ_BSTAR)}
    out = sequence_verdict(win, gap)
    numbers.update({f"final gap {m}": v for m, v in gap.items()})
    summary = {**{f"win rate vs {c}": _med(v) for c, v in win.items()},
               **{f"final gap {m}": _med(v) for m, v in gap.items()},
               **{f"tpo arm counts it{it + 1} (sources..., null)": str(per["tpo"][0]["arm_counts"][it])
                  for it in range(ITERATIONS)},
               **{f"tpo source win rates it{it + 1} (seed {ctx.seeds[0]})": str(np.round(
                   per["tpo"][0]["win_rates"][it], 3).tolist()) for it in range(ITERATIONS)},
               **{f"{m} generations per label": per[m][0]["counts"]["generations"] / per[m][0]["counts"]
                  ["oracle_calls"] * 8 for m in SEQ_METHODS}}
    fig = sequence_figure(numbers)
    return ctx.result(verdict=out, numbers=numbers, summary=summary, figure=fig,
                      notes=["Paper's win rates (Table 1, LM on XSum) beside ours (exact, simulator): "
                             "vs no transfer 52.1/53.3/54.0 %, vs worst source 53.1/54.5/53.3 %, vs best source "
                             "49.5/49.1/50.6 % (iterations 1/2/3); ours per iteration are in the numbers table.",
                             "DEVIATION: a per-token log-linear policy stands in for the autoregressive MLP; the "
                             "selector's round robin gives each arm a whole batch of 16 prompts at the start of "
                             "each iteration.", NOTE_THREADS])


# ------------------------------------------------------------------------------------------- claim 8
COMPLEX_SIZES = {"smoke": ((3, 4), (4, 6)), "quick": ((5, 6), (10, 12)), "full": ((5, 6), (10, 12))}
COMPLEX_T = {"smoke": 60, "quick": 600, "full": 1000}


@register_claim(
    id="rlhf.complexity_free", paper=PAPER, seeds=SEEDS3, criterion=COMPLEX,
    statement="Late in the run TPO's sub-optimality does not carry the structural-complexity factor of plain "
    "online RLHF: on tabular problems of growing size its final gap stays well below no transfer's, below the "
    "honest baseline B*, and grows less with the size (a finite-T proxy of Thm. 3.2, not a proof).",
    metric="exact learner gap at T = 600 (quick) on tabular envs (X, Y) = (5, 6) and (10, 12), d = X·Y = 30 and "
    "120, sources ρ = (0.9, 0.5, 0, −0.5); medians over seeds",
    paper_reported=NO_NUMBER + " (the statement is Thm. 3.2 and Coro. 4.1's Õ(√T) without Cov∞(Π))",
    headline=(("d=120 tpo gap@T", "TPO gap@T, d = 120", ""), ("d=120 bstar gap@T", "B* gap@T, d = 120", ""),
              ("d=120 no_transfer gap@T", "NoTransfer gap@T, d = 120", "")),
)
def complexity_free(ctx: RunContext) -> ClaimResult:
    T = COMPLEX_T[ctx.scale]
    gaps, logs_large = {}, None
    for size in COMPLEX_SIZES[ctx.scale]:
        d = size[0] * size[1]
        logs = runs(ctx, ("tpo", *BSTAR, "fixed_best"), T=T, tag=f"tabular{size}",
                    env_fn=lambda s, size=size: KLBanditEnv.tabular(*size, source_rhos=USUAL, seed=s))
        gaps[d] = {m: at(rs, "learner_gap") for m, rs in logs.items()}
        logs_large = logs
    small, large = (gaps[k] for k in sorted(gaps))
    out = complexity_verdict(small, large)
    dl = max(gaps)
    summary = {**{f"d={d} {m} gap@T": _med(v) for d, g in gaps.items() for m, v in g.items()},
               # headline keys name the larger size (d = 120 at quick and full scale)
               "d=120 tpo gap@T": _med(large["tpo"]), "d=120 no_transfer gap@T": _med(large["no_transfer"]),
               "d=120 bstar gap@T": min(_med(large[m]) for m in BSTAR)}
    numbers = {f"d={d} gap@T {m}": v for d, g in gaps.items() for m, v in g.items()}
    fig = curves_figure(logs_large, f"rlhf.complexity_free: tabular d = {dl}, median and 90% bootstrap band")
    return ctx.result(verdict=out, numbers=numbers, summary=summary, figure=fig,
                      notes=[f"Smoke uses d = {', '.join(str(a * b) for a, b in COMPLEX_SIZES['smoke'])} (the "
                             "headline keys then name d = 120 but hold the larger smoke size)."
                             if ctx.scale == "smoke" else "", NOTE_THREADS])
