"""The functions the ConEF claims run in each of the 2 gloo processes (``optimlab.distributed.run_local``):
memory, bytes and timings in one spawn (:func:`costs_worker`), and the accuracy runs (:func:`accuracy_worker`).
Set-up: the common one of the ConEF claims (Li et al., arXiv:2312.08538).
"""

from __future__ import annotations

import math
import statistics
import time
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
    aggregate,
    powersgd_state_bytes,
    predict_memory,
    register_hook,
)
from optimlab.distributed import run_local
from optimlab.experiments._conef_fixtures import (
    MODELS,
    RB_RATIO,
    START_ITER,
    WORKERS,
    digits_data,
    digits_mlp,
    pipeline_seconds,
    shard_batches,
    synthetic_batch,
)
from optimlab.metrics import peak_memory
from optimlab.metrics.collectives import count_collectives

__all__ = ["ACCURACY_METHODS", "accuracy_worker", "costs", "costs_worker"]

ACCURACY_METHODS = ("sgd", "ef", "conef", "none")


def _step_fn(ddp, opt, model_name, process_rank, world_size, data):
    X, y = data[0], data[1]
    n_in = MODELS[model_name][1]
    state = {"t": 0}

    def step():
        t = state["t"]
        if n_in != 64:  # the synthetic MLP and the single 1024x1024 tensor take Gaussian inputs
            xb, yb = synthetic_batch(process_rank, t, n_in)
        else:
            idx = shard_batches(X.shape[0], process_rank, world_size, 0, t // 21)[t % 21]
            xb, yb = X[idx], y[idx]
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(xb), yb).backward()
        opt.step()
        state["t"] += 1

    return step


