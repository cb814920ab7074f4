"""The label-noise run group shared by four claims (specs/sam.md §4, claims 3–6).

One set of runs — SGD, SAM, VaSSO, InfoSAM and ASAM trained from the same initialisation, data order and noisy labels
for each seed — answers four questions:

* ``sam.label_noise`` (Foret et al., arXiv:2010.01412): SAM is robust to label noise (beats SGD);
* ``vasso.adversary_alignment`` (Li & Giannakis, arXiv:2309.15639): VaSSO's adversary d_t is better aligned with the
  full-batch gradient than the minibatch gradient g_t it replaces;
* ``vasso.label_noise``: VaSSO improves on SAM under high label noise;
* ``infosam.label_noise`` (arXiv:2501.06603, PROVISIONAL design): infoSAM beats SAM and ASAM under label noise.

Set-up (spec §4, common set-up and claim 3): digits standardised, stratified 70/30 split per seed; symmetric noise at
rate 0.5 on the training labels only; MLP 64-256-256-10; SGD momentum 0.9, lr 0.05 cosine, wd 5e-4; batch 32.
Deviation, stated in every claim's notes: the spec asks 30 epochs at quick scale; 5 methods × 5 seeds × 30 epochs take
about 135 s on 2 cores here, over the 90 s budget of the group, so quick scale runs 15 epochs (full: 100 epochs).
"""

from __future__ import annotations

import math
import statistics
import warnings

import torch
from torch.nn import functional as F

from optimlab import ProvisionalWarning
from optimlab.data import load_sklearn, symmetric
from optimlab.experiments.common import evaluate, make_mlp, torch_threads
from optimlab.experiments.registry import RunContext, register_claim
from optimlab.report.schema import ClaimResult
from optimlab.sam import ASAM, SAM, InfoSAM, VaSSO

GROUP = "sam_label_noise"
METHODS = ("sgd", "sam", "vasso", "infosam", "asam")
EPOCHS = {"smoke": 1, "quick": 15, "full": 100}
WIDTH = {"smoke": 64, "quick": 256, "full": 256}
NOISE_RATE = 0.5
ALIGN_EVERY = 10  # spec §4.4: every 10 steps
DEVIATION = ("Deviation from the spec: quick scale runs 15 epochs instead of 30 to fit the group's 90 s budget "
             "(measured ~135 s for 30 epochs on 2 cores); full scale runs 100 epochs. Best-epoch accuracy is not "
             "recorded (it would select on the test set and is never gated).")


def _make_opt(method, model):
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if method == "sgd":
        return base
    if method == "sam":
        return SAM(base=base, rho=0.05)
    if method == "vasso":
        return VaSSO(base=base, rho=0.05, theta=0.9)
    if method == "infosam":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ProvisionalWarning)
            return InfoSAM(base=base, rho=0.05)
    return ASAM(base=base, rho=0.5, eta=0.01, model=model)


def _cos(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    dot = sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))
    na = math.sqrt(sum(float((x.double() ** 2).sum()) for x in a))
    nb = math.sqrt(sum(float((y.double() ** 2).sum()) for y in b))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0


