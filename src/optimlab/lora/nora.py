"""NoRA initialisation of LoRA factors (Li, Zhang, Mokhtari, He, "On the Crucial Role of Initialization for Matrix
Factorization", ICLR 2025, arXiv:2410.18965). Not the nested-LoRA "NoRA" of arXiv:2408.10280.

Per pair (PEFT letters: y = W0 x + s·B(Ax), A ∈ ℝ^{r×d_in}, B ∈ ℝ^{d_out×r}):

    A0 = (σ/s)·Ωᵀ W0,    B0 = 0,     Ω ∈ ℝ^{d_out×r} i.i.d. N(0, 1)

(÷s only with ``divide_by_scaling``). A0's rows sketch W0's row space: in matrix-factorisation terms (ΔW = XYᵀ with
X ↔ B, Y ↔ Aᵀ) this is the asymmetric Nyström start Y0 = ξ·W0ᵀΩ, X0 = 0, computed with
:func:`optimlab.matfac.nystrom_init` on W0ᵀ (ξ = σ/s; Ω drawn in float64 on the CPU, so a seed gives the same A0
on every device). Because B0 = 0 the model's function is exactly the pretrained one, and W0 is never written (PiSSA,
OLoRA and LoRA-GA edit it). Cost: one (r×d_out)(d_out×d_in) product per layer, no SVD.

Seeds: one 64-bit key is drawn per call from ``check_generator(generator)``; pair ``name`` uses a generator seeded
with ``mix64(key, crc32(name))``, so reordering modules or adding a target leaves the other layers' A0 unchanged.

Reference-code bug, not copied: the authors' init (github.com/BingcongLi/NoRA, option ``sketchy``) runs inside the
layer's ``__init__``, so it sketches the *random* weight before PEFT loads W0, and it assigns to a module attribute
so ``lora_A[adapter].weight`` stays Kaiming. This function runs after ``get_peft_model`` on the loaded W0.
σ = 0.1 is the reference config's default (the LLaMA scripts use 0.02). UNVERIFIED: the σ and scaling behind the
paper's own tables (only the authors' scripts were read).
"""

from __future__ import annotations

import math
import warnings
import zlib
from typing import Any

import torch

from optimlab._random import GeneratorLike, check_generator, mix64
from optimlab._validation import Interval, Options, check
from optimlab.lora.pairs import LoRAPair, resolve_pairs
from optimlab.matfac import nystrom_init

__all__ = ["nora_init_", "nora_seed"]

_M63 = (1 << 63) - 1


def nora_seed(key: int, name: str) -> int:
    """The seed of pair ``name``'s Ω under call key ``key``: ``mix64(key, crc32(name))`` (63 bits)."""
    return mix64(key, zlib.crc32(name.encode())) & _M63


@torch.no_grad()
def nora_init_(model_or_pairs: Any, *, sigma: float = 0.1, generator: GeneratorLike = None,
               adapter: str | None = None, divide_by_scaling: bool = True) -> list[str]:
    """Set A0 = (σ/s)·ΩᵀW0 and B0 = 0 in every linear LoRA pair (module docstring); return the qualified names
    initialised. Embedding and conv pairs are skipped with a warning (PEFT initialises embedding pairs the other way
    round, A = 0). A merged pair, or a model without LoRA pairs, raises ``ValueError``. Base weights are read, never
    written. Apply it after ``peft.get_peft_model`` (or :func:`optimlab.lora.inject_lora`) and after the
    pretrained weights are loaded.

    Args:
        model_or_pairs: a model with LoRA layers, or a list of :class:`~optimlab.lora.LoRAPair`.
        sigma: σ > 0 (default 0.1).
        generator: int seed (reproducible), ``torch.Generator`` or ``None`` (fresh), by ``check_generator``.
        adapter: only this adapter (default: the active ones).
        divide_by_scaling: divide by s = α/r (α/√r under rsLoRA) so that s·A0 does not depend on α.
    """
    sigma = check(Interval(0, math.inf, closed="neither"), sigma, "sigma", owner="nora_init_")
    divide_by_scaling = check(Options(False, True), divide_by_scaling, "divide_by_scaling", owner="nora_init_")
    pairs: list[LoRAPair] = resolve_pairs(model_or_pairs, owner="nora_init_", adapter=adapter)
    gen = check_generator(generator)
    key = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    done = []
    for pair in pairs:
        if pair.kind != "linear":
            warnings.warn(f"nora_init_: skipping {pair.kind} pair {pair.qualified_name!r} (NoRA sketches linear "
                          "weights; PEFT initialises embedding pairs with A = 0)", stacklevel=2)
            continue
        if pair.base_weight is None:
            raise ValueError(f"nora_init_: pair {pair.qualified_name!r} has no base weight to sketch")
        W0 = pair.base_weight.detach()
        xi = sigma / pair.scaling if divide_by_scaling else sigma
        g = torch.Generator().manual_seed(nora_seed(key, pair.qualified_name))
        Y0 = nystrom_init(W0.T, pair.r, xi=xi, generator=g)  # (d_in × r) = ξ·W0ᵀΩ, float64 on W0's device
        pair.A.copy_(Y0.T.to(dtype=pair.A.dtype, device=pair.A.device))
        pair.B.zero_()
        done.append(pair.qualified_name)
    return done

