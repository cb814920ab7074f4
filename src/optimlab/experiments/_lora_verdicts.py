"""Criteria and pure verdict functions of the ``nora.lora_*`` and ``reflora.*`` claims.

Every criterion is fixed here, before any run, with a comment giving the source of its thresholds; each verdict is a
pure function of per-seed numbers, unit-tested on hand-made numbers in tests/experiments/test_lora_verdicts.py.
The paired sign rule (the project's pre-registered rule for noisy comparisons): runs paired by seed, d = baseline −
method for a lower-is-better metric; holds if median d > 0 and d > 0 in ≥ ⌈0.8n⌉ seeds, does not hold symmetrically,
else inconclusive (quick, n = 3, needs 3/3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optimlab.evidence import AllChecks, AtLeast, AtMost, Band, CountRule, Criterion, Outcome, PairedSign
from optimlab.evidence.criteria import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

__all__ = ["ALIGNED", "CONSISTENT", "FINETUNE_NORA", "FLATTER", "MF", "NORAPLUS", "OVERHEAD", "REFLORA_FINETUNE",
           "CIBound", "SignWithGuard", "sign"]


def sign(what: str) -> PairedSign:
    """The paired sign rule on ``what`` (d > 0 favours the method); 3 seeds at least (quick)."""
    return PairedSign(0.0, 0.8, what=what, min_seeds=3)


@dataclass(frozen=True)
class SignWithGuard(Criterion):
    """``primary`` decides; a ``guard`` that *does not hold* turns a ``holds`` into ``inconclusive``.
    ``evaluate(primary, guard)`` (each the input of its criterion). Details: both parts' details as
    ``primary_<key>``/``guard_<key>`` and their verdicts."""

    primary: Criterion
    guard: Criterion
    min_seeds: int = field(default=3, kw_only=True)

    def describe(self) -> str:
        return (f"primary — {self.primary.describe()}; guard — {self.guard.describe()}. The verdict is the primary's, "
                "except that a primary 'holds' with a guard that does not hold is inconclusive")

    def evaluate(self, primary: Any, guard: Any) -> Outcome:
        p, g = self.primary.evaluate(primary), self.guard.evaluate(guard)
        details = {"primary_verdict": p.verdict, "guard_verdict": g.verdict,
                   **{f"primary_{k}": v for k, v in p.details.items()}, **{f"guard_{k}": v for k, v in g.details.items()}}
        if p.verdict == HOLDS and g.verdict == DOES_NOT_HOLD:
            return Outcome(INCONCLUSIVE, details, "the primary check holds but the guard does not hold")
        return Outcome(p.verdict, details, p.reason)


@dataclass(frozen=True)
class CIBound(Criterion):
    """A cost ratio with a confidence interval against a bound: ``evaluate(lower, upper)``: holds if upper ≤ bound,
    does not hold if lower > bound, else inconclusive (NaN: inconclusive)."""

    bound: float
    what: str = field(kw_only=True)
    min_seeds: int = field(default=1, kw_only=True)

    def describe(self) -> str:
        return (f"{self.what}: holds if the upper end of its 95% CI is ≤ {self.bound:g}; does not hold if the lower "
                f"end exceeds {self.bound:g}; inconclusive otherwise")

    def evaluate(self, lower: float, upper: float) -> Outcome:
        lower, upper = float(lower), float(upper)
        details = {"lower": lower, "upper": upper, "bound": self.bound}
        if lower != lower or upper != upper:
            return Outcome(INCONCLUSIVE, details, f"{self.what}: a CI end is NaN")
        if upper <= self.bound:
            return Outcome(HOLDS, details)
        if lower > self.bound:
            return Outcome(DOES_NOT_HOLD, details)
        return Outcome(INCONCLUSIVE, details)


# nora.lora_aligned_target: the project's float32 reference runs of the teacher–student task (oracle lr, 3 seeds)
# gave NoRA/LoRA ≈ 0.45 on the aligned target; 0.7 keeps half that gap as margin, and ≥ 1.0 (no gain) is the
# failure side. Written as the relative reduction 1 − ratio so that larger is better: holds ≥ 0.3, fails ≤ 0.
ALIGNED = Band(0.0, 0.3, what="1 − (selected-lr median NoRA error)/(selected-lr median LoRA error), aligned target",
               min_seeds=3)
# nora.lora_finetune / nora.noraplus: the paired sign rule on the final held-out cross-entropy.
FINETUNE_NORA = sign("LoRA − NoRA final held-out cross-entropy")
NORAPLUS = sign("NoRA − NoRA+ final held-out cross-entropy")
# reflora.finetune: the sign rule on the mean held-out loss over the evaluation points decides; the sign rule on the
# final loss must not say 'does not hold' for a 'holds'.
REFLORA_FINETUNE = SignWithGuard(sign("LoRA − RefLoRA mean held-out cross-entropy over the evaluation points"),
                                 sign("LoRA − RefLoRA final held-out cross-entropy"))
# reflora.consistent_balanced: exact identities in float64 (round-off ≈ 1e-14 in the project's runs; 1e-9 leaves five
# decades); 1e-3 for plain LoRA-SGD's factorisation dependence makes the test discriminate (the project's runs show
# ≈ 1e-2 at lr 1e-3 with cond(P) ≤ 1e3); 1e-12 for the scalar rescale (two float64 multiplications).
CONSISTENT = AllChecks(
    p_invariance=AtMost(1e-9, what="largest relative difference of BA after one matrix-mode SGD step from (A, B) and "
                        "from (P^T A, B P^-T), over trials"),
    plain_deviation=AtLeast(1e-3, what="smallest relative difference of the same for plain LoRA-SGD (discrimination)"),
    balance=AtMost(1e-9, what="largest ||A'A'^T - B'^T B'||/||B'^T B'|| after refactor_"),
    diagonal=AtMost(1e-9, what="largest relative deviation of diag(A'A'^T) from sigma(BA)"),
    energy=AtMost(1e-9, what="largest relative deviation of ||A'||^2 + ||B'||^2 from 2||BA||_*"),
    energy_minimal=AtMost(1e-12, what="largest relative excess of the balanced energy over a random equivalent pair's"),
    closed_form=AtMost(1e-9, what="largest relative deviation of the matrix-mode product from the closed-form update"),
    scalar_product=AtMost(1e-12, what="largest relative change of BA by the RefLoRA-S rescale"),
    scalar_norms=AtMost(1e-12, what="largest | ||A|| - ||B|| | / ||A|| after the RefLoRA-S rescale"),
)
# reflora.flatter: (a) exact: the balanced pair's top Hessian eigenvalue at zero residual is 2 s^2 sigma_1(BA) (our
# derivation) and never above the original's; 1e-6 / 1e-4 are eigensolver tolerances (Lanczos, tol 1e-10); (b) the
# paired sign rule on the top eigenvalue at matched training loss.
FLATTER = AllChecks(
    exact_not_higher=AtMost(1e-6, what="largest lambda_top(balanced)/lambda_top(original) - 1 over 10 pairs"),
    exact_formula=AtMost(1e-4, what="largest |lambda_top(balanced) - 2 sigma_1(BA)|/(2 sigma_1(BA)) over 10 pairs"),
    training=sign("LoRA − RefLoRA-S top Hessian eigenvalue in (A, B) at matched training loss"),
)
# reflora.mf_convergence: (a) consistency in float64 (1e-6 relative over 500 iterations, round-off grows along the
# trajectory); (b) the paper's figure shows LoRA-GD diverging at eta = 0.03 where RefLoRA converges; '2x' is the
# project's margin; 4 of 5 seeds is the sign rule's share.
MF = AllChecks(
    consistency=AtMost(1e-6, what="largest relative difference of RefLoRA's error curves from the balanced and the "
                       "imbalanced init over the first 500 iterations (over seeds)"),
    speed=CountRule(0.8, success="LoRA-GD (eta = 0.03, imbalanced init) never reaches 1e-3 or needs >= 2x RefLoRA's "
                    "iterations", failure="LoRA-GD reaches 1e-3 within RefLoRA's iteration count", min_seeds=5),
)
# reflora.overhead: the project's targets (spec): RefLoRA <= 1.20x and RefLoRA-S <= 1.05x plain LoRA (AdamW) step
# time; the paper's own figure gives 1.13x and 1.01x.
OVERHEAD = AllChecks(reflora=CIBound(1.20, what="RefLoRA / LoRA step time (median ratio)"),
                     reflora_s=CIBound(1.05, what="RefLoRA-S / LoRA step time (median ratio)"))
