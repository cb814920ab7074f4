"""Shared fine-tuning runs of the claims ``nora.lora_finetune``, ``nora.noraplus`` and ``reflora.finetune``
(group ``lora_finetune``: one set of runs per invocation, in ``ctx.cache``).

Backbone ``minilm`` (quick and full): all-MiniLM-L6-v2 (``optimlab.data.pretrained.load_minilm``) on the binary
drug-review task (``optimlab.data.text.drug_reviews``: 546 training and 343 test reviews). The training reviews are
split once (fixed generator) into 75% train and 25% validation. The layers below the first adapted one are frozen
and their outputs cached once per invocation (exact: those layers never change); LoRA (PEFT 0.21.2,
``inject_adapter_in_model``, r = α = 8) on query, key, value, attention.output.dense, intermediate.dense and
output.dense of the adapted layers; a seeded linear head on the masked mean-pool; AdamW (weight decay 0), batch 16,
linear LR warm-up over 10% of the steps then cosine to 0; RefLoRA warm-up = the LR warm-up. Each method's lr is the
one, from the scale's grid, with the lowest median final *validation* loss; the verdict numbers are read on the
*test* split at that lr (the test split never selects anything).

* quick: layer 5 only (6 pairs; layers 0-4 cached), reviews cut to 32 tokens, 48 steps, lr grid {2e-3} (a single
  lr fixed before any run, so nothing is selected), test loss at steps 16, 32, 48.
* full: all 6 layers (36 pairs), 64 tokens, 600 steps, lr grid {3e-4, 1e-3, 3e-3}, evaluation every 50 steps.
* smoke (and the fallback when MiniLM or transformers is missing; the report says so): a pure-torch stand-in, two
  token-wise residual MLP blocks (d = 32) with :class:`~optimlab.lora.LoRALinear` on synthetic features, 10 steps.

Methods: ``lora`` (PEFT init: Kaiming A, B = 0), ``nora`` (NoRA init, σ = 0.1), ``noraplus`` (NoRA init + NoRA+
preset "nora"), ``reflora`` (PEFT init + RefLoRA), ``reflora-s`` (PEFT init + RefLoRA-S). The seed fixes the data
order, the head, the Kaiming draws and Ω.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optimlab.lora import find_lora_pairs, inject_lora
from optimlab.lora.nora import nora_init_
from optimlab.lora.noraplus import NoRAPlus
from optimlab.lora.reflora import RefLoRA

METHODS = ("lora", "nora", "noraplus", "reflora", "reflora-s")
TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
SETTINGS = {  # first adapted layer, tokens, steps, lr grid, evaluation interval, batch
    "smoke": dict(first=0, length=8, steps=10, lrs=(2e-3,), every=5, batch=16),
    "quick": dict(first=5, length=32, steps=48, lrs=(2e-3,), every=16, batch=16),
    "full": dict(first=0, length=64, steps=600, lrs=(3e-4, 1e-3, 3e-3), every=50, batch=16),
}


@dataclass
class Features:
    """Cached inputs of the adapted layers: hidden states (N×T×d), attention mask (N×T), labels (N)."""

    hidden: Tensor
    mask: Tensor
    labels: Tensor


@dataclass
class Backbone:
    kind: str  # "minilm" or "tiny"
    layers: nn.ModuleList  # the adapted layers (a pristine copy; each run deep-copies it)
    width: int
    splits: dict[str, Features]
    note: str
    n_pairs: int = 0


class _TinyBlock(nn.Module):
    """Token-wise residual MLP block (the smoke stand-in's layer)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, h: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return h + self.fc2(F.gelu(self.fc1(h)))


def _tiny_backbone() -> Backbone:
    g = torch.Generator().manual_seed(0)
    d, T = 32, 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers = nn.ModuleList([_TinyBlock(d) for _ in range(2)])
    direction = torch.randn(d, generator=g)

    def split(n: int) -> Features:
        h = torch.randn(n, T, d, generator=g)
        y = ((h.mean(1) @ direction) + 0.5 * torch.randn(n, generator=g) > 0).long()
        return Features(h, torch.ones(n, T, dtype=torch.long), y)

    return Backbone("tiny", layers, d, {"train": split(256), "val": split(128), "test": split(128)},
                    "smoke stand-in: two token-wise residual MLP blocks (d = 32) on synthetic features")


def _minilm_backbone(first: int, length: int) -> Backbone:
    from optimlab.data.pretrained import load_minilm
    from optimlab.data.text import drug_reviews, encode

    model, tok = load_minilm()
    data = drug_reviews(binary=True)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(data.train_texts), generator=g)
    n_val = len(perm) // 4
    idx = {"val": perm[:n_val], "train": perm[n_val:]}
    texts = {k: [data.train_texts[i] for i in v] for k, v in idx.items()}
    labels = {k: torch.as_tensor(data.train_labels)[v] for k, v in idx.items()}
    texts["test"], labels["test"] = list(data.test_texts), torch.as_tensor(data.test_labels)
    splits = {}
    with torch.no_grad():
        for name, tx in texts.items():
            hs, ms = [], []
            for i in range(0, len(tx), 64):
                enc = encode(tok, tx[i:i + 64], max_length=length)
                out = model(**enc, output_hidden_states=True)
                hs.append(out.hidden_states[first])
                ms.append(enc["attention_mask"])
            splits[name] = Features(torch.cat(hs), torch.cat(ms), labels[name].long())
    layers = nn.ModuleList([copy.deepcopy(layer) for layer in model.encoder.layer[first:]])
    note = (f"all-MiniLM-L6-v2, drug reviews (binary; {len(idx['train'])} train / {n_val} validation / "
            f"{len(texts['test'])} test), {length} tokens, layers {first}-5 adapted ({6 * (6 - first)} pairs; "
            f"layers below cached)")
    return Backbone("minilm", layers, model.config.hidden_size, splits, note)


def backbone(scale: str, cache: dict) -> Backbone:
    """The scale's backbone, built once per invocation (``cache``); MiniLM falls back to the stand-in when missing."""
    key = ("lora_finetune_backbone", scale)
    if key not in cache:
        s = SETTINGS[scale]
        if scale == "smoke":
            cache[key] = _tiny_backbone()
        else:
            try:
                cache[key] = _minilm_backbone(s["first"], s["length"])
            except ImportError as exc:
                bb = _tiny_backbone()
                bb.note = f"MiniLM unavailable ({exc}); {bb.note}"
                cache[key] = bb
    return cache[key]


class Top(nn.Module):
    """Adapted layers + masked mean-pool + linear head."""

    def __init__(self, layers: nn.ModuleList, width: int, seed: int) -> None:
        super().__init__()
        self.layers = layers
        g = torch.Generator().manual_seed(30_000 + seed)
        self.head = nn.Linear(width, 2)
        with torch.no_grad():
            self.head.weight.copy_(0.02 * torch.randn(self.head.weight.shape, generator=g))
            self.head.bias.zero_()

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        ext = (1.0 - mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for layer in self.layers:
            out = layer(h, attention_mask=ext)
            h = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1.0))


def build(bb: Backbone, seed: int, init: str) -> Top:
    layers = copy.deepcopy(bb.layers)
    with torch.random.fork_rng(devices=[]):  # PEFT draws its Kaiming A from the global RNG: seed it, then restore
        torch.manual_seed(40_000 + seed)
        if bb.kind == "minilm":
            from peft import LoraConfig, inject_adapter_in_model

            layers = inject_adapter_in_model(LoraConfig(r=8, lora_alpha=8, target_modules=TARGETS), layers)
        else:
            inject_lora(layers, r".*fc[12]", r=4, alpha=4, generator=40_000 + seed)
    top = Top(layers, bb.width, seed)
    for n, p in top.named_parameters():
        p.requires_grad_("lora_" in n or n.startswith("head."))
    bb.n_pairs = len(find_lora_pairs(top))
    if init == "nora":
        nora_init_(top, sigma=0.1, generator=seed)
    return top


@dataclass
class FinetuneRun:
    steps: list[int] = field(default_factory=list)
    test: list[float] = field(default_factory=list)  # held-out (test split) loss at each evaluation point
    val_final: float = math.nan
    seconds: float = 0.0

    @property
    def final(self) -> float:
        return self.test[-1] if self.test else math.nan

    @property
    def mean(self) -> float:
        return sum(self.test) / len(self.test) if self.test else math.nan


def evaluate(top: Top, feats: Features, batch: int = 64) -> float:
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(feats.labels), batch):
            logits = top(feats.hidden[i:i + batch], feats.mask[i:i + batch])
            total += float(F.cross_entropy(logits, feats.labels[i:i + batch], reduction="sum"))
            n += len(logits)
    return total / n


def finetune(bb: Backbone, method: str, seed: int, lr: float, scale: str) -> FinetuneRun:
    import time

    s = SETTINGS[scale]
    steps, warm = s["steps"], max(1, s["steps"] // 10)
    top = build(bb, seed, "nora" if method in ("nora", "noraplus") else "peft")
    top.train(False)  # no dropout: the runs differ by the method only
    params = [p for p in top.parameters() if p.requires_grad]
    base = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if method == "noraplus":
        opt = NoRAPlus(top, base, preset="nora")
    elif method in ("reflora", "reflora-s"):
        opt = RefLoRA(top, base, mode="matrix" if method == "reflora" else "scalar", warmup_steps=warm)
    else:
        opt = base

    def factor(k: int) -> float:
        if k < warm:
            return (k + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    g = torch.Generator().manual_seed(50_000 + seed)
    train = bb.splits["train"]
    run = FinetuneRun()
    t0 = time.process_time()
    for k in range(steps):
        idx = torch.randint(0, len(train.labels), (s["batch"],), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(top(train.hidden[idx], train.mask[idx]), train.labels[idx]).backward()
        opt.step()
        sched.step()
        if (k + 1) % s["every"] == 0 or k + 1 == steps:
            if not run.steps or run.steps[-1] != k + 1:
                run.steps.append(k + 1)
                run.test.append(evaluate(top, bb.splits["test"]))
    run.val_final = evaluate(top, bb.splits["val"]) if len(s["lrs"]) > 1 else math.nan
    run.seconds = time.process_time() - t0
    return run


def shared_runs(ctx) -> dict:
    """``{"backbone": Backbone, "runs": {method: [FinetuneRun per seed]}, "lr": {method: lr}}`` at the selected lr,
    computed once per invocation for the whole group."""
    key = ("lora_finetune_runs", ctx.scale, tuple(ctx.seeds))
    if key in ctx.cache:
        return ctx.cache[key]
    s = SETTINGS[ctx.scale]
    bb = backbone(ctx.scale, ctx.cache)
    chosen, runs = {}, {}
    for method in METHODS:
        per_lr = {}
        for lr in s["lrs"]:
            per_lr[lr] = []
            for seed in ctx.seeds:
                ctx.progress(f"fine-tune {method}, lr {lr:g}, seed {seed}")
                per_lr[lr].append(finetune(bb, method, seed, lr, ctx.scale))

        def med_val(lr, per_lr=per_lr):
            v = sorted(r.val_final for r in per_lr[lr])
            return v[len(v) // 2]

        best = min(per_lr, key=med_val) if len(per_lr) > 1 else next(iter(per_lr))
        chosen[method], runs[method] = best, per_lr[best]
    ctx.cache[key] = {"backbone": bb, "runs": runs, "lr": chosen}
    return ctx.cache[key]


def curves_figure(shared: dict, methods: tuple[str, ...], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in methods:
        for i, run in enumerate(shared["runs"][method]):
            ax.plot(run.steps, run.test, color=f"C{METHODS.index(method)}", alpha=0.7,
                    label=f"{method} (lr {shared['lr'][method]:g})" if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out (test) cross-entropy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
