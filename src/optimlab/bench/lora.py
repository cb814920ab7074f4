"""``optimlab bench lora``: cost of RefLoRA, RefLoRA-S and NoRA+ against plain LoRA (AdamW) on the same PEFT model,
with PEFT's own methods as peers, measured side by side in one run (one thread).

* ``lora.step``: step-time ratios to plain LoRA (AdamW), interleaved (:func:`optimlab.metrics.compare_step_times`,
  blocks of one step, order alternating), on a randomly initialised MiniLM-shaped encoder with 36 LoRA pairs (r = 8;
  r = 32 added at full), batch 16 × 32 tokens; peak extra memory of one step (``optimlab.metrics.peak_memory``)
  as a ratio to LoRA's; the wrapper's ``state_dict`` part in bytes; RefLoRA's metric batched over pairs of equal r
  against a per-pair loop.
* ``lora.peers``: ``NoRAPlus(preset="riemannian")`` against ``peft.optimizers.create_riemannian_optimizer(reg=1e-2)``
  (same map): parameters after 5 SGD steps from identical models agree to 1e-6 relative, and the time ratio; PEFT's
  LoRA+ (ratio 16) timed as a baseline; ``nora_init_`` against PEFT's ``init_lora_weights`` = "pissa",
  "pissa_niter_4" and "olora" on the same model (time, and whether W0 changed, by checksum).
Smoke scale (or without transformers/peft) uses a pure-torch stand-in (a 4-layer MLP, d = 64, with
:class:`~optimlab.lora.LoRALinear`); the peer parts are then inconclusive. The model set-up below is shared with
claim ``reflora.overhead``: PEFT LoRA (α = r) on query, key, value, attention.output.dense, intermediate.dense and
output.dense of a random ``BertModel`` (vocabulary 1000, nothing downloaded); loss = mean square of the last hidden
state over half the features (over all of them it is constant after the LayerNorm); every method gets its own
copy of the same model.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import nn

from optimlab.evidence import AllChecks, AtLeast, AtMost, ClaimResult, RatioAtMost, RunContext, register_bench
from optimlab.experiments._fixtures import torch_threads
from optimlab.lora import inject_lora
from optimlab.lora.noraplus import NoRAPlus
from optimlab.lora.reflora import RefLoRA
from optimlab.metrics import compare_step_times, peak_memory
from optimlab.metrics.memory import state_bytes

MODULES = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def _stand_in(r: int) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(64, 64), nn.GELU())])
    inject_lora(model, r"\d+", r=r, alpha=r, generator=0)
    x = torch.randn(16 * 8, 64, generator=torch.Generator().manual_seed(1))
    return model, {"x": x}, f"pure-torch stand-in (4 Linear 64x64 layers with LoRA r = {r})"


def _minilm_shaped(r: int) -> tuple[nn.Module, dict[str, torch.Tensor], str]:
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=1000, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = get_peft_model(BertModel(cfg), LoraConfig(r=r, lora_alpha=r, target_modules=MODULES))
    ids = torch.randint(0, 1000, (16, 32), generator=torch.Generator().manual_seed(1))
    return model, {"input_ids": ids}, (f"random MiniLM-shaped BertModel (6 layers, d = 384, FFN 1536), PEFT LoRA "
                                       f"r = {r} on 36 pairs, batch 16 x 32 tokens")


def overhead_models(scale: str, r: int = 8) -> dict[str, Any]:
    """``{"model": prototype, "inputs": ..., "note": ..., "peft": bool}`` (see the module docstring)."""
    if scale != "smoke":
        try:
            model, inputs, note = _minilm_shaped(r)
            return {"model": model, "inputs": inputs, "note": note, "peft": True}
        except ImportError as exc:
            model, inputs, note = _stand_in(r)
            return {"model": model, "inputs": inputs, "note": f"{note} (transformers/peft missing: {exc})",
                    "peft": False}
    model, inputs, note = _stand_in(r)
    return {"model": model, "inputs": inputs, "note": note, "peft": False}


def make_method(setup: dict[str, Any], method: str, lr: float = 1e-4):
    """A fresh copy of the model and its optimizer for ``method``: lora (AdamW), reflora, reflora-s, noraplus,
    noraplus-riemannian, peft-riemannian, peft-loraplus (ratio 16). B is set non-zero so every hook does its work
    (no warm-up shortcut)."""
    model = copy.deepcopy(setup["model"])
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(1e-3 * torch.randn(p.shape, generator=g))
    params = [p for p in model.parameters() if p.requires_grad]
    if method == "peft-riemannian":
        from peft.optimizers import create_riemannian_optimizer

        return model, create_riemannian_optimizer(model, torch.optim.AdamW, lr=lr, reg=1e-2)
    if method == "peft-loraplus":
        from peft.optimizers import create_loraplus_optimizer

        return model, create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=16)
    base = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if method == "lora":
        return model, base
    if method in ("reflora", "reflora-s"):
        return model, RefLoRA(model, base, mode="matrix" if method == "reflora" else "scalar", warmup_steps=0)
    if method in ("noraplus", "noraplus-riemannian"):
        return model, NoRAPlus(model, base, preset="nora" if method == "noraplus" else "riemannian")
    raise ValueError(f"unknown method {method!r}")


def loss_fn(setup: dict[str, Any], model: nn.Module) -> torch.Tensor:
    if setup["peft"]:  # half the features: the LayerNorm'd output's full mean square is constant (no gradient)
        h = model(**setup["inputs"]).last_hidden_state
        return h[..., : h.shape[-1] // 2].square().mean()
    return model(setup["inputs"]["x"]).square().mean()


def step_fn(setup: dict[str, Any], model: nn.Module, opt) -> Any:
    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(setup, model).backward()
        opt.step()

    return step


def time_methods(setup: dict[str, Any], methods: tuple[str, ...], timed: int = 30, warmup: int = 5):
    """Interleaved step times (blocks of one step, order alternating each round) with ``lora`` as baseline."""
    fns = {m: step_fn(setup, *make_method(setup, m)) for m in methods}
    return compare_step_times(fns, baseline="lora", repeats=timed, block=1, warmup=warmup, alternate=True)


PAPER = "Zhang, Li, Giannakis, arXiv:2505.18877 (RefLoRA); Li, Zhang, Mokhtari, He, arXiv:2410.18965 (NoRA, NoRA+)"
# Targets (fixed before any run): RefLoRA <= 1.10x and RefLoRA-S <= 1.02x plain LoRA step time (the project's issue;
# the paper's own figure gives 1.13x and 1.01x), NoRA+ <= 1.15x (spec); peak extra memory <= 1.05x LoRA's (the paper:
# +1.5% for RefLoRA, +0% for RefLoRA-S); the wrapper's state_dict part <= 1 KB (no per-parameter state).
TARGETS = {"reflora": 1.10, "reflora-s": 1.02, "noraplus": 1.15}
STEP_CRITERION = AllChecks(
    reflora=RatioAtMost(TARGETS["reflora"], what="RefLoRA/LoRA step time, r = 8"),
    reflora_s=RatioAtMost(TARGETS["reflora-s"], what="RefLoRA-S/LoRA step time, r = 8"),
    noraplus=RatioAtMost(TARGETS["noraplus"], what="NoRA+/LoRA step time, r = 8"),
    memory=RatioAtMost(1.05, what="largest peak extra memory of one step (RefLoRA, RefLoRA-S, NoRA+) over LoRA's"),
    state=AtMost(1024, what="largest wrapper state_dict part", unit="bytes"),
    batched_eigh=AtLeast(2.0, what="per-pair loop / batched time of RefLoRA's metrics over the model's pairs "
                         "(36 at quick; spec target: >= 2x)", unit="x"),
)
# Peers: the same map as PEFT's Riemannian optimizer agrees to 1e-6 (inverse vs pseudo-inverse: rounding only) and
# costs at most 1.1x its time (spec); NoRA's init takes <= 0.25x PiSSA's time (no SVD; spec).
PEER_CRITERION = AllChecks(
    riemannian_agreement=AtMost(1e-6, what="largest relative parameter difference, NoRAPlus('riemannian') vs PEFT "
                                "create_riemannian_optimizer after 5 SGD steps"),
    riemannian_time=RatioAtMost(1.1, what="NoRAPlus('riemannian')/PEFT Riemannian step time"),
    init_time=RatioAtMost(0.25, what="nora_init_ time / PiSSA init time"),
)


@register_bench(
    id="lora.step", paper=PAPER, seeds={"smoke": 1, "quick": 1, "full": 1}, criterion=STEP_CRITERION,
    statement="RefLoRA, RefLoRA-S and NoRA+ cost little over plain LoRA (AdamW): a few r x r eigendecompositions or "
    "solves per pair and step, no persistent state.",
    metric="median per-round step-time ratio to LoRA (AdamW), MiniLM-shaped random encoder, 36 pairs, batch 16 x 32; "
    "peak extra memory of one step over LoRA's; wrapper state_dict bytes",
    paper_reported="RefLoRA overhead figure (throughput; model and batch UNVERIFIED): LoRA 2.26 it/s, RefLoRA 2.00 "
    "(1.13x time), RefLoRA-S 2.23 (1.01x); peak memory +1.5% (RefLoRA), +0% (RefLoRA-S)",
    headline=(("reflora_ratio", "RefLoRA/LoRA step time", "x"), ("reflora_s_ratio", "RefLoRA-S/LoRA", "x"),
              ("noraplus_ratio", "NoRA+/LoRA", "x")),
)
def step_bench(ctx: RunContext) -> ClaimResult:
    methods = ("lora", "reflora", "reflora-s", "noraplus")
    timed = {"smoke": 3, "quick": 20, "full": 50}[ctx.scale]
    numbers: dict[str, list[float]] = {}
    summary: dict[str, float] = {}
    ranks = (8, 32) if ctx.scale == "full" else (8,)
    with torch_threads(1):
        for r in ranks:
            setup = overhead_models(ctx.scale, r=r)
            ctx.progress(f"timing r = {r}")
            res = time_methods(setup, methods, timed=timed, warmup=2 if ctx.scale == "smoke" else 5)
            for m in methods[1:]:
                summary[f"r={r} {m}/lora"] = res.ratio[m]
                numbers[f"r={r} {m}/lora per round"] = [a / b for a, b in zip(res.per_round[m], res.per_round["lora"])]
            summary[f"r={r} lora seconds"] = res.seconds["lora"]
        setup = overhead_models(ctx.scale, r=8)
        _, ref = make_method(setup, "reflora")
        eig = compare_step_times({"batched": lambda: ref.metrics(ref.pairs),
                                  "loop": lambda: [ref.metrics([p]) for p in ref.pairs]},
                                 baseline="batched", repeats=3 if ctx.scale == "smoke" else 10, block=5, warmup=2)
        summary["metrics loop/batched"] = eig.ratio["loop"]
        numbers["metrics loop/batched per round"] = [a / b for a, b in zip(eig.per_round["loop"],
                                                                             eig.per_round["batched"])]
        peaks, states = {}, {}
        for m in methods:
            model, opt = make_method(setup, m)
            step = step_fn(setup, model, opt)
            step()  # the base state exists before the measured step
            peaks[m] = float(peak_memory(step).peak_bytes)
            states[m] = float(state_bytes(opt.state_dict()["wrapper"])) if hasattr(opt, "base") else 0.0
    mem = max(peaks[m] / peaks["lora"] for m in methods[1:])
    summary.update({f"peak bytes {m}": v for m, v in peaks.items()})
    summary.update({f"wrapper state bytes {m}": v for m, v in states.items()})
    verdict = STEP_CRITERION.evaluate(reflora=summary["r=8 reflora/lora"], reflora_s=summary["r=8 reflora-s/lora"],
                                      noraplus=summary["r=8 noraplus/lora"], memory=mem, state=max(states.values()),
                                      batched_eigh=summary["metrics loop/batched"])
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      notes=[f"Model: {setup['note']}; one thread; B set to small non-zero values so every hook works "
                             "(no warm-up shortcut). state_dict bytes count tensors only (counters are Python ints)."])


def _riemannian_agreement(setup) -> float:
    from peft.optimizers import create_riemannian_optimizer

    from optimlab.lora.noraplus import NoRAPlus

    ours_model, _ = make_method(setup, "lora")
    peft_model, _ = make_method(setup, "lora")
    ours = NoRAPlus(ours_model, torch.optim.SGD([p for p in ours_model.parameters() if p.requires_grad], lr=1e-2),
                    preset="riemannian")
    theirs = create_riemannian_optimizer(peft_model, torch.optim.SGD, lr=1e-2, reg=1e-2)
    for model, opt in ((ours_model, ours), (peft_model, theirs)):
        for _ in range(5):
            opt.zero_grad()
            loss_fn(setup, model).backward()
            opt.step()
    worst, moved = 0.0, 0.0
    start, _ = make_method(setup, "lora")
    for a, b, c in zip(ours_model.parameters(), peft_model.parameters(), start.parameters()):
        if a.requires_grad:
            worst = max(worst, float((a - b).norm() / b.norm().clamp_min(1e-30)))
            moved = max(moved, float((b - c).norm() / c.norm().clamp_min(1e-30)))
    return worst, moved


def _init_times(r: int = 8) -> dict[str, float]:
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertModel

    from optimlab.lora import find_lora_pairs
    from optimlab.lora.nora import nora_init_

    cfg = BertConfig(vocab_size=1000, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=64)
    out = {}
    for name in ("default", "nora", "pissa", "pissa_niter_4", "olora"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = BertModel(cfg)
            before = sum(float(p.double().sum()) for n, p in backbone.named_parameters() if "encoder" in n)
            init = True if name in ("default", "nora") else name
            t0 = time.perf_counter()
            model = get_peft_model(backbone, LoraConfig(r=r, lora_alpha=r, target_modules=MODULES,
                                                        init_lora_weights=init))
            if name == "nora":
                nora_init_(model, generator=0)
            out[f"{name} seconds"] = time.perf_counter() - t0
        after = sum(float(p.double().sum()) for n, p in model.named_parameters() if "encoder" in n and "lora_" not in n)
        out[f"{name} W0 changed"] = float(abs(after - before) > 1e-6 * abs(before))
        out[f"{name} pairs"] = float(len(find_lora_pairs(model)))
    return out


@register_bench(
    id="lora.peers", paper=PAPER, seeds={"smoke": 1, "quick": 1, "full": 1}, criterion=PEER_CRITERION,
    statement="NoRA+'s 'riemannian' preset is PEFT's Riemannian optimizer (same parameters after 5 steps, similar "
    "time); NoRA's initialisation is much cheaper than PiSSA's SVD and, unlike PiSSA and OLoRA, leaves W0 unchanged.",
    metric="relative parameter difference after 5 SGD steps; median step-time ratio; wall time of get_peft_model + "
    "init on the MiniLM-shaped encoder (36 pairs, r = 8); W0 checksums",
    paper_reported="no number in the paper (derived here)",
    headline=(("riemannian_agreement_value", "max param diff vs PEFT Riemannian", ""),
              ("init_time_ratio", "NoRA/PiSSA init time", "x")),
)
def peers_bench(ctx: RunContext) -> ClaimResult:
    summary: dict[str, float] = {}
    with torch_threads(1):
        setup = overhead_models(ctx.scale, r=8)
        if not setup["peft"]:
            nan = math.nan
            verdict = PEER_CRITERION.evaluate(riemannian_agreement=nan, riemannian_time=nan, init_time=nan)
            return ctx.result(verdict=verdict, numbers={"peer comparisons skipped (no peft model)": [nan]}, summary={},
                              notes=f"peers need transformers and peft (model: {setup['note']})")
        summary["riemannian max rel diff"], summary["riemannian max rel move"] = _riemannian_agreement(setup)
        ctx.progress("timing peers")
        res = time_methods(setup, ("lora", "noraplus-riemannian", "peft-riemannian", "peft-loraplus"),
                           timed=20 if ctx.scale == "quick" else 50)
        for m in ("noraplus-riemannian", "peft-riemannian", "peft-loraplus"):
            summary[f"{m}/lora"] = res.ratio[m]
        ratio = statistics_ratio(res.per_round["noraplus-riemannian"], res.per_round["peft-riemannian"])
        summary["noraplus-riemannian/peft-riemannian"] = ratio
        ctx.progress("initialisations")
        summary.update(_init_times())
    # the agreement only counts if the 5 steps moved the parameters (else it would hold trivially)
    agreement = summary["riemannian max rel diff"] if summary["riemannian max rel move"] > 1e-4 else math.nan
    verdict = PEER_CRITERION.evaluate(riemannian_agreement=agreement, riemannian_time=ratio,
                                      init_time=summary["nora seconds"] / summary["pissa seconds"])
    numbers = {k: [v] for k, v in summary.items()}
    return ctx.result(verdict=verdict, numbers=numbers, summary=summary,
                      notes=[f"Model: {setup['note']}; one thread. Init times include get_peft_model (the default "
                             "init's time is the floor). 'W0 changed' is 1 when the base weights' checksum moved."])


def statistics_ratio(a, b) -> float:
    import statistics

    return statistics.median(x / y for x, y in zip(a, b))


__all__ = ["MODULES", "PEER_CRITERION", "STEP_CRITERION", "TARGETS", "make_method", "overhead_models", "peers_bench",
           "step_bench", "step_fn", "time_methods"]
