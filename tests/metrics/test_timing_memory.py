"""Interleaved timing ratios and tensor-allocation peak memory."""

import time

import pytest
import torch

from optimlab.metrics import compare_step_times, peak_memory, state_bytes


def test_ratio_of_twice_the_work_is_about_two():
    res = compare_step_times({"one": lambda: time.sleep(0.002), "two": lambda: time.sleep(0.004)},
                             baseline="one", repeats=8, block=3, warmup=1)
    assert res.ratio["one"] == 1.0
    assert 1.5 <= res.ratio["two"] <= 3.0
    with pytest.raises(ValueError, match="baseline"):
        compare_step_times({"a": lambda: None}, baseline="b")


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
