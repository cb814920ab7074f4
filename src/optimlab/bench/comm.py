"""``optimlab bench comm``: cost of the compressed-communication hooks against PyTorch's, measured side by side.

* ``comm.ddp_hooks``: 2 gloo processes, the digits MLP (85,002 parameters) and a 512-1024-1024-10 MLP (1.6 M); median
  step time of every hook, interleaved in one run, as a ratio to PyTorch's ``allreduce_hook``; payload per step
  (elements handed to collectives, counted) and persistent state against PyTorch's ``powerSGD_hook`` (rank 2, warm
  start, error feedback).
* ``comm.memory_ops``: ConEF's compensate+update against full EF's on one 1024×1024 tensor, 1 thread.

Targets (this project's, fixed before running): Identity+NoMemory / allreduce_hook step time ≤ 1.10; our
PowerSGD+EF(global) / PyTorch powerSGD_hook step time ≤ 1.25; persistent state of PowerSGD+ConEF(s=0.2) / PyTorch
powerSGD_hook (error + P/Q) ≤ 0.25; payload of our PowerSGD rank 2 / PyTorch's = 1 exactly; ConEF / EF memory ops
≤ 10×. The compressed hooks' step-time ratios to allreduce_hook are reported as measured: on localhost the
bandwidth saving is invisible, so they are usually above 1.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from optimlab.comm import (
    CommState,
    ConEFMemory,
    EFMemory,
    Identity,
    NoMemory,
    PowerSGD,
    RandomBlock,
    powersgd_state_bytes,
    register_hook,
)
from optimlab.distributed import run_local
from optimlab.evidence import AllChecks, Outcome, RatioAtMost, RunContext, WithinRelative, register_bench
from optimlab.experiments._fixtures import make_mlp, torch_threads
from optimlab.metrics import compare_step_times, count_collectives
from optimlab.report.schema import ClaimResult

PAPER = "Li et al., arXiv:2312.08538 (ConEF); PyTorch ddp_comm_hooks (allreduce_hook, powerSGD_hook)"
# name -> (constructor, input width): the models of the ConEF claims (experiments/conef.py)
MODELS = {"digits_mlp": (lambda seed: make_mlp([64, 256, 256, 10], seed=seed), 64),
          "synthetic_mlp": (lambda seed: make_mlp([512, 1024, 1024, 10], seed=seed), 512)}

# Cost targets of this project, fixed before running: the Identity hook may add 10% to allreduce_hook (its
# own bookkeeping), our PowerSGD 25% to PyTorch's; PowerSGD+ConEF(s=0.2) keeps a sketch of a fifth of the
# error, and 0.25 of PyTorch's whole-bucket error + P/Q leaves room for P/Q; ConEF's memory ops within 10x of
# EF's (a prototype measured about 10 ms against 1.3 ms per 1M coordinates).
T_IDENTITY = 1.10
T_POWERSGD_TIME = 1.25
T_STATE = 0.25
T_MEMOPS = 10.0
HOOKS_CRITERION = AllChecks(
    **{f"{m}_identity": RatioAtMost(T_IDENTITY, what=f"Identity+NoMemory / allreduce_hook step time ({m})")
       for m in MODELS},
    **{f"{m}_powersgd_time": RatioAtMost(
        T_POWERSGD_TIME, what=f"our PowerSGD(2)+EF(global) / PyTorch powerSGD_hook step time ({m})") for m in MODELS},
    state_ratio=RatioAtMost(T_STATE, what="persistent state of PowerSGD(2)+ConEF(s=0.2) / PyTorch powerSGD_hook "
                                          "(error + P/Q), digits MLP"),
    payload_equal=WithinRelative(0.0, what="our PowerSGD rank-2 payload per step against PyTorch's, digits MLP"),
)
MEMOPS_CRITERION = RatioAtMost(T_MEMOPS, what="ConEF (s=0.2, incremental) / full EF compensate+update time "
                                              "(1024x1024, 1 thread)")


def hooks_verdict(ratio: dict[str, dict[str, float]], powersgd_time: dict[str, float], state_ratio: float,
                  payload_ratio: float) -> Outcome:
    """:data:`HOOKS_CRITERION`: ``ratio[model]["identity"]`` (to allreduce_hook), ``powersgd_time[model]`` (ours /
    PyTorch's), the digits MLP's state ratio and payload ratio (ours / PyTorch's)."""
    return HOOKS_CRITERION.evaluate(
        **{f"{m}_identity": ratio[m]["identity"] for m in MODELS},
        **{f"{m}_powersgd_time": powersgd_time[m] for m in MODELS},
        state_ratio=state_ratio, payload_equal=(payload_ratio, 1.0))


def hooks_worker(process_rank: int, world_size: int, repeats: int, block: int) -> dict[str, Any]:
    """Runs in each gloo process: every hook on every model, timed interleaved (same order on both processes)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
    from torch.nn.parallel import DistributedDataParallel as DDP

    start = 2  # PyTorch's minimum with error feedback; the timing warm-up (3 steps) passes it
    configs = {
        "allreduce_hook": "allreduce",
        "identity": lambda: CommState(Identity(), NoMemory(), start_iter=start),
        "pytorch_powersgd": "powersgd",
        "powersgd+ef": lambda: CommState(PowerSGD(2), EFMemory(), start_iter=start),
        "powersgd+conef": lambda: CommState(PowerSGD(2), ConEFMemory(0.2, 0.1), start_iter=start),
        "randomblock+ef": lambda: CommState(RandomBlock(0.1), EFMemory(), start_iter=start),
        "randomblock+conef": lambda: CommState(RandomBlock(0.1), ConEFMemory(0.2, 0.1), start_iter=start),
    }
    out: dict[str, Any] = {}
    for model_name, (make_model, n_in) in MODELS.items():
        g = torch.Generator().manual_seed(100 + process_rank)
        xb, yb = torch.randn(32, n_in, generator=g), torch.randint(10, (32,), generator=g)
        fns, states = {}, {}
        for name, make in configs.items():
            model = make_model(0)
            # One bucket per model: PyTorch's powerSGD_hook issues its P and Q all-reduces from future callbacks,
            # which race across buckets on gloo (observed: collective size mismatch with 2 buckets). Ours issues
            # every collective from the autograd thread and is tested with many buckets.
            ddp = DDP(model, bucket_cap_mb=100)
            if make == "allreduce":
                ddp.register_comm_hook(None, default_hooks.allreduce_hook)
                states[name] = None
            elif make == "powersgd":
                states[name] = PowerSGDState(None, matrix_approximation_rank=2, start_powerSGD_iter=start,
                                             warm_start=True, use_error_feedback=True)
                ddp.register_comm_hook(states[name], powerSGD_hook)
            else:
                states[name] = register_hook(ddp, make())
            opt = torch.optim.SGD(model.parameters(), lr=0.01)

            def step(ddp=ddp, opt=opt, xb=xb, yb=yb):
                opt.zero_grad()
                nn.functional.cross_entropy(ddp(xb), yb).backward()
                opt.step()

            fns[name] = step
        res = compare_step_times(fns, baseline="allreduce_hook", repeats=repeats, block=block, warmup=3)
        payload, state_bytes = {}, {}
        for name, fn in fns.items():
            with count_collectives() as c:
                fn()
            payload[name] = c.numel
            st = states[name]
            if st is None:
                state_bytes[name] = 0
            elif isinstance(st, CommState):
                state_bytes[name] = st.memory_report().persistent_bytes
            else:
                state_bytes[name] = powersgd_state_bytes(st)
        out[model_name] = {"seconds": res.seconds, "ratio": res.ratio, "payload": payload, "state": state_bytes}
    return out


@register_bench(
    id="comm.ddp_hooks", paper=PAPER,
    statement="Our DDP hooks cost no more than PyTorch's: Identity ~ allreduce_hook, our PowerSGD ~ powerSGD_hook, "
              "and PowerSGD+ConEF holds a quarter of PyTorch PowerSGD's persistent state for the same payload.",
    paper_reported="no number in the paper (derived here: this project's cost targets against PyTorch's "
                   "hooks)",
    metric="median step time ratio to allreduce_hook (2 gloo processes, interleaved), payload per step, state bytes",
    criterion=HOOKS_CRITERION, seeds={"smoke": 1, "quick": 1, "full": 1},
    headline=(("digits_mlp:identity/allreduce_hook", "Identity / allreduce_hook, digits MLP", "×"),
              ("digits_mlp:our_powersgd+ef/pytorch_powersgd", "our PowerSGD / PyTorch's", "×"),
              ("state_powersgd_conef_over_pytorch", "PowerSGD+ConEF state / PyTorch's", "×")))
def ddp_hooks(ctx: RunContext) -> ClaimResult:
    smoke = ctx.scale == "smoke"
    repeats, block = (2, 2) if smoke else (10, 5)  # quick: 50 timed steps per hook after 3 warm-up steps
    ctx.progress("spawning 2 gloo workers: 7 hooks x 2 models, interleaved")
    res = run_local(hooks_worker, world_size=2, backend="gloo", args=(repeats, block), timeout=240 if smoke else 600)
    r0 = res[0]
    numbers: dict[str, list[float]] = {}
    summary: dict[str, float] = {}
    powersgd_time = {}
    for model_name, m in r0.items():
        for name, ratio in m["ratio"].items():
            numbers.setdefault(f"{name}_time_ratio_to_allreduce", []).append(ratio)
            summary[f"{model_name}:{name}_ms"] = 1e3 * m["seconds"][name]
        powersgd_time[model_name] = m["seconds"]["powersgd+ef"] / m["seconds"]["pytorch_powersgd"]
        numbers.setdefault("our_powersgd_ef_over_pytorch_powersgd_time", []).append(powersgd_time[model_name])
        summary[f"{model_name}:identity/allreduce_hook"] = m["ratio"]["identity"]
        summary[f"{model_name}:our_powersgd+ef/pytorch_powersgd"] = powersgd_time[model_name]
        for name, n in m["payload"].items():
            numbers.setdefault(f"{name}_payload_numel", []).append(n)
            numbers.setdefault(f"{name}_state_bytes", []).append(m["state"][name])
    d = r0["digits_mlp"]
    state_ratio = d["state"]["powersgd+conef"] / d["state"]["pytorch_powersgd"]
    payload_ratio = d["payload"]["powersgd+ef"] / d["payload"]["pytorch_powersgd"]
    outcome = hooks_verdict({k: v["ratio"] for k, v in r0.items()}, powersgd_time, state_ratio, payload_ratio)
    summary.update(state_powersgd_conef_over_pytorch=state_ratio, payload_our_powersgd_over_pytorch=payload_ratio,
                   pytorch_powersgd_state_bytes=d["state"]["pytorch_powersgd"])
    from optimlab.report.plots import paired_plot

    names = list(d["ratio"])
    fig = paired_plot({k: [r0[mn]["ratio"][k] for mn in r0] for k in names}, labels=list(r0),
                      ylabel="step time / allreduce_hook", title="comm.ddp_hooks (2 gloo processes, localhost)")
    notes = (f"Step times are medians of per-block means over {repeats} interleaved rounds of {block} steps after 3 "
             "warm-up steps, on process 0 (both processes step together). On localhost the bandwidth saving is "
             "invisible, so compressed hooks are slower than allreduce_hook; their ratios are reported as measured. "
             "PyTorch's PowerSGD state counts its whole-bucket fp32 error buffer (biases included) plus P and Q; ours "
             "counts the ConEF tables plus the warm-start Q (no persistent P). DDP runs with one bucket "
             "(bucket_cap_mb=100) because PyTorch's powerSGD_hook issues its second and third all-reduces from future "
             "callbacks, which race across buckets on gloo (a collective mismatch was observed with 2 buckets).")
    return ctx.result(verdict=outcome, numbers=numbers, summary=summary, figure=fig, notes=notes)


@register_bench(
    id="comm.memory_ops", paper=PAPER,
    statement="ConEF's sketch memory costs at most 10x full EF's memory operations per coordinate.",
    paper_reported="no number in the paper (derived here: a project prototype measured about 10 ms against "
                   "1.3 ms)",
    metric="seconds of compensate+update per 1M coordinates (1024x1024, 1 thread), interleaved",
    criterion=MEMOPS_CRITERION, seeds={"smoke": 1, "quick": 1, "full": 1},
    headline=(("conef/ef", "ConEF / EF memory-op time", "×"), ("conef_ms_per_1M", "ConEF", "ms per 1M"),
              ("ef_ms_per_1M", "EF", "ms per 1M")))
def memory_ops(ctx: RunContext) -> ClaimResult:
    n = 256 if ctx.scale == "smoke" else 1024
    with torch_threads(1):
        gen = torch.Generator().manual_seed(ctx.seeds[0] if ctx.seeds else 0)
        g = torch.randn(n, n, generator=gen)
        dec = torch.randn(n, n, generator=gen) * 0.1
        mems = {"ef": EFMemory(), "conef": ConEFMemory(0.2, 0.1), "conef_fp16": ConEFMemory(
            0.2, 0.1, storage_dtype=torch.float16), "conef_cached": ConEFMemory(0.2, 0.1, cache_hashes=True)}
        bufs = {k: g.clone() for k in mems}

        def op(k):
            def run():
                bufs[k].copy_(g)
                mems[k].compensate("w", bufs[k])
                mems[k].update("w", dec)
            return run

        res = compare_step_times({k: op(k) for k in mems}, baseline="ef", repeats=3 if ctx.scale == "smoke" else 15,
                                 block=2, warmup=1)
    per_m = {k: v * 1e6 / (n * n) for k, v in res.seconds.items()}
    numbers = {"seconds_per_1M": [per_m[k] for k in mems], "ratio_to_ef": [res.ratio[k] for k in mems]}
    summary = {f"{k}_ms_per_1M": 1e3 * per_m[k] for k in mems}
    summary.update({f"{k}/ef": res.ratio[k] for k in mems if k != "ef"})
    from optimlab.report.plots import new_figure

    fig, ax = new_figure()
    ax.bar(list(mems), [1e3 * per_m[k] for k in mems])
    ax.set_ylabel("ms per 1M coordinates (compensate + update)")
    ax.set_title(f"comm.memory_ops ({n}x{n}, 1 thread)")
    notes = (f"Order: {', '.join(mems)}. Includes copying the gradient into place (the same for all). ConEF "
             "sketches g at compensation, decodes its table into p, then sketches the decoded message at update; "
             "hashes are recomputed on the fly unless cached.")
    return ctx.result(verdict=MEMOPS_CRITERION.evaluate(res.ratio["conef"]), numbers=numbers, summary=summary,
                      figure=fig, notes=notes)
