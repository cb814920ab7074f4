"""Factories of every optimizer for the contract suite (docs/DESIGN.md), and the helpers the suite shares.

A :class:`Factory` builds a fresh, seeded :class:`Setup` (model, optimizer, closure per step) from keyword
options: ``dtype``, ``device``, ``nonfinite``, per-group overrides, only the first group (to test
``add_param_group``), and any constructor argument (to test bad values). Two builds with the same options are
bit-identical, so a copy of a run can be rebuilt and compared. A new family appends its factories to
``FACTORIES``.
"""

from __future__ import annotations

import importlib
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from conftest import batch, closure_for, mlp
from optimlab._validation import AnyOf, Constraint, Instance, Interval, Options
from optimlab.matfac import ScaledGD
from optimlab.sam import ASAM, SAM, FisherSAM, InfoSAM, PreSAM, VaSSO

BAD_STRING = "not-an-option"


@dataclass
class Setup:
    model: nn.Module
    opt: torch.optim.Optimizer
    closure: Callable[[int], Callable[[], Tensor]]  # step index -> closure (forward, backward, return the loss)
    split: list[list[Tensor]]  # the model's parameters in the groups the optimizer gets (two groups)


@dataclass(frozen=True)
class Factory:
    id: str
    cls: type
    make: Callable[..., Setup]
    fixed: frozenset = frozenset()  # table keys the preset sets itself (not constructor arguments)
    passes: int = 1  # closure calls per step
    override: dict = field(default_factory=dict)  # a valid per-group override that changes the step
    table_cases: bool = True  # generate the constructor cases from this factory (one per class or preset)
    wrapper: bool = False
    marks: tuple = ()


# ------------------------------------------------------------------------------------------ the SAM family
def _abs_plus(p: Tensor, g: Tensor, group: dict, state: dict) -> Tensor:
    """A user's constraint callable: c = |w| + 0.1 (positive, shape of p)."""
    return p.detach().abs().add(0.1)


def _signed_sqrt(p: Tensor, g: Tensor, group: dict, state: dict) -> Tensor:
    """A user's objective callable: u = sign(g)·sqrt(|g|)."""
    return g.sign() * g.abs().sqrt()


def _sam_make(cls: type, preset: dict[str, Any], base: str = "sgd") -> Callable[..., Setup]:
    def make(*, dtype=torch.float32, device="cpu", nonfinite="raise", group_overrides=None, first_group_only=False,
             plain=False, **kw) -> Setup:
        model = mlp(0, dtype=dtype, device=device)
        split = [list(model[0].parameters()), list(model[3].parameters())]
        overrides = group_overrides or [{}] * len(split)
        groups = [{"params": ps, **o} for ps, o in zip(split, overrides)]
        groups = groups[:1] if first_group_only else groups
        if base == "sgd":
            opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
        else:
            opt = torch.optim.AdamW(groups, lr=0.01, eps=1e-3, weight_decay=0.01)  # eps survives fp16
        if not plain:
            opt = cls(**{"base": opt, "model": model, "nonfinite": nonfinite, **preset, **kw})

        def closure(t: int):
            return closure_for(model, *batch(100 + t, dtype=dtype, device=device))

        return Setup(model, opt, closure, split)

    return make


def _sam(id_: str, cls: type, preset: dict[str, Any], *, fixed=(), base="sgd", table_cases=True, marks=()):
    return Factory(id_, cls, _sam_make(cls, preset, base), frozenset(fixed), passes=2, override={"rho": 0.0},
                   table_cases=table_cases, wrapper=True, marks=marks)




