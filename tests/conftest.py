"""Helpers shared by the test suite: a small seeded MLP, a seeded batch, a loss closure, and run/compare helpers.

Import them as ``from conftest import mlp, batch, closure_for`` (pytest puts this folder on ``sys.path``).
Family test files keep only their family's maths.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F

IN_FEATURES, HIDDEN, CLASSES = 6, 16, 3


def mlp(seed: int = 0, *, bn: bool = False, dropout: float = 0.0, dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu", hidden: int = HIDDEN) -> nn.Sequential:
    """6-16-3 ReLU MLP (optional BatchNorm and Dropout), initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Linear(IN_FEATURES, hidden)]
        if bn:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, CLASSES)]
        return nn.Sequential(*layers).to(device=device, dtype=dtype)


def batch(seed: int = 1, n: int = 32, *, dtype: torch.dtype = torch.float32,
          device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): ``n`` standard-normal inputs of width 6 and labels in {0, 1, 2}, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, IN_FEATURES, generator=g, dtype=dtype), torch.randint(0, CLASSES, (n,), generator=g)
    return x.to(device), y.to(device)


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """A closure running forward and backward of the cross-entropy on (x, y) and returning the loss."""

    def closure():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def run_steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed0: int = 10) -> None:
    """``n`` closure steps on the batches ``batch(seed0 + t)``."""
    for t in range(n):
        x, y = batch(seed0 + t)
        opt.step(closure_for(model, x, y))


def params_of(model: nn.Module) -> list[torch.Tensor]:
    """Detached copies of the model's parameters."""
    return [p.detach().clone() for p in model.parameters()]


def same_params(m1: nn.Module, m2: nn.Module) -> bool:
    """True when the two models' parameters are bit-identical."""
    return all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (tiny tensors: thread start-up dominates, and the machine is shared);
    use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ every claim at smoke scale, once
@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """Every registered claim and benchmark run ONCE at smoke scale, as ``optimlab reproduce``/``bench`` would
    (claims of a group share their runs). Returns ``{"claims": (summary, out_dir), "benches": (summary, out_dir)}``;
    tests that check one claim's result read it from here instead of running the claim again."""
    from optimlab.evidence import all_benches, all_claims, run_claims

    # OPTIMLAB_SMOKE_ONLY="zo.,conic." restricts the runs to ids with those prefixes (for working on one family;
    # the tests of the other ids then fail, so the full suite never sets it).
    only = tuple(p for p in os.environ.get("OPTIMLAB_SMOKE_ONLY", "").split(",") if p)
    out = {}
    for kind, table in (("claims", all_claims()), ("benches", all_benches())):
        out_dir = tmp_path_factory.mktemp(f"smoke_{kind}")
        chosen = [c for c in table.values() if not only or c.id.startswith(only)]
        summary = run_claims(chosen, scale="smoke", seeds=None, device="cpu", out_dir=out_dir)
        out[kind] = (summary, out_dir)
    return out


def smoke_result(smoke_runs, claim_id: str):
    """(ClaimResult, out_dir) of ``claim_id`` from the :func:`smoke_runs` fixture."""
    kind = "claims" if any(r.claim_id == claim_id for r in smoke_runs["claims"][0].results) else "benches"
    summary, out_dir = smoke_runs[kind]
    (result,) = [r for r in summary.results if r.claim_id == claim_id]
    return result, out_dir
