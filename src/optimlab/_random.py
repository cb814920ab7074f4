"""Randomness for the whole library: one rule for seeds and generators, and counter-based streams.

* :func:`check_generator` turns ``None`` / an ``int`` / a generator into a generator by one documented rule
  (scikit-learn's ``check_random_state``, for torch and numpy). Nothing in optimlab reads or writes the global
  RNG of torch or numpy.
* :func:`mix64` and :func:`counter_generator` give stateless, counter-based streams: processes that share
  ``(seed, step, name)`` draw identical numbers without exchanging anything (the shared randomness of the
  compressed-communication hooks, arXiv:2312.08538, and of seeded zeroth-order perturbations).
"""

from __future__ import annotations

import numbers
import zlib
from typing import Literal, Union

import numpy as np
import torch

__all__ = ["GeneratorLike", "check_generator", "counter_generator", "mix64"]

GeneratorLike = Union[None, int, torch.Generator, np.random.Generator]  # noqa: UP007 (a runtime alias)

_M64 = (1 << 64) - 1
_M63 = (1 << 63) - 1


def check_generator(
    seed_or_generator: GeneratorLike,
    *,
    device: str | torch.device | None = None,
    kind: Literal["torch", "numpy"] = "torch",
) -> torch.Generator | np.random.Generator:
    """Return a generator of ``kind`` from ``seed_or_generator`` by one rule.

    * an ``int`` seeds a NEW generator (``torch.Generator(device).manual_seed(seed)`` or
      ``numpy.random.default_rng(seed)``), so the same int always gives the same stream;
    * a generator of the requested kind is returned as is (the caller's stream advances);
    * ``None`` gives a new generator seeded non-deterministically, without touching the global RNG
      (``torch.Generator().seed()``, or ``default_rng()`` from OS entropy).

    ``device`` applies to new torch generators; a given torch generator on another device is an error.
    Raises ``ValueError`` for booleans, negative ints, other types, or a generator of the other kind.
    """
    if kind not in ("torch", "numpy"):
        raise ValueError(f"kind must be one of ('torch', 'numpy'), got {kind!r}")
    value = seed_or_generator
    name = "generator"
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and int(value) < 0):
        raise ValueError(f"{name} must be None, a non-negative int seed or a {kind} generator, got {value!r}")
    if kind == "torch":
        if value is None:
            gen = torch.Generator(device=device) if device is not None else torch.Generator()
            gen.seed()
            return gen
        if isinstance(value, numbers.Integral):
            gen = torch.Generator(device=device) if device is not None else torch.Generator()
            return gen.manual_seed(int(value))
        if isinstance(value, torch.Generator):
            if device is not None and torch.device(device).type != value.device.type:
                raise ValueError(f"{name} is on {value.device} but device={device!r} was asked for; pass a "
                                 f"generator on that device, or an int seed")
            return value
    else:
        if value is None or isinstance(value, numbers.Integral):
            return np.random.default_rng(None if value is None else int(value))
        if isinstance(value, np.random.Generator):
            return value
    raise ValueError(f"{name} must be None, a non-negative int seed or a {kind} generator, got "
                     f"{type(value).__name__}: {value!r}")


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def mix64(*values: int) -> int:
    """Combine integers into one 64-bit value with SplitMix64 (order-sensitive, stateless)."""
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _M64))
    return h


def counter_generator(seed: int, step: int, name: str, process_rank: int | None = None) -> torch.Generator:
    """A CPU generator seeded with ``mix64(seed, step, crc32(name)[, process_rank + 1])``.

    Processes that share ``(seed, step, name)`` get the same stream (shared randomness); ``process_rank`` is mixed
    in for per-process randomness (e.g. QSGD's stochastic rounding). Drawing on CPU makes CPU and CUDA runs agree.
    """
    parts = [seed, step, zlib.crc32(name.encode())]
    if process_rank is not None:
        parts.append(process_rank + 1)
    return torch.Generator().manual_seed(mix64(*parts) & _M63)
