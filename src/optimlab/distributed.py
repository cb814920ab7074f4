"""Local multi-process runs that never hang: :func:`run_local`, :func:`free_port`, :func:`init_local_group`.

``run_local`` spawns ``world_size`` processes; each joins a ``torch.distributed`` group on 127.0.0.1 through
:func:`init_local_group` (always with a timeout), sets its thread count, runs ``fn(process_rank, world_size, *args)``
and destroys the group.
Results come back in rank order (pickled by value). A worker exception becomes a ``RuntimeError`` naming the rank
and carrying its traceback; on timeout only this call's own children are ended (by process handle, SIGTERM then
SIGKILL) and ``TimeoutError`` is raised. A port lost to a race is retried with a fresh one (3 times).

``fn`` must be importable by the children (a module-level function), and scripts need the
``if __name__ == "__main__":`` guard that ``spawn`` requires.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from optimlab._validation import Interval, check

__all__ = ["free_port", "init_local_group", "run_local"]

_PORT_LOCK = threading.Lock()
_RECENT_PORTS: list[int] = []
_BACKENDS = ("gloo", "nccl")
_ADDR_ERRORS = ("address already in use", "eaddrinuse", "errno 98", "bind")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to port 0), never one handed out recently by this process."""
    with _PORT_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _RECENT_PORTS:
                _RECENT_PORTS.append(port)
                del _RECENT_PORTS[:-64]
                return port
    raise RuntimeError("could not find a free port on 127.0.0.1")


def init_local_group(process_rank: int, world_size: int, port: int, *, backend: str = "gloo",
                     timeout: float | datetime.timedelta = 60.0) -> None:
    """Join a ``torch.distributed`` group rendezvousing on ``tcp://127.0.0.1:<port>``, with a timeout.

    ``timeout`` (seconds or a timedelta) bounds every collective and the rendezvous itself; torch's default
    would retry for 30 minutes when the loopback is down. With ``backend="nccl"`` the process uses GPU
    ``process_rank``. Raises ``ValueError`` for a bad backend, rank, world size or timeout.
    """
    import torch
    import torch.distributed as dist

    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    _check_int(world_size, "world_size", 1)
    _check_int(process_rank, "process_rank", 0)
    if process_rank >= world_size:
        raise ValueError(f"process_rank must be in [0, world_size={world_size}), got {process_rank}")
    seconds = timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else timeout
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValueError(f"timeout must be a number of seconds > 0 or a timedelta, got {timeout!r}")
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    if backend == "nccl":
        torch.cuda.set_device(process_rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=process_rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=float(seconds)))


def _check_int(value: Any, name: str, low: int) -> int:
    return check(Interval(low, None, integer=True), value, name)


