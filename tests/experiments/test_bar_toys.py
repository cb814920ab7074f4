"""The vectorised float64 toys of the ``bar.*`` claims equal optimlab.sam.SAM + SGD and optimlab.lora.bar.BAR + SGD
on one row for 200 steps (same init, same noise draws), and the OP Hessian's closed form equals autograd's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optimlab.experiments._bar_toys import A_NOP, D_NOP, ETA, X0, Y0, op_hessian, run_nop, run_op
from optimlab.lora.bar import BAR
from optimlab.metrics.hessian import exact_hessian
from optimlab.sam import SAM

T, SEED, ALPHA = 200, 3, 0.5


def _params():
    return (torch.tensor(X0, dtype=torch.float64, requires_grad=True),
            torch.tensor(Y0, dtype=torch.float64, requires_grad=True))


def _reference(method: str, loss_at) -> tuple[np.ndarray, np.ndarray]:
    x, y = _params()
    base = torch.optim.SGD([x, y], lr=ETA)
    opt = (SAM(base=base, rho=0.1 if method != "sam_op" else 0.2) if method.startswith("sam") else
           BAR(base, [(x, y)], variant=method, mu0=1.0, schedule="constant") if method in ("nbar", "obar") else base)
    for t in range(T):
        def closure(t=t):
            loss = loss_at(t, x, y)
            loss.backward()
            return loss

        opt.zero_grad()
        if method.startswith("sam"):
            opt.step(closure)
        else:
            closure()
            opt.step()
    return x.detach().numpy(), y.detach().numpy()


@pytest.mark.parametrize("method", ["sgd", "sam", "nbar", "obar"])
def test_nop_toy_row_equals_the_library_optimizers(method):
    U = np.random.default_rng([SEED, 0]).standard_normal((T, 3, 3))
    A = torch.from_numpy(A_NOP)
    N = torch.from_numpy(D_NOP[:, None] * U)

    def loss_at(t, x, y):
        return (torch.outer(x, y) - (A + ALPHA * N[t])).square().sum()

    run = run_nop(("sgd", "sam", "nbar", "obar"), (0.1, ALPHA), [0, SEED], T=T, rho=0.1, mu0=1.0)
    x_ref, y_ref = _reference(method, loss_at)
    np.testing.assert_allclose(run.x[method][1, 1, 0], x_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.y[method][1, 1, 0], y_ref, rtol=0, atol=1e-12)
    assert not np.allclose(run.x[method][1, 1, 0], X0)  # it moved


def test_op_toy_row_equals_sam():
    noise = torch.from_numpy(np.random.default_rng([SEED, 0]).standard_normal((T, 1)))

    def loss_at(t, x, y):
        return (x @ y - (0.5 + ALPHA * noise[t, 0])) ** 2

    run = run_op(("sgd", "sam"), (ALPHA,), [SEED], T=T, rho=0.2)
    x_ref, y_ref = _reference("sam_op", loss_at)
    np.testing.assert_allclose(run.x["sam"][0, 0], x_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.y["sam"][0, 0], y_ref, rtol=0, atol=1e-12)


def test_msam_differs_from_sam_and_batch_one_msam_is_sam():
    a = run_op(("sam", "msam"), (ALPHA,), [SEED], T=50, rho=0.2, batch=1)
    np.testing.assert_allclose(a.x["sam"], a.x["msam"], rtol=0, atol=1e-14)
    b = run_op(("sam", "msam"), (ALPHA,), [SEED], T=50, rho=0.2, batch=4)
    assert not np.allclose(b.x["sam"], b.x["msam"], rtol=0, atol=1e-10)


def test_op_hessian_closed_form():
    g = np.random.default_rng(0)
    xv, yv = g.standard_normal(3), g.standard_normal(3)
    x, y = torch.tensor(xv, requires_grad=True), torch.tensor(yv, requires_grad=True)
    H = exact_hessian(lambda: (x @ y - 0.5) ** 2, [x, y]).numpy()
    np.testing.assert_allclose(op_hessian(xv, yv), H, rtol=0, atol=1e-12)


def test_blocks_keep_block_one_identical_for_bar():
    one = run_nop(("nbar",), (ALPHA,), [SEED], T=300, blocks=1)
    many = run_nop(("nbar",), (ALPHA,), [SEED], T=300, blocks=3)
    np.testing.assert_allclose(one.x["nbar"][..., 0, :], many.x["nbar"][..., 0, :], rtol=0, atol=1e-12)
