"""Run a list of claims (or benchmarks) and keep ``results.json`` and the report up to date after each one.

:func:`run_claims` is what ``optimlab reproduce`` and ``optimlab bench`` call. A claim that crashes becomes an
``error`` result and the run continues; every file is rewritten atomically after each claim, so a killed run
leaves the results of the claims already finished, and ``resume=True`` picks up from there.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optimlab
from optimlab.evidence.context import RunContext
from optimlab.evidence.registry import SCALES, Claim
from optimlab.report.schema import ClaimResult, load_results, write_json_atomic
from optimlab.report.writer import write_report

__all__ = ["RunProgress", "RunSummary", "check_device", "git_commit", "run_claims", "run_metadata"]


class RunProgress:
    """Callbacks the runner makes while it works; every method is a no-op here (override what you need).

    Any object with these four methods will do; subclassing is optional.
    """

    def claim_started(self, claim: Claim, index: int, total: int) -> None:
        """``claim`` (the ``index``-th of ``total``, from 0) is about to run."""

    def message(self, claim: Claim, msg: str) -> None:
        """The running claim reported ``msg`` through ``ctx.progress``."""

    def claim_finished(self, claim: Claim, result: ClaimResult) -> None:
        """``claim`` ended (ok or error) with ``result``; files are already written."""

    def claim_skipped(self, claim: Claim, previous: ClaimResult) -> None:
        """``claim`` was skipped by ``resume`` because ``previous`` is already in ``results.json``."""


@dataclass
class RunSummary:
    """What one invocation did.

    ``results`` holds one result per requested claim, in run order (for a skipped claim, its previous result);
    ``skipped`` the ids skipped by ``resume``; ``meta`` the header written to ``results.json``.
    """

    out_dir: Path
    results: list[ClaimResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def crashed(self) -> list[str]:
        """Ids of the claims that raised (status ``error``) in this invocation."""
        return [r.claim_id for r in self.results if r.status == "error" and r.claim_id not in self.skipped]

    @property
    def results_json(self) -> Path:
        return self.out_dir / "results.json"

    @property
    def report_md(self) -> Path:
        return self.out_dir / "report.md"

    @property
    def report_html(self) -> Path:
        return self.out_dir / "report.html"


def check_device(device: str) -> str:
    """Return ``device`` if torch can use it here, else raise ``ValueError`` saying what is available."""
    import torch  # imported when a run starts, so that `optimlab list` and `--help` stay cheap

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r} (use 'cpu', 'cuda' or 'cuda:N'): {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine "
                             f"(torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise ValueError(f"device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'")
    return device


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """``git rev-parse --short HEAD`` of ``cwd`` (default: the current folder), with ``+dirty`` when ``git status
    --porcelain`` lists anything; ``"unknown"`` when it is not a git checkout or git is missing. Never raises."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        if not commit:
            return "unknown"
        return commit + ("+dirty" if git("status", "--porcelain").strip() else "")
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown"


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere), or ``""``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(scale: str, device: str) -> dict[str, Any]:
    """The header of ``results.json``: version, start time, scale, commit and the machine the run used."""
    import torch

    meta: dict[str, Any] = {
        "optimlab_version": optimlab.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scale": scale,
        "commit": git_commit(),
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if device.startswith("cuda"):
        try:
            meta["gpu"] = torch.cuda.get_device_name(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):
            pass
    return meta


def _load_previous(path: Path) -> dict[str, ClaimResult]:
    try:
        return load_results(path)
    except (ValueError, KeyError, TypeError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"cannot read the previous results {path}: {e}; move it away or choose another --out") from e


def _finish(result: Any, claim: Claim, ctx: RunContext, wall: float) -> ClaimResult:
    """Fill in what the runner knows about a result returned by ``claim.run``."""
    if not isinstance(result, ClaimResult):
        raise TypeError(f"claim {claim.id!r} returned {type(result).__name__}, expected ClaimResult")
    result.claim_id = claim.id
    result.paper = result.paper or claim.paper
    result.statement = result.statement or claim.statement
    result.criterion = result.criterion or claim.criterion_text
    result.paper_reported = result.paper_reported or claim.paper_reported
    result.headline = result.headline or [list(h) for h in claim.headline]
    result.scale, result.seeds, result.wall_time_s = ctx.scale, list(ctx.seeds), wall
    result.kind = claim.kind
    result.provisional = bool(result.provisional or claim.provisional)
    if result.figure and Path(result.figure).is_absolute():
        try:
            result.figure = ctx.relative(Path(result.figure))
        except ValueError:
            pass  # outside out_dir: kept absolute
    return result


def _error(claim: Claim, ctx: RunContext, wall: float, error: str) -> ClaimResult:
    return ClaimResult(
        claim_id=claim.id, verdict="inconclusive", status="error", error=error, paper=claim.paper,
        statement=claim.statement, criterion=claim.criterion_text, scale=ctx.scale, seeds=list(ctx.seeds),
        wall_time_s=wall, kind=claim.kind, provisional=claim.provisional, paper_reported=claim.paper_reported,
        headline=[list(h) for h in claim.headline],
    )


def _force_inconclusive(result: ClaimResult, note: str) -> None:
    result.notes = f"{result.notes.rstrip()}\n\n{note}" if result.notes.strip() else note
    result.verdict = "inconclusive"


def _run_one(claim: Claim, ctx: RunContext) -> ClaimResult:
    """Run one claim; any exception becomes an ``error`` result carrying the traceback."""
    if ctx.scale not in claim.scales:
        return _error(claim, ctx, 0.0, f"claim {claim.id!r} does not support scale {ctx.scale!r}; "
                                        f"it supports {', '.join(claim.scales)}")
    start = time.perf_counter()
    try:
        result = _finish(claim.run(ctx), claim, ctx, 0.0)
    except Exception:
        return _error(claim, ctx, time.perf_counter() - start, traceback.format_exc())
    result.wall_time_s = time.perf_counter() - start
    computed = result.verdict
    if len(ctx.seeds) < claim.min_seeds:
        _force_inconclusive(result, f"too few seeds: the criterion needs at least {claim.min_seeds} seeds and this "
                                    f"run used {len(ctx.seeds)}, so the verdict is inconclusive; computed verdict "
                                    f"was {computed}")
    if ctx.scale == "smoke":
        _force_inconclusive(result, f"smoke scale: verdict inconclusive by construction; computed verdict was "
                                    f"{computed}")
    return result


def _save(out_dir: Path, meta: dict[str, Any], merged: dict[str, ClaimResult]) -> None:
    results = list(merged.values())
    write_json_atomic(out_dir / "results.json", {**meta, "results": [r.to_dict() for r in results]})
    write_report(out_dir, results, meta)


def run_claims(
    claims: list[Claim],
    *,
    scale: str,
    seeds: int | None,
    device: str,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: RunProgress | None = None,
) -> RunSummary:
    """Run ``claims`` in order at ``scale`` on ``device``, writing results and report to ``out_dir``.

    ``seeds=N`` uses seeds ``0..N-1`` for every claim, ``None`` each claim's default for the scale. Results of
    other claims already in ``out_dir/results.json`` are kept. With ``resume``, a claim already there with
    status ``ok`` at the same scale (and the same seeds when ``seeds`` is given) is skipped.
    Raises ``ValueError`` for an unknown scale, ``seeds < 1`` or a device torch cannot use here.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    check_device(device)
    progress = progress or RunProgress()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged = _load_previous(out_dir / "results.json")
    meta = run_metadata(scale, device)
    summary = RunSummary(out_dir=out_dir, meta=meta)
    cache: dict[Any, Any] = {}
    for index, claim in enumerate(claims):
        seed_list = list(range(seeds)) if seeds is not None else claim.default_seeds(scale)
        prev = merged.get(claim.id)
        if (resume and prev is not None and prev.status == "ok" and prev.scale == scale
                and (seeds is None or prev.seeds == seed_list)):
            summary.results.append(prev)
            summary.skipped.append(claim.id)
            progress.claim_skipped(claim, prev)
            continue
        progress.claim_started(claim, index, len(claims))
        ctx = RunContext(scale=scale, seeds=seed_list, device=device, out_dir=out_dir, cache=cache,
                         progress=lambda msg, _c=claim: progress.message(_c, str(msg)), claim=claim)
        result = _run_one(claim, ctx)
        merged[claim.id] = result
        summary.results.append(result)
        _save(out_dir, meta, merged)
        progress.claim_finished(claim, result)
    if not summary.results or len(summary.skipped) == len(summary.results):
        _save(out_dir, meta, merged)  # nothing ran: still leave a report of what is there
    return summary
