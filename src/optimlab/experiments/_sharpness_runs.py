"""Runs behind ``sam.flat_minima`` and ``sam.m_sharpness`` (Foret et al., arXiv:2010.01412): training, the
sharpness measurements and the figures. The claims, their criteria and verdicts live in experiments/sam.py.

- :func:`flat_minima_run`: SGD or SAM from the same seed, then on the training set (eval mode) the train loss L,
  the top Lanczos eigenvalue(s) of the Hessian with ARPACK's ``converged`` flag, the Hutchinson trace, their
  loss-normalised forms λ_max/L and tr(H)/L, and adaptive ρ-sharpness.
- :func:`train_to_target`: constant-lr SGD until the eval-mode training cross-entropy first falls to the target
  (checked after each epoch) or the epoch budget runs out: models compared at matched training loss.
- :func:`msam_runs`: m-SAM (``SAM.step_chunked``), reported at full scale, not gated.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from optimlab.evidence import RunContext
from optimlab.experiments._fixtures import (
    digits_split,
    evaluate,
    make_mlp,
    torch_threads,
    train,
    train_classifier,
)
from optimlab.metrics import hessian_trace, rho_sharpness, top_eigenvalues
from optimlab.sam import SAM

__all__ = ["ChunkedStep", "flat_minima_plot", "flat_minima_run", "kendall", "m_sharpness_figure", "msam_runs",
           "train_to_target"]


# --------------------------------------------------------------------------------------------- sam.flat_minima


def flat_minima_run(width: int, seed: int, method: str, epochs: int, max_samples: int, k: int, device: str,
                    split) -> dict[str, float]:
    """MLP ``n_features-width-width-n_classes``, SGD momentum 0.9, lr 0.05 cosine, wd 5e-4, batch 32 (SAM ρ = 0.05
    on the same base if ``method == "sam"``), then the measurements on the training set. ``lanczos_converged`` is
    1.0 or 0.0; ``lambda_<i>`` (i ≥ 2) are the further top eigenvalues when ``k > 1``."""
    model = make_mlp([split.n_features, width, width, split.n_classes], seed=seed, device=device)
    base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt = SAM(base=base, rho=0.05) if method == "sam" else base
    steps = epochs * -(-split.n_train // 32)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    train_classifier(model, opt, split.X_train, split.y_train, epochs=epochs, batch_size=32, seed=seed,
                     two_pass=method == "sam", scheduler=sched)
    data = (split.X_train, split.y_train)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(10_000 + seed)
    trace = hessian_trace(model, loss_fn, data, max_samples=max_samples, generator=gen)
    eig = top_eigenvalues(model, loss_fn, data, k=k, method="lanczos", generator=gen)
    sharp = rho_sharpness(model, loss_fn, data, 0.05, adaptive=True)
    train_loss, train_acc = evaluate(model, split.X_train, split.y_train)
    _, test_acc = evaluate(model, split.X_test, split.y_test)
    lam, tr = float(eig.values[0]), float(trace.value)
    out = {
        "train_loss": train_loss,
        "lambda_max_over_loss": lam / train_loss if train_loss > 0 else math.nan,
        "trace_over_loss": tr / train_loss if train_loss > 0 else math.nan,
        "lambda_max": lam,
        "trace": tr,
        "trace_stderr": float(trace.stderr),
        "lanczos_converged": 1.0 if eig.converged else 0.0,
        "lanczos_iterations": float(eig.iterations),
        "adaptive_sharpness": float(sharp.value),
        "train_acc": train_acc,
        "test_acc": test_acc,
    }
    out.update({f"lambda_{i}": float(v) for i, v in enumerate(eig.values[1:], start=2)})
    return out


def flat_minima_plot(numbers, pairs):
    from optimlab.report.plots import paired_plot

    labels = [f"w{w}/s{s}" for w, s in pairs]
    return paired_plot(
        {
            "lambda_max / L (gated)": {"SGD": numbers["sgd_lambda_max_over_loss"],
                                       "SAM": numbers["sam_lambda_max_over_loss"]},
            "trace / L (gated)": {"SGD": numbers["sgd_trace_over_loss"], "SAM": numbers["sam_trace_over_loss"]},
            "Hessian trace (raw)": {"SGD": numbers["sgd_trace"], "SAM": numbers["sam_trace"]},
            "train loss L": {"SGD": numbers["sgd_train_loss"], "SAM": numbers["sam_train_loss"]},
        },
        labels=labels,
        title="sam.flat_minima: loss-normalised and raw sharpness at the end of training (lower is flatter)",
    )


# --------------------------------------------------------------------------------------------- sam.m_sharpness


def kendall(x: list[float], y: list[float]) -> float:
    """Kendall's τ-b of ``x`` and ``y``; NaN when it is undefined (fewer than 2 points or a constant input)."""
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    return float(kendalltau(x, y).statistic)


