"""Declarations of claims and benchmarks, and the registry that ``optimlab reproduce`` / ``bench`` read.

A claim module declares each claim once, with its pass criterion written in code::

    @register_claim(
        id="sam.flat_minima",
        paper="Foret et al., ICLR 2021, arXiv:2010.01412",
        statement="SAM ends at a lower Hessian trace and top eigenvalue than SGD.",
        metric="Hutchinson trace and Lanczos lambda_max on the training set",
        criterion="holds if both lower for SAM in >= 80% of paired seeds; ...",
        seeds={"smoke": 2, "quick": 5, "full": 20},
    )
    def flat_minima(ctx: RunContext) -> ClaimResult: ...

Benchmarks use :func:`register_bench` and the same machinery (``kind="bench"``).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimlab.report.schema import ClaimResult

SCALES = ("smoke", "quick", "full")


@dataclass
class RunContext:
    """What a claim's ``run`` function receives.

    Attributes:
        scale: ``smoke`` (seconds, verdict forced to ``inconclusive``), ``quick`` (≤ ~90 s on 2 cores) or ``full``.
        seeds: the seeds to use, in order; every method in a paired comparison uses the same seed.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        out_dir: output folder; figures go to :meth:`figure_path`.
        cache: shared between all claims of one invocation, so that claims of one ``group`` share runs.
        progress: callback taking a short status string (may be a no-op).
    """

    scale: str
    seeds: list[int]
    device: str = "cpu"
    out_dir: Path = Path("runs/latest")
    cache: dict[Any, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda msg: None

    def figure_path(self, claim_id: str) -> Path:
        """Absolute path of the claim's PNG (``<out>/figures/<id>.png``); the folder is created."""
        path = Path(self.out_dir) / "figures" / f"{claim_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        """``path`` relative to ``out_dir`` (what :class:`ClaimResult.figure` stores)."""
        return str(Path(path).resolve().relative_to(Path(self.out_dir).resolve()))


@dataclass(frozen=True)
class Claim:
    """A registered claim or benchmark.

    ``criterion`` is the human-readable form of the rule that ``run`` applies in code; it is fixed before any run.
    ``seeds`` maps each scale to its default number of seeds (``--seeds N`` overrides: seeds ``0..N-1``).
    ``group`` names a set of claims that share their training runs (they are run one after another).
    """

    id: str
    paper: str
    statement: str
    metric: str
    criterion: str
    run: Callable[[RunContext], ClaimResult]
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
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_") and mod.name not in ("registry", "runner", "verdicts", "common"):
            importlib.import_module(f"{package}.{mod.name}")


def all_claims() -> dict[str, Claim]:
    """Every registered claim, by id (importing every module of ``optimlab.experiments``)."""
    _import_all("optimlab.experiments")
    return dict(sorted(_CLAIMS.items()))


def all_benches() -> dict[str, Claim]:
    """Every registered benchmark, by id (importing every module of ``optimlab.bench``)."""
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
