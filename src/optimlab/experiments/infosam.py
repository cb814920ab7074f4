"""Claim of Zhang, Li & Giannakis, "Preconditioned Sharpness-Aware Minimization" (arXiv:2501.06603): infoSAM.

``infosam.label_noise`` is PROVISIONAL: the paper's algorithm box could not be checked, so the tested
algorithms are this project's two provisional arms of ``optimlab.sam.InfoSAM`` (``variant="snr"``, the
SNR-weighted design, and ``variant="invvar"``, the authors' draft recursion), not necessarily the paper's. It reads the label-noise run group (experiments/_label_noise.py). The verdict is a pure function of the
numbers (``_verdict``), unit-tested without training in tests/experiments/test_sam_family_verdicts.py.
"""

from __future__ import annotations

from optimlab.evidence import (
    Agreement,
    AllChecks,
    ClaimResult,
    Outcome,
    PairedSign,
    RunContext,
    register_claim,
)
from optimlab.experiments import _label_noise as ln

# Criterion fixed before any run: per InfoSAM arm, the paired sign rule with e = 0.5 pt (a project choice, the
# margin of vasso.label_noise; the paper's numbers could not be retrieved), 4 of 5 seeds (by chance alone a
# 19% event per direction, against 50% for 3 of 5), against SAM and against ASAM; the arm holds if both hold
# and does not hold if either does not hold; the claim's verdict is the arms' common verdict (inconclusive if
# they differ). Fewer than 5 seeds give inconclusive. The group trains both arms (ln.INFOSAM_ARMS).
ARM_CRITERION = AllChecks(
    vs_sam=PairedSign(0.5, 0.8, what="InfoSAM arm − SAM final clean test accuracy", unit="pt", min_seeds=5),
    vs_asam=PairedSign(0.5, 0.8, what="InfoSAM arm − ASAM final clean test accuracy", unit="pt", min_seeds=5),
)
CRITERION = Agreement(ARM_CRITERION, arms=ln.INFOSAM_ARMS, what="InfoSAM arm")


