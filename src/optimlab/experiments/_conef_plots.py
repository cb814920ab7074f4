"""Figures of the ConEF claims (arXiv:2312.08538); each function returns a matplotlib Figure for ``ctx.result``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from optimlab.report.plots import curves_plot, new_figure

__all__ = ["accuracy_figure", "bar_figure", "contraction_figure", "speedup_figure"]


def bar_figure(labels: Sequence[str], values: Sequence[float], refs: Sequence[float] | None, ylabel: str, title: str,
               logy: bool = False):
    """One bar per configuration, with an optional dashed reference per bar."""
    fig, ax = new_figure(figsize=(max(6.0, 0.45 * len(labels) + 2), 4.5))
    xs = list(range(len(labels)))
    ax.bar(xs, values, color="C0")
    if refs is not None:
        for x, r in zip(xs, refs):
            ax.plot([x - 0.4, x + 0.4], [r, r], color="C3", linestyle="--")
    ax.set_xticks(xs, labels, rotation=60, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    return fig


def accuracy_figure(numbers: Mapping[str, Sequence[float]], methods: Sequence[str], seeds: Sequence[int],
                    curves: Mapping[str, Sequence[Sequence[float]]]):
    """Left: final accuracy per seed and method (bar: median). Right: accuracy per epoch (median, min–max)."""
    import numpy as np

    fig, (a, b) = new_figure(1, 2, figsize=(11.0, 4.2))
    for i, m in enumerate(methods):
        vals = numbers[f"{m}_acc"]
        a.scatter([i] * len(vals), vals, color=f"C{i}")
        a.plot([i - 0.25, i + 0.25], [statistics.median(vals)] * 2, color=f"C{i}")
        arr = [c for c in curves[m] if c]
        if arr:
            n = min(len(c) for c in arr)
            arr = np.array([c[:n] for c in arr])
            b.plot(range(1, n + 1), np.median(arr, 0), color=f"C{i}", label=m)
            b.fill_between(range(1, n + 1), arr.min(0), arr.max(0), color=f"C{i}", alpha=0.15, linewidth=0)
    a.set_xticks(range(len(methods)), list(methods))
    a.set_ylabel("test accuracy (%)")
    a.set_title(f"final accuracy, seeds {list(seeds)} (bar: median)")
    b.set_xlabel("epoch")
    b.set_ylabel("test accuracy (%)")
    b.legend(fontsize="small")
    b.set_title("test accuracy per epoch (median, min-max)")
    return fig


def speedup_figure(numbers: Mapping[str, Sequence[float]], bandwidths_gbps: Sequence[float]):
    """Modelled speedup over SGD against bandwidth (log x), with the break-even line at 1."""
    fig = curves_plot(dict(numbers), x=list(bandwidths_gbps), xlabel="bandwidth (Gb/s)",
                      ylabel="modeled speedup over SGD (N=8)", title="conef.speedup (a model)")
    fig.axes[0].set_xscale("log")
    fig.axes[0].axhline(1.0, color="0.5", linewidth=0.8)
    return fig


def contraction_figure(predicted: Sequence[float], measured: Sequence[float]):
    """Measured contraction factor against (1−λ)² + λ²κ, with the diagonal."""
    fig, ax = new_figure(figsize=(5.5, 5.0))
    ax.scatter(predicted, measured, s=14)
    lo, hi = min(list(predicted) + list(measured)), max(list(predicted) + list(measured))
    ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.8)
    ax.set_xlabel("(1-lambda)^2 + lambda^2 kappa")
    ax.set_ylabel("measured ||lambda S^T S x - x||^2 / ||x||^2")
    ax.set_title("conef.sketch_contraction")
    return fig
