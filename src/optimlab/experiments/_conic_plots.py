"""Figures of ``conic.certificate_valid`` and ``conic.lowrank_memory``; each returns a Figure for ``ctx.result``.
They only draw numbers the claims already computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optimlab.report.plots import new_figure

__all__ = ["certificate_figure", "lowrank_figure"]


def certificate_figure(bound: Sequence[float], true: Sequence[float], methods: Sequence[str], floor: float):
    """Final relative bound against the true relative gap (clipped at ``floor``), log-log, with y = x and y = 10x."""
    fig, ax = new_figure()
    b = np.asarray(bound, dtype=float)
    t = np.maximum(np.asarray(true, dtype=float), floor)
    k = len(methods)
    for i, m in enumerate(methods):
        ax.scatter(t[i::k], b[i::k], color=f"C{i}", s=22, label=m, zorder=3)
    finite = np.concatenate([b[np.isfinite(b) & (b > 0)], t, [floor]])
    lo, hi = 0.5 * finite.min(), 2 * finite.max()
    ax.plot([lo, hi], [lo, hi], color="0.2", linestyle="--", linewidth=1, label="bound = true gap (y = x)")
    ax.plot([lo, hi], [10 * lo, 10 * hi], color="0.5", linestyle=":", linewidth=1, label="10× the true gap")
    ax.axvline(floor, color="C3", linestyle="--", linewidth=0.8, label=f"floor {floor:g} (gaps below clipped)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("true relative gap at the last iterate (vs SCS, eps 1e-8)")
    ax.set_ylabel("certified relative gap bound")
    ax.set_title("conic.certificate_valid: certificate vs true gap (valid: above y = x)", fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig


def lowrank_figure(numbers: Mapping[str, Sequence[float]], sizes: Sequence[int], big: int, dense_bytes: float):
    """Peak memory (left) and time (right) per n, low-rank MOCO vs SCS; n = ``big`` MOCO alone."""
    fig, (a, b) = new_figure(1, 2, figsize=(8.5, 4.0))
    ns = [*sizes, big]
    x = np.arange(len(ns))
    for ax, (mkey, skey, ylabel, scale) in zip(
            (a, b), (("moco peak bytes", "scs peak rss bytes", "peak memory (MiB)", 2**20),
                     ("moco seconds", "scs seconds", "wall time (s)", 1.0))):
        moco = [numbers[f"n={n} {mkey}"][0] / scale for n in ns]
        scs = [numbers[f"n={n} {skey}"][0] / scale if f"n={n} {skey}" in numbers else np.nan for n in ns]
        ax.bar(x - 0.19, moco, 0.36, color="C0", label="low-rank MOCO")
        ax.bar(x + 0.19, [max(v, 1e-9 * scale) if np.isfinite(v) else np.nan for v in scs], 0.36, color="C1",
               label="SCS (eps 1e-3)")
        ax.set_xticks(x, [f"n = {n}" + ("\n(MOCO only)" if n == big else "") for n in ns])
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
    a.axhline(dense_bytes / 2**20, color="C3", linestyle="--", label="one dense 2000×2000 float64")
    a.set_title("peak memory (SCS: RSS growth; 0 not drawn)", fontsize="small")
    b.set_title("time to rel. accuracy 1e-2", fontsize="small")
    a.legend(fontsize="x-small")
    b.legend(fontsize="x-small")
    fig.suptitle("conic.lowrank_memory: low-rank MOCO vs SCS on MaxCut G(n, p)", fontsize="medium")
    return fig
