"""Reference checks of the learner family (float64): closed forms on a quadratic, equivalences between learners,
task parallelism, finite differences, first order and truncated second order."""

from __future__ import annotations

import math

import pytest
import torch
from _meta_helpers import meta_grads, quadratic, regression_batch, tiny_mlp
from torch.nn import functional as F

from optimlab.meta import MAML, DiagonalAffineMap, MetaSGD, MirrorMeta

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("first_order", [False, True])
def test_maml_closed_form_on_quadratic(K, first_order):
    A, c, loss_fn, model, batch = quadratic()
    alpha = 0.1
    theta0 = model.theta.detach().clone()
    learner = MAML(model, loss_fn, inner_steps=K, inner_lr=alpha, first_order=first_order)
    P = torch.linalg.matrix_power(torch.eye(4, dtype=torch.float64) - alpha * A, K)
    theta_k = c + P @ (theta0 - c)
    adapted = learner.adapt(batch.x_support[0], batch.y_support[0])
    assert torch.allclose(adapted["theta"], theta_k, atol=1e-10, rtol=0)
    _, g = meta_grads(learner, batch)
    expected = A @ (theta_k - c) if first_order else P.T @ A @ (theta_k - c)
    assert torch.allclose(g["model.theta"], expected, atol=1e-10, rtol=0)


def test_metasgd_closed_form_on_quadratic():
    A, c, loss_fn, model, batch = quadratic()
    theta0 = model.theta.detach().clone()
    learner = MetaSGD(model, loss_fn, inner_steps=3, inner_lr=0.05)
    with torch.no_grad():
        learner.log_lr["theta"].copy_(torch.log(torch.tensor([0.02, 0.05, 0.1, 0.15], dtype=torch.float64)))
    P = torch.diag(learner.log_lr["theta"].detach().exp())
    M = torch.linalg.matrix_power(torch.eye(4, dtype=torch.float64) - P @ A, 3)
    theta_k = c + M @ (theta0 - c)
    assert torch.allclose(learner.adapt(batch.x_support[0], batch.y_support[0])["theta"], theta_k, atol=1e-10)
    _, g = meta_grads(learner, batch)
    assert torch.allclose(g["model.theta"], M.T @ A @ (theta_k - c), atol=1e-10)


@pytest.mark.parametrize("mirror_map", ["affine", "monotone", "iaf", "icnn"])
def test_fresh_mirror_adapts_like_maml(mirror_map):
    batch = regression_batch()
    kw = {"inner_steps": 2, "inner_lr": 0.1}
    maml = MAML(tiny_mlp(), F.mse_loss, **kw)
    mirror = MirrorMeta(tiny_mlp(), F.mse_loss, mirror_map, generator=0,
                        map_kwargs={"block_size": 2} if mirror_map == "iaf" else None, **kw)
    a = maml.adapt(batch.x_support[0], batch.y_support[0])
    b = mirror.adapt(batch.x_support[0], batch.y_support[0])
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-12, rtol=0)
    la, ga = meta_grads(maml, batch)
    lb, gb = meta_grads(mirror, batch)
    assert abs(float(la - lb)) <= 1e-12
    for n, _ in maml.model.named_parameters():
        assert torch.allclose(ga[f"model.{n}"], gb[f"model.{n}"], atol=1e-12, rtol=0)


def test_diagonal_affine_map_is_metasgd():
    batch = regression_batch()
    alpha = 0.1
    msgd = MetaSGD(tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=alpha)
    mirror = MirrorMeta(tiny_mlp(), F.mse_loss, "affine", inner_steps=2, inner_lr=alpha)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in mirror.mirror_map.log_scale.items():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            msgd.log_lr[n].copy_(math.log(alpha) + p)
    a = msgd.adapt(batch.x_support[0], batch.y_support[0])
    b = mirror.adapt(batch.x_support[0], batch.y_support[0])
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-12, rtol=0)
    _, ga = meta_grads(msgd, batch)
    _, gb = meta_grads(mirror, batch)
    for n in mirror.mirror_map.log_scale:
        assert torch.allclose(ga[f"log_lr.{n}"], gb[f"mirror_map.log_scale.{n}"], atol=1e-12, rtol=0)
    assert isinstance(mirror.mirror_map, DiagonalAffineMap)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_vmap_chunked_and_loop_agree(dtype, tol):
    batch = regression_batch(dtype=dtype)
    out = {}
    for mode, chunk in (("vmap", None), ("vmap", 3), ("loop", None)):
        learner = MirrorMeta(tiny_mlp(dtype=dtype), F.mse_loss, "monotone", inner_steps=2, inner_lr=0.1,
                             task_parallel=mode, chunk_size=chunk)
        with torch.no_grad():
            for p in learner.mirror_map.v.values():
                p.fill_(0.3)
        out[(mode, chunk)] = meta_grads(learner, batch)
    ref_loss, ref = out[("vmap", None)]
    for loss, g in out.values():
        assert abs(float(loss - ref_loss)) <= tol
        for n in ref:
            assert torch.allclose(g[n], ref[n], atol=tol, rtol=tol)


def test_second_order_matches_finite_differences():
    batch = regression_batch(B=3)
    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.3)
    _, g = meta_grads(learner, batch)
    p = learner.model[0].weight
    h = 1e-6
    for idx in [(0, 0), (3, 1), (7, 0)]:
        with torch.no_grad():
            p[idx] += h
            up = float(learner.meta_loss(batch))
            p[idx] -= 2 * h
            down = float(learner.meta_loss(batch))
            p[idx] += h
        fd = (up - down) / (2 * h)
        assert abs(fd - float(g["model.0.weight"][idx])) <= 1e-6 * max(abs(fd), 1e-3)


