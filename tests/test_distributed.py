"""The local multi-process launcher ``optimlab.distributed``.

Results come back in process order; a worker error names its process rank; a timeout ends only the launcher's own
children; two concurrent calls get different ports; bad input raises ``ValueError`` naming the argument. Each spawn
costs a few seconds, so the workers are tiny and the checks share calls where they can.
"""

import datetime
import os
import threading
import time

import pytest
import torch
import torch.distributed as dist

from optimlab.distributed import free_port, init_local_group, run_local


# Module-level workers, so that the spawned children can import them.
def _fail_on_rank_1(process_rank, world_size):
    if process_rank == 1:
        raise KeyError("boom from rank one")
    dist.barrier()
    return process_rank


def _sleep_forever(process_rank, world_size, pid_file):
    with open(f"{pid_file}.{process_rank}", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)


def _port_and_threads(process_rank, world_size):
    return int(os.environ["MASTER_PORT"]), torch.get_num_threads()


def _rank_sum(process_rank, world_size, offset):
    t = torch.tensor([float(process_rank)])
    dist.all_reduce(t)
    return process_rank + offset, world_size, float(t)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_results_in_process_order_with_args():
    res = run_local(_rank_sum, world_size=2, args=(10,), timeout=60)
    assert res == [(10, 2, 1.0), (11, 2, 1.0)]


def test_worker_error_names_its_process_rank():
    with pytest.raises(RuntimeError, match=r"process_rank 1 of 2(.|\n)*boom from rank one"):
        run_local(_fail_on_rank_1, world_size=2, timeout=60)


def test_timeout_ends_only_its_own_children(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        run_local(_sleep_forever, world_size=1, args=(str(tmp_path / "pid"),), timeout=9)
    assert time.monotonic() - start < 40
    pid = int((tmp_path / "pid.0").read_text())
    assert not _alive(pid)
    assert _alive(os.getpid())


def test_concurrent_calls_get_different_ports_and_threads_per_process():
    out = []
    threads = [threading.Thread(target=lambda n=n: out.append(
        run_local(_port_and_threads, world_size=1, threads_per_process=n, timeout=60)[0])) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2 and out[0][0] != out[1][0]
    assert sorted(n for _, n in out) == [1, 2]


def test_free_port_is_fresh():
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5 and all(0 < p < 65536 for p in ports)


@pytest.mark.parametrize("kwargs,word", [
    ({"world_size": 0}, "world_size"), ({"world_size": True}, "world_size"), ({"world_size": 1.5}, "world_size"),
    ({"backend": "mpi"}, "backend"), ({"threads_per_process": 0}, "threads_per_process"),
    ({"timeout": 0}, "timeout"), ({"timeout": True}, "timeout"), ({"master_port": 70000}, "master_port"),
])
def test_run_local_bad_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        run_local(_port_and_threads, **kwargs)


def test_run_local_nccl_needs_enough_gpus():
    if torch.cuda.is_available() and torch.cuda.device_count() >= 64:
        pytest.skip("this machine has 64 GPUs")
    with pytest.raises(ValueError, match="nccl"):
        run_local(_port_and_threads, world_size=64, backend="nccl")


@pytest.mark.parametrize("args,kwargs,word", [
    ((0, 2, 29500), {"backend": "mpi"}, "backend"),
    ((0, 0, 29500), {}, "world_size"),
    ((0, True, 29500), {}, "world_size"),
    ((-1, 2, 29500), {}, "process_rank"),
    ((2, 2, 29500), {}, "process_rank"),
    ((0, 2, 29500), {"timeout": 0}, "timeout"),
    ((0, 2, 29500), {"timeout": "60"}, "timeout"),
    ((0, 2, 29500), {"timeout": datetime.timedelta(seconds=-1)}, "timeout"),
])
def test_init_local_group_bad_arguments(args, kwargs, word):
    """Rejected before any rendezvous: nothing is joined and nothing waits."""
    with pytest.raises(ValueError, match=word):
        init_local_group(*args, **kwargs)
    assert not dist.is_initialized()
