"""The compressed-communication pipeline without DDP: :class:`SimulatedGroup` (N workers in one process, the test
reference and fast sweeps) and :func:`aggregate` (one step over a process group, for custom training loops).

Both run :class:`~optimlab.comm.pipeline.BucketStep` exactly as the DDP hook does (ConEF,
arXiv:2312.08538), so results agree bit for bit with :func:`~optimlab.comm.hooks.comm_hook` on the same gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from optimlab._validation import Instance, Interval, validate
from optimlab.comm.hooks import CommState, _launch
from optimlab.comm.pipeline import BucketStep

__all__ = ["SimulatedGroup", "aggregate", "flat_views"]


def flat_views(grads: Mapping[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
    """One flat buffer holding copies of ``grads`` (in dict order) and views of it shaped like each gradient, as
    a DDP bucket holds them (``buffer()`` and ``gradients()``)."""
    names = list(grads)
    buffer = torch.cat([grads[k].detach().reshape(-1) for k in names]) if names else torch.zeros(0)
    views, o = [], 0
    for k in names:
        n = grads[k].numel()
        views.append(buffer[o:o + n].view(grads[k].shape))
        o += n
    return buffer, views


class SimulatedGroup:
    """N workers in one process running the hook's pipeline, for tests and fast sweeps.

    ``make_state()`` must build a fresh :class:`CommState` (own compressor and memory) per worker. ``step(grads)``
    takes one ``{name: gradient}`` per worker (same names and shapes), treats them as one bucket (like DDP, a flat
    buffer of the gradients in dict order), sums the buffers in process order and returns ``{name: averaged}``
    (worker 0's; every worker's is in :attr:`outputs`). The inputs are not modified.
    """

    def __init__(self, world_size: int, make_state: Callable[[], CommState]) -> None:
        world_size = validate({"world_size": Interval(1, None, integer=True), "make_state": Instance(callable)},
                              {"world_size": world_size, "make_state": make_state},
                              owner="SimulatedGroup")["world_size"]
        self.states = [make_state() for _ in range(world_size)]
        if len({id(s.compressor) for s in self.states}) < world_size or \
                len({id(s.memory) for s in self.states}) < world_size:
            raise ValueError("SimulatedGroup: make_state must build a new compressor and memory for every worker")
        self.world_size = world_size
        self.outputs: list[dict[str, Tensor]] = []

    def step(self, grads: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        n = self.world_size
        if len(grads) != n:
            raise ValueError(f"expected {n} gradient dicts (one per worker), got {len(grads)}")
        names = list(grads[0])
        for g in grads[1:]:
            if list(g) != names or any(g[k].shape != grads[0][k].shape for k in names):
                raise ValueError("every worker must give the same names and shapes in the same order")
        flats = [flat_views(g) for g in grads]
        steps = [BucketStep(st, names, views, buf, st.iter, r, n)
                 for r, (st, (buf, views)) in enumerate(zip(self.states, flats))]
        sends = [s.start() for s in steps]
        while sends[0] is not None:
            if isinstance(sends[0], Tensor) and self.states[0].communicator == "allgather" and \
                    not sends[0].is_floating_point():
                gathered = [x.clone() for x in sends]
                sends = [s.receive([g.clone() for g in gathered]) for s in steps]
            else:
                total = sends[0].clone()
                for x in sends[1:]:
                    total.add_(x)
                for x in sends:
                    x.copy_(total)
                sends = [s.receive(x) for s, x in zip(steps, sends)]
        for st in self.states:
            st.end_step()
        self.outputs = [{k: v.clone() for k, v in zip(names, views)} for _, views in flats]
        return self.outputs[0]


def aggregate(named_grads: Mapping[str, Tensor], state: CommState) -> Mapping[str, Tensor]:
    """Run one step of the pipeline over ``state.process_group`` on ``named_grads`` (modified in place, returned).

    For training loops without DDP; every process must call it with the same names and shapes. Synchronous.
    """
    group = state._group()
    world, process_rank = dist.get_world_size(group), dist.get_rank(group)
    names = list(named_grads)
    step = BucketStep(state, names, [named_grads[k] for k in names], None, state.iter, process_rank, world)
    nxt = step.start()
    while nxt is not None:
        w, r = _launch(state, nxt, world)
        w.wait()
        nxt = step.receive(r)
    state.end_step()
    return named_grads
