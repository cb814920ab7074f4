"""Regret curves over seeds: medians with bootstrap confidence bands, and a plot helper (matplotlib lazily)."""

from __future__ import annotations

from typing import Any

import numpy as np

from optimlab._random import check_generator

__all__ = ["bootstrap_se", "curve_band", "plot_bands"]


def bootstrap_se(values: Any, stat: Any = np.median, n_boot: int = 2000, generator: Any = 0) -> float:
    """Bootstrap standard error of ``stat`` over seeds (resampling seeds with replacement; seeded, default 0)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2 or not np.all(np.isfinite(v)):
        return float("nan") if not np.all(np.isfinite(v)) else 0.0
    g = check_generator(generator, kind="numpy")
    idx = g.integers(v.size, size=(n_boot, v.size))
    return float(np.std(stat(v[idx], axis=-1) if v.ndim == 1 else stat(v[idx], axis=1), ddof=1))


def curve_band(curves: Any, level: float = 0.9, n_boot: int = 500, generator: Any = 0) -> tuple[np.ndarray, ...]:
    """(median, low, high) over seeds of ``curves[S, T]``: the band is the bootstrap percentile interval of the
    median at confidence ``level`` (vectorised over T)."""
    c = np.asarray(curves, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"curve_band: curves must have shape [seeds, T], got {c.shape}")
    med = np.median(c, axis=0)
    if c.shape[0] < 2:
        return med, med.copy(), med.copy()
    g = check_generator(generator, kind="numpy")
    idx = g.integers(c.shape[0], size=(n_boot, c.shape[0]))
    boots = np.median(c[idx], axis=1)  # [n_boot, T]
    a = (1 - level) / 2
    return med, np.quantile(boots, a, axis=0), np.quantile(boots, 1 - a, axis=0)


def plot_bands(ax: Any, curves_by_method: dict[str, Any], *, x: Any = None, level: float = 0.9) -> Any:
    """Median curve and confidence band per method on ``ax``."""
    for name, curves in curves_by_method.items():
        med, lo, hi = curve_band(curves, level=level)
        xs = np.arange(1, len(med) + 1) if x is None else np.asarray(x)
        (line,) = ax.plot(xs, med, label=name, lw=1.4)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return ax
