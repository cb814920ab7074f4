"""The list-level extension point ``ascent(params, grads, states, group) -> (us, cs, new_states)``, callable hooks,
the constraint tables of every class, and the flat InfoSAM path on a model with many tensors."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import batch, closure_for, mlp, run_steps, same_params
from optimlab.sam import ASAM, SAM, FisherSAM, InfoSAM, PreSAM, SharpnessAware, VaSSO
from optimlab.sam.presam import _TABLE

pytestmark = pytest.mark.filterwarnings("ignore::optimlab.ProvisionalWarning")


def deep(seed=0, blocks=6):
    """A narrow MLP with LayerNorm'd blocks: 4 + 4·blocks parameter tensors (≥ 16 takes InfoSAM's flat path)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [nn.Linear(6, 8)]
        for _ in range(blocks):
            layers += [nn.LayerNorm(8), nn.Linear(8, 8), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(8, 3))


class SignSAM(SharpnessAware):
    """A variant written against the extension point: u = sign(g), c = 2 on matrices, and a step counter."""

    def ascent(self, params, grads, states, group):
        us = [g.sign() for g in grads]
        cs = [torch.full_like(p, 2.0) if p.ndim >= 2 else None for p in params]
        return us, cs, [{"n": s.get("n", 0) + 1} for s in states]


