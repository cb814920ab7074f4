"""Shared runs of the ``meta.*`` claims: one meta-training run per (method, K, seed) on a seeded task stream, then a
graph-free evaluation on a fixed test batch (sampler seed 999) shared by every method.

Equal footing (fixed before any run): every method starts from the same model init, sees the same task stream
(the sampler seeded by the run's seed), runs the same meta-steps, meta-batch (32), K, and one meta-optimiser (Adam
1e-2, global grad-norm clip 10, float64); MAML learns log α, Meta-SGD per-element rates from the same α₀, MirrorMeta
keeps α₀ fixed and learns its map (``ElementwiseMonotoneMap``, ``share="tensor"``). No hyperparameter is tuned for
any method (tuning budget zero for all). The *authors' arm* (reported, never gated): the authors' map
(``BlockIAFMap``, one block per two tensors), ``center=None`` and the authors' meta-optimiser (Adam 1e-3, step
decay ×0.1 at 1/3 and 2/3 of the steps).
"""

from __future__ import annotations

import torch

from optimlab.meta import MAML, MetaSGD, MirrorMeta, meta_train

PAPER = ("Zhang, Li, Giannakis, Meta-Learning with Versatile Loss Geometries for Fast Adaptation Using Mirror "
         "Descent, ICASSP 2024, arXiv:2312.13486 (extended: arXiv:2509.02418); baselines MAML arXiv:1703.03400, "
         "Meta-SGD arXiv:1707.09835")
SEEDS = {"smoke": 1, "quick": 3, "full": 5}
TEST_SEED = 999
META_LR, CLIP, BATCH = 1e-2, 10.0, 32
METHODS = ("maml", "metasgd", "mirror")
AUTHORS = "authors' arm"
CHECKED = ("Checked: only the abstracts of arXiv:2312.13486 and arXiv:2509.02418 (their method sections, theorems and "
           "tables are UNVERIFIED); the task family, floors and thresholds are this project's own.")


def make_learner(method: str, model, loss_fn, *, K: int, inner_lr: float, map_kwargs: dict, seed: int):
    common = {"inner_steps": K, "inner_lr": inner_lr}
    if method == "maml":
        return MAML(model, loss_fn, learn_inner_lr=True, **common)
    if method == "metasgd":
        return MetaSGD(model, loss_fn, **common)
    if method == "mirror":
        return MirrorMeta(model, loss_fn, "monotone", map_kwargs={"share": "tensor", **map_kwargs}, **common)
    if method == "mirror, center=None":
        return MirrorMeta(model, loss_fn, "monotone", center=None, map_kwargs={"share": "tensor", **map_kwargs},
                          **common)
    if method == "affine (ablation)":
        return MirrorMeta(model, loss_fn, "affine", **common)
    if method == AUTHORS:
        return MirrorMeta(model, loss_fn, "iaf", center=None, map_kwargs={"block_size": 2}, generator=seed, **common)
    raise ValueError(f"unknown method {method!r}")


def run_method(method: str, sampler, make_model, *, K: int, inner_lr: float, steps: int, test_batch, metric,
               seed: int, map_kwargs: dict | None = None, progress=None, meta_lr: float = META_LR,
               clip: float | None = CLIP, batch_size: int = BATCH):
    """Meta-train ``method`` and return (per-task test metric after K steps as a list, the meta_train result,
    the learner)."""
    learner = make_learner(method, make_model(), sampler.loss_fn, K=K, inner_lr=inner_lr,
                           map_kwargs=map_kwargs or {}, seed=seed)
    if method == AUTHORS:
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [max(steps // 3, 1), max(2 * steps // 3, 1)], gamma=0.1)
    else:
        opt, sched = torch.optim.Adam(learner.parameters(), lr=meta_lr), None
    if progress is not None:
        progress(f"{method}, K = {K}, seed {seed}")
    res = meta_train(learner, sampler, opt, steps=steps, batch_size=batch_size, scheduler=sched, clip_grad_norm=clip,
                     nonfinite="skip", log_every=max(steps // 50, 1))
    ev = learner.evaluate(test_batch, steps=(K,), metric=metric)
    return ev.per_task[0].tolist(), res, learner


def curves_figure(histories: dict[str, list], title: str):
    """Meta-training loss curves, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    methods = list(dict.fromkeys(label.split(" K=")[0].split(" seed")[0] for label in histories))
    ks = list(dict.fromkeys(label.split(" K=")[1].split(" ")[0] for label in histories if " K=" in label))
    styles = ("-", "--", ":", "-.")
    seen = set()
    for label, res in histories.items():
        method = label.split(" K=")[0].split(" seed")[0]
        k = label.split(" K=")[1].split(" ")[0] if " K=" in label else ""
        key = (method, k)
        h = res.history
        ax.plot(h["step"], h["meta_loss"], color=f"C{methods.index(method) % 10}",
                ls=styles[ks.index(k) % 4] if k else "-", lw=1,
                label=None if key in seen else (f"{method}, K = {k}" if k else method))
        seen.add(key)
    ax.set_yscale("log")
    ax.set_xlabel("meta-step")
    ax.set_ylabel("meta-training query loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


__all__ = [
    "AUTHORS",
    "BATCH",
    "CHECKED",
    "CLIP",
    "META_LR",
    "METHODS",
    "PAPER",
    "SEEDS",
    "TEST_SEED",
    "curves_figure",
    "make_learner",
    "run_method",
]