def _step_peak(make_memory, grads: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(persistent bytes, peak bytes of one :func:`aggregate` step) for a random block 10% with ``make_memory()``,
    measured with :func:`optimlab.metrics.peak_memory` on copies of the same gradients after one warm-up step."""
    state = CommState(RandomBlock(RB_RATIO), make_memory(), start_iter=0)
    aggregate({k: g.clone() for k, g in grads.items()}, state)  # warm-up: tables and hash buffers exist
    copy = {k: g.clone() for k, g in grads.items()}
    peak = peak_memory(lambda: aggregate(copy, state)).peak_bytes
    return state.memory.nbytes(), peak


def _peak_row(model: nn.Module, s: float) -> dict[str, Any]:
    """Claim 1's peak: peak_X = persistent_X + (peak of one aggregate step with X − the same step with NoMemory),
    for EF (fp32) and ConEF (s, λ = 0.1, fp32, default chunking), on the model's current gradients."""
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    _, base = _step_peak(NoMemory, grads)
    ef_persist, ef_step = _step_peak(EFMemory, grads)
    ce_persist, ce_step = _step_peak(lambda: ConEFMemory(s, 0.1), grads)
    ef_trans, ce_trans = ef_step - base, ce_step - base
    return {"ef_persistent_bytes": ef_persist, "ef_transient_bytes": ef_trans, "ef_peak_bytes": ef_persist + ef_trans,
            "conef_persistent_bytes": ce_persist, "conef_transient_bytes": ce_trans,
            "conef_peak_bytes": ce_persist + ce_trans,
            "peak_ratio_to_ef": (ce_persist + ce_trans) / (ef_persist + ef_trans)}


def _memory_rows(process_rank, world_size, steps, start_iter, models, ratios, data) -> list[dict[str, Any]]:
    """Claim 1: ConEF memory measured after real hook steps, next to predict_memory's; for fp32 tables also the
    peak (persistent + transient) against EF's (:func:`_peak_row`)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rows = []
    for model_name in models:
        for s in ratios:
            for dtype in (torch.float32, torch.float16):
                model = MODELS[model_name][0](0)
                ddp = DDP(model)
                state = register_hook(ddp, CommState(RandomBlock(RB_RATIO), ConEFMemory(s, 0.1, storage_dtype=dtype),
                                                     start_iter=start_iter))
                step = _step_fn(ddp, torch.optim.SGD(model.parameters(), lr=0.1), model_name, process_rank,
                                world_size, data)
                for _ in range(steps):
                    step()
                rep = state.memory_report()
                pred = predict_memory(model, RandomBlock(RB_RATIO), ConEFMemory(s, 0.1, storage_dtype=dtype))
                row = {"model": model_name, "s": s, "dtype": str(dtype).replace("torch.", ""),
                       "error_bytes": rep.error_bytes, "cache_bytes": rep.cache_bytes,
                       "ef_reference_bytes": rep.ef_reference_bytes,
                       "bucket_reference_bytes": rep.bucket_reference_bytes,
                       "ratio_to_ef": rep.ratio_to_ef, "scratch_peak_bytes": rep.scratch_peak_bytes,
                       "pred_error_bytes": pred.error_bytes, "pred_cache_bytes": pred.cache_bytes,
                       "pred_ef_reference_bytes": pred.ef_reference_bytes}
                if dtype == torch.float32:
                    row.update(_peak_row(model, s))
                rows.append(row)
    return rows


def _bytes_per_step(process_rank, world_size, steps, start_iter, data) -> dict[str, Any]:
    """Claim 3 (and PowerSGD state for claim 1): collectives counted per step on the digits MLP."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
    from torch.nn.parallel import DistributedDataParallel as DDP

    configs = {
        "allreduce_hook": None,
        "randomblock+ef": lambda: CommState(RandomBlock(RB_RATIO), EFMemory(), start_iter=start_iter),
        "randomblock+conef": lambda: CommState(RandomBlock(RB_RATIO), ConEFMemory(0.2, 0.1), start_iter=start_iter),
        "powersgd2+ef": lambda: CommState(PowerSGD(2), EFMemory(), start_iter=start_iter),
        "powersgd2+conef": lambda: CommState(PowerSGD(2), ConEFMemory(0.2, 0.1), start_iter=start_iter),
        "pytorch_powersgd2": "pytorch",
    }
    out = {}
    for name, make in configs.items():
        model = digits_mlp(0)
        ddp = DDP(model, bucket_cap_mb=100)  # one bucket: PyTorch's powerSGD_hook races across buckets on gloo
        state = pst = None
        if make is None:
            ddp.register_comm_hook(None, default_hooks.allreduce_hook)
        elif make == "pytorch":
            pst = PowerSGDState(None, matrix_approximation_rank=2, start_powerSGD_iter=max(2, start_iter))
            ddp.register_comm_hook(pst, powerSGD_hook)
        else:
            state = register_hook(ddp, make())
        step = _step_fn(ddp, torch.optim.SGD(model.parameters(), lr=0.1), "digits_mlp", process_rank, world_size,
                        data)
        per_step = []
        for _ in range(steps):
            with count_collectives() as c:
                step()
            per_step.append((c.numel, c.nbytes, c.calls))
        rec: dict[str, Any] = {"per_step": per_step}
        if state is not None:
            rep = state.comm_report()
            mem = state.memory_report()
            rec.update(report_numel=rep.payload_numel, report_bytes=rep.payload_bytes, wire_bytes=rep.wire_bytes,
                       collectives=rep.collectives, persistent_bytes=mem.persistent_bytes)
        if pst is not None:
            after = pst.compression_stats()[2]
            n_comp = steps - max(2, start_iter)
            rec.update(stats_after_per_step=after / max(1, n_comp), persistent_bytes=powersgd_state_bytes(pst))
        out[name] = rec
    return out


def _timings(process_rank, time_reps, data) -> dict[str, Any]:
    """Claim 4: compute and hook times (one process's view; the other does the same work), interleaved."""
    out = {}
    for model_name in ("digits_mlp", "synthetic_mlp"):
        model = MODELS[model_name][0](0)
        xb, yb = synthetic_batch(process_rank, 0, MODELS[model_name][1]) if model_name == "synthetic_mlp" else \
            (data[0][:32], data[1][:32])

        def compute(model=model, xb=xb, yb=yb):
            model.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()

        compute()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        makers = {"sgd": lambda: CommState(Identity(), NoMemory(), start_iter=10**9),  # = allreduce_hook's local work
                  "ef": lambda: CommState(RandomBlock(RB_RATIO), EFMemory(), start_iter=0),
                  "conef": lambda: CommState(RandomBlock(RB_RATIO), ConEFMemory(0.2, 0.1), start_iter=0)}
        states = {k: mk() for k, mk in makers.items()}
        times: dict[str, list[float]] = {k: [] for k in ["compute", *states]}
        for rep_i in range(time_reps + 2):  # interleaved, so machine load hits every method alike; 2 warm-up
            t0 = time.perf_counter()
            compute()
            if rep_i >= 2:
                times["compute"].append(time.perf_counter() - t0)
            for k, st in states.items():
                dt = pipeline_seconds(st, grads)
                if rep_i >= 2:
                    times[k].append(dt)
        rep = states["conef"].comm_report()
        out[model_name] = {"seconds": {k: statistics.median(v) for k, v in times.items()},
                           "dense_bytes": 4 * sum(p.numel() for p in model.parameters()),
                           "compressed_bytes": rep.payload_bytes, "collectives": rep.collectives}
    return out


def costs_worker(process_rank: int, world_size: int, steps: int, start_iter: int, models: list[str],
                 ratios: list[float], time_reps: int) -> dict[str, Any]:
    """Claims 1, 3 and 4 in one spawn: memory rows, bytes per step, and timings."""
    data = digits_data()
    return {"memory": _memory_rows(process_rank, world_size, steps, start_iter, models, ratios, data),
            "bytes": _bytes_per_step(process_rank, world_size, steps, start_iter, data),
            "timing": _timings(process_rank, time_reps, data)}


def costs(ctx) -> list[dict[str, Any]]:
    """Claims 1, 3 and 4 share one spawn of 2 gloo workers running :func:`costs_worker` (cached per invocation)."""
    key = ("conef.costs", ctx.scale)
    if key not in ctx.cache:
        smoke = ctx.scale == "smoke"
        ctx.progress("spawning 2 gloo workers: memory, bytes and timings")
        models = ["digits_mlp", "digits_cnn"] + ([] if smoke else ["synthetic_mlp", "tensor_1024"])
        ctx.cache[key] = run_local(costs_worker, world_size=WORKERS, backend="gloo",
                                   args=(4 if smoke else 12, 2 if smoke else START_ITER, models,
                                         [0.2] if smoke else [0.1, 0.2], 3 if smoke else 30),
                                   timeout=240 if smoke else 600)
    return ctx.cache[key]


def accuracy_worker(process_rank: int, world_size: int, seeds: list[int], epochs: int, start_iter: int,
                    lr: float = 0.3, methods: tuple[str, ...] = ACCURACY_METHODS) -> dict[str, Any]:
    """Claim 2: every method and seed, SGD with ``lr`` and momentum 0. A run that turns non-finite stops at once and
    reports accuracy NaN (never its last finite epoch's) and ``diverged=True``. The test is on the parameters after
    each step, which every process holds identically (so all processes stop together; a per-process loss could
    differ); non-finite parameters make every later loss non-finite."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    Xtr, ytr, Xte, yte = digits_data()
    out: dict[str, Any] = {}
    for seed in seeds:
        for method in methods:
            model = digits_mlp(seed)
            ddp = DDP(model)
            if method != "sgd":  # plain DDP all-reduce is the SGD baseline
                mem = {"ef": EFMemory(), "conef": ConEFMemory(0.2, 0.1, update="incremental"),
                       "none": NoMemory()}[method]
                register_hook(ddp, CommState(RandomBlock(RB_RATIO), mem, start_iter=start_iter, seed=seed))
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
            curve: list[float] = []
            diverged = False
            for epoch in range(epochs):
                for idx in shard_batches(Xtr.shape[0], process_rank, world_size, seed, epoch):
                    opt.zero_grad()
                    nn.functional.cross_entropy(ddp(Xtr[idx]), ytr[idx]).backward()
                    opt.step()
                    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                        diverged = True
                        break
                if diverged:
                    break
                with torch.no_grad():
                    curve.append(100.0 * float((model(Xte).argmax(1) == yte).float().mean()))
            acc = math.nan if diverged or not curve else curve[-1]
            out[f"{method}/{seed}"] = {"acc": acc, "curve": curve, "diverged": diverged}
    return out
