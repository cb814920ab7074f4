"""The result of one claim (or benchmark) run, and atomic JSON persistence.

A :class:`ClaimResult` carries every number measured in the run, per seed, so that a reader can recompute the
verdict. Files are written atomically (temporary file in the same folder, ``fsync``, then ``os.replace``): a run
killed mid-write leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

VERDICTS = ("holds", "does not hold", "inconclusive")
STATUSES = ("ok", "error")


def _clean(x: Any) -> Any:
    """JSON-safe copy: floats that are not finite become strings ("nan", "inf", "-inf")."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        return _clean(x.item())
    return x


@dataclass
class ClaimResult:
    """Outcome of one claim (``kind="claim"``) or benchmark (``kind="bench"``).

    Attributes:
        claim_id: registry id, ``"paper.name"``.
        verdict: one of :data:`VERDICTS` (benchmarks use the same words for their targets).
        numbers: per-seed measurements, ``{metric: [value for each seed]}`` (or any list of repeated measurements).
        summary: derived scalars shown in the table (medians, ratios, counts), computed from ``numbers``.
        criterion: the pass rule, as fixed in the claim's code.
        seeds: the seeds used, in the order of the lists in ``numbers``.
        scale: ``smoke``, ``quick`` or ``full``.
        wall_time_s: seconds the claim took.
        figure: path of the PNG relative to the output folder, or ``None``.
        notes: free text for the report (caveats, what was checked against the paper).
        provisional: the tested algorithm is a provisional design (the report labels it).
        status: ``ok`` or ``error`` (the claim crashed; ``error`` holds the traceback).
        paper_reported: what the paper itself reported for the statement (shown beside our numbers).
        headline: ``[[summary_key, label, unit], ...]``, the one to three summary numbers the summary table shows.
    """

    claim_id: str
    verdict: str
    numbers: dict[str, list[float]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    criterion: str = ""
    seeds: list[int] = field(default_factory=list)
    scale: str = "quick"
    wall_time_s: float = 0.0
    figure: str | None = None
    notes: str = ""
    provisional: bool = False
    kind: str = "claim"
    status: str = "ok"
    error: str | None = None
    paper: str = ""
    statement: str = ""
    paper_reported: str = ""
    headline: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def median(self, metric: str) -> float:
        """Median over seeds of ``numbers[metric]``."""
        values = [float(v) for v in self.numbers[metric]]
        return statistics.median(values)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClaimResult:
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in known}

        def unclean(x: Any) -> Any:
            if isinstance(x, str) and x in ("nan", "inf", "-inf"):
                return float(x)
            if isinstance(x, list):
                return [unclean(v) for v in x]
            if isinstance(x, dict):
                return {k: unclean(v) for k, v in x.items()}
            return x

        d["numbers"] = unclean(d.get("numbers", {}))
        d["summary"] = unclean(d.get("summary", {}))
        d["headline"] = [list(h) for h in d.get("headline", [])]
        return cls(**d)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is fsynced and renamed onto ``path``.

    Readers see either the old file or the new one, never a partial one; on error the temporary file is removed
    and any previous file at ``path`` is untouched. The file gets the usual permissions (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Atomic JSON write (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def load_results(path: str | os.PathLike) -> dict[str, ClaimResult]:
    """Read ``results.json`` (``{"results": [...]}``) into ``{claim_id: ClaimResult}``; empty if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {d["claim_id"]: ClaimResult.from_dict(d) for d in data.get("results", [])}
