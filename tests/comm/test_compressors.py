"""Compressors of optimlab.comm: declared properties, linearity, moments, wire formats."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optimlab._random import counter_generator
from optimlab.comm import (
    QSGD,
    CountSketch,
    Identity,
    PowerSGD,
    RandomBlock,
    RandomK,
    ScaledSign,
    TopK,
    sketch_hash,
)
from optimlab.comm.compressors import as_matrix_shape
from optimlab.comm.sketch import fmix32

ALL = [Identity(), RandomBlock(0.1), RandomBlock(0.1, scaled=True), RandomK(0.1), RandomK(0.2, scaled=True),
       TopK(0.1), ScaledSign(), QSGD(), QSGD(contractive_scale=True), CountSketch(0.2), CountSketch(0.2, rows=3,
       lam=0.1), PowerSGD(2)]
LINEAR = [c for c in ALL if c.linear]


def _x(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_declared_flags_match_the_table():
    table = {  # (all_reducible, unbiased) per class with defaults
        Identity(): (True, True), RandomBlock(): (True, False), RandomBlock(scaled=True): (True, True),
        RandomK(): (True, False), TopK(): (False, False), ScaledSign(): (False, False), QSGD(): (False, True),
        QSGD(contractive_scale=True): (False, False), CountSketch(): (True, True), PowerSGD(): (True, False),
    }
    for c, (ar, unb) in table.items():
        assert (c.all_reducible, c.unbiased) == (ar, unb), c
    assert PowerSGD().rounds == 2 and all(c.rounds == 1 for c in table if not isinstance(c, PowerSGD))
    assert TopK().contractive and ScaledSign().contractive and RandomBlock().contractive
    assert not RandomBlock(scaled=True).contractive and not QSGD().contractive


@pytest.mark.parametrize("comp", ALL, ids=repr)
def test_payload_sizes_match_compress(comp):
    shape = (24, 3, 5)
    x = _x(shape)
    mat = x.reshape(as_matrix_shape(shape))
    payload = comp.compress(mat, counter_generator(0, 0, "w"))
    first = comp.wire_spec(shape)[: len(payload.data)]
    assert [(t.numel(), t.dtype) for t in payload.data] == first
    assert comp.payload_bytes(shape) == sum(n * torch.tensor([], dtype=dt).element_size()
                                            for n, dt in comp.wire_spec(shape))
    assert comp.apply(x, counter_generator(0, 0, "w")).shape == x.shape


def test_payload_counts_closed_form():
    d = 16384
    assert RandomBlock(0.1).payload_numel((256, 64)) == 1638
    assert TopK(0.1).payload_bytes((256, 64)) == 1638 * 8
    assert ScaledSign().payload_bytes((256, 64)) == d // 8 + 4
    assert QSGD().payload_bytes((256, 64)) == d + 4
    assert CountSketch(0.1).payload_numel((256, 64)) == 256 * 6
    assert PowerSGD(2).payload_numel((10, 256)) == (10 + 256) * 2
    assert RandomBlock(0.5).payload_numel((1, 1)) == 1  # the k >= 1 floor


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 40), seed=st.integers(0, 10_000), processes=st.integers(2, 3),
       which=st.integers(0, len(LINEAR) - 1))
def test_all_reducible_linearity(n, m, seed, processes, which):
    """Sum of messages = message of the sum; decode(Σ payloads)/N = mean of the per-process decodes (1e-6)."""
    comp = LINEAR[which]
    xs = [_x((n, m), seed + r) for r in range(processes)]
    pays = [comp.compress(x, counter_generator(7, 3, "layer.weight")) for x in xs]
    summed = pays[0].with_data([sum(p.data[0] for p in pays)])
    of_sum = comp.compress(sum(xs), counter_generator(7, 3, "layer.weight"))
    torch.testing.assert_close(summed.data[0], of_sum.data[0], atol=1e-5, rtol=1e-6)
    dec_sum = comp.decompress(summed, torch.empty(n, m)) / processes
    mean_dec = sum(comp.decompress(p, torch.empty(n, m)) for p in pays) / processes
    torch.testing.assert_close(dec_sum, mean_dec, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("comp", [RandomBlock(0.1), RandomK(0.1), CountSketch(0.2)], ids=repr)
def test_shared_index_sets_same_across_processes_and_change_across_steps(comp):
    x0, x1 = _x((16, 32), 0), _x((16, 32), 1)
    a = comp.compress(x0, counter_generator(0, 5, "w"))
    b = comp.compress(x1, counter_generator(0, 5, "w"))
    c = comp.compress(x0, counter_generator(0, 6, "w"))
    key = (lambda p: p.ctx[0]) if isinstance(comp, RandomBlock) and not isinstance(comp, RandomK) else \
        (lambda p: p.ctx) if isinstance(comp, RandomK) else (lambda p: p.ctx[0][0][0])
    assert torch.equal(torch.as_tensor(key(a)), torch.as_tensor(key(b)))
    assert not torch.equal(torch.as_tensor(key(a)), torch.as_tensor(key(c)))
    # QSGD's rounding is per process: the hook mixes the process rank in
    assert not QSGD().shared_randomness


DRAWS = 2000


def _draws(comp, x, name="w"):
    return torch.stack([comp.apply(x, counter_generator(1, t, name)) for t in range(DRAWS)])


@pytest.mark.parametrize("cls", [RandomBlock, RandomK])
def test_unscaled_random_sparsifiers_contract_by_k_over_d(cls):
    x = _x((8, 16), 3)
    comp = cls(0.1)
    d, k = x.numel(), comp.k(x.shape)
    ys = _draws(comp, x)
    ratio = float(((ys - x) ** 2).sum((1, 2)).mean() / (x**2).sum())
    assert abs(ratio - (1 - k / d)) <= 0.03 * (1 - k / d), (ratio, 1 - k / d)
    assert comp.delta(x.shape) == pytest.approx(k / d)


@pytest.mark.parametrize("comp", [RandomBlock(0.1, scaled=True), RandomK(0.1, scaled=True), QSGD(levels=4),
                                  CountSketch(0.25)], ids=repr)
def test_unbiased_compressors_mean_and_variance(comp):
    x = _x((8, 16), 4)
    ys = _draws(comp, x)
    mean, sd = ys.mean(0), ys.std(0)
    tol = 4 * sd / math.sqrt(DRAWS) + 1e-6
    assert bool(((mean - x).abs() <= tol).all()), float(((mean - x).abs() / tol).max())
    var = float(((ys - x) ** 2).sum((1, 2)).mean() / (x**2).sum())
    omega = comp.omega(x.shape)
    assert var <= 1.05 * omega, (var, omega)
    if isinstance(comp, CountSketch):  # fresh hashes: E‖SᵀSx − x‖² = κ‖x‖² exactly
        assert var == pytest.approx(omega, rel=0.1)


def test_qsgd_omega_formula_and_contractive_scale():
    shape = (8, 16)
    q = QSGD(levels=4)
    assert q.omega(shape) == pytest.approx(min(128 / 16, math.sqrt(128) / 4))
    qc = QSGD(levels=4, contractive_scale=True)
    x = _x(shape, 5)
    ys = _draws(qc, x)
    ratio = float(((ys - x) ** 2).sum((1, 2)).mean() / (x**2).sum())
    assert ratio <= 1 - qc.delta(shape) + 0.02


def test_count_sketch_contraction_matches_formula():
    comp = CountSketch(0.2, lam=0.1)
    x = _x((8, 64), 6)
    ys = _draws(comp, x)
    ratio = float(((ys - x) ** 2).sum((1, 2)).mean() / (x**2).sum())
    assert comp.is_contractive(x.shape) and not CountSketch(0.2).is_contractive(x.shape)
    assert ratio == pytest.approx(1 - comp.delta(x.shape), rel=0.03)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), m=st.integers(1, 50), ratio=st.floats(0.01, 1.0), seed=st.integers(0, 10_000))
def test_topk_bound_holds_for_every_x(n, m, ratio, seed):
    x = _x((n, m), seed)
    comp = TopK(ratio)
    y = comp.apply(x, counter_generator(0, 0, "w"))
    assert float(((y - x) ** 2).sum()) <= (1 - comp.delta(x.shape)) * float((x**2).sum()) * (1 + 1e-6) + 1e-12


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 10), m=st.integers(1, 50), seed=st.integers(0, 10_000), zeros=st.booleans())
def test_scaled_sign_identity(n, m, seed, zeros):
    x = _x((n, m), seed).double()
    if zeros:
        x[:, ::3] = 0.0
    y = ScaledSign().apply(x, counter_generator(0, 0, "w"))
    d = x.numel()
    lhs = float(((y - x) ** 2).sum())
    rhs = float((x**2).sum() - x.abs().sum() ** 2 / d)
    assert lhs == pytest.approx(rhs, abs=1e-6 * max(1.0, float((x**2).sum())))
    assert bool((torch.sign(y[x == 0]) >= 0).all())  # sign(0) = +1


@pytest.mark.parametrize("shape", [(6, 4), (4, 9), (5, 5)])
def test_powersgd_full_rank_equals_dense_average(shape):
    comp_a, comp_b = PowerSGD(rank=min(shape)), PowerSGD(rank=min(shape))
    xs = [_x(shape, 10), _x(shape, 11)]
    gens = lambda: counter_generator(0, 0, "w")
    p = [c.compress(x, gens(), key="w") for c, x in zip((comp_a, comp_b), xs)]
    red = p[0].with_data([p[0].data[0] + p[1].data[0]])
    q = [c.next_round(red, pi) for c, pi in zip((comp_a, comp_b), p)]
    red2 = q[0].with_data([(q[0].data[0] + q[1].data[0]) / 2])
    out = comp_a.decompress(red2, torch.empty(shape))
    torch.testing.assert_close(out, (xs[0] + xs[1]) / 2, atol=1e-5, rtol=1e-5)


def test_powersgd_counts_match_pytorch():
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import _should_compress

    for rank in (1, 2, 4):
        comp = PowerSGD(rank=rank)
        for shape in [(256, 64), (256, 256), (10, 256), (3, 3), (64, 2, 3, 3), (7, 1)]:
            n, m = as_matrix_shape(shape)
            ok, _, after = _should_compress(n, m, min(n, m, rank), 2)
            assert comp.should_compress(shape) == ok
            if ok:
                assert comp.payload_numel(shape) == after


def test_powersgd_warm_start_state_round_trip():
    comp = PowerSGD(2)
    x = _x((32, 16), 0)
    p = comp.compress(x, counter_generator(0, 0, "w"), key="w")
    q = comp.next_round(p, p)
    comp.observe("w", q)
    assert comp.nbytes() == 16 * 2 * 4
    other = PowerSGD(2)
    other.load_state_dict(comp.state_dict())
    a = comp.compress(x, counter_generator(0, 1, "w"), key="w")
    b = other.compress(x, counter_generator(0, 1, "w"), key="w")
    assert torch.equal(a.data[0], b.data[0])


def test_sketch_hash_matches_unsigned_python_reference():
    m, width = 10_000, 37
    a, b = 994443, 609478
    h, s = sketch_hash(m, width, a, b)

    def fmix(v):
        v &= 0xFFFFFFFF
        v ^= v >> 16
        v = (v * 0x85EBCA6B) & 0xFFFFFFFF
        v ^= v >> 13
        v = (v * 0xC2B2AE35) & 0xFFFFFFFF
        return v ^ (v >> 16)

    ref_h = [fmix(a * j + b) % width for j in range(m)]
    ref_s = [2 * (fmix((a + 2) * j + b + 3) & 1) - 1 for j in range(m)]
    assert h.tolist() == ref_h and s.long().tolist() == ref_s
    assert int(h.min()) >= 0 and int(h.max()) < width  # the signed-overflow regression
    big = torch.tensor([0xFFFFFFFF, 0x80000000, 2**31 + 12345])
    assert fmix32(big).tolist() == [fmix(int(v)) for v in big]


def test_capability_methods_replace_type_dispatch():
    """should_compress(shape, rate), predict_nbytes, is_contractive and default_residual (no type switch)."""
    assert RandomBlock(0.1).should_compress((256, 64), 2.0) and not Identity().should_compress((256, 64), 2.0)
    assert not RandomBlock(0.6).should_compress((10, 10), 2.0) and RandomBlock(0.6).should_compress((10, 10), 1.0)
    assert PowerSGD(1).should_compress((256, 64), 1e6)  # PowerSGD applies its own min_compression_rate
    assert not PowerSGD(1, min_compression_rate=1e6).should_compress((256, 64), 0.0)
    assert PowerSGD(2).predict_nbytes((256, 64)) == 64 * 2 * 4 and PowerSGD(2, warm_start=False).predict_nbytes(
        (256, 64)) == 0
    assert all(c.predict_nbytes((256, 64)) == 0 for c in ALL if not isinstance(c, PowerSGD))
    assert CountSketch(0.2, lam=0.1).is_contractive((8, 64)) and not CountSketch(0.2).is_contractive((8, 64))
    assert CountSketch.contraction_depends_on_shape and not TopK.contraction_depends_on_shape
    assert TopK().is_contractive((3, 7)) and not QSGD().is_contractive((3, 7))
    assert PowerSGD().default_residual == "global" and RandomBlock().default_residual == "local"


@pytest.mark.parametrize("make", [lambda: RandomBlock(0), lambda: RandomK(1.5), lambda: TopK(-0.1),
                                  lambda: CountSketch(0), lambda: CountSketch(0.1, lam=0),
                                  lambda: CountSketch(0.1, rows=0), lambda: QSGD(levels=0),
                                  lambda: PowerSGD(rank=0), lambda: TopK(ratio=True), lambda: RandomBlock(True),
                                  lambda: RandomBlock(0.1, scaled=1), lambda: QSGD(levels=2.0),
                                  lambda: CountSketch(0.1, lam=math.nan), lambda: PowerSGD(rank=True),
                                  lambda: PowerSGD(warm_start=None), lambda: CountSketch(0.1, rows=1.5)])
def test_bad_arguments_raise_value_error_naming_them(make):
    with pytest.raises(ValueError, match="ratio|lam|rows|levels|rank|scaled|warm_start"):
        make()
