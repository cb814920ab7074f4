"""Compressed gradient communication as a DDP communication hook: :class:`CommState`, :func:`comm_hook`,
:func:`register_hook`.

The hook runs :class:`~optimlab.comm.pipeline.BucketStep` (compensate, compress, poison, pack, decode, update memory;
ConEF, arXiv:2312.08538) on each bucket, issuing every collective from the autograd thread. Register it
with :func:`register_hook`, which also maps parameters to names so that memory keys survive DDP's bucket rebuild.
:class:`~optimlab.comm.simulate.SimulatedGroup` and :func:`~optimlab.comm.simulate.aggregate` run the same pipeline
without DDP.

Non-finite inputs: a worker whose compensated tensor is not finite writes NaN into one float field of its payload
(``torch.where``, no host sync), so every process receives a non-finite result (AMP's scaler then skips the step
everywhere); the memory updates of that bucket are skipped (``nonfinite="skip"``) or ``FloatingPointError`` is
raised on every process after the collective (``"raise"``, one host sync per tensor).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optimlab._validation import Constraint, Instance, Interval, Options, validate
from optimlab.comm.compressors import Compressor
from optimlab.comm.memory import ErrorMemory, NoMemory
from optimlab.comm.pipeline import BucketStep
from optimlab.comm.reports import CommReport, MemoryReport, compresses

__all__ = ["CommState", "comm_hook", "register_hook"]


class CommState:
    """Configuration and state of compressed communication; the ``state`` argument of :func:`comm_hook`.

    Args:
        compressor: the wire compressor Q (:mod:`optimlab.comm.compressors`).
        memory: the error memory (default :class:`NoMemory`).
        process_group: default the world.
        start_iter: steps of plain all-reduce before compressing (≥ 0; ≥ 2 for a bare ``register_comm_hook``,
            because DDP rebuilds its buckets after iteration 0). Reference examples use 10.
        seed: seed of the counter-based shared randomness.
        residual: ``"local"`` (v = p − decode(c_i)) or ``"global"`` (v = p − ḡ); ``None`` picks the compressor's
            ``default_residual``: ``"global"`` for PowerSGD (as PyTorch's hook), ``"local"`` otherwise.
        communicator: ``"auto"`` (all-reduce if ``compressor.all_reducible`` else all-gather, with a one-time
            warning that the payload grows with N), ``"allreduce"`` or ``"allgather"``.
        compress_vectors: also compress tensors with ndim ≤ 1 (default: they bypass compression and memory).
        min_compression_rate: compress a tensor only if payload bytes × rate < dense fp32 bytes (PowerSGD uses its
            own ``min_compression_rate`` on element counts, as PyTorch).
        nonfinite: ``"skip"`` (skip the memory update; the non-finite result still reaches every process) or
            ``"raise"`` (see the module docstring).

    ``stats`` counts steps and the last step's collectives; ``state_dict()``/``load_state_dict()`` resume exactly
    (memory keyed by parameter name); pickling drops the process group and the parameter→name map.
    """

    _constraints: ClassVar[dict[str, Constraint]] = {
        "compressor": Instance(Compressor), "memory": Instance(ErrorMemory),
        "start_iter": Interval(0, None, integer=True), "seed": Instance(int),
        "residual": Options("local", "global", None), "communicator": Options("auto", "allreduce", "allgather"),
        "compress_vectors": Options(True, False), "min_compression_rate": Interval(0, math.inf, closed="left"),
        "nonfinite": Options("skip", "raise"),
    }

    def __init__(self, compressor: Compressor, memory: ErrorMemory | None = None, *, process_group=None,
                 start_iter: int = 10, seed: int = 0, residual: str | None = None, communicator: str = "auto",
                 compress_vectors: bool = False, min_compression_rate: float = 2.0, nonfinite: str = "skip") -> None:
        v = validate(self._constraints, {
            "compressor": compressor, "memory": NoMemory() if memory is None else memory, "start_iter": start_iter,
            "seed": seed, "residual": residual, "communicator": communicator, "compress_vectors": compress_vectors,
            "min_compression_rate": min_compression_rate, "nonfinite": nonfinite}, owner="CommState")
        memory, start_iter, min_compression_rate = v["memory"], v["start_iter"], v["min_compression_rate"]
        residual = compressor.default_residual if residual is None else residual
        name = type(compressor).__name__
        if communicator == "allreduce" and not compressor.all_reducible:
            raise ValueError(f"CommState: communicator='allreduce' needs an all-reducible compressor; {name} is not "
                             "(per-process indices or scales would be summed): use 'allgather' or 'auto'")
        if communicator == "allgather" and compressor.rounds > 1:
            raise ValueError(f"CommState: {name} needs {compressor.rounds} all-reduce rounds; "
                             "communicator='allgather' is not supported for it")
        if communicator == "auto":
            communicator = "allreduce" if compressor.all_reducible else "allgather"
            if communicator == "allgather":
                warnings.warn(f"{name} is not all-reducible: using all-gather, whose payload per worker grows with "
                              "the number of workers N", RuntimeWarning, stacklevel=2)
        self.compressor, self.memory, self.process_group = compressor, memory, process_group
        self.start_iter, self.seed, self.residual, self.communicator = start_iter, seed, residual, communicator
        self.compress_vectors, self.min_compression_rate = bool(compress_vectors), float(min_compression_rate)
        self.nonfinite = nonfinite
        self.iter = 0
        self.stats: dict[str, Any] = {"steps": 0, "compressed_steps": 0, "last_step": {}}
        self._cur: dict[str, Any] = self._fresh()
        self._names: dict[Tensor, str] | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._compressed: set[str] = set()
        self._all_dense: dict[tuple[int, int], bool] = {}  # bucket layout -> nothing to compress in it
        self._decisions: dict[tuple[int, ...], bool] = {}  # shape -> compressed
        self._scratch_peak = 0

    # --- configuration -----------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"compressor": self.compressor.config(), "memory": self.memory.config(),
                "start_iter": self.start_iter, "seed": self.seed, "residual": self.residual,
                "communicator": self.communicator, "compress_vectors": self.compress_vectors,
                "min_compression_rate": self.min_compression_rate, "nonfinite": self.nonfinite}

    def compresses(self, shape: Sequence[int]) -> bool:
        """Whether a gradient of ``shape`` is compressed (else all-reduced densely, without memory)."""
        shape = tuple(shape)
        hit = self._decisions.get(shape)
        if hit is None:
            hit = self._decisions[shape] = compresses(self.compressor, shape, compress_vectors=self.compress_vectors,
                                                      rate=self.min_compression_rate)
        return hit

    def _group(self):
        return self.process_group if self.process_group is not None else dist.group.WORLD

    # --- step bookkeeping --------------------------------------------------------------------------------------
    @staticmethod
    def _fresh() -> dict[str, Any]:
        return {"payload_numel": 0, "payload_bytes": 0, "collectives": 0, "dense_numel": 0, "bucket_numels": [],
                "compressed": False, "world_size": 0}

    def end_step(self) -> None:
        """Close the current step (counters, ``iter += 1``); drivers call it after a step's last bucket."""
        self.stats["steps"] += 1
        if self._cur["compressed"]:
            self.stats["compressed_steps"] += 1
        self.stats["last_step"] = self._cur
        self._cur = self._fresh()
        self.iter += 1

    # --- reports -----------------------------------------------------------------------------------------------
    def comm_report(self) -> CommReport:
        """Collectives of the last complete step (see :class:`CommReport`)."""
        last = self.stats["last_step"]
        if not last:
            raise RuntimeError("no step has completed yet")
        comm = self.communicator if last["compressed"] else "allreduce"
        return CommReport(last["payload_numel"], last["payload_bytes"], last["collectives"], last["world_size"],
                          comm, last["dense_numel"])

    def memory_report(self) -> MemoryReport:
        """Persistent memory measured on the tensors held now (see :class:`MemoryReport`)."""
        per = self.memory.breakdown()
        ef_ref = 4 * sum(math.prod(self._shapes[k]) for k in self._compressed)
        bucket_ref = 4 * sum(math.prod(s) for s in self._shapes.values())
        return MemoryReport(
            error_bytes=sum(v["error_bytes"] for v in per.values()),
            compressor_bytes=self.compressor.nbytes(),
            cache_bytes=sum(v["cache_bytes"] for v in per.values()),
            ef_reference_bytes=ef_ref, bucket_reference_bytes=bucket_ref,
            scratch_peak_bytes=self._scratch_peak, per_tensor=per)

    # --- checkpointing -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": self.config(), "iter": self.iter, "memory": self.memory.state_dict(),
                "compressor": self.compressor.state_dict(),
                "stats": {"steps": self.stats["steps"], "compressed_steps": self.stats["compressed_steps"]},
                "shapes": dict(self._shapes), "compressed": sorted(self._compressed)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; ``ValueError`` if the configuration differs from this state's."""
        if state.get("config") != self.config():
            raise ValueError(f"CommState configuration mismatch on load: saved {state.get('config')}, "
                             f"this state {self.config()}")
        self.iter = int(state["iter"])
        self.memory.load_state_dict(state["memory"])
        self.compressor.load_state_dict(state["compressor"])
        self.stats["steps"] = state["stats"]["steps"]
        self.stats["compressed_steps"] = state["stats"]["compressed_steps"]
        self._shapes = dict(state["shapes"])
        self._compressed = set(state["compressed"])

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["process_group"] = None
        d["_names"] = None
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


def _launch(state: CommState, send: Tensor, world: int):
    group = state._group()
    if state.communicator == "allgather" and not send.is_floating_point():
        out = [torch.empty_like(send) for _ in range(world)]
        return dist.all_gather(out, send, group=group, async_op=True), out
    return dist.all_reduce(send, group=group, async_op=True), send


def comm_hook(state: CommState, bucket: dist.GradBucket) -> torch.futures.Future[Tensor]:
    """DDP communication hook running :class:`CommState`'s pipeline on one bucket (returns ``bucket.buffer()``).

    Register with :func:`register_hook` (recommended) or ``ddp.register_comm_hook(state, comm_hook)``; the latter
    keys memory by (bucket index, position) and needs ``start_iter >= 2``.
    """
    group = state._group()
    world = dist.get_world_size(group)
    if state._names is None and state.start_iter < 2:
        raise ValueError("comm_hook registered without parameter names needs start_iter >= 2 (DDP rebuilds its "
                         f"buckets after iteration 0); got start_iter={state.start_iter}. Use "
                         "optimlab.comm.register_hook(ddp, state) instead")
    buffer = bucket.buffer()
    layout = (bucket.index(), buffer.numel())
    if state.nonfinite != "raise" and layout in state._all_dense and (
            state.iter < state.start_iter or state._all_dense[layout]):
        return _dense_fast_path(state, bucket, buffer, group, world)
    process_rank = dist.get_rank(group)
    params = bucket.parameters()
    if state._names is None:
        keys = [f"bucket{bucket.index()}.{i}" for i in range(len(params))]
    else:
        keys = [state._names[p] for p in params]
    step = BucketStep(state, keys, bucket.gradients(), buffer, state.iter, process_rank, world)
    work, result = _launch(state, step.start(), world)
    # Every collective is issued from this (the autograd) thread, in bucket order: issuing PowerSGD's second round
    # from a future callback would let it race with the next bucket's first round and mismatch across processes.
    for _ in range(step.n_rounds - 1):
        work.wait()
        work, result = _launch(state, step.receive(result), world)

    def finish(fut: torch.futures.Future) -> Tensor:
        fut.value()  # re-raises a failed collective
        if step.receive(result) is not None:
            raise RuntimeError("internal error: a bucket needed more collectives than planned")
        return bucket.buffer()

    state._all_dense[layout] = not any(state.compresses(v.shape) for v in step.views)
    if bucket.is_last():
        state.end_step()
    return work.get_future().then(finish)


def _dense_fast_path(state: CommState, bucket, buffer: Tensor, group, world: int):
    """A bucket seen before with nothing to compress (or before ``start_iter``): exactly ``allreduce_hook``."""
    n = buffer.numel()
    cur = state._cur
    cur["world_size"] = world
    cur["bucket_numels"].append(n)
    cur["dense_numel"] += n
    cur["payload_numel"] += n
    cur["payload_bytes"] += n * buffer.element_size()
    cur["collectives"] += 1
    buffer.div_(world)
    fut = dist.all_reduce(buffer, group=group, async_op=True).get_future()
    if bucket.is_last():
        state.end_step()
    return fut.then(lambda f: f.value()[0])


# DDP checks the annotations by identity; with postponed evaluation they would be strings.
comm_hook.__annotations__ = {"state": CommState, "bucket": dist.GradBucket,
                             "return": torch.futures.Future[torch.Tensor]}


def register_hook(ddp: nn.parallel.DistributedDataParallel, state: CommState) -> CommState:
    """``ddp.register_comm_hook(state, comm_hook)``, after giving ``state`` the parameter→name map of
    ``ddp.module.named_parameters()`` so that memory keys are names (stable across bucket rebuilds and checkpoints).
    """
    state._names = {p: n for n, p in ddp.module.named_parameters()}
    ddp.register_comm_hook(state, comm_hook)
    return state
