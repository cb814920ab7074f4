"""``optimlab bench meta``: cost of the meta-learners of :mod:`optimlab.meta`, measured side by side in one run
(interleaved blocks, :func:`optimlab.metrics.compare_step_times`), float32, one torch thread.

* ``meta.vmap_vs_loop``: one second-order MAML meta-step (sinusoid MLP 1-40-40-1, B = 25 tasks, 10 shots, K = 5)
  with the tasks vectorised by ``torch.func.vmap`` against a per-task Python loop (target ≤ 0.5×); chunked vmap
  (chunk 5) and the peak-memory ratio (vmap holds all B tasks' graphs at once) are reported.
* ``meta.map_overhead``: MirrorMeta (monotone map, hidden 8) ÷ Meta-SGD (target ≤ 3.0) and Meta-SGD ÷ MAML
  (target ≤ 1.2) per meta-step; the blockwise flow's time ratio and ``overhead()`` reported.
* ``meta.order``: first-order ÷ second-order time and peak memory at K ∈ {1, 5, 10}; second-order memory must grow
  linearly in K (peak at the largest K ≤ 1.1 × the line through the two smaller K); ``second_order_last=1``
  reported.
* ``meta.peer_torchopt``: our vmap MAML meta-step against the same MAML written with torchopt 0.7.3 (its
  ``torchopt.MetaSGD`` is a differentiable SGD, i.e. MAML's inner optimiser, not Li et al.'s Meta-SGD) as a per-task
  loop with ``extract_state_dict``/``recover_state_dict`` (target ≤ 0.3×); the meta-gradient agreement is recorded
  beside the timing. torchopt's C++ ops are unavailable on this platform (pure-Python path). Skipped (inconclusive)
  when torchopt is not installed.
Sources: MAML arXiv:1703.03400; Meta-SGD arXiv:1707.09835; mirror maps arXiv:2312.13486.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from optimlab.evidence import AllChecks, ClaimResult, Outcome, RatioAtMost, RunContext, register_bench
from optimlab.evidence.criteria import INCONCLUSIVE
from optimlab.experiments._fixtures import torch_threads
from optimlab.meta import MAML, MetaSGD, MirrorMeta, SinusoidTasks
from optimlab.metrics import compare_step_times, peak_memory

PAPER = "MAML arXiv:1703.03400; Meta-SGD arXiv:1707.09835; mirror-descent meta-learning arXiv:2312.13486"
REPORTED = "no number in the papers (derived here): cost targets of this project"
SEEDS = {"smoke": 1, "quick": 1, "full": 1}
B, K = 25, 5
SMOKE_B, SMOKE_K = 5, 2  # smoke scale only proves the code path
REPS = {"smoke": (2, 1, 1), "quick": (10, 2, 3), "full": (20, 3, 3)}  # rounds, calls per block, warm-up calls

# Targets of this project, fixed before any run: vmap <= 0.5x a per-task loop (the issue's target; the design
# notes' reference runs gave 0.07-0.10, their stricter 0.25 is reported as the ratio itself); the monotone map adds
# about a model-sized elementwise pass per inner step and its backward (<= 3.0x Meta-SGD, reference 1.8-2.8);
# Meta-SGD adds one elementwise product (<= 1.2x MAML); torchopt's per-task loop: ours <= 0.3x (reference ~0.1).
VMAP_CRITERION = RatioAtMost(0.5, what="vmap / per-task loop time per second-order meta-step")
OVERHEAD_CRITERION = AllChecks(
    mirror=RatioAtMost(3.0, what="MirrorMeta (monotone, hidden 8) / Meta-SGD time per meta-step"),
    metasgd=RatioAtMost(1.2, what="Meta-SGD / MAML time per meta-step"))
# Second-order memory holds one graph per inner step: linear in K; 10% slack for allocator-free tensor counting noise.
ORDER_CRITERION = RatioAtMost(1.1, what="second-order peak memory at the largest K / its linear extrapolation from "
                              "the two smaller K")
PEER_CRITERION = AllChecks(
    time=RatioAtMost(0.3, what="our vmap MAML / torchopt per-task MAML time per meta-step"),
    agreement=RatioAtMost(1e-5, what="max relative meta-gradient difference, ours vs torchopt (float32)"))


def _setup(seed: int, scale: str = "quick"):
    """(sampler, batch, K): B = 25 tasks and K = 5 (smoke: 5 tasks, K = 2)."""
    tasks = SinusoidTasks(shots=10, queries=10, seed=seed)
    smoke = scale == "smoke"
    return tasks, tasks.sample(SMOKE_B if smoke else B), SMOKE_K if smoke else K


def _stepper(learner, batch):
    opt = torch.optim.SGD(learner.parameters(), lr=0.0)  # lr 0: every call times the same meta-step

    def step():
        learner.meta_step(batch, opt)
    return step


def torchopt_maml_backward(model, loss_fn, batch, *, inner_steps: int, inner_lr: float) -> float:
    """MAML written with torchopt (import inside): per task, ``inner_steps`` differentiable SGD steps
    (``torchopt.MetaSGD``), query loss / B backward into the model's parameters, then ``recover_state_dict``.
    Returns the mean query loss. Gradients accumulate in ``.grad``."""
    import torchopt

    inner = torchopt.MetaSGD(model, lr=inner_lr)
    net_state = torchopt.extract_state_dict(model)
    opt_state = torchopt.extract_state_dict(inner)
    total = 0.0
    for i in range(batch.n_tasks):
        for _ in range(inner_steps):
            inner.step(loss_fn(model(batch.x_support[i]), batch.y_support[i]))
        q = loss_fn(model(batch.x_query[i]), batch.y_query[i]) / batch.n_tasks
        q.backward()
        total += float(q.detach())
        torchopt.recover_state_dict(model, net_state)
        torchopt.recover_state_dict(inner, opt_state)
    return total


def _sync(ctx):
    return torch.cuda.synchronize if str(ctx.device).startswith("cuda") else None


@register_bench(
    id="meta.vmap_vs_loop", paper=PAPER, seeds=SEEDS, criterion=VMAP_CRITERION, paper_reported=REPORTED,
    statement="Vectorising the tasks of a second-order MAML meta-step with torch.func.vmap is at least 2x faster "
    "than a per-task loop (sinusoid MLP 1-40-40-1, B = 25, 10 shots, K = 5, float32).",
    metric="median of per-round time ratios (interleaved blocks, 1 thread): vmap / loop and chunked vmap (5) / loop; "
    "peak tensor memory ratio vmap / loop",
    headline=(("vmap/loop", "vmap / loop time", "×"), ("chunk5/loop", "chunked vmap (5) / loop time", "×"),
              ("memory vmap/loop", "peak memory vmap / loop", "×")),
)
def vmap_vs_loop(ctx: RunContext) -> ClaimResult:
    tasks, batch, K = _setup(ctx.seeds[0], ctx.scale)
    batch = batch.to(ctx.device)
    learners = {mode: MAML(tasks.make_model().to(ctx.device), F.mse_loss, inner_steps=K, inner_lr=0.01,
                           task_parallel="loop" if mode == "loop" else "vmap",
                           chunk_size=5 if mode == "chunk5" else None) for mode in ("vmap", "chunk5", "loop")}
    reps = REPS[ctx.scale]
    with torch_threads(1):
        ctx.progress("meta-step times")
        t = compare_step_times({m: _stepper(lr, batch) for m, lr in learners.items()}, baseline="loop",
                               repeats=reps[0], block=reps[1], warmup=reps[2], sync=_sync(ctx), alternate=True)
        ctx.progress("peak memory")
        mem = {m: peak_memory(lambda lr=lr: lr.meta_loss(batch).backward(), device=ctx.device).peak_bytes
               for m, lr in learners.items()}
    numbers = {f"{m}/loop per round": [a / b for a, b in zip(t.per_round[m], t.per_round["loop"])]
               for m in ("vmap", "chunk5")}
    summary = {"vmap/loop": t.ratio["vmap"], "chunk5/loop": t.ratio["chunk5"],
               "memory vmap/loop": mem["vmap"] / mem["loop"], "memory chunk5/loop": mem["chunk5"] / mem["loop"],
               **{f"{m} ms/meta-step": 1e3 * s for m, s in t.seconds.items()}}
    return ctx.result(verdict=VMAP_CRITERION.evaluate(t.ratio["vmap"]), numbers=numbers, summary=summary,
                      notes=f"B = {batch.n_tasks}, K = {K}, second order, float32, one torch thread, {ctx.device}; the "
                      "optimiser "
                      "step has lr 0 so every call times the same meta-step. The design notes' stricter reference "
                      "target (0.25) is not gated; the ratio above can be compared with it.")


@register_bench(
    id="meta.map_overhead", paper=PAPER, seeds=SEEDS, criterion=OVERHEAD_CRITERION, paper_reported=REPORTED,
    statement="A learned monotone mirror map costs at most 3x a Meta-SGD meta-step, and Meta-SGD at most 1.2x MAML "
    "(sinusoid MLP, B = 25, K = 5, second order, vmap).",
    metric="median of per-round time ratios (interleaved blocks, 1 thread)",
    headline=(("mirror/metasgd", "MirrorMeta / Meta-SGD", "×"), ("metasgd/maml", "Meta-SGD / MAML", "×"),
              ("iaf/metasgd", "BlockIAF / Meta-SGD (not gated)", "×")),
)
def map_overhead(ctx: RunContext) -> ClaimResult:
    tasks, batch, K = _setup(ctx.seeds[0], ctx.scale)
    batch = batch.to(ctx.device)
    kw = {"inner_steps": K, "inner_lr": 0.01}
    learners = {"maml": MAML(tasks.make_model().to(ctx.device), F.mse_loss, **kw),
                "metasgd": MetaSGD(tasks.make_model().to(ctx.device), F.mse_loss, **kw),
                "mirror": MirrorMeta(tasks.make_model().to(ctx.device), F.mse_loss, "monotone",
                                     map_kwargs={"hidden": 8}, **kw),
                "iaf": MirrorMeta(tasks.make_model().to(ctx.device), F.mse_loss, "iaf", map_kwargs={"block_size": 2},
                                  generator=0, **kw)}
    reps = REPS[ctx.scale]
    with torch_threads(1):
        ctx.progress("meta-step times")
        t = compare_step_times({m: _stepper(lr, batch) for m, lr in learners.items()}, baseline="metasgd",
                               repeats=reps[0], block=reps[1], warmup=reps[2], sync=_sync(ctx), alternate=True)
    maml_ratio = [a / b for a, b in zip(t.per_round["metasgd"], t.per_round["maml"])]
    numbers = {"mirror/metasgd per round": [a / b for a, b in zip(t.per_round["mirror"], t.per_round["metasgd"])],
               "metasgd/maml per round": maml_ratio}
    summary = {"mirror/metasgd": t.ratio["mirror"], "metasgd/maml": sorted(maml_ratio)[len(maml_ratio) // 2],
               "iaf/metasgd": t.ratio["iaf"], **{f"{m} overhead()": lr.overhead() for m, lr in learners.items()},
               **{f"{m} ms/meta-step": 1e3 * s for m, s in t.seconds.items()}}
    outcome = OVERHEAD_CRITERION.evaluate(mirror=summary["mirror/metasgd"], metasgd=summary["metasgd/maml"])
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary,
                      notes=f"B = {batch.n_tasks}, K = {K}, second order, vmap, float32, one torch thread, "
                      f"{ctx.device}. "
                      "overhead() = meta-parameters / base-model parameters (the initialisation counts). The digits "
                      "MLP of the design notes is not timed here.")


def linear_extrapolation(ks, values) -> float:
    """Value at ks[-1] of the line through (ks[0], values[0]) and (ks[1], values[1])."""
    slope = (values[1] - values[0]) / (ks[1] - ks[0])
    return values[0] + slope * (ks[-1] - ks[0])


@register_bench(
    id="meta.order", paper=PAPER, seeds=SEEDS, criterion=ORDER_CRITERION, paper_reported=REPORTED,
    statement="Second-order MAML meta-gradients cost memory linear in the number of inner steps K; first order and "
    "second_order_last = 1 cut time and memory (sinusoid MLP, B = 25, vmap).",
    metric="peak tensor memory of meta_loss().backward() and median per-round time ratios (interleaved, 1 thread) at "
    "K in {1, 5, 10}",
    headline=(("memory K_max / linear", "2nd-order memory vs linear in K", "×"),
              ("first/second time K=5", "first / second order time, K = 5", "×"),
              ("first/second memory K=5", "first / second order memory, K = 5", "×")),
)
def order(ctx: RunContext) -> ClaimResult:
    tasks, batch, K = _setup(ctx.seeds[0], ctx.scale)
    batch = batch.to(ctx.device)
    ks = (1, 2, 3) if ctx.scale == "smoke" else (1, 5, 10)
    del K
    reps = REPS[ctx.scale]
    numbers, summary, mem_second = {}, {}, []
    with torch_threads(1):
        for k in ks:
            ctx.progress(f"K = {k}")
            learners = {"second": MAML(tasks.make_model().to(ctx.device), F.mse_loss, inner_steps=k, inner_lr=0.01),
                        "first": MAML(tasks.make_model().to(ctx.device), F.mse_loss, inner_steps=k, inner_lr=0.01,
                                      first_order=True),
                        "last1": MAML(tasks.make_model().to(ctx.device), F.mse_loss, inner_steps=k, inner_lr=0.01,
                                      second_order_last=1)}
            mem = {m: peak_memory(lambda lr=lr: lr.meta_loss(batch).backward(), device=ctx.device).peak_bytes
                   for m, lr in learners.items()}
            t = compare_step_times({m: _stepper(lr, batch) for m, lr in learners.items()}, baseline="second",
                                   repeats=reps[0], block=reps[1], warmup=reps[2], sync=_sync(ctx), alternate=True)
            mem_second.append(float(mem["second"]))
            numbers[f"second-order peak MiB K={k}"] = [mem["second"] / 2**20]
            for m in ("first", "last1"):
                summary[f"{m}/second time K={k}"] = t.ratio[m]
                summary[f"{m}/second memory K={k}"] = mem[m] / mem["second"]
            summary[f"second ms/meta-step K={k}"] = 1e3 * t.seconds["second"]
    predicted = linear_extrapolation(ks, mem_second)
    summary["memory K_max / linear"] = mem_second[-1] / predicted
    summary["memory slope MiB per inner step"] = (mem_second[1] - mem_second[0]) / (ks[1] - ks[0]) / 2**20
    mid = ks[1]
    summary["first/second time K=5"] = summary[f"first/second time K={mid}"]
    summary["first/second memory K=5"] = summary[f"first/second memory K={mid}"]
    return ctx.result(verdict=ORDER_CRITERION.evaluate(summary["memory K_max / linear"]), numbers=numbers,
                      summary=summary,
                      notes=f"K in {ks}; B = {batch.n_tasks}; float32; one thread; tensor bytes counted by "
                      "optimlab.metrics.peak_memory. At smoke scale the 'K=5' headline keys hold K = 2.")


@register_bench(
    id="meta.peer_torchopt", paper=PAPER, seeds=SEEDS, criterion=PEER_CRITERION, paper_reported=REPORTED,
    statement="Our vmap MAML meta-step is at least 3x faster than the same MAML written with torchopt's "
    "differentiable SGD as a per-task loop, with meta-gradients that agree to float32 precision.",
    metric="median of per-round time ratios ours / torchopt (interleaved blocks, 1 thread); max over tensors of "
    "||g_ours - g_torchopt|| / ||g_torchopt||",
    headline=(("ours/torchopt", "our vmap MAML / torchopt loop", "×"),
              ("max relative gradient difference", "meta-gradient difference", "")),
)
def peer_torchopt(ctx: RunContext) -> ClaimResult:
    try:
        import torchopt
    except ImportError:
        return ctx.result(verdict=Outcome(INCONCLUSIVE, {}, "torchopt is not installed"),
                          numbers={"torchopt installed": [0.0]}, summary={},
                          notes="torchopt not installed: arm skipped (pip install torchopt).")
    tasks, batch, K = _setup(ctx.seeds[0], ctx.scale)
    batch = batch.to(ctx.device)
    ours = MAML(tasks.make_model().to(ctx.device), F.mse_loss, inner_steps=K, inner_lr=0.01)
    peer = tasks.make_model().to(ctx.device)
    with torch_threads(1):
        ours.zero_grad()
        ours.meta_loss(batch).backward()
        torchopt_maml_backward(peer, F.mse_loss, batch, inner_steps=K, inner_lr=0.01)
        diffs = [float((a.grad - b.grad).norm() / b.grad.norm()) for a, b in zip(ours.model.parameters(),
                                                                                 peer.parameters())]
        peer_opt = torch.optim.SGD(peer.parameters(), lr=0.0)

        def peer_step():
            peer_opt.zero_grad(set_to_none=True)
            torchopt_maml_backward(peer, F.mse_loss, batch, inner_steps=K, inner_lr=0.01)
            peer_opt.step()

        reps = REPS[ctx.scale]
        ctx.progress("meta-step times")
        t = compare_step_times({"ours": _stepper(ours, batch), "torchopt": peer_step}, baseline="torchopt",
                               repeats=reps[0], block=reps[1], warmup=reps[2], sync=_sync(ctx), alternate=True)
    numbers = {"ours/torchopt per round": [a / b for a, b in zip(t.per_round["ours"], t.per_round["torchopt"])],
               "relative gradient difference per tensor": diffs}
    summary = {"ours/torchopt": t.ratio["ours"], "max relative gradient difference": max(diffs),
               "torchopt accelerated ops": float(bool(torchopt.accelerated_op_available())),
               **{f"{m} ms/meta-step": 1e3 * s for m, s in t.seconds.items()}}
    outcome = PEER_CRITERION.evaluate(time=t.ratio["ours"], agreement=max(diffs) if diffs else math.nan)
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary,
                      notes=f"torchopt {torchopt.__version__}; B = {batch.n_tasks}, K = {K}, second order, float32, "
                      "one thread. "
                      "torchopt.MetaSGD is MAML's differentiable inner SGD (not Li et al.'s Meta-SGD). torchopt's "
                      "C++ accelerated ops are unavailable here (pure-Python path), as recorded in the summary.")


__all__ = ["ORDER_CRITERION", "OVERHEAD_CRITERION", "PEER_CRITERION", "VMAP_CRITERION", "linear_extrapolation",
           "map_overhead", "order", "peer_torchopt", "torchopt_maml_backward", "vmap_vs_loop"]