@register_claim(
    id="infosam.label_noise", paper=ln.PAPER_PRESAM, group=ln.GROUP, seeds=ln.SEEDS, provisional=True,
    statement="infoSAM beats SAM and ASAM, including under label noise. PROVISIONAL: the tested algorithms are the "
    "two provisional arms of optimlab.sam.InfoSAM (variant 'snr', an SNR-weighted gradient, and variant 'invvar', "
    "the authors' draft recursion), not checked against the paper's algorithm; the verdict is the arms' common one.",
    metric="final clean test accuracy (digits, MLP 64-256-256-10, batch 32, 30 epochs at quick, 50% symmetric "
    "train-label noise, trained on the noisy fit set), each method at the rho it chose on validation"
    "; full scale: 100 epochs, a tuning and a verdict per noise condition (digits and make_classification, "
    "rates 0.25, 0.5, 0.75), the claim's verdict their common one",
    criterion=CRITERION,
    paper_reported="tables of test accuracy on CIFAR-10/100 and ImageNet, including label noise, against SGD, SAM "
    "and ASAM; numbers not retrieved (UNVERIFIED)",
    headline=(("median_snr_minus_sam", "median InfoSAM snr − SAM", "pt"),
              ("median_invvar_minus_sam", "InfoSAM invvar − SAM", "pt")),
)
def label_noise(ctx: RunContext) -> ClaimResult:
    runs = ln.group_runs(ctx)
    diffs = _arm_diffs(runs)
    outcome = _verdict(diffs)  # the primary condition (digits, rate 0.5)
    methods = ("sam", "asam", *(f"infosam_{arm}" for arm in ln.INFOSAM_ARMS))
    chosen = ln.choices(ctx)
    verdict, extra_numbers, extra_summary, extra_notes = outcome, {}, {}, []
    if ln.per_condition(ctx.scale):  # full: a verdict per (data set, rate), the claim's is their common verdict
        per = {ln.condition_name(c): _arm_diffs(ln.condition_runs(ctx, c)) for c in ln.CONDITIONS[ctx.scale]}
        verdict = _verdict_per_condition(per)
        extra_numbers = {f"{arm}_minus_{ref}_{name}": d[f"vs_{ref}"] for name, arms in per.items()
                         for arm, d in arms.items() for ref in ("sam", "asam")}
        extra_summary = {f"median_{arm}_minus_{ref}_{name}": verdict.details[f"{name}_{arm}_vs_{ref}_median_diff"]
                         for name in per for arm in ln.INFOSAM_ARMS for ref in ("sam", "asam")}
        extra_notes = ["Per noise condition (data set, rate), each tuned on its own: " + "; ".join(
            f"{name}: {verdict.details[f'{name}_verdict']}" for name in per) + ". The claim's verdict is the "
            "conditions' common verdict, inconclusive if they differ (a project choice)."]
    return ctx.result(
        verdict=verdict, provisional=True,
        numbers={**ln.per_seed_numbers(runs, methods),
                 **{f"{arm}_minus_{ref}": d[f"vs_{ref}"] for arm, d in diffs.items() for ref in ("sam", "asam")},
                 **extra_numbers},
        summary={**{f"median_{arm}_minus_{ref}": outcome.details[f"{arm}_vs_{ref}_median_diff"]
                    for arm in ln.INFOSAM_ARMS for ref in ("sam", "asam")},
                 **ln.medians(runs, methods), **ln.choice_summary(chosen, ("sgd", *methods)), **extra_summary},
        figure=ln.accuracy_figure(ctx, methods, "infosam.label_noise (PROVISIONAL arms): 50% noise, paired seeds"),
        notes=["PROVISIONAL: the tested algorithms are the two provisional arms of optimlab.sam.InfoSAM — "
               "variant 'snr' (the provisional design of optimlab.sam.InfoSAM: u = o * g with o = m^2/(m^2 + s + "
               "delta) from EMAs m, s of the gradient, beta=0.9) and variant 'invvar' (the authors' draft "
               "recursion, itself provisional) — not the paper's algorithm box, which could not be checked; the "
               "paper's numbers are UNVERIFIED. A verdict here says nothing about the published infoSAM. Each arm "
               "'holds' if it holds against both SAM and ASAM, 'does not hold' if it does not hold against either; "
               "the claim's verdict is the arms' common verdict, inconclusive if they differ. ASAM uses eta=0.01. "
               "Best-epoch test accuracy is listed but never gated.",
               ln.choice_note(chosen, ("sgd", *methods)),
               ln.SYMMETRIC_NOTE + " The comparison with ASAM uses the same rule, and a loss against ASAM alone "
               "gives 'does not hold' for that arm.", ln.DEVIATION, *extra_notes],
    )


def _arm_diffs(runs: dict[str, dict[str, list]]) -> dict[str, dict[str, list[float]]]:
    """``{arm: {"vs_sam": [arm − SAM per seed], "vs_asam": [arm − ASAM per seed]}}`` (final clean test accuracy)."""
    return {arm: {"vs_sam": ln.paired(runs[f"infosam_{arm}"]["test_acc"], runs["sam"]["test_acc"]),
                  "vs_asam": ln.paired(runs[f"infosam_{arm}"]["test_acc"], runs["asam"]["test_acc"])}
            for arm in ln.INFOSAM_ARMS}


def _verdict(arms: dict[str, dict[str, list[float]]]) -> Outcome:
    """:data:`CRITERION` on ``{arm: {"vs_sam": [arm − SAM per seed], "vs_asam": [arm − ASAM per seed]}}`` for
    every arm of ``ln.INFOSAM_ARMS``."""
    return CRITERION.evaluate(**arms)


def _verdict_per_condition(conditions: dict[str, dict[str, dict[str, list[float]]]]) -> Outcome:
    """Full scale: :data:`CRITERION` per noise condition ``{condition name: <the input of _verdict>}``, the common
    verdict of the conditions (inconclusive if they differ; :func:`ln.common_verdict`)."""
    return ln.common_verdict(CRITERION, conditions)
