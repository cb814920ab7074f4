"""Step-time ratios measured side by side.

The callables run interleaved in blocks (A×b, B×b, C×b, A×b, ...) so that drift in machine load hits every method
alike. Round r gives t_r(f) = (time of f's block)/b per call; the reported time is median_r t_r(f) and the ratio is
median_r t_r(f)/t_r(baseline), a ratio taken within each round before the median (defaults: blocks of 20
calls, 200 measured calls after 20 warm-up calls).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TimingResult:
    """``seconds[name]``: median seconds per call; ``ratio[name]``: median per-round ratio to ``baseline``;
    ``per_round[name]``: the per-call seconds of each round, in order."""

    seconds: dict[str, float]
    ratio: dict[str, float]
    per_round: dict[str, tuple[float, ...]]
    baseline: str
    rounds: int
    block: int


def _check_int(name: str, value, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")


def compare_step_times(fns: dict[str, Callable[[], Any]], *, baseline: str, repeats: int = 10, block: int = 20,
                       warmup: int = 20, sync: Callable[[], None] | None = None) -> TimingResult:
    """Time each callable in ``repeats`` interleaved rounds of ``block`` calls, after ``warmup`` calls of each
    (also interleaved). Clock: ``time.perf_counter``; ``sync`` (e.g. ``torch.cuda.synchronize``) is called before
    each clock read, for asynchronous devices."""
    if not fns or not all(callable(f) for f in fns.values()):
        raise ValueError("fns must be a non-empty dict of name -> zero-argument callable")
    if baseline not in fns:
        raise ValueError(f"baseline must be one of {list(fns)}, got {baseline!r}")
    _check_int("repeats", repeats, 1)
    _check_int("block", block, 1)
    _check_int("warmup", warmup, 0)
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    per_call: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            sync()
            per_call[name].append((time.perf_counter() - t0) / block)
    base = per_call[baseline]
    ratios = {k: statistics.median(a / b for a, b in zip(v, base)) for k, v in per_call.items()}
    return TimingResult({k: statistics.median(v) for k, v in per_call.items()}, ratios,
                        {k: tuple(v) for k, v in per_call.items()}, baseline, repeats, block)
