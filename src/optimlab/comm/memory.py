"""Error memories for compressed communication: the interface, none, full EF, and C(residual).

A memory is keyed by parameter name and works on the n×m matrix view of each gradient. Per tensor and step
(ConEF, arXiv:2312.08538), with Q the wire compressor and ḡ = decode(Σ_i Q(p_i))/N:

* :meth:`ErrorMemory.compensate` ``(name, x)``: x ← p = g + ê in place (ê the decoded memory);
* :meth:`ErrorMemory.update` ``(name, decoded)``: with ``decoded`` = decode(Q(p_i)) (``residual="local"``) or ḡ
  (``"global"``), the residual is v = p − decoded and the memory moves towards it. It must be called while the
  tensor passed to ``compensate`` still holds p (the hook writes ḡ back afterwards).

EF (Seide et al. 2014; Karimireddy et al. arXiv:1901.09847): e ← v, 4d bytes in fp32. ConEF's count-sketch memory
(arXiv:2312.08538) is :class:`~optimlab.comm.conef.ConEFMemory`.

Non-finite guard: an update keeps the old memory, bit for bit, whenever the input, the decoded tensor or the
``finite`` flag passed by the hook says the step was not finite (a ``torch.where``, no host synchronisation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimlab._random import counter_generator
from optimlab._validation import Instance, Options, validate
from optimlab.comm.compressors import Compressor, Payload, as_matrix_shape

__all__ = ["CompressedMemory", "EFMemory", "ErrorMemory", "NoMemory", "finite"]

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
    """Base class of the error memories (all methods keyed by parameter name).

    ``keeps_error`` is False only for :class:`NoMemory` (the hook then skips compensation bookkeeping).
    """

    keeps_error: bool = True

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

    def scratch_bytes(self, shape: tuple[int, int]) -> int:
        """Transient bytes of one compensate+update on an n×m tensor, from the allocations the code makes (an
        estimate for :attr:`MemoryReport.scratch_peak_bytes`); by default three dense fp32 temporaries."""
        n, m = shape
        return 12 * n * m

    def reset(self, name: str | None = None) -> None:
        """Zero the memory of ``name`` (all when ``None``). Never called automatically (as in the
        authors' code, where it is disabled): memory survives a scheduler step."""

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

    keeps_error = False

    def scratch_bytes(self, shape):
        return 0


def _check_shape(name: str, have: torch.Size, want: torch.Size) -> None:
    if tuple(have) != tuple(want):
        raise ValueError(f"memory for {name!r} has shape {tuple(have)} but the gradient has shape {tuple(want)}; "
                         "memory is never reused for another shape (reset it or use another key)")


class EFMemory(ErrorMemory):
    """Full error feedback: e ← p − decoded, stored densely in ``dtype`` (4d bytes in fp32).

    compensate: p = g + e; update: e ← p − decoded (``decoded`` = what was sent, or the average received).
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = validate({"dtype": Options(torch.float16, torch.bfloat16, torch.float32, torch.float64)},
                              {"dtype": dtype}, owner="EFMemory")["dtype"]
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

    def scratch_bytes(self, shape):
        n, m = shape
        return 8 * min(n * m, _CHUNK)  # chunked p − decoded and the torch.where result

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


class CompressedMemory(ErrorMemory):
    """Stores C(residual) for a contractive compressor C (e.g. ``TopK(0.2)``: the top-k-memory baseline).

    ``"overwrite"``: stored ← C(p − decoded), with fresh counter randomness each step. ``"incremental"``:
    stored ← stored + C(p − decoded − ê) = stored + C(v − ê) with a fixed random state per tensor; it needs a
    linear compressor (``linear=True``: Identity, RandomBlock, RandomK, CountSketch), else ``ValueError``.
    Persistent bytes count every stored tensor (values, int32 indices, index sets).
    """

    def __init__(self, compressor: Compressor, update: str = "overwrite", seed: int = 0) -> None:
        validate({"compressor": Instance(Compressor), "update": Options("incremental", "overwrite"),
                  "seed": Instance(int)}, {"compressor": compressor, "update": update, "seed": seed},
                 owner="CompressedMemory")
        if update == "incremental" and not compressor.linear:
            raise ValueError(f"update='incremental' needs a linear compressor with fixed randomness (a count "
                             f"sketch); {type(compressor).__name__} is not linear")
        if compressor.rounds != 1:
            raise ValueError(f"{type(compressor).__name__} needs {compressor.rounds} rounds; a memory compressor "
                             "must work locally in one round")
        if not (compressor.contractive or compressor.contraction_depends_on_shape):
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
        if not self.compressor.is_contractive(x.shape):
            raise ValueError(f"{self.compressor!r} is not contractive on shape {tuple(x.shape)} "
                             "(a count sketch needs 0 < lam < 2/(1+kappa))")
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
