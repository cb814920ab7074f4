"""``optimlab bench bar``: step time of BAR (nBAR, oBAR; arXiv:2410.14802) and of LoRA-SAM against plain LoRA on the
same PEFT model, interleaved, medians.

The model: a frozen MLP 64 → 512 × (8 hidden layers) → 10 with LoRA r = 8 on the 8 hidden Linears (PEFT's
``get_peft_model`` when peft is installed, else :func:`optimlab.lora.inject_lora`), batch 256, AdamW lr 1e-3,
float32, one thread. {LoRA, nBAR, oBAR, LoRA-SAM (rho = 0.05)} step on the same model copies and batch, interleaved in blocks of
10 steps with the order reversed every other round (:func:`optimlab.metrics.compare_step_times`), 80 measured steps
after 10 warm-up steps each at quick scale; ratios are medians of per-round ratios of process CPU time (wall time beside them).
Targets of this project (fixed before any run): t(BAR)/t(LoRA) ≤ 1.05 for both variants (the paper's Table 2:
1.03–1.05× on OPT-1.3B); t(SAM)/t(LoRA) and the saved fraction 1 − (t_BAR − t_LoRA)/(t_SAM − t_LoRA) are reported.
No peer library implements BAR.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn import functional as F

from optimlab.evidence import AllChecks, ClaimResult, Outcome, RatioAtMost, RunContext, register_bench
from optimlab.experiments._fixtures import make_mlp, torch_threads
from optimlab.metrics import compare_step_times

PAPER = "Li, Zhang, He, NeurIPS 2024, arXiv:2410.14802"
TARGET = 1.05  # the paper's Table 2 upper figure (1.03–1.05×), our target for both variants
TIMING = {"smoke": (2, 2, 1), "quick": (8, 10, 10), "full": (20, 20, 40)}  # (rounds, block, warm-up)
METHODS = ("lora", "nbar", "obar", "sam")
CRITERION = AllChecks(nbar=RatioAtMost(TARGET, what="nBAR / LoRA step time (CPU time, median of per-round ratios)"),
                      obar=RatioAtMost(TARGET, what="oBAR / LoRA step time (CPU time, median of per-round ratios)"))


def lora_mlp(hidden: int, *, width: int = 512, r: int = 8, seed: int = 0, device: str = "cpu",
             use_peft: bool = True) -> tuple[nn.Module, str]:
    """Frozen MLP 64 → width × hidden → 10 with LoRA (r, α = 2r) on the hidden Linears; returns (model, 'peft'|'optimlab')."""
    base = make_mlp([64] + [width] * hidden + [10], seed=seed, device=device)
    targets = [str(2 * i) for i in range(hidden)]
    if use_peft:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            use_peft = False
    if use_peft:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
        kind = "peft"
    else:
        from optimlab.lora import inject_lora

        inject_lora(base, "|".join(targets), r=r, alpha=2 * r, generator=seed)
        model, kind = base, "optimlab"
    with torch.no_grad():  # a trained adapter: both factors non-zero (B = 0 would make the SAM/BAR work trivial)
        g = torch.Generator().manual_seed(seed + 1)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.01 * torch.randn(p.shape, generator=g))
    return model.to(device), kind


def step_functions(model: nn.Module, *, methods=METHODS, batch: int = 256, lr: float = 1e-3, rho: float = 0.05,
                   precision: str = "fp32", device: str = "cpu", total_steps: int = 1_000,
                   ) -> dict[str, Callable[[], object]]:
    """One training step per method on its own deep copy of ``model`` (same batch): LoRA (AdamW), nBAR, oBAR (BAR
    over AdamW, mu0 = 1, linear over ``total_steps``), LoRA-SAM (rho) over AdamW. ``precision="fp16"``/``"bf16"``
    runs the forward under ``torch.autocast`` for every method alike (equal precision)."""
    from optimlab.lora import find_lora_pairs
    from optimlab.lora.bar import BAR
    from optimlab.sam import SAM

    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 64, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    dev_type = torch.device(device).type
    fns = {}
    for m in methods:
        net = copy.deepcopy(model)
        params = [p for p in net.parameters() if p.requires_grad]
        base = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        opt = (BAR(base, find_lora_pairs(net), variant=m, mu0=1.0, total_steps=total_steps) if m in ("nbar", "obar")
               else SAM(base=base, rho=rho) if m == "sam" else base)

        def closure(net=net):
            with torch.autocast(dev_type, dtype=dtype) if dtype is not None else nullcontext():
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss

        if m == "sam":
            fns[m] = lambda opt=opt, closure=closure: opt.step(closure)
        else:
            def step(opt=opt, closure=closure):
                opt.zero_grad(set_to_none=True)
                closure()
                opt.step()

            fns[m] = step
    return fns


def timing_ratios(fns: dict[str, Callable[[], object]], *, rounds: int, block: int, warmup: int,
                  device: str = "cpu") -> dict[str, float]:
    """Median per-round ratios to ``"lora"`` (process CPU time; ``"<m> (wall)"`` by wall time) and the saved
    fractions ``"saved <m>"`` = 1 − (t_m − t_LoRA)/(t_SAM − t_LoRA) from the median seconds."""
    cuda = device.startswith("cuda")
    clocks = {"cpu": time.perf_counter if cuda else time.process_time, "wall": time.perf_counter}
    res = compare_step_times(fns, baseline="lora", repeats=rounds, block=block, warmup=warmup,
                             sync=torch.cuda.synchronize if cuda else None, clocks=clocks, alternate=True)
    out: dict[str, float] = {}
    for m in fns:
        base = res.by_clock["cpu"]["lora"]
        out[f"{m}/lora"] = _median([a / b for a, b in zip(res.by_clock["cpu"][m], base)])
        out[f"{m}/lora (wall)"] = _median([a / b for a, b in zip(res.by_clock["wall"][m], res.by_clock["wall"]["lora"])])
        out[f"ms per step {m}"] = 1e3 * _median(res.by_clock["cpu"][m])
    if "sam" in fns:
        t = {m: _median(res.by_clock["cpu"][m]) for m in fns}
        for m in fns:
            if m not in ("lora", "sam"):
                gap = t["sam"] - t["lora"]
                out[f"saved {m}"] = 1 - (t[m] - t["lora"]) / gap if gap > 0 else float("nan")
    return out


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def bench_verdict(ratios: dict[str, float]) -> Outcome:
    """:data:`CRITERION` on ``{"nbar/lora": ..., "obar/lora": ...}``."""
    return CRITERION.evaluate(nbar=ratios["nbar/lora"], obar=ratios["obar/lora"])


@register_bench(
    id="bar.step_time", paper=PAPER, seeds={"smoke": 1, "quick": 1, "full": 1}, criterion=CRITERION,
    statement="One BAR step (nBAR or oBAR over AdamW) costs at most 5% more than a plain LoRA step on the same PEFT "
    "model; LoRA-SAM costs about two.",
    metric="median per-round ratio of CPU time per step to plain LoRA (8 LoRA pairs, r = 8, width 512, batch 256, "
    "float32, 1 thread); saved fraction of SAM's overhead",
    paper_reported="Table 2 (OPT-1.3B, runtime / LoRA): BAR 1.03–1.05×, SAM 3.28–4.43× (SAM in FP32, LoRA/BAR in FP16)",
    headline=(("nbar/lora", "nBAR / LoRA", "×"), ("obar/lora", "oBAR / LoRA", "×"), ("sam/lora", "SAM / LoRA", "×")),
)
def step_time(ctx: RunContext) -> ClaimResult:
    rounds, block, warmup = TIMING[ctx.scale]
    hidden = 2 if ctx.scale == "smoke" else 8
    with torch_threads(1):  # 2 threads on a loaded 2-core machine spin-wait: one thread gives stable timings
        model, kind = lora_mlp(hidden, width=64 if ctx.scale == "smoke" else 512, device=ctx.device,
                               use_peft=ctx.scale != "smoke")
        fns = step_functions(model, device=ctx.device)
        ratios = timing_ratios(fns, rounds=rounds, block=block, warmup=warmup, device=ctx.device)
    numbers = {k: [v] for k, v in ratios.items()}
    return ctx.result(
        verdict=bench_verdict(ratios), numbers=numbers, summary=dict(ratios),
        notes=[f"LoRA model built with {kind}; {hidden} hidden LoRA layers; {rounds} rounds x {block} steps after "
               f"{warmup} warm-up steps per method, order reversed every other round; gated on process CPU time "
               "(wall-clock ratios beside them). The paper's 1.03-1.05x compares FP16 LoRA/BAR runs; here all "
               "methods run in float32."])
