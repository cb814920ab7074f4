"""Figures of the zeroth-order claims (:mod:`optimlab.experiments.zo`) and of the bench ``zo.step``.

Every function only draws numbers a claim already computed; none runs anything. Reference lines: dashed for a
value the paper reports (or a prediction), dotted for the thresholds of the claim's criterion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from optimlab.report.plots import curves_plot, new_figure, paired_plot

Ref = tuple[float, str, str]  # (y, label, "paper" | "threshold")


def _refs(ax, refs: Sequence[Ref]) -> None:
    for y, label, kind in refs:
        ax.axhline(y, color="k" if kind == "paper" else "0.4", linestyle="--" if kind == "paper" else ":",
                   linewidth=1.2, label=label)
    lo, hi = ax.get_ylim()  # head room above the data for the legend
    ax.set_ylim(lo, hi * 2.5 if ax.get_yscale() == "log" else hi + 0.35 * (hi - lo))
    ax.legend(fontsize="x-small", loc="upper left", ncols=2)


def per_seed_bars(values: Mapping[str, Sequence[float]], seeds: Sequence[int], *, ylabel: str, title: str,
                  refs: Sequence[Ref] = (), logy: bool = False, ax=None):
    """Grouped bars per seed (``paired_plot``) plus reference lines."""
    fig = paired_plot(values, seeds=seeds, ylabel=ylabel, title=title, logy=logy, ax=ax)
    _refs(ax if ax is not None else fig.axes[0], refs)
    return fig


def value_bars(values: Mapping[str, float], *, ylabel: str, title: str, targets: Mapping[str, float] | None = None,
               refs: Sequence[Ref] = (), logy: bool = False, target_label: str = "target (≤)", ax=None):
    """One bar per quantity, with a short dashed segment at each quantity's own target."""
    if ax is None:
        fig, ax = new_figure()
    else:
        fig = ax.get_figure()
    names = list(values)
    x = np.arange(len(names))
    ax.bar(x, [values[n] for n in names], 0.6, color=[f"C{i % 10}" for i in range(len(names))])
    labelled = False
    for i, n in enumerate(names):
        t = (targets or {}).get(n)
        if t is not None:
            ax.hlines(t, i - 0.4, i + 0.4, colors="r", linestyles="--", linewidth=1.5,
                      label=None if labelled else target_label)
            labelled = True
    for i, n in enumerate(names):
        ax.annotate(f"{values[n]:.3g}", (i, values[n]), ha="center", va="bottom", fontsize="x-small")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _refs(ax, refs)
    return fig


def smoothing_figure(numbers: Mapping[str, list[float]]):
    cov = {k.replace(" share |z|<=3", ""): v[0] for k, v in numbers.items() if k.endswith("share |z|<=3")}
    bz = {k.replace("cubic ", "").replace(" bias z", ""): v[0] for k, v in numbers.items() if k.endswith("bias z")}
    fig, (a, b) = new_figure(1, 2, figsize=(8.0, 4.0))
    value_bars(cov, ylabel="share of coordinates with |z| ≤ 3", title="MC mean vs smoothed-gradient prediction",
               refs=[(0.95, "holds ≥ 0.95", "threshold"), (0.90, "fails < 0.90", "threshold")], ax=a)
    value_bars(bz, ylabel="z of coordinate-averaged bias (SE)", title="bias vs ∇f at eps = 0.5 (cubic)",
               refs=[(10.0, "holds ≥ 10 SE", "threshold"), (3.0, "fails < 3 SE", "threshold")], ax=b)
    fig.suptitle("zo.smoothing_bias: two-point estimator targets ∇f_λ, not ∇f")
    return fig


def equal_loss_figure(tr: Mapping[str, Mapping[float, list[float]]], levels: Sequence[float], matched: float):
    curves = {name: np.array([[by_lev[lev][c] for lev in levels] for c in range(len(by_lev[levels[0]]))])
              for name, by_lev in tr.items()}
    fig = curves_plot(curves, x=list(levels), xlabel="training loss level (cross-entropy, nats)",
                      ylabel="Hessian trace at first crossing", logy=True,
                      title="zo.equal_loss_trace: trace at equal loss, ZO vs GD/DD (median, min–max over chains)")
    ax = fig.axes[0]
    ax.invert_xaxis()
    ax.title.set_fontsize("small")
    if not math.isnan(matched):
        ax.axvline(matched, color="0.4", linestyle=":", label=f"matched level {matched:g}")
        ax.legend(fontsize="small")
    return fig


def glm_figure(numbers: Mapping[str, list[float]], seeds: Sequence[int]):
    fig, (a, b) = new_figure(1, 2, figsize=(8.0, 4.0))
    per_seed_bars({"GD init 0": numbers["tr_gd1"], "GD init N(0,I)": numbers["tr_gd2"], "ZO λ=1": numbers["tr_zo"],
                   "ZO + GD polish": numbers["tr_polished"]}, seeds, ylabel="Hessian trace", title="trace", ax=a)
    per_seed_bars({"GD": numbers["loss_gd"], "ZO λ=1": numbers["loss_zo"]}, seeds,
                  ylabel="training loss (logistic, nats)", title="loss", ax=b)
    fig.suptitle("zo.glm_control: ZO's lower trace is a loss-for-trace trade (lifted logistic)")
    return fig


def balancing_figure(numbers: Mapping[str, list[float]], lams: Sequence[float]):
    fig, ax = new_figure()
    for i, lam in enumerate(lams):
        v = np.asarray(numbers[f"lambda={lam} B_T/B0 over prediction"], dtype=float)
        jitter = np.linspace(-0.15, 0.15, len(v))
        ax.scatter(i + jitter, v, s=12, color=f"C{i}", alpha=0.6, label=f"chains, λ = {lam}")
        se2 = 2 * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
        ax.errorbar(i + 0.3, v.mean(), yerr=se2, fmt="o", color="k", capsize=4,
                    label="mean ± 2 SE" if i == 0 else None)
    ax.axhspan(0.85, 1.15, color="g", alpha=0.08, label="holds band [0.85, 1.15]")
    ax.set_xticks(range(len(lams)), [f"λ = {lam}" for lam in lams])
    ax.set_ylabel("B_T/B₀ ÷ exp(−2λ²·lr·T)")
    ax.set_title("zo.balancing: ZO imbalance decay vs Prop. 2.2")
    _refs(ax, [(1.0, "Prop. 2.2 prediction", "paper")])
    return fig
