"""One contract suite over every optimizer (docs/DESIGN.md, "Conventions").

Each factory in ``_optimizer_factories.FACTORIES`` (the SAM family and its preSAM mixes, ScaledGD; new families
append theirs) is checked once for: bad hyperparameters (cases generated from the class's ``_constraints``) at
construction, in ``add_param_group`` and in a loaded ``state_dict``; valid per-group overrides being used; a
bit-identical ``state_dict`` round trip; LR schedulers driving ``lr``; the non-finite policy; the global RNGs
left alone; dtypes kept; state on the parameters' device.
"""

from __future__ import annotations

import copy
import io
import re
import warnings

import numpy as np
import pytest
import torch
from _optimizer_factories import (
    FACTORIES,
    Factory,
    assert_same,
    bad_values,
    constructor_keys,
    group_keys,
    groups_of,
    keyed,
    nan_closure,
    params,
    snapshot,
    step,
    table,
    weights,
)

pytestmark = [pytest.mark.filterwarnings("ignore::optimlab.ProvisionalWarning"),
              pytest.mark.usefixtures("one_thread")]  # tests/conftest.py

SAM_FAMILY = [f for f in FACTORIES if f.wrapper and f.passes == 2]  # two-pass wrappers (the rho test)




def _named(key: str):
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])")


def _cases(f: Factory, key: str) -> list:
    t = table(f)
    if t is None:
        pytest.fail(f"{f.cls.__name__} declares no _constraints table (docs/DESIGN.md)")
    return bad_values(t[key])


def _expect_value_error(action, key: str, values: list) -> None:
    """Run ``action(v)`` for every bad value; collect those that do not raise a ValueError naming ``key``."""
    missed = []
    for v in values:
        try:
            action(v)
        except ValueError as e:
            if not _named(key).search(str(e)):
                missed.append(f"{v!r}: ValueError does not name {key!r}: {e}")
        except Exception as e:  # the wrong exception type is a finding
            missed.append(f"{v!r}: {type(e).__name__} instead of ValueError: {e}")
        else:
            missed.append(f"{v!r}: accepted")
    assert not missed, f"{key}:\n  " + "\n  ".join(missed)


# ------------------------------------------------------------------------------------------ bad hyperparameters
@pytest.mark.parametrize(("factory", "key"), keyed(constructor_keys, only_table_cases=True))
def test_bad_value_at_construction_raises_naming_it(factory, key):
    _expect_value_error(lambda v: factory.make(**{key: v}), key, _cases(factory, key))


@pytest.mark.parametrize("factory", params())
def test_unknown_argument_is_rejected_naming_it(factory):
    """A misspelt keyword (``rhoo=``) must not be taken silently, e.g. as a new per-group default."""
    with pytest.raises((TypeError, ValueError), match="rhoo"):
        factory.make(rhoo=0.1)


@pytest.mark.parametrize(("factory", "key"), keyed(group_keys))
def test_bad_group_value_at_construction_raises_naming_it(factory, key):
    _expect_value_error(lambda v: factory.make(group_overrides=[{}, {key: v}]), key, _cases(factory, key))


@pytest.mark.parametrize(("factory", "key"), keyed(group_keys))
def test_bad_group_value_in_add_param_group_raises_and_adds_nothing(factory, key):
    values = _cases(factory, key)
    built = []

    def add(v):
        s = factory.make(first_group_only=True)
        built.append(s)
        s.opt.add_param_group({"params": s.split[1], key: v})

    _expect_value_error(add, key, values)
    for s in built:
        assert len(s.opt.param_groups) == 1 and len(groups_of(s)) == 1, "a rejected group was added"