def test_a_variant_implements_one_list_level_method():
    model = mlp(dtype=torch.float64)
    x, y = batch(dtype=torch.float64)
    opt = SignSAM(base=torch.optim.SGD(model.parameters(), lr=0.0), rho=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    c = [2.0 if p.ndim >= 2 else 1.0 for p in model.parameters()]
    norm = math.sqrt(sum(float(((ci * gi.sign()) ** 2).sum()) for ci, gi in zip(c, g)))
    for p, b, ci, gi in zip(model.parameters(), before, c, g):
        torch.testing.assert_close(p.detach() - b, 0.1 * ci * ci * gi.sign() / norm, rtol=1e-10, atol=1e-14)
    opt.restore()
    assert all(opt.state[p]["n"] == 1 for p in model.parameters())


@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_new_state_is_committed_only_after_the_finiteness_check(nonfinite):
    model = mlp()
    opt = SignSAM(base=torch.optim.SGD(model.parameters(), lr=0.1), nonfinite=nonfinite)
    run_steps(model, opt, 2)
    x, y = batch()

    def bad():
        loss = F.cross_entropy(model(x), y) * float("nan")
        loss.backward()
        return loss

    if nonfinite == "raise":
        with pytest.raises(FloatingPointError, match="first pass"):
            opt.step(bad)
    else:
        opt.step(bad)
        assert opt.skipped_steps == 1
    assert all(opt.state[p]["n"] == 2 for p in model.parameters())


def test_callable_hooks_get_a_state_copy_committed_only_when_finite():
    """A hook keeps state by assigning keys of the dict it receives; a skipped step leaves state untouched."""
    calls = []

    def objective(p, g, group, state):
        calls.append(state is not None)
        state["count"] = state.get("count", 0) + 1  # assignment into the copy, never in place
        return g

    model = mlp()
    opt = PreSAM(base=torch.optim.SGD(model.parameters(), lr=0.1), objective=objective, nonfinite="skip")
    run_steps(model, opt, 3)
    assert all(opt.state[p]["count"] == 3 for p in model.parameters())
    x, y = batch()

    def bad():
        loss = F.cross_entropy(model(x), y) * float("inf")
        loss.backward()
        return loss

    opt.step(bad)
    assert opt.skipped_steps == 1 and all(opt.state[p]["count"] == 3 for p in model.parameters())
    assert calls and all(calls)
    m1, m2 = mlp(), mlp()
    run_steps(m1, PreSAM(base=torch.optim.SGD(m1.parameters(), lr=0.1), objective=lambda p, g, gr, st: g), 3)
    run_steps(m2, SAM(base=torch.optim.SGD(m2.parameters(), lr=0.1)), 3)
    assert same_params(m1, m2)


# ------------------------------------------------------------------------------------------- constraint tables
def test_each_class_declares_exactly_its_hyperparameters():
    common = set(SAM._constraints)
    assert {"rho", "eps", "bn", "restore", "ascent_sync", "include_wd_in_ascent", "replay_rng", "model",
            "nonfinite"} == common
    assert set(PreSAM._constraints) == common | set(_TABLE)
    assert set(VaSSO._constraints) == common | {"theta"}
    assert set(InfoSAM._constraints) == common | {"variant", "beta", "alpha", "delta"}
    assert set(ASAM._constraints) == common | {"eta", "scope"}
    assert set(FisherSAM._constraints) == common | {"eta"}
    with pytest.raises(TypeError):
        VaSSO(base=torch.optim.SGD(mlp().parameters(), lr=0.1), beta=0.5)  # not a VaSSO hyperparameter


@pytest.mark.parametrize("kwargs, pattern", [
    ({"rho": -0.1}, r"SAM: rho must be a finite number in \[0, inf\), got -0\.1"),
    ({"eps": 0.0}, r"SAM: eps must be a finite number in \(0, inf\), got 0\.0"),
    ({"bn": "freeze"}, r"SAM: bn must be one of \('snapshot', 'momentum0', 'none'\), got 'freeze'"),
    ({"restore": "swap"}, r"restore must be one of \('copy', 'subtract'\), got 'swap'"),
    ({"include_wd_in_ascent": 1}, r"include_wd_in_ascent must be one of \(False, True\), got 1"),
    ({"replay_rng": "yes"}, r"replay_rng must be one of \(False, True\), got 'yes'"),
    ({"model": "net"}, r"model must be .*Module, got 'net'"),
    ({"nonfinite": "ignore"}, r"nonfinite must be one of \('raise', 'skip'\), got 'ignore'"),
])
def test_errors_give_argument_allowed_values_and_value(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        SAM(base=torch.optim.SGD(mlp().parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize("make, key, bad", [
    (lambda b: VaSSO(base=b), "theta", 0.0), (lambda b: InfoSAM(base=b), "beta", 1.0),
    (lambda b: InfoSAM(base=b), "delta", -1.0), (lambda b: ASAM(base=b), "eta", -0.5),
    (lambda b: FisherSAM(base=b), "eta", float("nan")), (lambda b: SAM(base=b), "rho", True),
])
def test_per_group_values_are_validated_in_add_param_group_and_load_state_dict(make, key, bad):
    model = mlp()
    opt = make(torch.optim.SGD(model[0].parameters(), lr=0.1))
    with pytest.raises(ValueError, match=key):
        opt.add_param_group({"params": list(model[-1].parameters()), key: bad})
    assert len(opt.param_groups) == 1
    sd = copy.deepcopy(opt.state_dict())
    sd["wrapper"]["param_groups"][0][key] = bad
    with pytest.raises(ValueError, match=rf"{key} must be .*got {bad!r}"):
        opt.load_state_dict(sd)


def test_presam_validates_every_argument_even_unused_ones():
    base = torch.optim.SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"beta must be a finite number in \[0, 1\), got 1\.5"):
        PreSAM(base=base, beta=1.5)  # no "snr" objective, still checked
    with pytest.raises(ValueError, match=r"constraint must be .*'asam'.* or a callable, got 'diag'"):
        PreSAM(base=base, constraint="diag")


# ------------------------------------------------------------------------------------------- flat state path
FLAT = [lambda b: VaSSO(base=b, rho=0.05, theta=0.7), lambda b: InfoSAM(base=b, rho=0.05, beta=0.8)]


def sgd_m(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


@pytest.mark.parametrize("make", FLAT, ids=["vasso", "infosam"])
def test_flat_state_resumes_and_survives_skipped_steps_bit_identically(make):
    assert len(list(deep().parameters())) >= 16
    ref_m = deep()
    ref = make(sgd_m(ref_m.parameters()))
    run_steps(ref_m, ref, 10, seed0=0)
    m = deep()
    opt = make(sgd_m(m.parameters()))
    run_steps(m, opt, 4, seed0=0)
    x, y = batch()
    opt.nonfinite = "skip"

    def bad():
        loss = F.cross_entropy(m(x), y) * float("nan")
        loss.backward()
        return loss

    opt.step(bad)  # skipped: no state change, and the flat buffers of the skipped step are not kept
    assert opt.skipped_steps == 1
    run_steps(m, opt, 2, seed0=4)
    sd = copy.deepcopy((m.state_dict(), opt.state_dict()))
    m2 = deep(seed=7)
    opt2 = make(sgd_m(m2.parameters()))
    m2.load_state_dict(sd[0])
    opt2.load_state_dict(sd[1])
    run_steps(m2, opt2, 4, seed0=6)
    assert same_params(ref_m, m2)
    n_bytes = sum(p.numel() * p.element_size() for p in m2.parameters())
    state = opt2.state_dict()["wrapper"]["state"]
    multiple = 1 if isinstance(opt2, VaSSO) else 2
    assert sum(v.numel() * v.element_size() for s in state.values() for v in s.values() if torch.is_tensor(v)) \
        == multiple * n_bytes


@pytest.mark.parametrize("make", FLAT, ids=["vasso", "infosam"])
def test_long_lists_equal_the_per_group_path_the_per_tensor_path(make):
    """Parameters in 16+ groups of one take the per-tensor kernels; in one group the flat ones: the same bits."""
    m1, m2 = deep(), deep()
    o1 = make(sgd_m(m1.parameters()))
    o2 = make(sgd_m([{"params": [p]} for p in m2.parameters()]))
    for t in range(5):
        x, y = batch(t)
        o1.step(closure_for(m1, x, y))
        o2.step(closure_for(m2, x, y))
    assert same_params(m1, m2)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert all(torch.equal(o1.state[p1][k], o2.state[p2][k]) for k in o1.state[p1] if k != "step")


def test_vasso_theta_one_is_sam_on_the_flat_path():
    m1, m2 = deep(), deep()
    run_steps(m1, SAM(base=sgd_m(m1.parameters())), 6)
    run_steps(m2, VaSSO(base=sgd_m(m2.parameters()), theta=1.0), 6)
    assert same_params(m1, m2)


@pytest.mark.parametrize("make", [lambda b: VaSSO(base=b, theta=0.5), lambda b: InfoSAM(base=b)])
@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_a_nonfinite_second_pass_leaves_the_variant_state_untouched(make, nonfinite):
    model = mlp()
    opt = make(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    opt.nonfinite = nonfinite
    run_steps(model, opt, 3)
    before = copy.deepcopy(opt.state_dict())
    x, y = batch()
    calls = {"n": 0}

    def second_bad():
        calls["n"] += 1
        loss = F.cross_entropy(model(x), y) * (float("nan") if calls["n"] == 2 else 1.0)
        loss.backward()
        return loss

    if nonfinite == "raise":
        with pytest.raises(FloatingPointError, match="second pass"):
            opt.step(second_bad)
    else:
        opt.step(second_bad)
    after = opt.state_dict()
    for k, st in before["wrapper"]["state"].items():
        for key, v in st.items():
            assert torch.equal(after["wrapper"]["state"][k][key], v) if torch.is_tensor(v) else \
                after["wrapper"]["state"][k][key] == v


def test_restore_commits_the_new_state_unless_told_not_to():
    model = mlp()
    opt = VaSSO(base=torch.optim.SGD(model.parameters(), lr=0.1), theta=0.5)
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    opt.first_step()
    opt.restore(commit=False)  # an abandoned step: no state
    assert all("d" not in opt.state[p] for p in model.parameters())
    F.cross_entropy(model(x), y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    opt.restore()  # the caller takes the base step itself (amp_step, the Trainer mixin): keep d
    assert all(torch.equal(opt.state[p]["d"], gi) for p, gi in zip(model.parameters(), g))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_infosam_in_low_precision_stays_finite_and_keeps_the_dtype(dtype):
    model = mlp(dtype=dtype)
    opt = InfoSAM(base=torch.optim.SGD(model.parameters(), lr=0.1))
    for t in range(3):
        x, y = batch(t, dtype=dtype)
        opt.step(closure_for(model, x, y))
    assert all(torch.isfinite(p).all() and p.dtype == dtype for p in model.parameters())
    assert all(opt.state[p]["m"].dtype == dtype for p in model.parameters())
