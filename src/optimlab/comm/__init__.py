"""Compressed gradient communication with error feedback, and ConEF (arXiv:2312.08538), as DDP comm hooks.

Compressors (:mod:`.compressors`, :mod:`.sketch`, :mod:`.powersgd`) define the wire format; error memories
(:mod:`.memory`, :mod:`.conef`) keep what compression dropped (full EF, or ConEF's count-sketch memory);
:class:`BucketStep` (:mod:`.pipeline`) runs compensate, compress, pack, decode and the memory update on one bucket;
:class:`CommState` + :func:`comm_hook` (:mod:`.hooks`) run it inside ``DistributedDataParallel``;
:class:`SimulatedGroup` and :func:`aggregate` (:mod:`.simulate`) run it without DDP; :mod:`.reports` accounts for
memory and bytes. Local multi-process runs use :func:`optimlab.distributed.run_local`. Only torch is needed.
"""

from optimlab.comm.compressors import (
    QSGD,
    Compressor,
    Identity,
    Payload,
    RandomBlock,
    RandomK,
    ScaledSign,
    TopK,
)
from optimlab.comm.conef import ConEFMemory
from optimlab.comm.hooks import CommState, comm_hook, register_hook
from optimlab.comm.memory import CompressedMemory, EFMemory, ErrorMemory, NoMemory
from optimlab.comm.pipeline import BucketStep
from optimlab.comm.powersgd import PowerSGD
from optimlab.comm.reports import CommReport, MemoryReport, powersgd_state_bytes, predict_memory
from optimlab.comm.simulate import SimulatedGroup, aggregate
from optimlab.comm.sketch import CountSketch, sketch, sketch_hash, unsketch

__all__ = [
    "QSGD",
    "BucketStep",
    "CommReport",
    "CommState",
    "CompressedMemory",
    "Compressor",
    "ConEFMemory",
    "CountSketch",
    "EFMemory",
    "ErrorMemory",
    "Identity",
    "MemoryReport",
    "NoMemory",
    "Payload",
    "PowerSGD",
    "RandomBlock",
    "RandomK",
    "ScaledSign",
    "SimulatedGroup",
    "TopK",
    "aggregate",
    "comm_hook",
    "powersgd_state_bytes",
    "predict_memory",
    "register_hook",
    "sketch",
    "sketch_hash",
    "unsketch",
]