@pytest.mark.parametrize(("factory", "key"), keyed(group_keys))
def test_bad_group_value_in_loaded_state_dict_raises_and_loads_nothing(factory, key):
    values = _cases(factory, key)
    src = factory.make()
    step(src, 0)
    saved = src.opt.state_dict()
    fresh = []

    def load(v):
        bad = copy.deepcopy(saved)
        hits = _set_in_groups(bad, key, v)
        assert hits, f"{key} is in no saved param group of the state_dict"
        s = factory.make()
        fresh.append((s, snapshot(s.opt.state_dict())))
        s.opt.load_state_dict(bad)

    _expect_value_error(load, key, values)
    for s, before in fresh:  # a rejected checkpoint changes nothing: groups and state as built
        assert_same(snapshot(s.opt.state_dict()), before)


def _set_in_groups(tree, key, value) -> int:
    hits = 0
    if isinstance(tree, dict):
        for g in tree.get("param_groups", []):
            if key in g:
                g[key] = value
                hits += 1
        hits += sum(_set_in_groups(v, key, value) for k, v in tree.items() if k != "param_groups")
    return hits


# ------------------------------------------------------------------------------------------ valid overrides
def _run(s, steps=range(3)):
    for t in steps:
        step(s, t)
    return weights(s)


def _differs(a, b) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("factory", params())
def test_group_override_is_used(factory):
    """Every group carrying the override steps as the optimizer built with it as default, and differently from
    one without it; added through ``add_param_group`` it steps as when given at construction."""
    o = factory.override
    in_groups = _run(factory.make(group_overrides=[o, o]))
    assert_same(in_groups, _run(factory.make(**o)))
    assert _differs(in_groups, _run(factory.make())), f"the override {o} changed nothing"
    second_only = _run(factory.make(group_overrides=[{}, o]))
    added = factory.make(first_group_only=True)
    added.opt.add_param_group({"params": added.split[1], **o})
    assert added.opt.param_groups[1][next(iter(o))] == next(iter(o.values()))
    assert_same(_run(added), second_only)


@pytest.mark.parametrize("factory", params(SAM_FAMILY))
def test_rho_zero_groups_are_left_to_the_base_step(factory):
    s = factory.make(group_overrides=[{"rho": 0.0}, {"rho": 0.0}], rho=0.05)
    plain = factory.make(plain=True)
    assert_same(_run(s), _run(plain))
    assert_same(snapshot(s.opt.base.state_dict()["state"]), snapshot(plain.opt.state_dict()["state"]))


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("factory", params())
def test_state_dict_round_trip_continues_bit_identically(factory):
    a = factory.make()
    _run(a, range(2))
    for g in groups_of(a):  # hyperparameters changed mid-run (a scheduler, a per-group override) must come back
        g["lr"] *= 0.5
    a.opt.param_groups[1].update(factory.override)
    _run(a, range(2, 3))
    buf = io.BytesIO()
    torch.save({"model": a.model.state_dict(), "opt": a.opt.state_dict()}, buf)
    _run(a, range(3, 6))
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    b = factory.make()
    b.model.load_state_dict(ckpt["model"])
    b.opt.load_state_dict(ckpt["opt"])
    if factory.wrapper:
        assert b.opt.param_groups is b.opt.base.param_groups
    _run(b, range(3, 6))
    assert_same(weights(a), weights(b))
    assert_same(snapshot(a.opt.state_dict()), snapshot(b.opt.state_dict()))


