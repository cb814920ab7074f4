"""ConEFMemory's ``lam="auto"`` stability cap and its default row chunking (comm spec §2, §3 and §5)."""

import warnings

import pytest
import torch

from optimlab.comm import CommState, ConEFMemory, EFMemory, NoMemory, RandomBlock, SimulatedGroup
from optimlab.comm.sketch import sketch, sketch_hash, unsketch
from optimlab.metrics import peak_memory
from optimlab.metrics.memory import AllocationTracker

DIGITS_MLP = {"fc1.weight": (256, 64), "fc2.weight": (256, 256), "fc3.weight": (10, 256)}  # 64-256-256-10
ONE_TENSOR = {"w": (1024, 1024)}


def _grads(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


@pytest.mark.parametrize("m", [64, 512, 4096])
def test_auto_lam_is_the_capped_optimum(m):
    mem = ConEFMemory(ratio=0.2, lam="auto")
    h, _ = sketch_hash(m, mem.width(m))
    c = torch.bincount(h, minlength=mem.width(m)).double()
    kappa, cmax = float((c * (c - 1)).sum() / m), float(c.max())
    lam = mem.lam_for(m)
    assert lam == pytest.approx(min(1 / (1 + kappa), 2 / cmax), rel=1e-12)
    assert lam * cmax <= 2 + 1e-12 and mem.max_count(m) == cmax and mem.kappa(m) == pytest.approx(kappa)
    if m == 512:  # λ* = 1/(1+κ) alone breaks the guard here (λ*·max c_b ≈ 2.05): the cap binds
        assert 1 / (1 + kappa) * cmax > 2 and lam == 2 / cmax
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never triggers the stability warning
        x = _grads({"w": (3, m)}, 0)["w"]
        mem.compensate("w", x)
        mem.update("w", torch.zeros_like(x))


def test_fixed_lam_above_the_guard_only_warns():
    mem = ConEFMemory(ratio=0.05, lam=0.5)
    x = _grads({"w": (2, 512)}, 0)["w"]
    with pytest.warns(RuntimeWarning, match="max bucket count"):
        mem.compensate("w", x)
    mem.update("w", torch.zeros_like(x))


def test_default_chunk_sizes_and_validation():
    mem = ConEFMemory(0.2)
    assert mem.chunk_numel is None
    assert mem.chunk_for((1024, 1024)) == 1024 * 204  # n·W
    assert mem.chunk_for((3, 1000)) == 1000  # one row at least
    assert mem.chunk_for((1, 100)) == 100  # never more than the tensor
    assert ConEFMemory(1.0, hash="identity").chunk_for((5, 7)) == 35
    assert ConEFMemory(0.2, chunk_numel=7).chunk_for((1024, 1024)) == 7  # an explicit value is honoured
    for bad in (0, -3, 1.5, True, "big"):
        with pytest.raises(ValueError, match="chunk_numel"):
            ConEFMemory(chunk_numel=bad)


def _run(mem, shape, steps=5, seed=0):
    outs = []
    for t in range(steps):
        g = _grads({"w": shape}, seed + t)["w"]
        x = g.clone()
        mem.compensate("w", x)
        dec = RandomBlock(0.1).decompress(RandomBlock(0.1).compress(x, torch.Generator().manual_seed(t)),
                                          torch.zeros_like(x))
        outs.append(x.clone())
        mem.update("w", dec)
    return outs, mem.table("w").clone()


@pytest.mark.parametrize("update", ["incremental", "overwrite"])
def test_explicit_chunks_bit_identical_default_allclose(update):
    shape, c = (64, 100), 1 << 20
    ref_p, ref_t = _run(ConEFMemory(0.2, 0.1, update=update, chunk_numel=c), shape)
    # the pre-change algorithm written out with the same explicit chunk
    w = ConEFMemory(0.2).width(shape[1])
    h, s = sketch_hash(shape[1], w)
    table = torch.zeros(shape[0], w)
    for t in range(5):
        g = _grads({"w": shape}, t)["w"]
        p = g.clone()
        unsketch(table, h, s, p, lam=0.1, accumulate=True, chunk_numel=c)
        assert torch.equal(p, ref_p[t])
        dec = RandomBlock(0.1).decompress(RandomBlock(0.1).compress(p, torch.Generator().manual_seed(t)),
                                          torch.zeros_like(p))
        src = g if update == "incremental" else p
        new = sketch(src, h, s, w, chunk_numel=c).sub_(sketch(dec, h, s, w, chunk_numel=c))
        table = new.add_(table) if update == "incremental" else new
    assert torch.equal(table, ref_t)
    for chunk in (None, 1, 333):
        p2, t2 = _run(ConEFMemory(0.2, 0.1, update=update, chunk_numel=chunk), shape)
        torch.testing.assert_close(t2, ref_t, rtol=1e-6, atol=1e-6)
        for a, b in zip(p2, ref_p):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _memory_step_bytes(mem, shapes):
    """(persistent, transient) bytes of one compensate+update over ``shapes`` in hook order (compensate all, then
    update all), after a warm-up step; transient measured with peak_memory, plus the largest tensor allocated."""
    def step(seed):
        xs = _grads(shapes, seed)
        decs = {k: torch.zeros_like(x) for k, x in xs.items()}

        def fn():
            for k, x in xs.items():
                mem.compensate(k, x)
            for k in xs:
                mem.update(k, decs[k])
        return fn
    step(0)()
    fn, fn2 = step(1), step(2)
    with AllocationTracker() as tracker:
        fn2()
    tracker.detach()
    return mem.nbytes(), peak_memory(fn).peak_bytes, tracker.largest_numel


@pytest.mark.parametrize("shapes", [ONE_TENSOR, DIGITS_MLP], ids=["1024x1024", "digits-mlp"])
def test_conef_peak_below_ef_at_default_chunking(shapes):
    ef_persist, ef_trans, _ = _memory_step_bytes(EFMemory(), shapes)
    conef = ConEFMemory(0.2, 0.1)
    c_persist, c_trans, largest = _memory_step_bytes(conef, shapes)
    assert ef_persist == 4 * sum(n * m for n, m in shapes.values())
    assert c_persist + c_trans < ef_persist + ef_trans
    # the estimate bounds the measurement, and no temporary exceeds one chunk or one table
    held = sum(4 * n * conef.width(m) for n, m in shapes.values())  # every g-sketch lives until its update
    assert c_trans <= held + max(conef.scratch_bytes(s) for s in shapes.values())
    assert largest <= max(max(conef.chunk_for(s), s[0] * conef.width(s[1])) for s in shapes.values())


def test_old_fixed_chunk_exceeds_ef_on_one_large_tensor():
    """The regression this default fixes: a fixed 2²⁰-element chunk put ConEF's peak above EF's (spec §3)."""
    ef_persist, ef_trans, _ = _memory_step_bytes(EFMemory(), ONE_TENSOR)
    c_persist, c_trans, largest = _memory_step_bytes(ConEFMemory(0.2, 0.1, chunk_numel=1 << 20), ONE_TENSOR)
    assert c_persist + c_trans > ef_persist + ef_trans and largest == 1 << 20


def _hook_step(make_memory, shapes):
    state = CommState(RandomBlock(0.1), make_memory(), start_iter=0)
    group = SimulatedGroup(1, lambda: state)
    group.step([_grads(shapes, 0)])
    peak = peak_memory(lambda: group.step([_grads(shapes, 1)])).peak_bytes
    return state, peak


@pytest.mark.parametrize("shapes", [ONE_TENSOR, DIGITS_MLP], ids=["1024x1024", "digits-mlp"])
def test_hook_peak_and_scratch_accounting(shapes):
    """Claim 1's measure, peak_X = persistent_X + (peak of a hook step with X − with NoMemory), and the hook's
    ``scratch_peak_bytes`` built from each memory's ``scratch_bytes`` at the new chunks."""
    _, base = _hook_step(NoMemory, shapes)
    ef, ef_peak = _hook_step(EFMemory, shapes)
    ce, ce_peak = _hook_step(lambda: ConEFMemory(0.2, 0.1), shapes)
    assert ce.memory.nbytes() + (ce_peak - base) < ef.memory.nbytes() + (ef_peak - base)
    ef_rep, ce_rep = ef.memory_report(), ce.memory_report()
    if len(shapes) == 1:  # one compressed tensor: the two reports differ only by the memories' scratch_bytes
        (shape,) = shapes.values()
        assert ce_rep.scratch_peak_bytes - ef_rep.scratch_peak_bytes == \
            ce.memory.scratch_bytes(shape) - ef.memory.scratch_bytes(shape)
        old, _ = _hook_step(lambda: ConEFMemory(0.2, 0.1, chunk_numel=1 << 20), shapes)
        assert old.memory_report().scratch_peak_bytes - ce_rep.scratch_peak_bytes == 8 * (1024 - 204) * 1024
