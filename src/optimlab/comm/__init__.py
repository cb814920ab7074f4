"""Compressed gradient communication with error feedback, and ConEF (arXiv:2312.08538), as DDP comm hooks.

Compressors (:mod:`.compressors`) define the wire format; error memories (:mod:`.memory`) keep what compression
dropped (full EF, or ConEF's count-sketch memory); :class:`CommState` + :func:`comm_hook` (:mod:`.hooks`) run them
inside ``DistributedDataParallel``; :class:`SimulatedGroup` runs the same pipeline in one process; :func:`run_local`
(:mod:`.launch`) spawns local gloo/NCCL workers with a timeout. Only torch is needed.
"""

from optimlab.comm.compressors import (
    QSGD,
    Compressor,
    CountSketch,
    Identity,
    Payload,
    PowerSGD,
    RandomBlock,
    RandomK,
    ScaledSign,
    TopK,
    counter_generator,
    sketch_hash,
)
from optimlab.comm.hooks import (
    CommReport,
    CommState,
    MemoryReport,
    SimulatedGroup,
    aggregate,
    comm_hook,
    predict_memory,
    register_hook,
)
from optimlab.comm.launch import free_port, run_local
from optimlab.comm.memory import CompressedMemory, ConEFMemory, EFMemory, ErrorMemory, NoMemory

__all__ = [
    "QSGD",
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
    "counter_generator",
    "free_port",
    "predict_memory",
    "register_hook",
    "run_local",
    "sketch_hash",
]
