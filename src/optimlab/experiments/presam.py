"""Claim of Zhang, Li & Giannakis, "Preconditioned Sharpness-Aware Minimization" (arXiv:2501.06603).

``presam.special_cases`` (structural, our parametrisation of preSAM): the preSAM template
ε = ρ c² ⊙ u / ‖c ⊙ u‖ contains SAM, ASAM and Fisher-SAM. The template's ε (float32) for each variant's
constraint scale is compared with the variant's own closed form (float64, computed independently), on random
tensors and on one MLP gradient. The verdict is a pure function of the errors (``_verdict``), unit-tested in
tests/experiments/test_sam_family_verdicts.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from optimlab.evidence import AtMost, ClaimResult, Outcome, RunContext, register_claim
from optimlab.experiments._fixtures import digits_split, make_mlp
from optimlab.sam import asam_scale, fisher_scale, perturbation

# Criterion fixed in advance: maximum relative error <= 1e-6 in float32 for every case. A project choice:
# fp32 rounding of the template's own output is ~1e-7, and both sides compute the same algebra, so only a
# coding slip can exceed it (a consistency check).
MAX_REL_ERR = 1e-6
CRITERION = AtMost(MAX_REL_ERR, what="the largest relative error of the template's eps against the closed form, "
                   "over every variant, case and seed (float32)")
RHO = {"sam": 0.05, "asam": 0.5, "fisher": 0.1}
ETA = {"asam": 0.01, "fisher": 1.0}


def _closed_form(variant: str, w: list[torch.Tensor], g: list[torch.Tensor], weight_mask: list[bool]) -> torch.Tensor:
    """SAM ρg/‖g‖; ASAM ρT²g/‖Tg‖, T = diag(|w|+η) on weight tensors; Fisher ρF⁻¹g/sqrt(gᵀF⁻¹g), F = diag(1+ηg²).

    Computed in float64 on the flattened vectors, independently of the optimizer code.
    """
    gf = torch.cat([x.double().reshape(-1) for x in g])
    if variant == "sam":
        return RHO["sam"] * gf / gf.norm()
    if variant == "asam":
        t = torch.cat([(wi.double().abs() + ETA["asam"] if m else torch.ones_like(wi, dtype=torch.float64)).reshape(-1)
                       for wi, m in zip(w, weight_mask)])
        return RHO["asam"] * t * t * gf / (t * gf).norm()
    finv_g = gf / (1 + ETA["fisher"] * gf * gf)
    return RHO["fisher"] * finv_g / torch.sqrt(gf @ finv_g)


def _template_eps(variant: str, params: list[nn.Parameter], grads: list[torch.Tensor], mask: list[bool]) -> torch.Tensor:
    """ε from the template (:func:`optimlab.sam.perturbation`) in float32, with the variant's constraint scale c.

    The template's own output is compared, not (w + ε) − w read off the fp32 weights: that difference carries the
    rounding of w (≈ 6e-8·|w|), which is not an error of the template. The optimizers' path through the same
    function is tested against these closed forms in float64 (tests/sam/test_variants.py).
    """
    if variant == "sam":
        c = None
    elif variant == "asam":
        c = [asam_scale(p.detach(), ETA["asam"]) if m else None for p, m in zip(params, mask)]
    else:
        c = [fisher_scale(g, ETA["fisher"]) for g in grads]
    eps = perturbation(grads, RHO[variant], c=c)
    return torch.cat([e.double().reshape(-1) for e in eps])


def _cases(seed: int):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(20, 10), (10,), (5, 3, 2)]
    params = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    grads = [torch.randn(s, generator=gen) for s in shapes]
    yield "random tensors", params, grads, [p.ndim >= 2 for p in params]
    split = digits_split(seed)
    model = make_mlp([split.n_features, 32, split.n_classes], seed=seed)
    loss = F.cross_entropy(model(split.X_train), split.y_train)
    params = list(model.parameters())
    grads = list(torch.autograd.grad(loss, params))
    mask = ["weight" in n for n, _ in model.named_parameters()]
    yield "MLP gradient", params, grads, mask


@register_claim(
    id="presam.special_cases",
    paper="Zhang, Li & Giannakis, ICASSP 2025, arXiv:2501.06603",
    statement="The preSAM template contains SAM, ASAM and Fisher-SAM as special cases: its perturbation equals each "
    "variant's closed form.",
    metric="max relative error ||eps_template - eps_closed_form|| / ||eps_closed_form||, float32",
    criterion=CRITERION,
    paper_reported="no number in the paper (derived here)",
    headline=(("max_relative_error", "max relative error", ""),),
    seeds={"smoke": 1, "quick": 3, "full": 10},
)
def special_cases(ctx: RunContext) -> ClaimResult:
    numbers: dict[str, list[float]] = {}
    for seed in ctx.seeds:
        for case, params, grads, mask in _cases(seed):
            for variant in ("sam", "asam", "fisher"):
                eps = _template_eps(variant, params, grads, mask)
                ref = _closed_form(variant, [p.detach() for p in params], grads, mask)
                err = float((eps - ref).norm() / ref.norm())
                numbers.setdefault(f"{variant} / {case}", []).append(err)
    outcome = _verdict(numbers)
    from optimlab.report.plots import paired_plot

    fig = paired_plot({k: [max(v, 1e-12) for v in vals] for k, vals in numbers.items()}, seeds=ctx.seeds,
                      ylabel="relative error", logy=True, title=f"presam.special_cases (threshold {MAX_REL_ERR:g})")
    return ctx.result(
        verdict=outcome, numbers=numbers,
        summary={"max_relative_error": outcome.details["value"], "cases": len(numbers)},  # + the threshold
        figure=fig,
        notes="What this checks: the template's closed forms, derived from the constrained problems max <u, e> "
        "s.t. ||C e|| <= rho. UNVERIFIED against the paper's text: that it writes the template in exactly this "
        "C/O parametrisation, and Fisher-SAM's Fisher estimate (squared minibatch gradient here).")


def _verdict(numbers: dict[str, list[float]]) -> Outcome:
    """:data:`CRITERION` on the largest relative error over every ``"<variant> / <case>"`` list (NaN if any is)."""
    errors = [float(e) for vals in numbers.values() for e in vals]
    worst = math.nan if any(math.isnan(e) for e in errors) else max(errors)
    return CRITERION.evaluate(worst)