def train_to_target(model: nn.Module, split, *, lr: float, batch_size: int, seed: int, target: float,
                    max_epochs: int) -> tuple[int, float, bool]:
    """Plain SGD at constant ``lr`` (batch order from ``seed``) until the eval-mode training cross-entropy, checked
    after each epoch, first is ≤ ``target``, at most ``max_epochs`` epochs. Returns (epochs run, final training CE,
    reached); a diverged run (non-finite loss) stops there and has not reached the target."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)  # one generator across the epochs: the order of one long run
    ce = math.nan
    for epoch in range(1, max_epochs + 1):
        try:
            train(model, opt, split.X_train, split.y_train, epochs=1, batch_size=batch_size, generator=gen,
                  two_pass=False)
        except FloatingPointError:
            return epoch, math.nan, False
        ce, _ = evaluate(model, split.X_train, split.y_train)
        if ce <= target:
            return epoch, ce, True
    return max_epochs, ce, False


class ChunkedStep:
    """Lets the shared training loop drive m-SAM: the loop's ``before_step`` hook hands over the minibatch, and
    ``step`` runs ``SAM.step_chunked`` on its ``n_chunks`` consecutive chunks of m samples (the loop's full-batch
    closure is not used)."""

    def __init__(self, opt: SAM, model: nn.Module, n_chunks: int) -> None:
        self.opt, self.model, self.n_chunks = opt, model, n_chunks
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_batch(self, t: int, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.batch = (xb, yb)

    def step(self, closure) -> torch.Tensor:
        xb, yb = self.batch
        m = xb.shape[0] // self.n_chunks

        def chunk(k: int) -> torch.Tensor:
            loss = F.cross_entropy(self.model(xb[k * m:(k + 1) * m]), yb[k * m:(k + 1) * m])
            loss.backward()
            return loss

        return self.opt.step_chunked(chunk, self.n_chunks)


def msam_runs(ctx: RunContext, rho: float, ms: tuple[int, ...], batch: int, epochs: int,
              width: int) -> dict[str, list[float]]:
    """m-SAM (``SAM.step_chunked`` with n_chunks = batch/m) on clean digits: final test accuracy per m and seed."""
    out: dict[str, list[float]] = {}
    for seed in ctx.seeds:
        split = digits_split(seed, ctx.device)
        for m in ms:
            ctx.progress(f"m-SAM m={m}, seed {seed}")
            with torch_threads(1):
                model = make_mlp([split.n_features, width, width, split.n_classes], seed=seed, device=ctx.device)
                base = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
                stepper = ChunkedStep(SAM(base=base, rho=rho), model, batch // m)
                # On the base: step_chunked calls base.step() directly, so only the base's step counter moves
                # (same param_groups, same schedule).
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(base, T_max=epochs * (split.n_train // batch))
                # Full batches only (drop_last): every chunk has m samples.
                train(model, stepper, split.X_train, split.y_train, epochs=epochs, batch_size=batch,
                      generator=torch.Generator().manual_seed(seed), two_pass=True, scheduler=sched,
                      before_step=stepper.set_batch, drop_last=True)
                _, acc = evaluate(model, split.X_test, split.y_test)
            out.setdefault(f"msam_test_acc_m={m}", []).append(acc)
    return out


def m_sharpness_figure(numbers, taus, msam, *, rho: float, steps: int, n_seeds: int, title: str):
    """One scatter per gated m (sharpness against the gap; on-target models filled, off-target hollow), and the
    m-SAM accuracies when there are any."""
    from optimlab.report.plots import new_figure

    gated = [k for k in taus if not k.startswith("adaptive") and "rho" not in k]
    n_axes = len(gated) + bool(msam)
    fig, axes = new_figure(1, n_axes, figsize=(4.0 * n_axes, 3.6))
    on = [bool(v) for v in numbers["on_target"]]
    for ax, k in zip(axes, gated):
        for mask, style in ((on, {"c": "tab:blue"}), ([not v for v in on], {"facecolors": "none",
                                                                               "edgecolors": "tab:red"})):
            xs = [v for v, keep in zip(numbers[k], mask) if keep]
            ys = [v for v, keep in zip(numbers["gap"], mask) if keep]
            if xs:
                ax.scatter(xs, ys, s=25, **style)
        ax.set_xlabel(f"{k} sharpness (rho={rho}, K={steps})")
        ax.set_ylabel("test CE - train CE")
        ax.set_title(f"{k}: tau = {taus[k]:.2f} (on target)")
    if msam:
        ax = axes[-1]
        xs = [int(k.split("=")[1]) for k in msam]
        for i in range(n_seeds):
            ax.plot(xs, [msam[k][i] for k in msam], marker="o", color="0.6")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("m (m-SAM)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("m-SAM (not gated)")
    fig.suptitle(title)
    return fig
