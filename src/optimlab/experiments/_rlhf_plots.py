"""Figures of ``rlhf.null_threshold`` and ``rlhf.misspecification_sweep``; each returns a Figure for
``ctx.result``. They only draw numbers the claims already computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optimlab.report.plots import new_figure

__all__ = ["misspec_figure", "null_figure"]


def null_figure(regret: Mapping[str, Sequence[float]]):
    """Final regret of TPO against the null arm's credit: per-seed dots, median ± SE (std / √n)."""
    fig, ax = new_figure()
    keys = sorted(regret, key=lambda k: float(k.split("=")[1]))
    xs = [float(k.split("=")[1]) for k in keys]
    for x, k in zip(xs, keys):
        v = np.asarray(regret[k], dtype=float)
        ax.scatter(np.full(len(v), x), v, color="0.6", s=12, zorder=2,
                   label=f"per seed ({len(v)} seeds)" if k == keys[0] else None)
    med = [float(np.median(regret[k])) for k in keys]
    se = [float(np.std(regret[k], ddof=1) / np.sqrt(len(regret[k]))) if len(regret[k]) > 1 else 0.0 for k in keys]
    ax.errorbar(xs, med, yerr=se, color="C0", marker="o", capsize=4, zorder=3, label="median ± SE (std/√n)")
    ax.axvline(0.55, color="C3", linestyle="--", linewidth=1, label="authors' code: null credit 0.55")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel("null arm credit (win rate assigned to online learning)")
    ax.set_ylabel("regret_pair at T (cumulative regret)")
    ax.set_title("rlhf.null_threshold: TPO regret vs null-arm credit", fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig


def misspec_figure(qs: Sequence[float], rhos: Sequence[float]):
    """q(rho) = median gap@50(TPO) / gap@50(B*) against the source correlation rho, with the gates dashed."""
    fig, ax = new_figure()
    ax.plot(rhos, qs, color="C0", marker="o", label="q(ρ) (medians over seeds)")
    ax.axhline(1.0, color="0.4", linewidth=0.8, label="q = 1 (no benefit)")
    ax.axhline(1.1, color="C3", linestyle="--", linewidth=1, label="gate: q ≤ 1.1 for every ρ")
    good = [r for r in rhos if r >= 0.7]
    if good:
        ax.hlines(0.7, 0.7, max(1.0, *good), color="C2", linestyle="--", label="gate: q ≤ 0.7 for ρ ≥ 0.7")
    ax.set_xlabel("correlation ρ of the one source reward with the gold reward")
    ax.set_ylabel("q = gap@50(TPO) / gap@50(B*)  (ratio)")
    ax.set_ylim(bottom=0)
    ax.set_title("rlhf.misspecification_sweep: TPO's early benefit vs source quality", fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig
