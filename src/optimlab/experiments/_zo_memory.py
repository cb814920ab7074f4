"""Memory and time of one training step on a pretrained MiniLM encoder: inference, ZOSGD, the MeZO procedure
(re-implemented from its description, for comparison only), first-order SGD and AdamW.

Memory (CPU): :func:`optimlab.metrics.peak_memory`, i.e. allocation tracking of tensor storages created by torch
ops during the call (not allocator rounding, not Python objects); on CUDA the caching allocator's peak. M = bytes
of all model parameters + persistent optimizer state + peak extra bytes of the step, measured after a warm-up
forward and a warm-up step (so one-time allocations do not count). Loss: MSE of the first-token hidden state to
a random target, random token ids (MeZO, arXiv:2305.17333, measures memory on real fine-tuning; the loss choice
here is ours and does not change the memory of a step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from optimlab.metrics import peak_memory, state_bytes
from optimlab.zo import ZOSGD, zo_eval

MODES = ("inference", "zosgd", "mezo", "fo_sgd", "fo_adamw")


def minilm_batch(batch: int, length: int, *, device: str = "cpu", seed: int = 0):
    """The pretrained encoder, random token ids ``(batch, length)`` and a random first-token target."""
    from optimlab.data.pretrained import load_minilm

    model, _ = load_minilm(head=None, device=device)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, model.config.vocab_size, (batch, length), generator=g).to(device)
    target = torch.randn(batch, model.config.hidden_size, generator=g).to(device)
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, target


def _loss(model: nn.Module, inputs: dict, target: torch.Tensor) -> torch.Tensor:
    return (model(**inputs).last_hidden_state[:, 0] - target).square().mean()


def mezo_step(model: nn.Module, inputs: dict, target: torch.Tensor, lr: float, eps: float, seed: int) -> float:
    """One step of the MeZO procedure (arXiv:2305.17333, Alg. 1, as described there): reseed the global RNG, draw a
    full-size z per tensor, perturb out of place, two forwards in eval + inference mode, restore, update with the
    same z. Runs inside ``fork_rng`` so the global RNG of the caller is left as it was."""
    params = [p for p in model.parameters() if p.requires_grad]

    def perturb(scale: float) -> None:
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(0, 1, size=p.shape, device=p.device, dtype=p.dtype)
            p.data = p.data + scale * eps * z

    with torch.random.fork_rng(devices=[]):
        perturb(1)
        with zo_eval(model, inference_mode=True):
            lp = float(_loss(model, inputs, target))
        perturb(-2)
        with zo_eval(model, inference_mode=True):
            lm = float(_loss(model, inputs, target))
        perturb(1)
        c = (lp - lm) / (2 * eps)
        torch.manual_seed(seed)
        for p in params:
            z = torch.normal(0, 1, size=p.shape, device=p.device, dtype=p.dtype)
            p.data = p.data - lr * c * z
    return lp


def steps(model: nn.Module, inputs: dict, target: torch.Tensor) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per mode (each one step on the same model and batch; tiny lr)."""
    zo = ZOSGD(model.parameters(), lr=1e-9, eps=1e-3, seed=0)
    sgd = torch.optim.SGD(model.parameters(), lr=1e-9)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-9)
    counter = [0]

    def closure():
        with zo_eval(model, inference_mode=True):
            return _loss(model, inputs, target)

    def inference():
        with zo_eval(model, inference_mode=True):
            return _loss(model, inputs, target)

    def first_order(opt):
        def run():
            model.train(False)
            opt.zero_grad(set_to_none=True)
            loss = _loss(model, inputs, target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    def mezo():
        counter[0] += 1
        return mezo_step(model, inputs, target, 1e-9, 1e-3, counter[0])

    def rng_pass():  # one pass of direction draws over every trainable (the fused step does 3); an upper bound:
        zo.regenerate(0, 0)  # it also assembles the chunks into full tensors

    fns = {"rng_pass": rng_pass, "inference": inference, "zosgd": lambda: zo.step(closure), "mezo": mezo,
           "fo_sgd": first_order(sgd), "fo_adamw": first_order(adamw)}
    fns["_state"] = lambda: {"fo_adamw": state_bytes(adamw.state_dict()["state"]),
                             "zosgd": state_bytes(zo.state_dict()["state"])}
    return fns


def measure_memory(model: nn.Module, inputs: dict, target: torch.Tensor, *, device: str = "cpu",
                   modes=MODES) -> dict[str, float]:
    """M (bytes) per mode: parameter bytes + persistent state + peak extra of one warm step."""
    fns = steps(model, inputs, target)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out = {}
    for mode in modes:
        fns[mode]()  # warm-up: one-time allocations (optimizer state, caches) happen here
        peak = peak_memory(fns[mode], device=device).peak_bytes
        persistent = fns["_state"]().get(mode, 0)
        out[mode] = float(param_bytes + persistent + peak)
    out["param_bytes"] = float(param_bytes)
    return out
