"""The claim framework: declarations and registry, the run context, criteria objects and the runner.

Paper modules in :mod:`optimlab.experiments` (and cost benchmarks in :mod:`optimlab.bench`) declare claims with
:func:`register_claim` and a :class:`Criterion`; ``optimlab reproduce`` / ``bench`` run them with
:func:`run_claims`. Importing this package does not import torch.
"""

from optimlab.evidence.combinators import Agreement, AllChecks, Gate
from optimlab.evidence.context import RunContext
from optimlab.evidence.criteria import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    VERDICTS,
    Above,
    AtLeast,
    AtMost,
    Band,
    CountRule,
    Criterion,
    Outcome,
    PairedSign,
    RatioAtMost,
    WithinRelative,
    count_rule,
    paired_sign_rule,
)
from optimlab.evidence.registry import (
    SCALES,
    Claim,
    all_benches,
    all_claims,
    register_bench,
    register_claim,
    select,
)
from optimlab.evidence.runner import RunProgress, RunSummary, check_device, run_claims
from optimlab.report.schema import ClaimResult

__all__ = [
    "DOES_NOT_HOLD",
    "HOLDS",
    "INCONCLUSIVE",
    "SCALES",
    "VERDICTS",
    "Above",
    "Agreement",
    "AllChecks",
    "AtLeast",
    "AtMost",
    "Band",
    "Claim",
    "ClaimResult",
    "CountRule",
    "Criterion",
    "Gate",
    "Outcome",
    "PairedSign",
    "RatioAtMost",
    "RunContext",
    "RunProgress",
    "RunSummary",
    "WithinRelative",
    "all_benches",
    "all_claims",
    "check_device",
    "count_rule",
    "paired_sign_rule",
    "register_bench",
    "register_claim",
    "run_claims",
    "select",
]
