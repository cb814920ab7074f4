"""Step-time ratios measured side by side: callables run interleaved (A B C A B C ...) so that drift in machine
load hits every method alike, and ratios are taken per round before the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TimingResult:
    """Median seconds per call of each callable, and the median over rounds of its ratio to ``baseline``."""

    seconds: dict[str, float]
    ratio: dict[str, float]
    baseline: str
    rounds: int
    block: int


def compare_step_times(fns: dict[str, Callable[[], Any]], *, baseline: str, repeats: int = 20, block: int = 5,
                       warmup: int = 2, sync: Callable[[], None] | None = None) -> TimingResult:
    """Time each callable in ``repeats`` interleaved rounds of ``block`` calls each, after ``warmup`` calls each.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before reading the clock, for asynchronous devices.
    """
    if baseline not in fns:
        raise ValueError(f"baseline must be one of {list(fns)}, got {baseline!r}")
    for name, value in (("repeats", repeats), ("block", block)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    sync = sync or (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
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
    ratios = {k: statistics.median(a / b for a, b in zip(v, per_call[baseline])) for k, v in per_call.items()}
    return TimingResult({k: statistics.median(v) for k, v in per_call.items()}, ratios, baseline, repeats, block)
