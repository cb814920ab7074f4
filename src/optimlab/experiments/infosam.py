"""Claim of Zhang, Li & Giannakis, "Preconditioned Sharpness-Aware Minimization" (arXiv:2501.06603): infoSAM.

``infosam.label_noise`` (specs/sam.md §4.6) is PROVISIONAL: the paper's algorithm box could not be checked, so the
tested algorithm is the provisional SNR-weighted design of spec §3.5 (``optimlab.sam.InfoSAM``), not necessarily the
paper's. It reads the label-noise run group (experiments/sam_label_noise.py).
"""

from __future__ import annotations

from optimlab.experiments import sam_label_noise as ln
from optimlab.experiments.registry import RunContext, register_claim
from optimlab.report.schema import ClaimResult

# Criterion fixed before any run (specs/sam.md §4.6): median paired (InfoSAM - SAM) >= +0.5 pt and (InfoSAM - ASAM)
# >= +0.5 pt, with InfoSAM >= SAM in >= 4/5 seeds -> holds; median vs SAM <= -0.5 pt -> does not hold; else
# inconclusive. The 0.5 pt effect and the 4/5 fraction live in optimlab.experiments.sam_label_noise.
CRITERION = ("holds if median paired (InfoSAM - SAM) >= +0.5 pt and (InfoSAM - ASAM) >= +0.5 pt with InfoSAM >= SAM "
             "in >= 4/5 seeds; does not hold if the median vs SAM <= -0.5 pt; inconclusive otherwise")


@register_claim(
    id="infosam.label_noise", paper=ln.PAPER_PRESAM, group=ln.GROUP, seeds=ln.SEEDS, provisional=True,
    statement="infoSAM beats SAM and ASAM, including under label noise. PROVISIONAL: the tested algorithm is the "
    "provisional design of specs/sam.md §3.5 (SNR-weighted gradient), not checked against the paper's algorithm.",
    metric="final clean test accuracy (digits, MLP 64-256-256-10, batch 32, 50% symmetric train-label noise)",
    criterion=CRITERION,
)
def label_noise(ctx: RunContext) -> ClaimResult:
    runs = ln.group_runs(ctx)
    vs_sam = ln.paired(runs["infosam"]["test_acc"], runs["sam"]["test_acc"])
    vs_asam = ln.paired(runs["infosam"]["test_acc"], runs["asam"]["test_acc"])
    v_sam, med_sam, wins = ln.sign_verdict(vs_sam, ln.VARIANT_EFFECT)
    _, med_asam, wins_asam = ln.sign_verdict(vs_asam, ln.VARIANT_EFFECT)
    if v_sam == "holds" and med_asam >= ln.VARIANT_EFFECT:
        verdict = "holds"
    elif med_sam <= -ln.VARIANT_EFFECT:
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return ClaimResult(
        claim_id="infosam.label_noise", verdict=verdict, provisional=True,
        numbers={**ln.per_seed_numbers(runs, ("sam", "asam", "infosam")), "infosam_minus_sam": vs_sam,
                 "infosam_minus_asam": vs_asam},
        summary={"median_infosam_minus_sam": med_sam, "median_infosam_minus_asam": med_asam,
                 "seeds_infosam_ge_sam": wins, "seeds_infosam_ge_asam": wins_asam, "n_seeds": len(vs_sam),
                 **ln.medians(runs, ("sam", "asam", "infosam"))},
        figure=ln.accuracy_figure(ctx, "infosam.label_noise", ("sam", "asam", "infosam"),
                                  "infosam.label_noise (PROVISIONAL design): 50% noise, paired seeds"),
        notes="PROVISIONAL: the tested algorithm is the provisional design of specs/sam.md §3.5 — InfoSAM = "
        "PreSAM(objective='snr'), u = o * g with o = m^2/(m^2 + s + delta) from EMAs m, s of the gradient "
        "(beta=0.9) — not the paper's algorithm box, which could not be checked; the paper's numbers are "
        "UNVERIFIED. A verdict here says nothing about the published infoSAM. Hyperparameters: InfoSAM rho=0.05, "
        "ASAM rho=0.5, eta=0.01. Best-epoch test accuracy is listed but never gated. " + ln.DEVIATION)