# ------------------------------------------------------------------------------------------ ScaledGD
class _Factors(nn.Module):
    """Two independent matrix-factorisation problems, one per param group: ¼‖XXᵀ − A‖² (symmetric) or
    ½‖XYᵀ − A‖² (a pair [X, Y]), with A of rank 2 and factors of rank 2, all from a seeded generator."""

    def __init__(self, symmetric: bool, dtype: torch.dtype, device: str) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        m, n, r = 6, (6 if symmetric else 5), 2
        self.symmetric, self.targets = symmetric, []
        self.factors = nn.ParameterList()
        for _ in range(2):
            U = torch.randn(m, r, generator=g, dtype=torch.float64)
            V = U if symmetric else torch.randn(n, r, generator=g, dtype=torch.float64)
            self.targets.append((U @ V.T).to(dtype=dtype, device=device))
            shapes = [(m, r)] if symmetric else [(m, r), (n, r)]
            for shape in shapes:
                X0 = U.clone() if shape == (m, r) else V.clone()
                X0 = X0 + 0.3 * torch.randn(*shape, generator=g, dtype=torch.float64)
                self.factors.append(nn.Parameter(X0.to(dtype=dtype, device=device)))

    def groups(self) -> list[list[Tensor]]:
        k = 1 if self.symmetric else 2
        return [list(self.factors[i * k:(i + 1) * k]) for i in range(2)]

    def loss(self) -> Tensor:
        total = 0.0
        for A, fs in zip(self.targets, self.groups()):
            if self.symmetric:
                total = total + 0.25 * (fs[0] @ fs[0].T - A).square().sum()
            else:
                total = total + 0.5 * (fs[0] @ fs[1].T - A).square().sum()
        return total


def _scaledgd_make(symmetric: bool) -> Callable[..., Setup]:
    def make(*, dtype=torch.float32, device="cpu", nonfinite="raise", group_overrides=None, first_group_only=False,
             **kw) -> Setup:
        model = _Factors(symmetric, dtype, device)
        split = model.groups()
        overrides = group_overrides or [{}] * len(split)
        groups = [{"params": ps, **o} for ps, o in zip(split, overrides)]
        groups = groups[:1] if first_group_only else groups
        opt = ScaledGD(groups, **{"lr": 0.5, "symmetric": symmetric, "nonfinite": nonfinite, **kw})

        def closure(t: int):
            def run():
                loss = model.loss()
                loss.backward()
                return loss

            return run

        return Setup(model, opt, closure, split)

    return make


FACTORIES = [
    _sam("sam", SAM, {}),
    _sam("asam", ASAM, {}),
    _sam("fishersam", FisherSAM, {}),
    _sam("vasso-adamw", VaSSO, {}, base="adamw"),
    _sam("infosam", InfoSAM, {}),
    _sam("infosam-invvar", InfoSAM, {"variant": "invvar"}, table_cases=False),
    _sam("presam-asam-ema", PreSAM, {"constraint": "asam", "objective": "ema"}),
    _sam("presam-fisher-snr", PreSAM, {"constraint": "fisher", "objective": "snr"}, table_cases=False),
    _sam("presam-callables", PreSAM, {"constraint": _abs_plus, "objective": _signed_sqrt}, table_cases=False),
    Factory("scaledgd-sym", ScaledGD, _scaledgd_make(True), override={"lr": 0.25}),
    Factory("scaledgd-pair", ScaledGD, _scaledgd_make(False), override={"lr": 0.25}, table_cases=False),
]
# Each new family keeps its factories in tests/contract/_factories_<family>.py (a module-level FACTORIES list);
# they join the battery here, in file-name order.
for _path in sorted(Path(__file__).parent.glob("_factories_*.py")):
    FACTORIES.extend(importlib.import_module(_path.stem).FACTORIES)


def params(factories: list[Factory] | None = None) -> list:
    """``pytest.param`` per factory, with its id and marks."""
    return [pytest.param(f, id=f.id, marks=f.marks) for f in (FACTORIES if factories is None else factories)]


