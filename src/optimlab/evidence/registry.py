"""Declarations of claims and benchmarks, and the registry that ``optimlab reproduce`` / ``bench`` read.

A claim module (a module of :mod:`optimlab.experiments` whose name does not start with ``_``) declares each
claim once, with its pass criterion as an object that both renders its text and computes the verdict::

    # both lower in 4 of 5 paired seeds, fixed before any run (chance alone: 6/32 ≈ 19% for one figure)
    CRITERION = CountRule(0.8, success="SAM's trace and lambda_max both below SGD's",
                          failure="either above SGD's")

    @register_claim(
        id="sam.flat_minima",
        paper="Foret et al., ICLR 2021, arXiv:2010.01412",
        statement="SAM ends at a lower Hessian trace and top eigenvalue than SGD.",
        paper_reported="Fig. 3 (WRN on CIFAR-10): lambda_max 24.4 (SAM) vs 122.9 (SGD)",
        metric="Hutchinson trace and Lanczos lambda_max on the training set",
        criterion=CRITERION,
        headline=(("sam_trace", "Hessian trace, SAM", ""), ("sgd_trace", "SGD", "")),
        seeds={"smoke": 2, "quick": 5, "full": 20},
    )
    def flat_minima(ctx: RunContext) -> ClaimResult:
        ...
        return ctx.result(verdict=CRITERION.evaluate(...), numbers=..., summary=..., figure=fig)

Benchmarks use :func:`register_bench` (modules of :mod:`optimlab.bench`) and the same machinery.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optimlab.evidence.criteria import Criterion

if TYPE_CHECKING:
    from optimlab.evidence.context import RunContext
    from optimlab.report.schema import ClaimResult

__all__ = ["SCALES", "Claim", "all_benches", "all_claims", "register_bench", "register_claim", "select"]

SCALES = ("smoke", "quick", "full")


def _headline(claim_id: str, value: Any) -> tuple[tuple[str, str, str], ...]:
    entries = tuple(tuple(e) for e in value)
    if not 1 <= len(entries) <= 3 or any(len(e) != 3 or not all(isinstance(x, str) for x in e) for e in entries):
        raise ValueError(f"claim {claim_id!r}: headline must be 1 to 3 (summary_key, label, unit) string triples, "
                         f"got {value!r}")
    return entries  # type: ignore[return-value]


@dataclass(frozen=True)
class Claim:
    """A registered claim or benchmark.

    ``criterion`` is the pass rule, a :class:`Criterion` fixed before any run; its ``describe()`` is what the
    registry and the report show (:attr:`criterion_text`) and its ``min_seeds`` the fewest seeds for a verdict.
    ``paper_reported`` is what the paper itself reported for the statement (table or figure, set-up, number), or
    ``"no number in the paper (derived here)"``. ``headline`` names the one to three summary keys that the
    report's summary table shows: ``((summary_key, label, unit), ...)``.
    ``seeds`` maps each scale to its default number of seeds (``--seeds N`` overrides: seeds ``0..N-1``).
    ``group`` names a set of claims that share their training runs (they are run one after another).
    """

    id: str
    paper: str
    statement: str
    metric: str
    criterion: Criterion
    run: Callable[[RunContext], ClaimResult]
    paper_reported: str
    headline: tuple[tuple[str, str, str], ...]
    seeds: dict[str, int] = field(default_factory=lambda: {"smoke": 2, "quick": 3, "full": 10})
    scales: tuple[str, ...] = SCALES
    group: str | None = None
    provisional: bool = False
    kind: str = "claim"

    def __post_init__(self) -> None:
        if "." not in self.id or self.id.startswith(".") or self.id.endswith("."):
            raise ValueError(f"claim id must look like 'paper.name', got {self.id!r}")
        if "smoke" not in self.scales:
            raise ValueError(f"claim {self.id!r} must support the 'smoke' scale (the test suite runs it)")
        for s in self.scales:
            if s not in SCALES:
                raise ValueError(f"claim {self.id!r}: unknown scale {s!r}; allowed {SCALES}")
        if self.kind not in ("claim", "bench"):
            raise ValueError(f"kind must be 'claim' or 'bench', got {self.kind!r}")
        if not isinstance(self.criterion, Criterion):
            raise ValueError(f"claim {self.id!r}: criterion must be a Criterion, got {type(self.criterion).__name__}")
        if not isinstance(self.paper_reported, str) or not self.paper_reported.strip():
            raise ValueError(f"claim {self.id!r}: paper_reported must say what the paper reported (or 'no number in "
                             f"the paper (derived here)'), got {self.paper_reported!r}")
        object.__setattr__(self, "headline", _headline(self.id, self.headline))

    @property
    def criterion_text(self) -> str:
        """The criterion in words (``criterion.describe()``)."""
        return self.criterion.describe()

    @property
    def min_seeds(self) -> int:
        """The fewest seeds for which the criterion gives a verdict (fewer: ``inconclusive``)."""
        return self.criterion.min_seeds

    def default_seeds(self, scale: str) -> list[int]:
        return list(range(self.seeds.get(scale, 1)))


_CLAIMS: dict[str, Claim] = {}
_BENCHES: dict[str, Claim] = {}


def _register(table: dict[str, Claim], kind: str, **decl: Any) -> Callable:
    def deco(fn: Callable[[RunContext], ClaimResult]) -> Callable[[RunContext], ClaimResult]:
        claim = Claim(run=fn, kind=kind, **decl)
        if claim.id in table and table[claim.id].run is not fn:
            raise ValueError(f"{kind} {claim.id!r} registered twice")
        table[claim.id] = claim
        return fn

    return deco


def register_claim(**decl: Any) -> Callable:
    """Decorator registering a claim; see :class:`Claim` for the fields."""
    return _register(_CLAIMS, "claim", **decl)


def register_bench(**decl: Any) -> Callable:
    """Decorator registering a benchmark (a cost measurement with targets); same fields as a claim."""
    return _register(_BENCHES, "bench", **decl)


def _import_all(package: str) -> None:
    """Import every module of ``package`` whose name does not start with ``_`` (those are helpers)."""
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{package}.{mod.name}")


def all_claims() -> dict[str, Claim]:
    """Every registered claim, by id (importing every non-``_`` module of ``optimlab.experiments``)."""
    _import_all("optimlab.experiments")
    return dict(sorted(_CLAIMS.items()))


def all_benches() -> dict[str, Claim]:
    """Every registered benchmark, by id (importing every non-``_`` module of ``optimlab.bench``)."""
    _import_all("optimlab.bench")
    return dict(sorted(_BENCHES.items()))


def select(table: dict[str, Claim], names: list[str] | None) -> list[Claim]:
    """Claims whose id equals a name or starts with ``name + "."`` (``sam`` selects every ``sam.*``).

    Raises ``ValueError`` listing the known ids when a name matches nothing.
    """
    if not names:
        return list(table.values())
    chosen: list[Claim] = []
    for name in names:
        hits = [c for cid, c in table.items() if cid == name or cid.startswith(name + ".")]
        if not hits:
            raise ValueError(f"no claim or benchmark matches {name!r}; known: {', '.join(table) or '(none)'}")
        chosen.extend(c for c in hits if c not in chosen)
    # Claims that share runs go next to each other, in first-seen order of their group.
    order: list[Claim] = []
    for c in chosen:
        if c in order:
            continue
        order.append(c)
        if c.group is not None:
            order.extend(o for o in chosen if o.group == c.group and o not in order)
    return order
