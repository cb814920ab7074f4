"""Interleaved timing ratios and tensor-allocation peak memory."""

import time

import pytest
import torch

from optimlab.metrics import compare_step_times, peak_memory, state_bytes
from optimlab.metrics.memory import AllocationTracker, largest_allocation


def test_ratio_of_twice_the_work_is_about_two():
    res = compare_step_times({"one": lambda: time.sleep(0.002), "two": lambda: time.sleep(0.004)},
                             baseline="one", repeats=8, block=3, warmup=1)
    assert res.ratio["one"] == 1.0
    assert 1.5 <= res.ratio["two"] <= 3.0
    assert len(res.per_round["two"]) == 8 and res.rounds == 8 and res.block == 3
    with pytest.raises(ValueError, match="baseline"):
        compare_step_times({"a": lambda: None}, baseline="b")
    with pytest.raises(ValueError, match="repeats"):
        compare_step_times({"a": lambda: None}, baseline="a", repeats=0)


def test_interleaving_order():
    calls = []
    compare_step_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, baseline="a",
                       repeats=2, block=2, warmup=1)
    assert "".join(calls) == "ab" + "aabb" * 2


def test_peak_memory_counts_live_tensors():
    def fn():
        a = torch.ones(2_000_000)
        b = torch.ones(1_000_000)
        return float(a.sum() + b.sum())

    res = peak_memory(fn)
    assert 12_000_000 <= res.peak_bytes <= 12_100_000 and res.retained_bytes == 0

    def sequential():
        for _ in range(3):
            torch.ones(1_000_000).sum()

    assert peak_memory(sequential).peak_bytes < 4_100_000  # freed tensors are not counted twice


def test_in_place_and_views_of_existing_tensors_cost_nothing_and_backward_is_counted():
    params = [torch.randn(1000, 100) for _ in range(3)]
    res = peak_memory(lambda: [p.mul_(2.0).view(-1).t() for p in params])
    assert res.peak_bytes == 0 and res.retained_bytes == 0 and res.baseline_bytes is None
    w = torch.nn.Parameter(torch.randn(1000, 100))
    x = torch.randn(64, 1000)
    res = peak_memory(lambda: (x @ w).square().sum().backward())
    assert res.retained_bytes == 1000 * 100 * 4  # w.grad outlives the call
    assert res.peak_bytes >= 1000 * 100 * 4 + 64 * 100 * 4


def test_a_kept_copy_shows_up_in_the_comparison():
    params = [torch.randn(1000, 100) for _ in range(3)]
    kept = []

    def with_copy():
        kept.extend(p.clone() for p in params)
        for p in params:
            p.mul_(1.0)

    def without():
        for p in params:
            p.mul_(1.0)

    diff = peak_memory(with_copy).peak_bytes - peak_memory(without).peak_bytes
    assert diff == pytest.approx(3 * 1000 * 100 * 4, rel=0.01)
    assert state_bytes({"a": torch.zeros(10), "b": [torch.zeros(2, dtype=torch.float64)], "c": 3}) == 56


def test_largest_allocation_sees_new_tensors_and_not_views_or_in_place_results():
    a = torch.randn(300, 200)
    assert largest_allocation(lambda: a.T.contiguous()) == 300 * 200
    assert largest_allocation(lambda: (a.mul_(1.0), a.view(-1), a[:10])) == 0
    assert largest_allocation(lambda: (a[:10] @ a[:20].T).sum()) == 10 * 20
    with AllocationTracker() as tracker:
        b = torch.ones(1000, dtype=torch.float64)
        del b
        c = torch.ones(10)
    tracker.detach()
    assert tracker.largest_numel == 1000 and tracker.largest_bytes == 8000 and tracker.peak_bytes == 8000
    assert tracker.live_bytes == 40 and c.numel() == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_on_cuda_uses_the_allocator():
    def fn():
        a = torch.ones(2_000_000, device="cuda")
        b = torch.ones(1_000_000, device="cuda")
        return float(a.sum() + b.sum())

    res = peak_memory(fn, device="cuda")
    assert 12_000_000 <= res.peak_bytes <= 12_100_000 and res.retained_bytes == 0 and res.baseline_bytes >= 0


def test_compare_step_times_reads_every_clock_and_alternates_the_order():
    calls: list[str] = []
    ticks = iter(range(10**6))
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    res = compare_step_times(fns, baseline="a", repeats=4, block=2, warmup=1, alternate=True,
                             clocks={"count": lambda: float(next(ticks)), "wall": time.perf_counter})
    # warm-up a, b; then rounds in the order ab, ba, ab, ba (blocks of 2 calls)
    assert "".join(calls) == "ab" + "aabb" + "bbaa" + "aabb" + "bbaa"
    assert set(res.by_clock) == {"count", "wall"} and res.per_round == res.by_clock["count"]
    assert all(len(v) == 4 for d in res.by_clock.values() for v in d.values())
    assert all(v == 0.5 for d in (res.by_clock["count"],) for t in d.values() for v in t)  # one tick per block / 2 calls
    with pytest.raises(ValueError, match="clocks"):
        compare_step_times(fns, baseline="a", clocks={"x": 3})
