"""Error memories for compressed communication: none, full EF, ConEF's count-sketch memory, C(residual).

A memory is keyed by parameter name and works on the n×m matrix view of each gradient. Per tensor and step
(specs/comm.md §3), with Q the wire compressor and ḡ = decode(Σ_i Q(p_i))/N:

* :meth:`ErrorMemory.compensate` ``(name, x)``: x ← p = g + ê in place (ê the decoded memory);
* :meth:`ErrorMemory.update` ``(name, decoded)``: with ``decoded`` = decode(Q(p_i)) (``residual="local"``) or ḡ
  (``"global"``), the residual is v = p − decoded and the memory moves towards it. It must be called while the
  tensor passed to ``compensate`` still holds p (the hook writes ḡ back afterwards).

EF (Seide et al. 2014; Karimireddy et al. arXiv:1901.09847): e ← v, 4d bytes in fp32.
ConEF (Li, Zheng, Raman, Shrivastava, Giannakis, arXiv:2312.08538): a single-hash count-sketch table T (n×W,
W = max(1, ⌊ratio·m⌋)) with ê = λ·SᵀT row-wise, updated incrementally T ← T + S(v − ê) (default) or by overwrite
T ← S·v. Since p = g + ê, v − ê = g − decoded, so the incremental form sketches g before compensation and subtracts
the sketch of ``decoded`` afterwards: no O(d) clone of p. UNVERIFIED against the paper's algorithm box (only its
abstract was available offline): that the incremental form is the one the paper states; the mechanics follow the
authors' reference code as summarised in specs/comm.md §3. The authors' README (read, not copied) confirms that a
single hash is recommended over three and that an fp16 table is their "half precision" variant.

Non-finite guard: an update keeps the old memory, bit for bit, whenever the input, the decoded tensor or the
``finite`` flag passed by the hook says the step was not finite (a ``torch.where``, no host synchronisation).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from optimlab.comm.compressors import (
    HASH_A,
    HASH_B,
    Compressor,
    CountSketch,
    Payload,
    as_matrix_shape,
    counter_generator,
    mix64,
    sketch,
    sketch_hash,
    unsketch,
)

__all__ = ["CompressedMemory", "ConEFMemory", "EFMemory", "ErrorMemory", "NoMemory"]

_FP16_MAX = 65504.0


def _elsize(dtype: torch.dtype) -> int:
    return torch.tensor([], dtype=dtype).element_size()


_CHUNK = 1 << 16  # elementwise work is done in chunks: large CPU temporaries cost page faults on every step


def finite(t: Tensor) -> Tensor:
    """0-dim bool tensor: every element of ``t`` is finite (``aminmax`` propagates NaN and ±inf; no host sync)."""
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    lo, hi = torch.aminmax(t.detach().reshape(-1))  # much faster than isfinite(t).all() on CPU
    return torch.isfinite(torch.stack((lo, hi))).all()


def _all_finite(*tensors: Tensor, finite_flag: Tensor | None = None) -> Tensor:
    """``finite_flag`` when given (the hook's flag already covers p and the decoded tensor), else check them."""
    if finite_flag is not None:
        return finite_flag
    ok = None
    for t in tensors:
        f = finite(t)
        ok = f if ok is None else ok & f
    return ok


class ErrorMemory:
    """Base class of the error memories (all methods keyed by parameter name)."""

    def compensate(self, name: str, x: Tensor) -> None:
        """x ← x + ê(name) in place (x is the n×m view of the gradient, which then holds p)."""

    def update(self, name: str, decoded: Tensor, finite: Tensor | None = None) -> None:
        """Move the memory towards the residual p − decoded; skipped (bit-unchanged) if not finite.

        ``finite`` (a 0-dim bool tensor) is the caller's verdict on p and ``decoded`` (the hook passes the
        bucket-wide flag); when ``None`` the memory checks p and ``decoded`` itself.
        """

    def decoded(self, name: str) -> Tensor:
        """The dense ê(name) (for tests and inspection)."""
        raise KeyError(name)

    def keys(self) -> list[str]:
        return []

    def __contains__(self, name: str) -> bool:
        return name in self.keys()

    def nbytes(self) -> int:
        """Persistent bytes (memory tensors and hash caches), never scratch."""
        return sum(v["error_bytes"] + v["cache_bytes"] for v in self.breakdown().values())

    def breakdown(self) -> dict[str, dict[str, int]]:
        """Per tensor: ``{"error_bytes", "cache_bytes"}`` of the persistent state."""
        return {}

    def predict(self, shape, dtype: torch.dtype = torch.float32) -> tuple[int, int]:
        """(error bytes, cache bytes) this memory will hold for one tensor of ``shape``, from the shape alone."""
        return 0, 0

    def reset(self, name: str | None = None) -> None:
        """Zero the memory of ``name`` (all when ``None``). Never called automatically (specs/comm.md §7.15)."""

    def config(self) -> dict[str, Any]:
        return {"class": type(self).__name__}

    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cfg = state.get("config")
        if cfg != self.config():
            raise ValueError(f"memory configuration mismatch on load: saved {cfg}, this memory {self.config()}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")
        return f"{type(self).__name__}({args})"


class NoMemory(ErrorMemory):
    """No error feedback: the compression error is dropped (the biased control)."""


def _check_shape(name: str, have: torch.Size, want: torch.Size) -> None:
    if tuple(have) != tuple(want):
        raise ValueError(f"memory for {name!r} has shape {tuple(have)} but the gradient has shape {tuple(want)}; "
                         "memory is never reused for another shape (reset it or use another key)")


class EFMemory(ErrorMemory):
    """Full error feedback: e ← p − decoded, stored densely in ``dtype`` (4d bytes in fp32).

    compensate: p = g + e; update: e ← p − decoded (``decoded`` = what was sent, or the average received).
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self._e: dict[str, Tensor] = {}
        self._pending: dict[str, Tensor] = {}

    def config(self):
        return {"class": type(self).__name__, "dtype": str(self.dtype)}

    def compensate(self, name, x):
        e = self._e.get(name)
        if e is None:
            e = self._e[name] = torch.zeros(x.shape, dtype=self.dtype, device=x.device)
        _check_shape(name, e.shape, x.shape)
        x.add_(e)
        self._pending[name] = x

    def update(self, name, decoded, finite=None):
        p = self._pending.pop(name)
        e = self._e[name]
        ok = _all_finite(p, decoded, finite_flag=finite)
        if ok.device.type == "cpu" and e.dtype == p.dtype:  # reading a CPU flag costs no device sync
            if bool(ok):
                torch.sub(p, decoded, out=e)
            return
        pf, df, ef = p.reshape(-1), decoded.reshape(-1), e.view(-1)
        for i in range(0, ef.numel(), _CHUNK):
            new = torch.sub(pf[i:i + _CHUNK], df[i:i + _CHUNK])
            ef[i:i + _CHUNK].copy_(torch.where(ok, new, ef[i:i + _CHUNK].to(new.dtype)))

    def decoded(self, name):
        return self._e[name].clone()

    def keys(self):
        return list(self._e)

    def breakdown(self):
        return {k: {"error_bytes": v.numel() * v.element_size(), "cache_bytes": 0} for k, v in self._e.items()}

    def predict(self, shape, dtype=torch.float32):
        return math.prod(as_matrix_shape(shape)) * _elsize(self.dtype), 0

    def reset(self, name=None):
        for k, v in self._e.items():
            if name is None or k == name:
                v.zero_()

    def state_dict(self):
        return {"config": self.config(), "e": {k: v.clone() for k, v in self._e.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._e = {k: v.clone() for k, v in state["e"].items()}
        self._pending = {}


@dataclass
class _Entry:
    n: int
    m: int
    width: int
    lam: float
    dense: bool
    table: Tensor  # n×W sketch (or n×m dense EF memory), storage dtype


class ConEFMemory(ErrorMemory):
    """ConEF's compressed error: a single-hash count sketch per tensor, hashed on the fly (arXiv:2312.08538).

    Per tensor (n×m), W = max(1, ⌊ratio·m⌋) and a table T (n×W) with ê = λ·SᵀT row-wise, where S[h(j), j] = σ(j)
    (:func:`~optimlab.comm.compressors.sketch_hash`, unsigned fmix32). The update is

    * ``"incremental"`` (default): T ← T + S(v − ê), i.e. ê ← ê + λSᵀS(v − ê) (EF21-like), computed as
      T + S·g − S·decoded without cloning p;
    * ``"overwrite"``: T ← S·v (diverged in the spec's prototype at λ = 0.167; specs/comm.md §7.8).

    ``scale`` is λ (1 − β in the reference, β = 0.9); ``"auto"`` uses λ* = 1/(1+κ) per tensor, κ = Σ_b c_b(c_b−1)/m
    from the bucket counts, which minimises E‖λSᵀSx − x‖²/‖x‖² = (1−λ)² + λ²κ. If λ·max_b c_b > 2 the incremental
    update expands the error and a warning is issued. If W ≥ m the tensor is stored densely (exact EF, λ = 1).
    ``storage_dtype`` may be fp16 or bf16 (arithmetic in fp32; an fp16 value above 65504 raises
    ``FloatingPointError``, which needs one host sync per tensor and step — bf16 has none). ``cache_hashes=True``
    keeps h and σ per (m, W) (counted in :meth:`nbytes`); otherwise they are recomputed in O(m) each call.
    Tables are decoded and sketched in row chunks of at most ``chunk_numel`` elements.
    ``hash="identity"`` (tests only) uses S = I with W = m while keeping the sketch code path.
    """

    def __init__(self, ratio: float = 0.2, scale: float | str = 0.1, update: str = "incremental",
                 storage_dtype: torch.dtype = torch.float32, hash_seed: int | None = None,
                 cache_hashes: bool = False, chunk_numel: int = 2**20, hash: str = "fmix32") -> None:
        if not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
        if scale != "auto" and (not isinstance(scale, (int, float)) or not scale > 0):
            raise ValueError(f"scale must be > 0 or 'auto', got {scale!r}")
        if update not in ("incremental", "overwrite"):
            raise ValueError(f"update must be 'incremental' or 'overwrite', got {update!r}")
        if storage_dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ValueError(f"storage_dtype must be float32, float16, bfloat16 or float64, got {storage_dtype!r}")
        if not isinstance(chunk_numel, int) or chunk_numel < 1:
            raise ValueError(f"chunk_numel must be a positive integer, got {chunk_numel!r}")
        if hash not in ("fmix32", "identity"):
            raise ValueError(f"hash must be 'fmix32' or 'identity' (tests only), got {hash!r}")
        self.ratio, self.scale, self.update_rule = float(ratio), scale, update
        self.storage_dtype, self.hash_seed = storage_dtype, hash_seed
        self.cache_hashes, self.chunk_numel, self.hash = bool(cache_hashes), chunk_numel, hash
        if hash_seed is None:
            self.a, self.b = HASH_A, HASH_B
        else:
            self.a = (mix64(hash_seed, 1) & 0xFFFFFFFF) | 1
            self.b = mix64(hash_seed, 2) & 0xFFFFFFFF
        self._entries: dict[str, _Entry] = {}
        self._cache: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}
        self._pending: dict[str, tuple] = {}
        self._warned: set[str] = set()

    def config(self):
        return {"class": type(self).__name__, "ratio": self.ratio, "scale": self.scale, "update": self.update_rule,
                "storage_dtype": str(self.storage_dtype), "hash_seed": self.hash_seed, "hash": self.hash}

    # --- sizes and hashes ------------------------------------------------------------------------------------
    def width(self, m: int) -> int:
        if self.hash == "identity":
            return m
        return max(1, math.floor(self.ratio * m))

    def _is_dense(self, m: int) -> bool:
        return self.hash != "identity" and self.width(m) >= m

    def hashes(self, m: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """(h, σ) for m columns (all rows share them); cached when ``cache_hashes``."""
        w = self.width(m)
        key = (m, w, str(device))
        if key in self._cache:
            return self._cache[key]
        if self.hash == "identity":
            hs = torch.arange(m, device=device), torch.ones(m, device=device)
        else:
            hs = sketch_hash(m, w, self.a, self.b, device=device)
        if self.cache_hashes:
            self._cache[key] = hs
        return hs

    def kappa(self, m: int) -> float:
        """κ = Σ_b c_b(c_b − 1)/m for the bucket counts c_b of the fixed hash (0 for dense or identity)."""
        if self._is_dense(m) or self.hash == "identity":
            return 0.0
        h, _ = self.hashes(m)
        c = torch.bincount(h.cpu(), minlength=self.width(m)).double()
        return float((c * (c - 1)).sum() / m)

    def lam(self, m: int) -> float:
        """λ used for m-column tensors (``scale``, or 1/(1+κ) for ``"auto"``; 1 for the dense fallback)."""
        if self._is_dense(m):
            return 1.0
        return 1.0 / (1.0 + self.kappa(m)) if self.scale == "auto" else float(self.scale)

    def _entry(self, name: str, x: Tensor) -> _Entry:
        n, m = x.shape
        ent = self._entries.get(name)
        if ent is not None and ent.m == -1:  # loaded from a checkpoint: m is known once the gradient is seen
            dense = self._is_dense(m)
            want = (n, m if dense else self.width(m))
            if (ent.n, ent.width) != want:
                raise ValueError(f"loaded ConEF table for {name!r} has shape {(ent.n, ent.width)}, but a gradient "
                                 f"of shape {(n, m)} needs {want}")
            ent.m, ent.dense, ent.table = m, dense, ent.table.to(x.device)
            return ent
        if ent is not None:
            _check_shape(name, (ent.n, ent.m), x.shape)
            return ent
        dense = self._is_dense(m)
        w = m if dense else self.width(m)
        lam = self.lam(m)
        if not dense and self.hash != "identity":
            h, _ = self.hashes(m, x.device)
            cmax = torch.bincount(h, minlength=w).max().item()
            if lam * cmax > 2 and name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"ConEFMemory: lambda*max bucket count = {lam * cmax:.3g} > 2 for {name!r} "
                              f"(m={m}, W={w}): the incremental update amplifies the error; lower scale or raise "
                              "ratio (specs/comm.md §7.9)", RuntimeWarning, stacklevel=3)
        table = torch.zeros(n, w, dtype=self.storage_dtype, device=x.device)
        ent = self._entries[name] = _Entry(n, m, w, lam, dense, table)
        return ent

    # --- the algorithm ---------------------------------------------------------------------------------------
    def compensate(self, name, x):
        ent = self._entry(name, x)
        if ent.dense:
            x.add_(ent.table.to(x.dtype))
            self._pending[name] = (x, None, None)
            return
        h, s = self.hashes(ent.m, x.device)
        gsk = sketch(x, h, s, ent.width, chunk_numel=self.chunk_numel) if self.update_rule == "incremental" else None
        unsketch(ent.table, h, s, x, scale=ent.lam, accumulate=True, chunk_numel=self.chunk_numel)
        self._pending[name] = (x, gsk, (h, s))  # the hashes are kept until update (transient, O(m))

    def update(self, name, decoded, finite=None):
        x, gsk, hs = self._pending.pop(name)
        ent = self._entries[name]
        old = ent.table.float()
        if ent.dense:
            new = torch.sub(x, decoded).float()
        else:
            h, s = hs
            if self.update_rule == "incremental":  # T + S(v − ê) = T + S·g − S·decoded
                new = gsk.sub_(sketch(decoded, h, s, ent.width, chunk_numel=self.chunk_numel)).add_(old)
            else:  # T ← S·v = S·p − S·decoded
                new = sketch(x, h, s, ent.width, chunk_numel=self.chunk_numel)
                new.sub_(sketch(decoded, h, s, ent.width, chunk_numel=self.chunk_numel))
        ok = _all_finite(new, finite_flag=finite)
        new = torch.where(ok, new, old)
        if self.storage_dtype == torch.float16:
            big = new.abs().max() if new.numel() else new.new_zeros(())
            if bool(big > _FP16_MAX):
                raise FloatingPointError(
                    f"ConEFMemory: the fp16 table of {name!r} would hold {float(big):.4g} > 65504; "
                    "use storage_dtype=torch.bfloat16 (same size, fp32 range)")
        ent.table.copy_(new)

    def decoded(self, name):
        ent = self._entries[name]
        if ent.dense:
            return ent.table.float().clone()
        h, s = self.hashes(ent.m, ent.table.device)
        out = torch.zeros(ent.n, ent.m, device=ent.table.device)
        return unsketch(ent.table, h, s, out, scale=ent.lam, chunk_numel=self.chunk_numel)

    def table(self, name: str) -> Tensor:
        """The stored table T of ``name`` (n×W; n×m for the dense fallback)."""
        return self._entries[name].table

    def keys(self):
        return list(self._entries)

    def breakdown(self):
        out = {k: {"error_bytes": e.table.numel() * e.table.element_size(), "cache_bytes": 0}
               for k, e in self._entries.items()}
        seen: set[tuple[int, int, str]] = set()
        for k, e in self._entries.items():
            key = next((c for c in self._cache if c[0] == e.m and c[1] == e.width), None)
            if key is not None and key not in seen:
                seen.add(key)
                h, s = self._cache[key]
                out[k]["cache_bytes"] = h.numel() * h.element_size() + s.numel() * s.element_size()
        return out

    def predict(self, shape, dtype=torch.float32):
        n, m = as_matrix_shape(shape)
        w = m if self._is_dense(m) else self.width(m)
        cache = 12 * m if (self.cache_hashes and not self._is_dense(m)) else 0
        return n * w * _elsize(self.storage_dtype), cache

    def reset(self, name=None):
        for k, e in self._entries.items():
            if name is None or k == name:
                e.table.zero_()

    def state_dict(self):
        return {"config": self.config(),
                "tables": {k: e.table.clone() for k, e in self._entries.items()},
                "lam": {k: e.lam for k, e in self._entries.items()}}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._entries, self._pending = {}, {}
        for k, t in state["tables"].items():
            n, w = t.shape
            # m is recovered at first use (shape check then); store W and λ now
            self._entries[k] = _Entry(n, -1, w, float(state["lam"][k]), False, t.clone().to(self.storage_dtype))


class CompressedMemory(ErrorMemory):
    """Stores C(residual) for a contractive compressor C (e.g. ``TopK(0.2)``: the top-k-memory baseline).

    ``"overwrite"``: stored ← C(p − decoded), with fresh counter randomness each step. ``"incremental"``:
    stored ← stored + C(p − decoded − ê) = stored + C(v − ê) with a fixed random state per tensor; it needs a
    linear compressor (``linear=True``: Identity, RandomBlock, RandomK, CountSketch), else ``ValueError``.
    Persistent bytes count every stored tensor (values, int32 indices, index sets).
    """

    def __init__(self, compressor: Compressor, update: str = "overwrite", seed: int = 0) -> None:
        if not isinstance(compressor, Compressor):
            raise TypeError(f"compressor must be an optimlab.comm Compressor, got {type(compressor).__name__}")
        if update not in ("incremental", "overwrite"):
            raise ValueError(f"update must be 'incremental' or 'overwrite', got {update!r}")
        if update == "incremental" and not compressor.linear:
            raise ValueError(f"update='incremental' needs a linear compressor with fixed randomness (a count "
                             f"sketch); {type(compressor).__name__} is not linear")
        if compressor.rounds != 1:
            raise ValueError(f"{type(compressor).__name__} needs {compressor.rounds} rounds; a memory compressor "
                             "must work locally in one round")
        if not (compressor.contractive or isinstance(compressor, CountSketch)):
            raise ValueError(f"compressor must be contractive; {compressor!r} is not")
        self.compressor, self.update_rule, self.seed = compressor, update, int(seed)
        self._store: dict[str, Payload] = {}
        self._shape: dict[str, tuple[int, int]] = {}
        self._count: dict[str, int] = {}
        self._pending: dict[str, Tensor] = {}

    def config(self):
        return {"class": type(self).__name__, "compressor": self.compressor.config(), "update": self.update_rule,
                "seed": self.seed}

    def _gen(self, name: str) -> torch.Generator:
        step = 0 if self.update_rule == "incremental" else self._count.get(name, 0)
        return counter_generator(self.seed, step, f"memory:{name}")

    def compensate(self, name, x):
        if isinstance(self.compressor, CountSketch) and not self.compressor.is_contractive(x.shape):
            raise ValueError(f"{self.compressor!r} is not contractive on shape {tuple(x.shape)} "
                             "(needs 0 < scale < 2/(1+kappa))")
        if name in self._shape:
            _check_shape(name, self._shape[name], x.shape)
        self._shape[name] = tuple(x.shape)
        st = self._store.get(name)
        if st is not None:
            x.add_(self.compressor.decompress(st, torch.empty_like(x)))
        self._pending[name] = x

    def update(self, name, decoded, finite=None):
        p = self._pending.pop(name)
        v = torch.sub(p, decoded)
        old = self._store.get(name)
        if old is None:
            old = self.compressor.compress(torch.zeros_like(v), self._gen(name))
            old = old.with_data([t.clone() for t in old.data])
        if self.update_rule == "overwrite":
            new = self.compressor.compress(v, self._gen(name))
            data = [t.clone() for t in new.data]
        else:
            ehat = self.compressor.decompress(old, torch.empty_like(v))
            new = self.compressor.compress(v.sub_(ehat), self._gen(name))
            data = [a + b for a, b in zip(old.data, new.data)]
        ok = _all_finite(v, *[t for t in data if t.is_floating_point()], finite_flag=finite)
        data = [torch.where(ok, a, b) for a, b in zip(data, old.data)]
        ctx = new.ctx
        if self.update_rule == "overwrite" and isinstance(ctx, Tensor):
            ctx = torch.where(ok, ctx, old.ctx) if isinstance(old.ctx, Tensor) else ctx
        self._store[name] = Payload(tuple(data), ctx)
        self._count[name] = self._count.get(name, 0) + 1

    def decoded(self, name):
        st = self._store[name]
        return self.compressor.decompress(st, torch.empty(self._shape[name], device=st.data[0].device))

    def keys(self):
        return list(self._store)

    @staticmethod
    def _bytes(obj: Any) -> int:
        if isinstance(obj, Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (list, tuple)):
            return sum(CompressedMemory._bytes(o) for o in obj)
        if isinstance(obj, dict):
            return sum(CompressedMemory._bytes(o) for o in obj.values())
        return 0

    def breakdown(self):
        return {k: {"error_bytes": self._bytes(p.data) + self._bytes(p.ctx), "cache_bytes": 0}
                for k, p in self._store.items()}

    def predict(self, shape, dtype=torch.float32):
        n, m = as_matrix_shape(shape)
        return self._bytes(self.compressor.compress(torch.zeros(n, m, dtype=dtype), self._gen("predict"))), 0

    def reset(self, name=None):
        for k in list(self._store):
            if name is None or k == name:
                del self._store[k]

    def state_dict(self):
        return {"config": self.config(), "store": {k: (list(p.data), p.ctx) for k, p in self._store.items()},
                "shape": dict(self._shape), "count": dict(self._count)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._store = {k: Payload(tuple(t.clone() for t in d), c) for k, (d, c) in state["store"].items()}
        self._shape = dict(state["shape"])
        self._count = dict(state["count"])
        self._pending = {}
