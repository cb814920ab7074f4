"""``optimlab bench meta``: targets and verdict paths on known numbers (no timing), and the torchopt MAML arm as a
meta-gradient oracle."""

import math

import pytest
import torch
from torch.nn import functional as F

from optimlab.bench import meta as bench
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.meta import MAML, SinusoidTasks


def test_targets_and_verdict_paths():
    assert bench.VMAP_CRITERION.target == 0.5
    assert bench.VMAP_CRITERION.verdict(0.1) == HOLDS and bench.VMAP_CRITERION.verdict(0.6) == DOES_NOT_HOLD
    assert bench.VMAP_CRITERION.verdict(math.nan) == INCONCLUSIVE
    assert bench.OVERHEAD_CRITERION.verdict(mirror=2.5, metasgd=1.1) == HOLDS
    assert bench.OVERHEAD_CRITERION.verdict(mirror=3.1, metasgd=1.1) == DOES_NOT_HOLD
    assert bench.OVERHEAD_CRITERION.verdict(mirror=2.5, metasgd=1.3) == DOES_NOT_HOLD
    assert bench.PEER_CRITERION.verdict(time=0.2, agreement=3e-7) == HOLDS
    assert bench.PEER_CRITERION.verdict(time=0.2, agreement=1e-3) == DOES_NOT_HOLD
    assert bench.PEER_CRITERION.verdict(time=0.5, agreement=3e-7) == DOES_NOT_HOLD
    assert "3" in bench.OVERHEAD_CRITERION.describe() and "0.3" in bench.PEER_CRITERION.describe()


def test_torchopt_maml_meta_gradients_match_ours():
    pytest.importorskip("torchopt", reason="torchopt (optional peer) not installed")
    torch.set_num_threads(1)
    tasks = SinusoidTasks(seed=0)
    batch = tasks.sample(4)
    ours = MAML(tasks.make_model(), F.mse_loss, inner_steps=3, inner_lr=0.01)
    ours.meta_loss(batch).backward()
    peer = tasks.make_model()
    bench.torchopt_maml_backward(peer, F.mse_loss, batch, inner_steps=3, inner_lr=0.01)
    for a, b in zip(ours.model.parameters(), peer.parameters()):
        assert float((a.grad - b.grad).norm() / b.grad.norm()) <= 1e-5
    assert all(p.grad_fn is None and p.is_leaf for p in peer.parameters())  # recover_state_dict restored leaves


def test_order_criterion_and_extrapolation():
    assert bench.linear_extrapolation((1, 5, 10), (10.0, 50.0, 0.0)) == 100.0
    assert bench.ORDER_CRITERION.verdict(1.05) == HOLDS and bench.ORDER_CRITERION.verdict(1.3) == DOES_NOT_HOLD