def _worker(process_rank: int, world_size: int, backend: str, port: int, threads: int, pg_timeout_s: float,
            fn: Callable, args: Sequence[Any], out: Any) -> None:
    import torch
    import torch.distributed as dist

    try:
        torch.set_num_threads(threads)
        init_local_group(process_rank, world_size, port, backend=backend, timeout=pg_timeout_s)
        out.put((process_rank, "ok", pickle.dumps(fn(process_rank, world_size, *args))))
    except BaseException:
        out.put((process_rank, "error", traceback.format_exc()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


_PEER_ERRORS = ("connection closed by peer", "connection reset by peer", "remote worker", "broken pipe")


def _root_cause(first: tuple[int, str], out: Any) -> tuple[int, str]:
    """Among the errors reported within a second of the first, prefer one that is not a peer's disconnection."""
    errors = [first]
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            rank, status, payload = out.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if status == "error":
            errors.append((rank, payload))
    for rank, tb in errors:
        if not any(p in tb.lower() for p in _PEER_ERRORS):
            return rank, tb
    return errors[0]


def _end(procs: list[mp.process.BaseProcess]) -> None:
    """End only these processes (our own children), politely first."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5.0)


def _run_once(fn, world_size, backend, args, threads, timeout_s, port) -> tuple[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    pg_timeout = max(10.0, min(60.0, float(timeout_s)))
    procs = [ctx.Process(target=_worker, args=(r, world_size, backend, port, threads, pg_timeout, fn, tuple(args), out),
                         daemon=True, name=f"optimlab-run_local-{r}") for r in range(world_size)]
    deadline = time.monotonic() + timeout_s
    results: dict[int, Any] = {}
    try:
        for p in procs:
            p.start()
        while len(results) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _end(procs)
                raise TimeoutError(f"run_local: {world_size} workers did not finish within {timeout_s} s "
                                   f"(finished: ranks {sorted(results)}); its own worker processes were ended")
            try:
                rank, status, payload = out.get(timeout=min(0.5, remaining))
            except queue.Empty:
                dead = [(r, p.exitcode) for r, p in enumerate(procs) if r not in results and not p.is_alive()
                        and p.exitcode is not None]
                if dead:
                    time.sleep(0.2)  # a message may still be in flight
                    try:
                        rank, status, payload = out.get(timeout=1.0)
                    except queue.Empty:
                        _end(procs)
                        r, code = dead[0]
                        return "error", (r, f"worker exited with code {code} without reporting a result")
                else:
                    continue
            if status == "error":
                cause = _root_cause((rank, payload), out)
                _end(procs)
                return "error", cause
            results[rank] = pickle.loads(payload)
        for p in procs:
            p.join(max(1.0, deadline - time.monotonic()))
        return "ok", [results[r] for r in range(world_size)]
    finally:
        _end(procs)
        out.close()
        out.join_thread()


def run_local(fn: Callable[..., Any], world_size: int = 2, *, backend: str = "gloo", args: Sequence[Any] = (),
              threads_per_process: int = 1, timeout: float = 300, master_port: int | None = None) -> list[Any]:
    """Run ``fn(process_rank, world_size, *args)`` on ``world_size`` spawned processes; results in rank order.

    ``timeout`` (seconds) bounds the whole call; each process group also gets a timeout of
    ``clamp(timeout, 10, 60)`` seconds, so no collective can hang. Raises ``ValueError`` for ``world_size < 1``, a
    bad backend, ``threads_per_process < 1``, ``timeout <= 0``, or ``nccl`` with fewer GPUs than processes;
    ``RuntimeError`` (naming the rank, with its traceback) if a worker fails; ``TimeoutError`` if the run exceeds
    ``timeout`` (only this call's own worker processes are ended).
    """
    world_size = _check_int(world_size, "world_size", 1)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    _check_int(threads_per_process, "threads_per_process", 1)
    timeout_s = timeout
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if backend == "nccl":
        import torch

        n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if world_size > n_gpu:
            raise ValueError(f"backend='nccl' needs world_size <= cuda.device_count(); got world_size={world_size} with "
                             f"{n_gpu} GPU(s)")
    if master_port is not None and not (isinstance(master_port, int) and 0 < master_port < 65536):
        raise ValueError(f"master_port must be an integer in (0, 65536), got {master_port!r}")
    attempts = 1 if master_port is not None else 3
    start = time.monotonic()
    last = None
    for attempt in range(attempts):
        port = master_port if master_port is not None else free_port()
        remaining = timeout_s - (time.monotonic() - start)
        if remaining <= 0:
            raise TimeoutError(f"run_local: no time left after {attempt} port attempt(s) (timeout={timeout_s})")
        status, value = _run_once(fn, world_size, backend, args, threads_per_process, remaining, port)
        if status == "ok":
            return value
        rank, tb = value
        last = RuntimeError(f"run_local: worker process_rank {rank} of {world_size} failed:\n{tb}")
        if not any(e in tb.lower() for e in _ADDR_ERRORS) or "init_process_group" not in tb:
            raise last
    assert last is not None
    raise last