# ------------------------------------------------------------------------------------------ schedulers
@pytest.mark.parametrize("factory", params())
def test_lr_scheduler_drives_lr(factory):
    a = factory.make()
    if factory.wrapper:
        assert a.opt.param_groups is a.opt.base.param_groups
    lr0 = [g["lr"] for g in groups_of(a)]
    sched = torch.optim.lr_scheduler.StepLR(a.opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(3):
            step(a, t)
            sched.step()
    order = [str(w.message) for w in caught if "lr_scheduler" in str(w.message)]
    assert not order, f"the scheduler did not see the optimizer's steps: {order}"
    assert [g["lr"] for g in groups_of(a)] == [lr * 0.125 for lr in lr0]
    b = factory.make()  # the same run with lr set by hand in the groups the step reads
    for t in range(3):
        for g, lr in zip(groups_of(b), lr0):
            g["lr"] = lr * 0.5**t
        step(b, t)
    assert_same(weights(a), weights(b))
    assert _differs(weights(a), _run(factory.make())), "the scheduled lr changed nothing"


# ------------------------------------------------------------------------------------------ non-finite values
def _nan_cases() -> list:
    return [pytest.param(f, k, id=f"{f.id}-pass{k + 1}", marks=f.marks) for f in FACTORIES for k in range(f.passes)]


@pytest.mark.parametrize(("factory", "at_call"), _nan_cases())
def test_nan_gradient_raises_with_weights_unchanged(factory, at_call):
    s = factory.make(nonfinite="raise")
    _run(s, range(2))
    w, state = weights(s), snapshot(s.opt.state_dict())
    s.opt.zero_grad()
    with pytest.raises(FloatingPointError):
        s.opt.step(nan_closure(s, 2, at_call))
    assert_same(weights(s), w)
    if at_call == 0:  # nothing was computed from a finite first pass yet: the state too is untouched
        assert_same(snapshot(s.opt.state_dict()), state)
    step(s, 3)  # still usable
    assert _differs(weights(s), w)


@pytest.mark.parametrize(("factory", "at_call"), _nan_cases())
def test_nan_gradient_skip_leaves_weights_and_state_and_counts(factory, at_call):
    s, twin = factory.make(nonfinite="skip"), factory.make(nonfinite="skip")
    _run(s, range(2))
    _run(twin, range(2))
    w, state = weights(s), snapshot(s.opt.state_dict())
    s.opt.zero_grad()
    s.opt.step(nan_closure(s, 2, at_call))
    assert_same(weights(s), w)
    assert_same(snapshot(s.opt.state_dict()), state)
    assert getattr(s.opt, "skipped_steps", None) == 1
    step(s, 3)
    step(twin, 3)  # the skipped step left no trace: the run continues as if it never happened
    assert_same(weights(s), weights(twin))
    assert_same(snapshot(s.opt.state_dict()), snapshot(twin.opt.state_dict()))


# ------------------------------------------------------------------------------------------ global RNG
@pytest.mark.parametrize("factory", params())
def test_steps_leave_the_global_rngs_unchanged(factory):
    s = factory.make()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    w = weights(s)
    _run(s, range(3))
    assert _differs(weights(s), w)
    assert torch.equal(torch.get_rng_state(), torch_state), "the global torch RNG was used"
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], \
        "the global numpy RNG was used"


# ------------------------------------------------------------------------------------------ dtypes and devices
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("factory", params())
def test_parameters_keep_their_dtype(factory, dtype):
    s = factory.make(dtype=dtype)
    w = weights(s)
    try:
        _run(s, range(2))
    except RuntimeError as e:
        if "not implemented for" in str(e) and dtype in (torch.float16, torch.bfloat16):
            pytest.skip(f"an op is not implemented for {dtype} on CPU: {e}")
        raise
    assert all(p.dtype == dtype for p in s.model.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in s.model.parameters())
    assert _differs(weights(s), w), "no step was taken"


_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                   reason="no CUDA device on this machine"))]


@pytest.mark.parametrize("device", _DEVICES)
@pytest.mark.parametrize("factory", params())
def test_state_follows_the_parameters_device(factory, device):
    s = factory.make(device=device)
    _run(s, range(2))
    dev = torch.device(device)
    assert all(p.device.type == dev.type for p in s.model.parameters())
    tensors = []
    _collect(s.opt.state_dict(), tensors)
    # 0-dim tensors (torch's own step counters) may stay on the CPU; everything else lives with the parameters.
    wrong = [(tuple(t.shape), str(t.device)) for t in tensors if t.dim() > 0 and t.device.type != dev.type]
    assert not wrong, f"state tensors off {device}: {wrong}"


def _collect(tree, out) -> None:
    if isinstance(tree, torch.Tensor):
        out.append(tree)
    elif isinstance(tree, dict):
        for v in tree.values():
            _collect(v, out)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            _collect(v, out)
