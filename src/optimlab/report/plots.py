"""Matplotlib helpers shared by the claims: figures without a display, atomic PNG saving, two standard plots.

Figures are built as :class:`matplotlib.figure.Figure` objects on the ``Agg`` canvas, not through ``pyplot``, so no
GUI backend and no global figure list are involved. A claim typically does::

    fig = paired_plot({"SGD": sgd_trace, "SAM": sam_trace}, seeds=ctx.seeds, ylabel="Hessian trace", logy=True)
    return ctx.result(..., figure=fig)  # saved as <out>/figures/<claim id>.png through ctx.save_figure
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never switch the backend of a session that already uses pyplot
    matplotlib.use("Agg")

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optimlab.report.schema import atomic_open

__all__ = ["curves_plot", "new_figure", "paired_plot", "save_figure"]


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.0, 4.0)):
    """A ``(Figure, axes)`` pair on the Agg canvas (``axes`` is one Axes, or an array when ``nrows*ncols > 1``)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically (temporary file, then ``os.replace``) and close it.

    The folder is created. Returns ``path``. A failed save leaves any previous file at ``path`` untouched.
    """
    path = Path(path)
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:  # figures made with pyplot stay registered until closed
            plt.close(fig)
    return path


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(), ax
    fig, ax = new_figure(figsize=figsize)
    return fig, ax


def paired_plot(
    values: Mapping[str, Sequence[float]] | Mapping[str, Mapping[str, Sequence[float]]],
    seeds: Sequence[int] | None = None,
    *,
    labels: Sequence[str] | None = None,
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
    style: str = "bars",
    ax: Axes | None = None,
) -> Figure:
    """Per-seed comparison of several methods measured on the same seeds (or other paired units).

    ``values`` maps each method to one value per seed (same length for every method), or maps panel titles to
    such mappings to draw one panel per metric side by side. ``seeds`` (shown as ``seed s``) or ``labels``
    (any text, e.g. ``"w16/s0"``) name the paired units; default ``0, 1, ...``. ``style="bars"`` draws grouped
    bars per unit with a dashed line at each method's median; ``style="lines"`` puts the methods on the x axis
    and joins the values of one unit by a line (the usual paired plot; good with ``logy``).
    Returns the figure (the one holding ``ax`` when given).
    """
    if not values:
        raise ValueError("values must name at least one method (or panel)")
    if style not in ("bars", "lines"):
        raise ValueError(f"style must be 'bars' or 'lines', got {style!r}")
    if seeds is not None and labels is not None:
        raise ValueError("give seeds or labels, not both")
    panels = all(isinstance(v, Mapping) for v in values.values())
    if not panels and any(isinstance(v, Mapping) for v in values.values()):
        raise ValueError("values must map methods to values, or panel titles to such mappings, not a mix")
    if not panels:
        fig, ax = _axes(ax, (6.0, 4.0))
        _paired_axes(ax, values, seeds, labels, ylabel, title, logy, style)
        return fig
    if ax is not None:
        raise ValueError("ax cannot be given with several panels")
    fig, axes = new_figure(1, len(values), figsize=(4.5 * len(values), 4.0))
    for a, (name, panel) in zip(np.atleast_1d(axes), values.items()):
        _paired_axes(a, panel, seeds, labels, ylabel, name, logy, style)
    if title:
        fig.suptitle(title)
    return fig


def _paired_axes(ax, values, seeds, labels, ylabel, title, logy, style) -> None:
    names = list(values)
    data = [np.asarray(values[n], dtype=float) for n in names]
    n = len(data[0])
    if not names or n == 0 or any(d.ndim != 1 or len(d) != n for d in data):
        raise ValueError(f"every method needs the same non-zero number of values; got {[d.shape for d in data]}")
    ticks = [str(s) for s in seeds] if seeds is not None else [str(s) for s in labels] if labels is not None else \
        [str(i) for i in range(n)]
    if len(ticks) != n:
        raise ValueError(f"got {len(ticks)} seeds/labels for {n} values per method")
    colors = [f"C{i % 10}" for i in range(len(names))]
    if style == "bars":
        width = 0.8 / len(names)
        x = np.arange(n)
        for i, (name, d) in enumerate(zip(names, data)):
            ax.bar(x + (i - (len(names) - 1) / 2) * width, d, width, label=name, color=colors[i])
            ax.axhline(np.median(d), color=colors[i], linestyle="--", linewidth=1)
        ax.set_xticks(x, ticks, rotation=45 if labels is not None and n > 6 else 0)
        ax.set_xlabel("seed" if labels is None else "")
    else:
        stacked = np.stack(data, axis=1)  # units x methods
        xs = np.arange(len(names))
        for row in stacked:
            ax.plot(xs, row, color="0.6", marker="o", linewidth=1, markersize=3)
        ax.scatter(xs, np.median(stacked, axis=0), color=colors, s=60, zorder=3, label="median")
        ax.set_xticks(xs, names)
        ax.set_xlim(-0.5, len(names) - 0.5)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")


def curves_plot(
    curves: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    x: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
    *,
    xlabel: str = "step",
    ylabel: str = "",
    title: str = "",
    logy: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Curves per method (loss, error, gap ... against steps).

    Each value of ``curves`` is one curve (1-D) or one curve per seed (2-D, seeds x points); for 2-D input
    the median is drawn with a band from the minimum to the maximum over seeds. ``x`` is shared, per method
    (a mapping), or ``None`` for ``0, 1, 2, ...``. ``logy`` puts the y axis on a log scale.
    """
    if not curves:
        raise ValueError("curves must name at least one method")
    fig, ax = _axes(ax, (6.0, 4.0))
    for i, (name, ys) in enumerate(curves.items()):
        arr = np.asarray(ys, dtype=float)
        if arr.ndim not in (1, 2) or arr.shape[-1] == 0:
            raise ValueError(f"curve {name!r} must be 1-D or 2-D (seeds x points) and non-empty; shape {arr.shape}")
        xs = x.get(name) if isinstance(x, Mapping) else x
        xs = np.arange(arr.shape[-1]) if xs is None else np.asarray(xs, dtype=float)
        if len(xs) != arr.shape[-1]:
            raise ValueError(f"curve {name!r} has {arr.shape[-1]} points but x has {len(xs)}")
        color = f"C{i % 10}"
        if arr.ndim == 2:
            ax.fill_between(xs, arr.min(axis=0), arr.max(axis=0), color=color, alpha=0.2, linewidth=0)
            arr = np.median(arr, axis=0)
        ax.plot(xs, arr, color=color, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig
