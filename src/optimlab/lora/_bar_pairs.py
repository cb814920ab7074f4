"""Scale-invariant factor pairs as BAR and the balancedness metrics see them: ``(first, second) = (X, Yᵀ)``.

For a LoRA pair (PEFT orientation, ``ΔW = s·B A``) the first factor is ``X = lora_B`` (d_out × r) and the second is
``lora_A`` (r × d_in) = ``Yᵀ``, so ``ΔW = s·X Yᵀ`` (Li, Zhang, He, arXiv:2410.14802, §2). Any other scale-invariant
pair (``(a·x, y/a)`` gives the same loss) is given as a ``(first, second)`` tuple of tensors. Norms are Frobenius
norms, so the shapes (linear, embedding, conv) do not matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["FactorPair", "as_factor_pairs"]


@dataclass(frozen=True, eq=False)
class FactorPair:
    """One pair: ``first`` (X; ``lora_B``), ``second`` (Yᵀ; ``lora_A``), their display names and the pair's name."""

    name: str
    first: Tensor
    second: Tensor
    first_name: str
    second_name: str


def _is_dtensor(t: Tensor) -> bool:
    return type(t).__name__ == "DTensor" or (hasattr(t, "device_mesh") and hasattr(t, "placements"))


def _from_lora_pair(p: Any, owner: str) -> FactorPair:
    if getattr(p, "merged", False):
        raise ValueError(f"{owner}: LoRA pair {p.name!r} (adapter {p.adapter!r}) is merged into its base weight; "
                         "rescaling its factors would desynchronise the merged weight: unmerge it first")
    A, B = p.A, p.B
    if A.dim() < 2 or B.dim() < 2 or A.shape[0] != B.shape[1]:
        raise ValueError(f"{owner}: r mismatch in LoRA pair {p.name!r}: lora_A has shape {tuple(A.shape)} (r = "
                         f"A.shape[0]) and lora_B {tuple(B.shape)} (r = B.shape[1]); they must agree")
    emb = getattr(p, "kind", "linear") == "embedding"
    stem = f"{p.name}." if p.name else ""
    names = ((f"{stem}lora_embedding_B.{p.adapter}", f"{stem}lora_embedding_A.{p.adapter}") if emb else
             (f"{stem}lora_B.{p.adapter}.weight", f"{stem}lora_A.{p.adapter}.weight"))
    return FactorPair(f"{stem}{p.adapter}", B, A, *names)


def as_factor_pairs(pairs: Any, *, owner: str, trainable: bool = True) -> list[FactorPair]:
    """Normalise ``pairs`` (a model, a sequence of ``LoRAPair`` and/or ``(first, second)`` tensor tuples) into
    :class:`FactorPair` s, raising ``ValueError`` saying what was found for: no pair, a merged or r-mismatched
    ``LoRAPair``, an item of another type, a tensor that does not require grad, a tensor in two pairs (tied
    weights); ``NotImplementedError`` for sharded (``DTensor``) factors, whose local norms would give
    process-dependent decisions. ``trainable=False`` (reports) accepts frozen tensors."""
    if isinstance(pairs, nn.Module):
        from optimlab.lora.pairs import resolve_pairs

        pairs = resolve_pairs(pairs, owner=owner)
    if isinstance(pairs, (Tensor, str)) or (not isinstance(pairs, (Sequence, list, tuple)) and not hasattr(
            pairs, "__iter__")):
        raise ValueError(f"{owner}: pairs must be a model or a sequence of LoRAPair / (first, second) tensor tuples, "
                         f"got {type(pairs).__name__}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"{owner}: pairs must hold at least one LoRA pair or (first, second) tensor pair, got an "
                         "empty sequence (find_lora_pairs found no LoRA layer? wrap the model with "
                         "peft.get_peft_model or optimlab.lora.inject_lora first)")
    out: list[FactorPair] = []
    for i, p in enumerate(pairs):
        if isinstance(p, FactorPair):
            fp = p
        elif hasattr(p, "A") and hasattr(p, "B") and hasattr(p, "adapter"):
            fp = _from_lora_pair(p, owner)
        elif isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, Tensor) for t in p):
            fp = FactorPair(f"pairs[{i}]", p[0], p[1], f"pairs[{i}][0]", f"pairs[{i}][1]")
        else:
            raise ValueError(f"{owner}: pairs[{i}] must be a LoRAPair or a (first, second) tuple of two tensors, got "
                             f"{type(p).__name__}" + (f" of length {len(p)}" if isinstance(p, (tuple, list)) else ""))
        out.append(fp)
    seen: dict[int, str] = {}
    for fp in out:
        for t, n in ((fp.first, fp.first_name), (fp.second, fp.second_name)):
            if _is_dtensor(t):
                raise NotImplementedError(f"{owner}: tensor {n!r} is sharded (DTensor, FSDP2/ZeRO-3); its local norm "
                                          "would give process-dependent decisions. Sharded norms are not supported "
                                          "yet: gather the LoRA factors (they are small) or do not shard them")
            if trainable and not t.requires_grad:
                raise ValueError(f"{owner}: tensor {n!r} has requires_grad=False; BAR rescales trainable factors only")
            if id(t) in seen:
                raise ValueError(f"{owner}: tensor {n!r} appears twice ({seen[id(t)]!r} and {n!r}): tied weights "
                                 "cannot be treated as independent pairs")
            seen[id(t)] = n
    return out