def test_first_order_gradient_is_query_gradient_at_theta_k():
    batch = regression_batch(B=1)
    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=3, inner_lr=0.2, first_order=True)
    theta = {n: t.detach().requires_grad_() for n, t in learner.adapt(batch.x_support[0], batch.y_support[0]).items()}
    q = F.mse_loss(torch.func.functional_call(learner.model, theta, (batch.x_query[0],)), batch.y_query[0])
    expected = torch.autograd.grad(q, list(theta.values()))
    _, g = meta_grads(learner, batch)
    for (n, _), e in zip(theta.items(), expected):
        assert torch.allclose(g[f"model.{n}"], e, atol=1e-15, rtol=1e-12)  # equal up to round-off (vmap)
    second = MAML(tiny_mlp(), F.mse_loss, inner_steps=3, inner_lr=0.2)
    _, g2 = meta_grads(second, batch)
    assert not torch.allclose(g2["model.0.weight"], g["model.0.weight"])


def test_first_order_mirror_still_trains_its_map():
    batch = regression_batch()
    learner = MirrorMeta(tiny_mlp(), F.mse_loss, "monotone", inner_steps=2, inner_lr=0.1, first_order=True)
    _, g = meta_grads(learner, batch)
    assert any(float(v.abs().max()) > 0 for n, v in g.items() if n.startswith("mirror_map.log_slope"))


def test_second_order_last_interpolates():
    batch = regression_batch()
    kw = {"inner_steps": 3, "inner_lr": 0.2}
    full = meta_grads(MAML(tiny_mlp(), F.mse_loss, **kw), batch)[1]
    last3 = meta_grads(MAML(tiny_mlp(), F.mse_loss, second_order_last=3, **kw), batch)[1]
    fo = meta_grads(MAML(tiny_mlp(), F.mse_loss, first_order=True, **kw), batch)[1]
    last0 = meta_grads(MAML(tiny_mlp(), F.mse_loss, second_order_last=0, **kw), batch)[1]
    last1 = meta_grads(MAML(tiny_mlp(), F.mse_loss, second_order_last=1, **kw), batch)[1]
    for n in full:
        assert torch.allclose(full[n], last3[n], atol=1e-12)
        assert torch.allclose(fo[n], last0[n], atol=1e-12)
    assert not torch.allclose(last1["model.0.weight"], full["model.0.weight"])


def test_first_order_under_no_grad_equals_detached():
    """torch.func.grad ignores an enclosing no_grad: evaluate must still return no graph, and the result equals
    the explicitly detached computation."""
    batch = regression_batch()
    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.1, first_order=True)
    with torch.no_grad():
        a = learner.adapt(batch.x_support[0], batch.y_support[0])
    b = learner.adapt(batch.x_support[0], batch.y_support[0])
    for n in a:
        assert torch.equal(a[n], b[n].detach())
    ev = learner.evaluate(batch, steps=(0, 2))
    assert not ev.per_task.requires_grad and not ev.mean.requires_grad


def test_learn_inner_lr_and_anil():
    batch = regression_batch()
    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=1, inner_lr=0.1, learn_inner_lr=True, adapt=["2.weight",
                                                                                                    "2.bias"])
    _, g = meta_grads(learner, batch)
    assert float(g["log_inner_lr"].abs()) > 0
    assert learner.adapted_names == ["2.weight", "2.bias"]
    adapted = learner.adapt(batch.x_support[0], batch.y_support[0])
    assert torch.equal(adapted["0.weight"], learner.model[0].weight)
    assert not torch.equal(adapted["2.weight"], learner.model[2].weight)


def test_metacurvature_identity_at_init_and_closed_form():
    from optimlab.meta import MetaCurvature

    batch = regression_batch()
    a = MAML(tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.1).adapt(batch.x_support[0], batch.y_support[0])
    mc = MetaCurvature(tiny_mlp(), F.mse_loss, inner_steps=2, inner_lr=0.1)
    b = mc.adapt(batch.x_support[0], batch.y_support[0])
    assert all(torch.allclose(a[n], b[n], atol=1e-12) for n in a)
    _, g = meta_grads(mc, batch)
    assert float(g["curvature.0__weight.0"].abs().max()) > 0  # mode matrices are meta-learned
    A, c, loss_fn, model, qbatch = quadratic()
    theta0 = model.theta.detach().clone()
    full = MetaCurvature(model, loss_fn, inner_steps=3, inner_lr=0.1, vector_mode="full")
    M = torch.eye(4, dtype=torch.float64) + 0.1 * torch.randn(4, 4, generator=torch.Generator().manual_seed(2),
                                                             dtype=torch.float64)
    with torch.no_grad():
        full.curvature["theta"][0].copy_(M)
    P = torch.linalg.matrix_power(torch.eye(4, dtype=torch.float64) - 0.1 * M @ A, 3)
    out = full.adapt(qbatch.x_support[0], qbatch.y_support[0])["theta"]
    assert torch.allclose(out, c + P @ (theta0 - c), atol=1e-10)
    with pytest.raises(ValueError, match="vector_mode"):
        MetaCurvature(tiny_mlp(), F.mse_loss, vector_mode="kron")
