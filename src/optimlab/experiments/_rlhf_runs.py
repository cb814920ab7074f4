"""Shared runs, sizes and figures of the ``rlhf.*`` claims (simulator: :mod:`optimlab.rlhf`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from optimlab.rlhf import KLBanditEnv, RunLog, curve_band, run_bandit

PAPER = ("Huang, Li, Dann, He, 'Can RLHF be More Efficient with Imperfect Reward Models? A Policy Coverage "
         "Perspective', ICML 2025, arXiv:2502.19255")
SEEDS = {"smoke": 2, "quick": 5, "full": 20}
SEEDS3 = {"smoke": 2, "quick": 3, "full": 10}
USUAL = (0.9, 0.5, 0.0, -0.5)
BAD = (0.0, -0.5)
# env size and horizon per scale (quick: the design notes' X = 40, Y = 24, d = 8, T = 300; smoke: seconds)
ENV = {"smoke": {"X": 12, "Y": 8, "d": 4}, "quick": {"X": 40, "Y": 24, "d": 8}, "full": {"X": 40, "Y": 24, "d": 8}}
HORIZON = {"smoke": 60, "quick": 300, "full": 600}
EARLY_T = 50
METHODS = ("tpo", "no_transfer", "optimistic", "ref", "uniform", "fixed_best", "fixed_worst", "mixture")
LABELS = {"tpo": "TPO (win-rate UCB)", "no_transfer": "NoTransfer", "optimistic": "Optimistic NoTransfer",
          "ref": "RefControl (pi_ref sampler)", "uniform": "UniformControl", "fixed_best": "Fixed-best",
          "fixed_worst": "Fixed-worst", "mixture": "Mixture (TRL rule)"}
NOTE_THREADS = "Simulator runs in one thread (run_bandit pins torch threads; numpy arrays are tiny)."


def env_for(scale: str, seed: int, rhos: tuple[float, ...] = USUAL) -> KLBanditEnv:
    return KLBanditEnv.linear(source_rhos=rhos, seed=seed, **ENV[scale])


def runs(ctx: Any, methods: tuple[str, ...], rhos: tuple[float, ...] = USUAL, T: int | None = None,
         env_fn: Any = None, tag: str = "linear", **kw: Any) -> dict[str, list[RunLog]]:
    """``{method: [RunLog per seed]}``, cached in ``ctx.cache`` so claims share runs."""
    T = HORIZON[ctx.scale] if T is None else T
    out: dict[str, list[RunLog]] = {}
    for m in methods:
        out[m] = []
        for s in ctx.seeds:
            key = ("rlhf", tag, ctx.scale, rhos, m, T, s, tuple(sorted(kw.items())))
            if key not in ctx.cache:
                ctx.progress(f"{tag} rho={rhos} {m} seed {s}")
                env = env_fn(s) if env_fn is not None else env_for(ctx.scale, s, rhos)
                ctx.cache[key] = run_bandit(env, m, T, s, **kw)
            out[m].append(ctx.cache[key])
    return out


def at(logs: list[RunLog], key: str, t: int | None = None) -> list[float]:
    """Per-seed ``history[key]`` at label t (1-based; the last when None)."""
    return [float(r.history[key][(t or len(r.history[key])) - 1]) for r in logs]


def costs(logs: dict[str, list[RunLog]]) -> dict[str, float]:
    """Per method: labels, source calls and generations per label (medians over seeds), and the fraction of
    identical pairs."""
    out = {}
    for m, rs in logs.items():
        n = rs[0].iterations
        out[f"{m} source calls per label"] = float(np.median([r.history["source_calls"][-1] / n for r in rs]))
        out[f"{m} generations per label"] = float(np.median([r.history["generations"][-1] / n for r in rs]))
        out[f"{m} identical-pair fraction"] = float(np.median([r.certificate["identical_fraction"] for r in rs]))
    return out


def curves_figure(logs: dict[str, list[RunLog]], title: str, keys: tuple[str, ...] = ("regret_pair", "learner_gap"),
                  cost_note: str = "") -> Any:
    """Median curves with 90% bootstrap bands of the median, one panel per history key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8))
    for ax, key in zip(np.atleast_1d(axes), keys):
        for m, rs in logs.items():
            c = np.array([r.history[key] for r in rs])
            med, lo, hi = curve_band(c)
            xs = np.arange(1, c.shape[1] + 1)
            (line,) = ax.plot(xs, med, label=LABELS.get(m, m), lw=1.3)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        ax.set_xlabel("gold labels")
        ax.set_ylabel(key.replace("_", " "))
        if key == "learner_gap":
            ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(title + (f"\n{cost_note}" if cost_note else ""), fontsize=9)
    fig.tight_layout()
    return fig
