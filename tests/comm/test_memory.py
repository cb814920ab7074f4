"""Error memories: EF invariant, ConEF algebra against a dense S, storage, guards and state."""

import warnings

import pytest
import torch

from optimlab._random import counter_generator
from optimlab.comm import (
    CompressedMemory,
    Compressor,
    ConEFMemory,
    CountSketch,
    EFMemory,
    RandomBlock,
    TopK,
    sketch_hash,
)


def _g(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _dense_S(m, width, a=994443, b=609478):
    h, s = sketch_hash(m, width, a, b)
    S = torch.zeros(width, m)
    S[h, torch.arange(m)] = s
    return S


def _step(mem, name, g, comp, t, residual="local"):
    """One worker's EF step with wire compressor ``comp``: returns (what was sent, decoded)."""
    x = g.clone()
    mem.compensate(name, x)
    p = x.clone()
    dec = comp.apply(x, counter_generator(0, t, name))
    mem.update(name, dec)
    return p, dec


def test_ef_invariant_sent_plus_memory_equals_sum_of_gradients():
    mem, comp = EFMemory(), RandomBlock(0.1)
    total_g = torch.zeros(16, 32, dtype=torch.float64)
    total_sent = torch.zeros_like(total_g)
    for t in range(40):
        g = _g((16, 32), t)
        _, dec = _step(mem, "w", g, comp, t)
        total_g += g.double()
        total_sent += dec.double()
    lhs = total_sent + mem.decoded("w").double()
    assert float((lhs - total_g).norm() / total_g.norm()) < 1e-5


def test_conef_incremental_table_matches_dense_formula():
    n, m, ratio, lam = 6, 40, 0.2, 0.15
    mem = ConEFMemory(ratio=ratio, lam=lam)
    width = mem.width(m)
    S = _dense_S(m, width)
    comp = RandomBlock(0.25)
    for t in range(5):
        T_old = mem.table("w").clone() if "w" in mem else torch.zeros(n, width)
        ehat = lam * T_old @ S  # ê = λ SᵀT row-wise
        g = _g((n, m), t)
        x = g.clone()
        mem.compensate("w", x)
        torch.testing.assert_close(x, g + ehat, atol=1e-6, rtol=1e-6)
        dec = comp.apply(x, counter_generator(0, t, "w"))
        v = x - dec
        mem.update("w", dec)
        expected = T_old + (v - ehat) @ S.T  # T ← T + S(v − ê)
        torch.testing.assert_close(mem.table("w"), expected, atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(mem.table("w"), T_old + (g - dec) @ S.T, atol=1e-5, rtol=1e-6)  # identity


def test_conef_overwrite_table_is_sketch_of_residual():
    n, m = 4, 30
    mem = ConEFMemory(ratio=0.3, lam=0.2, update="overwrite")
    S = _dense_S(m, mem.width(m))
    comp = RandomBlock(0.2)
    for t in range(3):
        x = _g((n, m), t)
        mem.compensate("w", x)
        dec = comp.apply(x, counter_generator(0, t, "w"))
        mem.update("w", dec)
        torch.testing.assert_close(mem.table("w"), (x - dec) @ S.T, atol=1e-5, rtol=1e-6)


def test_identity_hash_conef_equals_ef():
    ef, conef = EFMemory(), ConEFMemory(ratio=1.0, lam=1.0, hash="identity")
    comp = RandomBlock(0.1)
    for t in range(20):
        g = _g((8, 24), 100 + t)
        p1, _ = _step(ef, "w", g, comp, t)
        p2, _ = _step(conef, "w", g, comp, t)
        torch.testing.assert_close(p2, p1, rtol=1e-6, atol=1e-6)
    e1, e2 = ef.decoded("w"), conef.decoded("w")
    assert float((e1 - e2).norm() / e1.norm()) < 1e-6


def test_dense_fallback_auto_scale_and_bytes():
    mem = ConEFMemory(ratio=0.5, lam="auto")
    assert mem.width(1) == 1 and mem._is_dense(1) and mem.lam_for(1) == 1.0  # W >= m: exact EF
    m = 512
    h, _ = mem.hashes(m)
    c = torch.bincount(h, minlength=mem.width(m)).double()
    kappa = float((c * (c - 1)).sum() / m)
    assert mem.lam_for(m) == pytest.approx(min(1 / (1 + kappa), 2 / float(c.max())))
    x = _g((10, 1), 0)
    mem.compensate("bias_like", x)
    mem.update("bias_like", torch.zeros_like(x))
    torch.testing.assert_close(mem.decoded("bias_like"), x)


@pytest.mark.parametrize("dtype,size", [(torch.float32, 4), (torch.float16, 2), (torch.bfloat16, 2)])
def test_nbytes_is_table_only_and_fp16_is_half(dtype, size):
    n, m = 64, 200
    mem = ConEFMemory(ratio=0.2, storage_dtype=dtype)
    x = _g((n, m), 0)
    mem.compensate("w", x)
    mem.update("w", torch.zeros_like(x))
    assert mem.nbytes() == n * mem.width(m) * size == n * 40 * size
    assert mem.predict((n, m)) == (n * 40 * size, 0)
    cached = ConEFMemory(ratio=0.2, storage_dtype=dtype, cache_hashes=True)
    cached.compensate("w", x.clone())
    cached.update("w", torch.zeros_like(x))
    assert cached.nbytes() == n * 40 * size + 12 * m


def test_fp16_storage_tracks_fp32():
    m32, m16 = ConEFMemory(0.2, 0.1), ConEFMemory(0.2, 0.1, storage_dtype=torch.float16)
    comp = RandomBlock(0.1)
    for t in range(50):
        g = _g((32, 128), t)
        _step(m32, "w", g, comp, t)
        _step(m16, "w", g, comp, t)
    a, b = m32.decoded("w"), m16.decoded("w")
    assert float((a - b).norm() / a.norm()) < 1e-3


def test_fp16_overflow_raises_and_suggests_bf16():
    mem = ConEFMemory(0.2, 0.1, storage_dtype=torch.float16)
    x = torch.full((2, 50), 1e5)
    mem.compensate("w", x)
    with pytest.raises(FloatingPointError, match="bfloat16"):
        mem.update("w", torch.zeros_like(x))


def test_stability_guard_warns():
    with pytest.warns(RuntimeWarning, match="amplifies"):
        ConEFMemory(ratio=0.02, lam=0.5).compensate("w", _g((2, 500), 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConEFMemory(ratio=0.2, lam=0.1).compensate("w", _g((2, 500), 0))


@pytest.mark.parametrize("make", [EFMemory, lambda: EFMemory(torch.float64), lambda: ConEFMemory(0.2, 0.1)],
                         ids=["ef", "ef-fp64-where-path", "conef"])
def test_shape_mismatch_and_nonfinite_guard(make):
    mem = make()
    x = _g((4, 50), 0)
    mem.compensate("w", x)
    mem.update("w", x * 0.5)
    before = mem.state_dict()
    with pytest.raises(ValueError, match="shape"):
        mem.compensate("w", _g((5, 50), 1))
    y = _g((4, 50), 2)
    y[1, 3] = float("inf")
    mem.compensate("w", y)
    mem.update("w", torch.zeros_like(y))
    after = mem.state_dict()
    key = "e" if "e" in before else "tables"
    assert torch.equal(before[key]["w"], after[key]["w"])
    z = _g((4, 50), 3)  # and a finite flag from the hook also skips
    mem.compensate("w", z)
    mem.update("w", torch.zeros_like(z), finite=torch.tensor(False))
    assert torch.equal(before[key]["w"], mem.state_dict()[key]["w"])


def test_state_dict_round_trip_and_config_mismatch():
    mem = ConEFMemory(0.2, 0.1)
    comp = RandomBlock(0.1)
    for t in range(3):
        _step(mem, "w", _g((8, 64), t), comp, t)
    other = ConEFMemory(0.2, 0.1)
    other.load_state_dict(mem.state_dict())
    g = _g((8, 64), 9)
    p1, _ = _step(mem, "w", g, comp, 9)
    p2, _ = _step(other, "w", g, comp, 9)
    assert torch.equal(p1, p2) and torch.equal(mem.table("w"), other.table("w"))
    with pytest.raises(ValueError, match="mismatch"):
        ConEFMemory(0.1, 0.1).load_state_dict(mem.state_dict())
    mem.reset()
    assert float(mem.decoded("w").abs().max()) == 0.0


def test_compressed_memory_topk_bytes_and_algebra():
    mem = CompressedMemory(TopK(0.2))
    comp = RandomBlock(0.1)
    g = _g((10, 30), 0)
    x = g.clone()
    mem.compensate("w", x)
    dec = comp.apply(x, counter_generator(0, 0, "w"))
    mem.update("w", dec)
    v = x - dec
    torch.testing.assert_close(mem.decoded("w"), TopK(0.2).apply(v, counter_generator(0, 0, "w")))
    assert mem.nbytes() == 60 * 4 + 60 * 4  # k fp32 values + k int32 indices


def test_compressed_memory_incremental_needs_linear_compressor():
    with pytest.raises(ValueError, match="linear"):
        CompressedMemory(TopK(0.2), update="incremental")
    with pytest.raises(ValueError, match="contractive"):
        CompressedMemory(RandomBlock(0.2, scaled=True))
    mem = CompressedMemory(CountSketch(0.5, lam=0.3), update="incremental")
    comp = RandomBlock(0.2)
    for t in range(3):
        ehat = mem.decoded("w") if "w" in mem else torch.zeros(4, 20)
        old = mem._store["w"].data[0].clone() if "w" in mem else torch.zeros(4 * 10)
        x = _g((4, 20), t)
        g = x.clone()
        mem.compensate("w", x)
        dec = comp.apply(x, counter_generator(0, t, "w"))
        mem.update("w", dec)
        inc = CountSketch(0.5, lam=0.3).compress(x - dec - ehat, mem._gen("w")).data[0]
        torch.testing.assert_close(mem._store["w"].data[0], old + inc, atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(g + ehat, x)


def test_bad_memory_arguments():
    for kwargs, word in [({"ratio": 0}, "ratio"), ({"ratio": 1.5}, "ratio"), ({"ratio": True}, "ratio"),
                         ({"lam": 0}, "lam"), ({"lam": -1}, "lam"), ({"lam": "best"}, "lam"),
                         ({"update": "x"}, "update"), ({"storage_dtype": torch.int8}, "storage_dtype"),
                         ({"chunk_numel": 0}, "chunk_numel"), ({"hash": "md5"}, "hash"),
                         ({"cache_hashes": 1}, "cache_hashes")]:
        with pytest.raises(ValueError, match=word):
            ConEFMemory(**kwargs)
    with pytest.raises(ValueError, match="dtype"):
        EFMemory(dtype=torch.int32)
    with pytest.raises(ValueError, match="contractive"):
        CompressedMemory(Compressor())  # the base class declares nothing contractive
    with pytest.raises(ValueError, match="compressor"):
        CompressedMemory("topk")
    with pytest.raises(ValueError, match="update"):
        CompressedMemory(TopK(0.2), update="sometimes")


def test_scratch_bytes_per_memory_class():
    """The hook's transient estimate comes from each memory class (a method, no type dispatch)."""
    from optimlab.comm import NoMemory

    assert NoMemory().scratch_bytes((4, 5)) == 0 and not NoMemory.keeps_error and EFMemory.keeps_error
    assert EFMemory().scratch_bytes((1024, 1024)) == 8 * (1 << 16) and EFMemory().scratch_bytes((2, 3)) == 48
    w = ConEFMemory(0.2).width(1024)
    big_chunks = ConEFMemory(0.2, chunk_numel=1 << 20)
    assert big_chunks.scratch_bytes((1024, 1024)) == 16 * 1024 * w + 8 * (1 << 20) + 12 * 1024
    # default chunking: max(m, n·W) elements, rounded down to whole rows (w rows of 1024)
    assert ConEFMemory(0.2).scratch_bytes((1024, 1024)) == 16 * 1024 * w + 8 * w * 1024 + 12 * 1024
    small_chunks = ConEFMemory(0.2, chunk_numel=1 << 16)
    assert small_chunks.scratch_bytes((1024, 1024)) == 16 * 1024 * w + 8 * (1 << 16) + 12 * 1024
    assert ConEFMemory(0.5).scratch_bytes((10, 1)) == 80  # dense fallback
    assert CompressedMemory(TopK(0.2)).scratch_bytes((10, 30)) == 12 * 300
