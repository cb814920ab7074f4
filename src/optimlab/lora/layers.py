"""A pure-torch LoRA layer with PEFT's parameter names, so LoRA methods, tests and claims run without peft.

LoRA (Hu et al., ICLR 2022, arXiv:2106.09685): ``y = W0 x + b + s · B (A x)`` with the pretrained ``W0`` frozen,
``A ∈ ℝ^{r×d_in}``, ``B ∈ ℝ^{d_out×r}`` and ``s = α/r`` (rsLoRA: ``α/√r``). As in PEFT's ``LoraLayer``: the wrapped
layer is ``base_layer``; per adapter name, ``lora_A[name]`` and ``lora_B[name]`` are bias-free ``nn.Linear``s,
``scaling[name]`` is ``s``; ``A`` is Kaiming-uniform (``a = √5``) and ``B = 0``, so a fresh layer computes the
base layer's function exactly. :func:`optimlab.lora.find_lora_pairs` treats this layer and PEFT's alike.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor, nn

from optimlab._random import GeneratorLike, check_generator
from optimlab._validation import Instance, Interval, check

_OWNER = "LoRALinear"


class LoRALinear(nn.Module):
    """``nn.Linear`` plus named low-rank adapters, with PEFT's attribute names (``base_layer``, ``lora_A``,
    ``lora_B``, ``scaling``, ``r``, ``lora_alpha``, ``active_adapters``, ``merged_adapters``).

    Build it around a new ``nn.Linear(in_features, out_features, bias=bias)``, or wrap an existing layer with
    :meth:`from_linear` (what :func:`inject_lora` does). The base layer's parameters are frozen.
    """

    def __init__(self, in_features: int, out_features: int, r: int = 8, alpha: float = 8, *,
                 use_rslora: bool = False, bias: bool = True, adapter: str = "default",
                 generator: GeneratorLike = None, base_layer: nn.Linear | None = None) -> None:
        super().__init__()
        check(Interval(1, math.inf, integer=True), in_features, "in_features", owner=_OWNER)
        check(Interval(1, math.inf, integer=True), out_features, "out_features", owner=_OWNER)
        self.base_layer = base_layer if base_layer is not None else nn.Linear(in_features, out_features, bias=bias)
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = in_features, out_features
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.r: dict[str, int] = {}
        self.lora_alpha: dict[str, float] = {}
        self.scaling: dict[str, float] = {}
        self.use_rslora: dict[str, bool] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.add_adapter(adapter, r, alpha, use_rslora=use_rslora, generator=generator)

    @classmethod
    def from_linear(cls, linear: nn.Linear, r: int = 8, alpha: float = 8, **kwargs) -> LoRALinear:
        """Wrap an existing ``nn.Linear`` (its weight is kept, frozen, not copied)."""
        check(Instance(nn.Linear), linear, "linear", owner=_OWNER)
        return cls(linear.in_features, linear.out_features, r, alpha, base_layer=linear, **kwargs)

    @property
    def weight(self) -> Tensor:
        return self.base_layer.weight

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def add_adapter(self, name: str, r: int = 8, alpha: float = 8, *, use_rslora: bool = False,
                    generator: GeneratorLike = None) -> None:
        """Add adapter ``name`` (A Kaiming-uniform with ``a = √5`` from ``generator``, B = 0) and activate it."""
        check(Interval(1, math.inf, integer=True), r, "r", owner=_OWNER)
        check(Interval(0, math.inf, closed="neither"), alpha, "alpha", owner=_OWNER)
        if name in self.lora_A:
            raise ValueError(f"{_OWNER}: adapter {name!r} exists already (adapters: {list(self.lora_A)})")
        w = self.base_layer.weight
        a = nn.Linear(self.in_features, r, bias=False, device=w.device, dtype=w.dtype)
        b = nn.Linear(r, self.out_features, bias=False, device=w.device, dtype=w.dtype)
        gen = check_generator(generator, device=w.device)
        with torch.no_grad():
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5), generator=gen)
            b.weight.zero_()
        self.lora_A[name], self.lora_B[name] = a, b
        self.r[name], self.lora_alpha[name], self.use_rslora[name] = int(r), float(alpha), bool(use_rslora)
        self.scaling[name] = float(alpha) / (math.sqrt(r) if use_rslora else r)
        self.active_adapters.append(name)

    def set_adapter(self, names: str | list[str]) -> None:
        """Make ``names`` the active adapters (the others keep their weights and are skipped in ``forward``)."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.lora_A]
        if unknown:
            raise ValueError(f"{_OWNER}: unknown adapter(s) {unknown}; adapters: {list(self.lora_A)}")
        self.active_adapters = names

    def delta_weight(self, name: str) -> Tensor:
        """``s · B A`` of adapter ``name`` (d_out × d_in)."""
        return self.scaling[name] * (self.lora_B[name].weight @ self.lora_A[name].weight)

    @torch.no_grad()
    def merge(self) -> None:
        """Add the active, unmerged adapters' ``s·BA`` into the base weight (as PEFT's ``merge``)."""
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                self.base_layer.weight.add_(self.delta_weight(name).to(self.base_layer.weight.dtype))
                self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self) -> None:
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            self.base_layer.weight.sub_(self.delta_weight(name).to(self.base_layer.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        y = self.base_layer(x)
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                y = y + self.scaling[name] * self.lora_B[name](self.lora_A[name](x.to(self.lora_A[name].weight.dtype)))
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}"


def inject_lora(module: nn.Module, target_regex: str, r: int = 8, alpha: float = 8, *, use_rslora: bool = False,
                adapter: str = "default", generator: GeneratorLike = None, freeze_base: bool = True) -> list[str]:
    """Replace every ``nn.Linear`` of ``module`` whose qualified name matches ``target_regex`` (``re.fullmatch``)
    by a :class:`LoRALinear` around it, in place, as PEFT's ``get_peft_model`` does; returns the replaced names.

    With ``freeze_base`` every parameter that is not a LoRA factor is frozen (PEFT's default; unfreeze a head
    yourself). One ``generator`` draws every new A in ``named_modules`` order, so a seed gives one init.
    Raises ``ValueError`` when nothing matches, listing the Linear layers that exist.
    """
    check(Instance(nn.Module), module, "module", owner="inject_lora")
    pattern = re.compile(target_regex)
    gen = check_generator(generator)
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear) and n]
    chosen = [(n, m) for n, m in linears if pattern.fullmatch(n)]
    if not chosen:
        raise ValueError(f"inject_lora: target_regex {target_regex!r} matches no nn.Linear; the Linear layers are "
                         f"{[n for n, _ in linears][:20]}")
    for name, linear in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, LoRALinear.from_linear(linear, r, alpha, use_rslora=use_rslora, adapter=adapter,
                                                      generator=gen))
    if freeze_base:
        for pname, p in module.named_parameters():
            if ".lora_A." not in f".{pname}" and ".lora_B." not in f".{pname}":
                p.requires_grad_(False)
    return [n for n, _ in chosen]