# ------------------------------------------------------------------------------------------ bad values
def bad_values(c: Constraint) -> list[Any]:
    """Values ``c`` must reject: for an Interval a bool, a value just outside each finite bound, NaN, inf, a
    string (and a non-integer for an integer interval); for Options an unknown string; for Instance a string
    and an object; for AnyOf the union of its parts' cases that the union itself rejects."""
    if isinstance(c, Interval):
        out: list[Any] = [True, math.nan, "0.1"]
        for bound, inside, closed in ((c.low, math.inf, c.closed in ("both", "left")),
                                      (c.high, -math.inf, c.closed in ("both", "right"))):
            if math.isfinite(bound):
                away = -inside  # the direction out of the interval
                if not closed:
                    out.append(int(bound) if c.integer and float(bound).is_integer() else float(bound))
                elif c.integer:
                    out.append(int(math.floor(bound) - 1) if away < 0 else int(math.ceil(bound) + 1))
                else:
                    out.append(math.nextafter(float(bound), away))
        if math.isinf(c.high) or math.isinf(c.low):
            out.append(math.inf if math.isinf(c.high) else -math.inf)
        if c.integer:
            out.append(float(max(c.low, 0)) + 0.5)
        return [v for v in out if not c.accepts(v)]
    if isinstance(c, Options):  # an unknown string; 1 where the options are booleans (never confused with ints)
        return [BAD_STRING] + ([1] if all(isinstance(v, bool) for v in c.values) else [])
    if isinstance(c, Instance):
        return [v for v in (BAD_STRING, object(), 1.5) if not c.accepts(v)][:2]
    if isinstance(c, AnyOf):
        seen, out = set(), []
        for part in c.constraints:
            for v in bad_values(part):
                key = repr(v) if not isinstance(v, numbers.Number) or not math.isnan(v) else "nan"
                if key not in seen and not c.accepts(v):
                    seen.add(key)
                    out.append(v)
        return out
    raise TypeError(f"no bad-value generator for {type(c).__name__}")


def table(f: Factory) -> dict[str, Constraint] | None:
    return getattr(f.cls, "_constraints", None)


def constructor_keys(f: Factory) -> list[str]:
    """The table's keys that are constructor arguments of this factory's class or preset."""
    t = table(f)
    return ["no-constraints-table"] if t is None else sorted(k for k in t if k not in f.fixed)


def group_keys(f: Factory) -> list[str]:
    """The table's keys that are per-group hyperparameters (in ``opt.defaults``, not the base's) of this
    configuration."""
    t = table(f)
    if t is None:
        return ["no-constraints-table"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = f.make().opt
    except Exception:  # reported by the tests that build it
        return sorted(t)
    base = getattr(opt, "base", None)  # a wrapper's own group keys are those its base does not have
    return sorted(k for k in t if k in opt.defaults and (base is None or k not in base.defaults))


def keyed(keys_of: Callable[[Factory], list[str]], only_table_cases: bool = False) -> list:
    """``pytest.param(factory, key)`` for every factory and key."""
    return [pytest.param(f, k, id=f"{f.id}-{k}", marks=f.marks)
            for f in FACTORIES if f.table_cases or not only_table_cases for k in keys_of(f)]


# ------------------------------------------------------------------------------------------ comparisons
def snapshot(tree: Any) -> Any:
    """A deep copy of a state tree with every tensor cloned and every ``skipped_steps`` entry dropped."""
    if isinstance(tree, Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: snapshot(v) for k, v in tree.items() if k != "skipped_steps"}
    if isinstance(tree, (list, tuple)):
        return type(tree)(snapshot(v) for v in tree)
    return tree


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """Bit-identical trees: same keys, same tensors (``torch.equal``, dtype and device), same scalars."""
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), f"{path}: tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype and a.device == b.device, f"{path}: {a.dtype}/{a.device} vs {b.dtype}/{b.device}"
        assert torch.equal(a, b), f"{path}: tensors differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(map(str, a))} vs " \
            f"{sorted(map(str, b)) if isinstance(b, dict) else type(b).__name__}"
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{path}: nan vs {b!r}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def weights(s: Setup) -> list[Tensor]:
    return [p.detach().clone() for p in s.model.parameters()]


def step(s: Setup, t: int):
    s.opt.zero_grad()
    return s.opt.step(s.closure(t))


def groups_of(s: Setup) -> list[dict]:
    """The groups that hold ``lr``: the base's for a wrapper, else the optimizer's own."""
    return s.opt.base.param_groups if hasattr(s.opt, "base") else s.opt.param_groups


def nan_closure(s: Setup, t: int, at_call: int) -> Callable[[], Tensor]:
    """The closure of step ``t`` that writes NaN into one gradient entry on its ``at_call``-th call (from 0)."""
    inner, calls = s.closure(t), [0]
    target = s.split[0][0]

    def run():
        loss = inner()
        if calls[0] == at_call:
            with torch.no_grad():
                target.grad.view(-1)[0] = math.nan
        calls[0] += 1
        return loss

    return run
