"""Figures of the BAR LoRA claims and ``bar.layer_dilution`` (arXiv:2410.14802); each returns a Figure for
``ctx.result``. They only draw numbers the claims already computed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optimlab.report.plots import new_figure

__all__ = ["accuracy_figure", "balance_figure", "dilution_figure", "overhead_figure"]

METHODS = ("lora", "sam", "nbar", "obar")


def _dots(ax, x: float, vals: Sequence[float], color: str = "k", label: str | None = None) -> None:
    xs = x + np.linspace(-0.08, 0.08, len(vals)) if len(vals) > 1 else [x]
    ax.scatter(xs, vals, color=color, s=14, zorder=3, label=label)


def balance_figure(numbers: Mapping[str, Sequence[float]], seeds: Sequence[int]):
    """Median R per method (bars) with per-seed dots, SGD (gated) beside AdamW (reported); R = 1 is conservation."""
    fig, ax = new_figure()
    x = np.arange(len(METHODS))
    for k, (suffix, name) in enumerate((("", "SGD (gated)"), (" (adamw)", "AdamW (reported)"))):
        vals = [np.asarray(numbers[f"R {m}{suffix}"], dtype=float) for m in METHODS]
        xs = x + (k - 0.5) * 0.38
        ax.bar(xs, [np.median(v) for v in vals], 0.36, color=f"C{k}", alpha=0.75, label=f"{name}: median R")
        for xi, v in zip(xs, vals):
            _dots(ax, xi, v, label=f"per seed ({len(seeds)} seeds)" if (k == 0 and xi == xs[0]) else None)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="R = 1 (balancedness conserved)")
    allv = np.concatenate([np.asarray(v, dtype=float) for k, v in numbers.items() if k.startswith("R ")])
    pos = allv[allv > 0]
    if pos.size and pos.max() / pos.min() > 30:
        ax.set_yscale("log")
    ax.set_xticks(x, ["LoRA", "LoRA-SAM", "nBAR", "oBAR"])
    ax.set_ylabel("R = mean_l |bal_l(T)| / |bal_l(0)|  (ratio)")
    ax.set_title("bar.lora_balance: SGD/AdamW LoRA vs SAM, nBAR, oBAR on shifted digits", fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig


def accuracy_figure(numbers: Mapping[str, Sequence[float]], seeds: Sequence[int], majority: float):
    """Per-seed test accuracy per method (bar: median), the majority-class rate dashed."""
    fig, ax = new_figure()
    methods = [m for m in ("lora", "nbar", "obar") if f"acc {m}" in numbers]
    for i, m in enumerate(methods):
        vals = 100 * np.asarray(numbers[f"acc {m}"], dtype=float)
        ax.bar(i, np.median(vals), 0.6, color=f"C{i}", alpha=0.6)
        _dots(ax, i, vals, label=f"per seed ({len(seeds)} seeds)" if i == 0 else None)
    ax.axhline(100 * majority, color="C3", linestyle="--", label=f"majority-class rate ({100 * majority:.1f}%)")
    ax.set_xticks(range(len(methods)), [{"lora": "LoRA", "nbar": "nBAR", "obar": "oBAR"}[m] for m in methods])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("bar.lora_accuracy: LoRA vs nBAR / oBAR, MiniLM on drug reviews (bar: median)", fontsize="medium")
    ax.legend(fontsize="x-small", loc="lower right")
    return fig


def overhead_figure(fp32: Mapping[str, float], half: Mapping[str, float]):
    """Step-time ratio to LoRA per method (float32 gated, fp16 reported) against the paper's Table 2 ranges."""
    fig, ax = new_figure()
    methods = [m for m in ("nbar", "obar", "sam") if f"{m}/lora" in fp32]
    x = np.arange(len(methods))
    ax.bar(x - 0.19, [fp32[f"{m}/lora"] for m in methods], 0.36, color="C0", label="float32 (gated)")
    ax.bar(x + 0.19, [half.get(f"{m}/lora", np.nan) for m in methods], 0.36, color="C1", alpha=0.7,
           label="fp16 autocast (reported)")
    for lo, hi, color, name in ((1.03, 1.05, "C2", "paper BAR/LoRA 1.03–1.05 (Table 2)"),
                                (3.28, 4.43, "C3", "paper SAM/LoRA 3.28–4.43 (Table 2)")):
        ax.axhspan(lo, hi, color=color, alpha=0.15)
        ax.axhline(lo, color=color, linestyle="--", linewidth=1, label=name)
        ax.axhline(hi, color=color, linestyle="--", linewidth=1)
    ax.axhline(1.0, color="0.3", linewidth=0.8)
    ax.set_xticks(x, [{"nbar": "nBAR", "obar": "oBAR", "sam": "LoRA-SAM"}[m] for m in methods])
    ax.set_ylabel("CPU time per step / LoRA's (×)")
    ax.set_ylim(0, max(4.8, 1.1 * max(fp32[f"{m}/lora"] for m in methods)))
    ax.set_title("bar.lora_overhead: BAR and SAM step cost relative to plain LoRA", fontsize="medium")
    ax.legend(fontsize="x-small", loc="upper left")
    return fig


def dilution_figure(runs: Mapping[int, object], eta: float):
    """Block-1 r_t (median over seeds, min–max band) for D = 1 and D = 8: SAM solid/dashed, nBAR likewise."""
    fig, ax = new_figure()
    for i, m in enumerate(("sam", "nbar")):
        for D, ls, lw in ((1, "-", 2.4), (8, "--", 1.2)):
            run = runs[D]
            c = run.curve[m][:, 0, :, 0]  # steps x seeds, block 1
            t = run.steps * eta
            ax.fill_between(t, c.min(axis=1), c.max(axis=1), color=f"C{i}", alpha=0.12, linewidth=0)
            ax.plot(t, np.median(c, axis=1), color=f"C{i}", linestyle=ls, linewidth=lw,
                    label=f"{'SAM (one global norm)' if m == 'sam' else 'nBAR (per pair)'}, D = {D}")
    ax.axhline(1.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("time t·η")
    ax.set_ylabel("block-1 r_t = |bal_t| / |bal_0|  (ratio)")
    ax.set_ylim(bottom=0)
    ax.set_title("bar.layer_dilution: block-1 balancing, D = 1 vs D = 8 blocks", fontsize="medium")
    ax.legend(fontsize="x-small")
    return fig
