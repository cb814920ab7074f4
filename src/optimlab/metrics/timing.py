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
from dataclasses import dataclass, field
from typing import Any

from optimlab._validation import Interval, check


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
    by_clock: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)


def _check_int(name: str, value, lo: int) -> None:
    check(Interval(lo, None, integer=True), value, name)


def compare_step_times(fns: dict[str, Callable[[], Any]], *, baseline: str, repeats: int = 10, block: int = 20,
                       warmup: int = 20, sync: Callable[[], None] | None = None,
                       clocks: dict[str, Callable[[], float]] | None = None,
                       alternate: bool = False) -> TimingResult:
    """Time each callable in ``repeats`` interleaved rounds of ``block`` calls, after ``warmup`` calls of each
    (also interleaved). ``sync`` (e.g. ``torch.cuda.synchronize``) is called before each clock read, for
    asynchronous devices.

    ``clocks`` maps names to clock functions, all read around each block (default ``{"wall": time.perf_counter}``);
    the first one gives ``seconds``, ``ratio`` and ``per_round``, and every one is in ``by_clock``. Process CPU time
    (``time.process_time``) leaves out the time a process waits for a core on a shared machine. ``alternate``
    reverses the order of the callables every other round, so that no method always follows the same one.
    """
    if not fns or not all(callable(f) for f in fns.values()):
        raise ValueError("fns must be a non-empty dict of name -> zero-argument callable")
    if baseline not in fns:
        raise ValueError(f"baseline must be one of {list(fns)}, got {baseline!r}")
    _check_int("repeats", repeats, 1)
    _check_int("block", block, 1)
    _check_int("warmup", warmup, 0)
    clocks = clocks or {"wall": time.perf_counter}
    if not all(callable(c) for c in clocks.values()):
        raise ValueError("clocks must map names to zero-argument clock functions")
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    per_call: dict[str, dict[str, list[float]]] = {c: {k: [] for k in fns} for c in clocks}
    names = list(fns)
    for r in range(repeats):
        for name in names[::-1] if alternate and r % 2 else names:
            fn = fns[name]
            sync()
            starts = {c: clock() for c, clock in clocks.items()}
            for _ in range(block):
                fn()
            sync()
            for c, clock in clocks.items():
                per_call[c][name].append((clock() - starts[c]) / block)
    by_clock = {c: {k: tuple(v) for k, v in d.items()} for c, d in per_call.items()}
    first = per_call[next(iter(clocks))]
    base = first[baseline]
    ratios = {k: statistics.median(a / b for a, b in zip(v, base)) for k, v in first.items()}
    return TimingResult({k: statistics.median(v) for k, v in first.items()}, ratios,
                        {k: tuple(v) for k, v in first.items()}, baseline, repeats, block, by_clock)
