"""LoRA factor pairs of a model, in PEFT's orientation: the one place that knows where LoRA keeps its factors.

A pair is ``(A, B)`` with ``A ∈ ℝ^{r×d_in}`` (``lora_A``), ``B ∈ ℝ^{d_out×r}`` (``lora_B``) and scaling ``s``, so the
adapter adds ``ΔW = s·B A`` to the frozen base weight ``W0``. Every LoRA method of the package (NoRA, NoRA+,
RefLoRA, BAR) takes its pairs from :func:`find_lora_pairs`. A module qualifies when it carries PEFT's attribute
names (``lora_A``, ``lora_B``, ``scaling``, ``active_adapters``): PEFT's ``LoraLayer`` subclasses and our
:class:`optimlab.lora.LoRALinear`; peft itself is never imported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

KINDS = ("linear", "embedding", "conv")


@dataclass(frozen=True, eq=False)
class LoRAPair:
    """One adapter's factors in one layer (PEFT orientation: ``ΔW = scaling · B @ A``).

    ``A`` and ``B`` are the parameters themselves (conv factors keep their 4-d shape; :meth:`matrices` gives the
    2-d views ``r × (d_in·k·k)`` and ``d_out × r``). ``base_weight`` is the frozen ``W0`` as ``d_out × d_in`` (a
    transposed view when the layer stores ``fan_in_fan_out``), ``None`` when the layer has none.
    """

    name: str
    adapter: str
    module: nn.Module
    A: nn.Parameter
    B: nn.Parameter
    scaling: float
    base_weight: Tensor | None
    kind: str
    merged: bool

    @property
    def r(self) -> int:
        return int(self.A.shape[0])

    @property
    def qualified_name(self) -> str:
        """``"<module name>.<adapter>"``: unique over the pairs of a model."""
        return f"{self.name}.{self.adapter}" if self.name else self.adapter

    def matrices(self) -> tuple[Tensor, Tensor]:
        """2-d views ``(A: r × ·, B: · × r)`` of the factors, for shape-agnostic maths."""
        return self.A.reshape(self.A.shape[0], -1), self.B.reshape(self.B.shape[0], -1)

    def delta_weight(self) -> Tensor:
        """``scaling · B A`` as a 2-d matrix (d_out × d_in·k·k)."""
        a, b = self.matrices()
        return self.scaling * (b @ a)


def is_lora_layer(module: nn.Module) -> bool:
    """Whether ``module`` carries LoRA factors under PEFT's names."""
    return all(hasattr(module, k) for k in ("lora_A", "lora_B", "scaling", "active_adapters"))


def _base_weight(module: nn.Module) -> Tensor | None:
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else getattr(module, "base_layer", None)
    w = getattr(base, "weight", None)
    if not isinstance(w, Tensor):
        return None
    return w.T if getattr(module, "fan_in_fan_out", False) and w.dim() == 2 else w


def _layer_pairs(name: str, module: nn.Module, adapters: list[str], kinds: Sequence[str]) -> Iterable[LoRAPair]:
    merged = set(getattr(module, "merged_adapters", ()) or ())
    emb_a = getattr(module, "lora_embedding_A", {}) or {}
    emb_b = getattr(module, "lora_embedding_B", {}) or {}
    for adapter in adapters:
        if adapter in module.lora_A and adapter in module.lora_B:
            a_mod, b_mod = module.lora_A[adapter], module.lora_B[adapter]
            kind = "conv" if isinstance(a_mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else "linear"
            A, B = a_mod.weight, b_mod.weight
        elif adapter in emb_a and adapter in emb_b:
            kind, A, B = "embedding", emb_a[adapter], emb_b[adapter]
        else:
            continue
        if kind in kinds:
            yield LoRAPair(name=name, adapter=adapter, module=module, A=A, B=B, scaling=float(module.scaling[adapter]),
                           base_weight=_base_weight(module), kind=kind, merged=adapter in merged)


def _active(module: nn.Module) -> list[str]:
    active = module.active_adapters
    return [active] if isinstance(active, str) else list(active)


def find_lora_pairs(model: nn.Module, adapter: str | None = None, kinds: Sequence[str] = KINDS,
                    trainable_only: bool = True) -> list[LoRAPair]:
    """Every LoRA pair of ``model`` in ``named_modules`` order: for each LoRA layer, each of its active adapters
    (or only ``adapter`` when given, active or not), restricted to ``kinds`` and, with ``trainable_only``, to
    pairs whose two factors require grad. Returns ``[]`` when there is none (see :func:`resolve_pairs`)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"find_lora_pairs: model must be a torch.nn.Module, got {type(model).__name__}")
    bad = [k for k in kinds if k not in KINDS]
    if bad or isinstance(kinds, str):
        raise ValueError(f"find_lora_pairs: kinds must be a sequence drawn from {KINDS}, got {kinds!r}")
    pairs = []
    for name, module in model.named_modules():
        if is_lora_layer(module):
            adapters = _active(module) if adapter is None else [adapter]
            pairs.extend(p for p in _layer_pairs(name, module, adapters, kinds)
                         if not trainable_only or (p.A.requires_grad and p.B.requires_grad))
    return pairs


def describe_model(model: nn.Module) -> str:
    """A short inventory for error messages: the model's class and its most common module types."""
    counts = Counter(type(m).__name__ for m in model.modules())
    common = ", ".join(f"{n}×{k}" for k, n in counts.most_common(6))
    return f"{type(model).__name__} with {common}"


def resolve_pairs(model_or_pairs: Any, *, owner: str, adapter: str | None = None,
                  kinds: Sequence[str] = KINDS) -> list[LoRAPair]:
    """The pairs a LoRA method acts on, from a model (through :func:`find_lora_pairs`) or a sequence of
    :class:`LoRAPair`. Raises ``ValueError`` saying what was found when there is no pair, when an item is not a
    ``LoRAPair``, when a pair is merged into its base weight (changing its factors would desynchronise ``W0``),
    or when a tensor appears in two pairs."""
    if isinstance(model_or_pairs, nn.Module):
        pairs = find_lora_pairs(model_or_pairs, adapter=adapter, kinds=kinds)
        if not pairs:
            layers = [n for n, m in model_or_pairs.named_modules() if is_lora_layer(m)]
            found = (f"{len(layers)} LoRA layer(s) but no active trainable {'/'.join(kinds)} adapter"
                     + (f" named {adapter!r}" if adapter else "") if layers else "no LoRA layer")
            raise ValueError(f"{owner}: no LoRA pairs in the model ({describe_model(model_or_pairs)}): found {found}; "
                             "wrap it with peft.get_peft_model(...) or optimlab.lora.inject_lora(...) first")
    else:
        try:
            pairs = list(model_or_pairs)
        except TypeError:
            raise ValueError(f"{owner}: model_or_pairs must be an nn.Module or a sequence of LoRAPair, "
                             f"got {type(model_or_pairs).__name__}") from None
        if not pairs:
            raise ValueError(f"{owner}: no LoRA pairs given (an empty sequence)")
        wrong = [type(p).__name__ for p in pairs if not isinstance(p, LoRAPair)]
        if wrong:
            raise ValueError(f"{owner}: every pair must be a LoRAPair (from optimlab.lora.find_lora_pairs), got {wrong[:3]}")
    merged = [p.qualified_name for p in pairs if p.merged]
    if merged:
        raise ValueError(f"{owner}: pair(s) {merged[:3]} are merged into their base weight; unmerge them first "
                         "(changing merged factors desynchronises the base weight)")
    seen: dict[int, str] = {}
    for p in pairs:
        for t in (p.A, p.B):
            if id(t) in seen and seen[id(t)] != p.qualified_name:
                raise ValueError(f"{owner}: one tensor is in two pairs ({seen[id(t)]!r} and {p.qualified_name!r}); "
                                 "tied factors cannot be treated as independent pairs")
            seen[id(t)] = p.qualified_name
    return pairs