def _run(method: str, seed: int, scale: str, device: str) -> dict[str, float | list[float]]:
    split = load_sklearn("digits", seed=seed, device=device)
    y_noisy, flipped = symmetric(split.y_train.cpu(), NOISE_RATE, split.n_classes,
                                 generator=torch.Generator().manual_seed(seed))
    y_noisy, flipped = y_noisy.to(device), flipped.to(device)
    X = split.X_train
    model = make_mlp([split.n_features, WIDTH[scale], WIDTH[scale], split.n_classes], seed=seed, device=device)
    opt = _make_opt(method, model)
    params = list(model.parameters())
    n, bs = X.shape[0], 32
    steps = EPOCHS[scale] * math.ceil(n / bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    deltas: list[float] = []
    t = 0
    model.train()
    for _ in range(EPOCHS[scale]):
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            xb, yb = X[idx], y_noisy[idx]
            t += 1
            if method == "sgd":
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
            else:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                record = method == "vasso" and t % ALIGN_EVERY == 0
                if record:  # same iterate w_t: minibatch g_t, full-batch gradient, then d_t after the EMA update
                    g = [p.grad.detach().clone() for p in params]
                    full = torch.autograd.grad(F.cross_entropy(model(X), y_noisy), params)
                opt.first_step()
                if record:
                    d = [opt.state[p]["d"] for p in params]
                    deltas.append(_cos(d, full) - _cos(g, full))
                F.cross_entropy(model(xb), yb).backward()
                opt.second_step()
            sched.step()
    _, test_acc = evaluate(model, split.X_test, split.y_test)
    with torch.no_grad():
        model.eval()
        pred = model(X).argmax(1)
        model.train()
    memorised = 100.0 * float((pred[flipped] == y_noisy[flipped]).float().mean())
    out: dict[str, float | list[float]] = {"test_acc": test_acc, "memorisation": memorised}
    if method == "vasso":
        out["alignment"] = deltas
    return out


def group_runs(ctx: RunContext) -> dict[str, dict[str, list]]:
    """``{method: {metric: [per seed]}}`` for the whole group, computed once per invocation (``ctx.cache``)."""
    key = (GROUP, ctx.scale, tuple(ctx.seeds), ctx.device)
    if key in ctx.cache:
        return ctx.cache[key]
    runs: dict[str, dict[str, list]] = {m: {} for m in METHODS}
    with torch_threads(1):
        for seed in ctx.seeds:
            for method in METHODS:
                ctx.progress(f"label noise: seed {seed}, {method}")
                for k, v in _run(method, seed, ctx.scale, ctx.device).items():
                    runs[method].setdefault(k, []).append(v)
    ctx.cache[key] = runs
    return runs


def _paired(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


def _plot(ctx: RunContext, claim_id: str, methods: tuple[str, ...], title: str) -> str:
    from optimlab.report.plots import paired_plot, save_figure

    runs = group_runs(ctx)
    fig = paired_plot({m.upper(): runs[m]["test_acc"] for m in methods}, seeds=ctx.seeds,
                      ylabel="clean test accuracy (%)", title=title)
    path = ctx.figure_path(claim_id)
    save_figure(fig, path)
    return ctx.relative(path)


def _numbers(runs, methods) -> dict[str, list[float]]:
    out = {}
    for m in methods:
        out[f"{m}_test_acc"] = runs[m]["test_acc"]
        out[f"{m}_memorisation"] = runs[m]["memorisation"]
    return out


SEEDS = {"smoke": 2, "quick": 5, "full": 20}
PAPER_SAM = "Foret, Kleiner, Mobahi, Neyshabur, ICLR 2021, arXiv:2010.01412"
PAPER_VASSO = "Li & Giannakis, NeurIPS 2023, arXiv:2309.15639"
PAPER_PRESAM = "Zhang, Li & Giannakis, ICASSP 2025, arXiv:2501.06603"

# Criteria fixed before any run (specs/sam.md §4.3, §4.5, §4.6). 1 pt / 0.5 pt are the minimal effect sizes the spec
# fixes in advance; the 4/5 paired-sign condition carries the evidence (one accuracy on 540 test points has a
# standard error of about 1.3 pt).
SAM_EFFECT, VARIANT_EFFECT, MIN_WINS = 1.0, 0.5, 0.8


def _sign_verdict(diffs: list[float], effect: float) -> tuple[str, float, int]:
    med = statistics.median(diffs)
    wins = sum(d >= 0 for d in diffs)  # "new >= baseline" in the seed, as the spec words it
    need = math.ceil(MIN_WINS * len(diffs) - 1e-9)
    if med >= effect and wins >= need:
        return "holds", med, wins
    if med <= -effect:
        return "does not hold", med, wins
    return "inconclusive", med, wins


@register_claim(
    id="sam.label_noise", paper=PAPER_SAM, group=GROUP, seeds=SEEDS,
    statement="SAM gives robustness to label noise: at 50% symmetric noise it ends with higher clean test "
    "accuracy than SGD from the same initialisation.",
    metric="final clean test accuracy (digits, MLP 64-256-256-10, 50% symmetric train-label noise)",
    criterion="holds if median paired (SAM - SGD) >= +1.0 pt and SAM >= SGD in >= 4/5 seeds; does not hold if "
    "the median <= -1.0 pt; inconclusive otherwise",
)
def label_noise_sam(ctx: RunContext) -> ClaimResult:
    runs = group_runs(ctx)
    diffs = _paired(runs["sam"]["test_acc"], runs["sgd"]["test_acc"])
    verdict, med, wins = _sign_verdict(diffs, SAM_EFFECT)
    return ClaimResult(
        claim_id="sam.label_noise", verdict=verdict, numbers={**_numbers(runs, ("sgd", "sam")), "sam_minus_sgd": diffs},
        summary={"median_sam_minus_sgd": med, "seeds_sam_ge_sgd": wins,
                 "median_sgd": statistics.median(runs["sgd"]["test_acc"]),
                 "median_sam": statistics.median(runs["sam"]["test_acc"]),
                 "median_memorisation_sgd": statistics.median(runs["sgd"]["memorisation"]),
                 "median_memorisation_sam": statistics.median(runs["sam"]["memorisation"])},
        figure=_plot(ctx, "sam.label_noise", ("sgd", "sam"), "sam.label_noise: clean test accuracy, 50% noise"),
        notes="Memorisation = training accuracy on the flipped samples against their noisy labels. " + DEVIATION)


@register_claim(
    id="vasso.adversary_alignment", paper=PAPER_VASSO, group=GROUP, seeds=SEEDS,
    statement="VaSSO's adversary is a lower-variance estimate of the full-batch ascent direction: d_t is better "
    "aligned with the full-batch gradient than the minibatch gradient g_t at the same iterate.",
    metric="time-mean of cos(d_t, grad L_full) - cos(g_t, grad L_full), every 10 steps of each VaSSO run",
    criterion="holds if the time-mean difference is > 0 in >= 4/5 seeds; does not hold if < 0 in >= 4/5; "
    "inconclusive otherwise",
)
def adversary_alignment(ctx: RunContext) -> ClaimResult:
    runs = group_runs(ctx)
    series = runs["vasso"]["alignment"]
    means = [statistics.fmean(s) if s else 0.0 for s in series]
    n = len(means)
    need = math.ceil(MIN_WINS * n - 1e-9)  # spec §4.4: 4 of 5 seeds
    pos, neg = sum(m > 0 for m in means), sum(m < 0 for m in means)
    verdict = "holds" if pos >= need else "does not hold" if neg >= need else "inconclusive"
    from optimlab.report.plots import curves_plot, save_figure

    length = min(len(s) for s in series) if series and all(series) else 0
    fig = curves_plot({"VaSSO: cos(d,gF) - cos(g,gF)": [s[:length] for s in series] if length else [[0.0]]},
                      x=[ALIGN_EVERY * (i + 1) for i in range(max(length, 1))], xlabel="step",
                      ylabel="alignment gain", title="vasso.adversary_alignment (median over seeds, min-max band)")
    path = ctx.figure_path("vasso.adversary_alignment")
    save_figure(fig, path)
    return ClaimResult(
        claim_id="vasso.adversary_alignment", verdict=verdict, numbers={"mean_alignment_gain": means},
        summary={"median_mean_gain": statistics.median(means), "seeds_positive": pos, "seeds_negative": neg,
                 "points_per_run": length},
        figure=ctx.relative(path),
        notes="Measured on the noisy training set at the iterate w_t before the step; g_t is the first-pass "
        "minibatch gradient, d_t the EMA after including it (theta=0.9). The theta=1 control (d_t = g_t, gain "
        "exactly 0) is asserted in tests/sam/test_variants.py, not run here. " + DEVIATION)


@register_claim(
    id="vasso.label_noise", paper=PAPER_VASSO, group=GROUP, seeds=SEEDS,
    statement="VaSSO improves on SAM, notably under high label noise.",
    metric="final clean test accuracy (digits, 50% symmetric train-label noise)",
    criterion="holds if median paired (VaSSO - SAM) >= +0.5 pt and VaSSO >= SAM in >= 4/5 seeds; does not hold if "
    "the median <= -0.5 pt; inconclusive otherwise",
)
def label_noise_vasso(ctx: RunContext) -> ClaimResult:
    runs = group_runs(ctx)
    diffs = _paired(runs["vasso"]["test_acc"], runs["sam"]["test_acc"])
    verdict, med, wins = _sign_verdict(diffs, VARIANT_EFFECT)
    return ClaimResult(
        claim_id="vasso.label_noise", verdict=verdict,
        numbers={**_numbers(runs, ("sam", "vasso")), "vasso_minus_sam": diffs},
        summary={"median_vasso_minus_sam": med, "seeds_vasso_ge_sam": wins,
                 "median_sam": statistics.median(runs["sam"]["test_acc"]),
                 "median_vasso": statistics.median(runs["vasso"]["test_acc"])},
        figure=_plot(ctx, "vasso.label_noise", ("sam", "vasso"), "vasso.label_noise: clean test accuracy"),
        notes="The paper's gains are a few tenths of a point on CIFAR; inconclusive is the expected answer at "
        "this scale. " + DEVIATION)


@register_claim(
    id="infosam.label_noise", paper=PAPER_PRESAM, group=GROUP, seeds=SEEDS, provisional=True,
    statement="infoSAM (PROVISIONAL design of specs/sam.md §3.5, not checked against the paper's algorithm) beats "
    "SAM and ASAM under label noise.",
    metric="final clean test accuracy (digits, 50% symmetric train-label noise)",
    criterion="holds if median paired (InfoSAM - SAM) >= +0.5 pt and (InfoSAM - ASAM) >= +0.5 pt with InfoSAM >= "
    "SAM in >= 4/5 seeds; does not hold if the median vs SAM <= -0.5 pt; inconclusive otherwise",
)
def label_noise_infosam(ctx: RunContext) -> ClaimResult:
    runs = group_runs(ctx)
    vs_sam = _paired(runs["infosam"]["test_acc"], runs["sam"]["test_acc"])
    vs_asam = _paired(runs["infosam"]["test_acc"], runs["asam"]["test_acc"])
    v_sam, med_sam, wins = _sign_verdict(vs_sam, VARIANT_EFFECT)
    med_asam = statistics.median(vs_asam)
    if v_sam == "holds" and med_asam >= VARIANT_EFFECT:
        verdict = "holds"
    elif med_sam <= -VARIANT_EFFECT:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return ClaimResult(
        claim_id="infosam.label_noise", verdict=verdict, provisional=True,
        numbers={**_numbers(runs, ("sam", "asam", "infosam")), "infosam_minus_sam": vs_sam,
                 "infosam_minus_asam": vs_asam},
        summary={"median_infosam_minus_sam": med_sam, "median_infosam_minus_asam": med_asam,
                 "seeds_infosam_ge_sam": wins},
        figure=_plot(ctx, "infosam.label_noise", ("sam", "asam", "infosam"),
                     "provisional infoSAM vs SAM and ASAM: clean test accuracy"),
        notes="Provisional infoSAM: the tested algorithm is the provisional SNR-weighted design of specs/sam.md "
        "§3.5 (u = o * g, o = m^2/(m^2 + s + delta)), not the paper's unverified algorithm box. " + DEVIATION)
