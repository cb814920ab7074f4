"""What a claim's ``run`` function receives: :class:`RunContext` (scale, seeds, device, output folder, the claim).

A claim ends with::

    return ctx.result(verdict=CRITERION.evaluate(diffs), numbers=numbers, summary=summary, figure=fig,
                      notes="...")

and the context fills in everything it knows: the claim's id, paper, statement, what the paper reported, the
criterion text, the headline keys, the seeds and scale; a matplotlib figure is saved under ``<out>/figures``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimlab.evidence.criteria import Outcome
from optimlab.report.schema import ClaimResult

if TYPE_CHECKING:
    from optimlab.evidence.registry import Claim

__all__ = ["RunContext"]


@dataclass
class RunContext:
    """What a claim's ``run`` function receives.

    Attributes:
        scale: ``smoke`` (seconds, verdict forced to ``inconclusive``), ``quick`` (≤ ~90 s on 2 cores) or ``full``.
        seeds: the seeds to use, in order; every method in a paired comparison uses the same seed.
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        out_dir: output folder; figures go to ``<out_dir>/figures`` (:meth:`save_figure`, :meth:`figure_path`).
        cache: shared between all claims of one invocation, so that claims of one ``group`` share runs.
        progress: callback taking a short status string (may be a no-op).
        claim: the claim being run (the runner sets it; :meth:`result` and :meth:`save_figure` need it).
    """

    scale: str
    seeds: list[int]
    device: str = "cpu"
    out_dir: Path = Path("runs/latest")
    cache: dict[Any, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda msg: None
    claim: Claim | None = None

    def _claim(self, what: str) -> Claim:
        if self.claim is None:
            raise ValueError(f"ctx.{what} needs the claim: build the context as RunContext(..., claim=claim)")
        return self.claim

    def figure_path(self, claim_id: str) -> Path:
        """Absolute path of the claim's PNG (``<out>/figures/<id>.png``); the folder is created."""
        path = Path(self.out_dir) / "figures" / f"{claim_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to ``out_dir`` (what :class:`ClaimResult.figure` stores)."""
        return str(Path(path).resolve().relative_to(Path(self.out_dir).resolve()))

    def save_figure(self, fig: Any, name: str | None = None) -> str:
        """Save the matplotlib ``fig`` as ``<out>/figures/<claim id>[-<name>].png`` (atomically), close it, and
        return its path relative to ``out_dir``."""
        from optimlab.report.plots import save_figure

        claim = self._claim("save_figure")
        if name is not None and (not name or "/" in name or os.sep in name):
            raise ValueError(f"name must be a non-empty file-name part without '/', got {name!r}")
        path = self.figure_path(claim.id if name is None else f"{claim.id}-{name}")
        save_figure(fig, path)
        return self.relative(path)

    def _figure(self, figure: Any) -> str | None:
        if figure is None:
            return None
        if isinstance(figure, (str, os.PathLike)):
            path = Path(figure)
            if not path.is_absolute():
                return str(path)
            try:
                return self.relative(path)
            except ValueError:
                return str(path)  # outside out_dir: kept absolute
        if hasattr(figure, "savefig"):
            return self.save_figure(figure)
        raise TypeError(f"figure must be a matplotlib Figure, a path or None, got {type(figure).__name__}")

    def result(
        self,
        *,
        verdict: str | Outcome,
        numbers: Mapping[str, list[Any]],
        summary: Mapping[str, Any],
        figure: Any = None,
        notes: str | list[str] = "",
        provisional: bool = False,
    ) -> ClaimResult:
        """The claim's :class:`ClaimResult`, with everything the context knows filled in.

        ``verdict`` is a verdict string or a criterion's :class:`Outcome`; an Outcome's details are added to the
        summary under their own keys where the summary does not already have them, and its reason (if any) is
        appended to the notes. ``figure`` is a matplotlib Figure (saved through :meth:`save_figure`), a path,
        or ``None``. ``notes`` is text or a list of sentences (joined by spaces).
        """
        claim = self._claim("result")
        summary = dict(summary)
        notes_list = [notes] if isinstance(notes, str) else [str(n) for n in notes]
        if isinstance(verdict, Outcome):
            for key, value in verdict.details.items():
                summary.setdefault(key, value)
            if verdict.reason:
                notes_list.append(f"Verdict: {verdict.reason}.")
            verdict = verdict.verdict
        return ClaimResult(
            claim_id=claim.id,
            verdict=verdict,
            numbers={k: list(v) for k, v in numbers.items()},
            summary=summary,
            criterion=claim.criterion_text,
            seeds=list(self.seeds),
            scale=self.scale,
            figure=self._figure(figure),
            notes=" ".join(n.strip() for n in notes_list if n and n.strip()),
            provisional=bool(provisional or claim.provisional),
            kind=claim.kind,
            paper=claim.paper,
            statement=claim.statement,
            paper_reported=claim.paper_reported,
            headline=[list(h) for h in claim.headline],
        )
