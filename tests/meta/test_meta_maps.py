"""Mirror maps: gradient-field and slope properties of the monotone map, structure and counts of the blockwise
flow, and the center='init' invariance."""

from __future__ import annotations

import math

import pytest
import torch
from _meta_helpers import regression_batch, tiny_mlp
from torch.nn import functional as F

from optimlab.meta import BlockIAFMap, ElementwiseMonotoneMap, MetaSGD, MirrorMeta, ParameterVector

SHAPES = {"a": (3, 2), "b": (4,)}


def _perturbed_monotone(seed=0, share="tensor", **kw):
    m = ElementwiseMonotoneMap.for_params(SHAPES, dtype=torch.float64, share=share, hidden=4, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def _rand(shapes, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}


@pytest.mark.parametrize("share", ["tensor", "element"])
def test_monotone_map_jacobian_diagonal_within_bounds(share):
    m = _perturbed_monotone(share=share)
    u = _rand(SHAPES, 1, 2.0)
    J = torch.func.jacrev(lambda x: m(x))(u)
    for n in SHAPES:
        for k in SHAPES:
            blk = J[n][k].reshape(math.prod(SHAPES[n]), math.prod(SHAPES[k]))
            if n != k:
                assert torch.count_nonzero(blk) == 0
            else:
                d = torch.diagonal(blk)
                assert torch.count_nonzero(blk - torch.diag(d)) == 0
                lo, hi = (t.expand(SHAPES[n]).reshape(-1) for t in m._bounds(n))
                assert bool((d >= lo - 1e-12).all() and (d <= hi + 1e-12).all())
    lo, hi = m.slope_bounds()
    assert 0 < lo <= hi and m.diagnostics()["min_slope"] >= m.min_slope


def test_monotone_map_is_gradient_of_potential_and_inverts():
    m = _perturbed_monotone()
    u = _rand(SHAPES, 2, 1.5)
    grad = torch.func.grad(m.potential)(u)
    h = m(u)
    for n in SHAPES:
        assert torch.allclose(grad[n], h[n], atol=1e-10, rtol=0)
    back = m.to_dual(h)
    assert max(float((back[n] - u[n]).abs().max()) for n in SHAPES) <= 1e-8
    assert m.diagnostics()["jac_asymmetry"] <= 1e-12 and m.is_gradient_field


def test_monotone_bregman_bounds():
    m = _perturbed_monotone()
    lo, hi = m.slope_bounds()
    for seed in range(5):
        t, tr = _rand(SHAPES, 10 + seed), _rand(SHAPES, 20 + seed)
        d = float(m.bregman(t, tr).detach())
        sq = sum(float(((t[n] - tr[n]) ** 2).sum()) for n in SHAPES)
        assert sq / (2 * hi) - 1e-9 <= d <= sq / (2 * lo) + 1e-9
        assert abs(float(m.bregman(t, t).detach())) <= 1e-10


def test_monotone_identity_at_init_saturation_and_clamp():
    m = ElementwiseMonotoneMap.for_params(SHAPES, dtype=torch.float64)
    u = _rand(SHAPES, 3)
    assert all(torch.allclose(m(u)[n], u[n], atol=1e-15) for n in SHAPES)
    assert not any("offset" in n or n.startswith("b.") for n, _ in m.named_parameters())
    m = _perturbed_monotone()
    big = {n: torch.full(s, 1e6, dtype=torch.float64) for n, s in SHAPES.items()}
    J = torch.func.jacrev(lambda x: m(x))(big)
    for n in SHAPES:
        s = m._slope(n).expand(SHAPES[n]).reshape(-1)
        d = torch.diagonal(J[n][n].reshape(s.numel(), s.numel()))
        assert torch.equal(d, s)
    with torch.no_grad():
        for p in m.log_slope.values():
            p.fill_(1e3)
    out = m(u)
    assert all(bool(torch.isfinite(out[n]).all()) for n in SHAPES)
    assert m.slope_bounds()[0] == pytest.approx(m.min_slope + math.exp(10.0))


def test_center_init_keeps_init_when_map_changes():
    learner = MirrorMeta(tiny_mlp(), F.mse_loss, "monotone", inner_steps=1, inner_lr=0.1)
    before = {n: t.detach().clone() for n, t in learner.init_params().items()}
    with torch.no_grad():
        for p in learner.mirror_map.parameters():
            p.add_(0.3)
    after = learner.init_params()
    assert all(torch.equal(before[n], after[n].detach()) for n in before)


def _cnn_shapes(filters):
    shapes, cin = {}, 3
    for i in range(4):
        shapes.update({f"c{i}.w": (filters, cin, 3, 3), f"c{i}.b": (filters,), f"bn{i}.w": (filters,),
                       f"bn{i}.b": (filters,)})
        cin = filters
    shapes.update({"fc.w": (5, filters * 25), "fc.b": (5,)})
    return shapes


def test_block_iaf_parameter_counts_match_the_authors_cnn():
    shapes = _cnn_shapes(64)
    base = sum(math.prod(s) for s in shapes.values())
    m = BlockIAFMap.for_params(shapes, block_size=4, shrink=2, levels=3, generator=0)
    assert base == 121_093
    assert m.n_params() == 3_447_535
    assert m.part_counts() == {"block1": 3840, "encoders": 66_117, "A": 91_641, "decoders": 3_285_937}
    assert m.n_params() / base == pytest.approx(28.47, abs=0.005)
    small = _cnn_shapes(32)
    assert sum(math.prod(s) for s in small.values()) == 32_901
    assert BlockIAFMap.for_params(small, generator=0).n_params() == 859_391


def _perturbed_iaf(seed=0):
    shapes = {"w1": (4, 2), "b1": (4,), "w2": (3, 4), "b2": (3,), "w3": (1, 3), "b3": (1,)}
    m = BlockIAFMap.for_params(shapes, block_size=2, shrink=2, levels=2, dtype=torch.float64, generator=seed)
    u = _rand(shapes, 7)
    assert all(torch.allclose(m(u)[n], u[n], atol=0) for n in shapes)  # identity at init
    for heads in (m.heads_s, m.heads_t):
        assert all(float(p.detach().abs().max()) == 0 for p in heads.parameters())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            if name.endswith("bias"):
                p.add_(1.0)  # keep the ReLUs of encoders and decoders active
    return m, shapes


def test_block_iaf_triangular_jacobian_inverse_and_asymmetry():
    m, shapes = _perturbed_iaf()
    u = _rand(shapes, 8)
    J = torch.func.jacrev(lambda x: m(x))(u)
    order = list(shapes)
    block = {n: i // 2 for i, n in enumerate(order)}
    lower_nonzero = False
    for n in order:
        for k in order:
            if block[k] > block[n]:
                assert torch.count_nonzero(J[n][k]) == 0
            elif block[k] < block[n]:
                lower_nonzero |= bool(torch.count_nonzero(J[n][k]))
    assert lower_nonzero
    back = m.to_dual(m(u))
    assert max(float((back[n] - u[n]).abs().max()) for n in shapes) <= 1e-6
    assert not m.is_gradient_field and m.diagnostics()["jac_asymmetry"] > 0
    for n in m.encoders:
        x = u[n.replace("__", ".")]
        assert float(m._encode(n.replace("__", "."), x).min()) >= 0


def test_block_iaf_on_one_tensor_model_is_metasgd():
    g = torch.Generator().manual_seed(0)
    theta0 = torch.randn(5, generator=g, dtype=torch.float64)
    c = torch.randn(1, 1, 5, generator=g, dtype=torch.float64)

    def loss_fn(theta, y):
        return (torch.exp(theta) - y.reshape(-1) * theta).sum()

    alpha = 0.1
    mirror = MirrorMeta(ParameterVector(5, init=theta0), loss_fn, "iaf", inner_steps=2, inner_lr=alpha, generator=0)
    msgd = MetaSGD(ParameterVector(5, init=theta0), loss_fn, inner_steps=2, inner_lr=alpha)
    with torch.no_grad():
        a = 0.2 * torch.randn(5, generator=g, dtype=torch.float64)
        mirror.mirror_map.a["theta"].copy_(a)
        mirror.mirror_map.b["theta"].copy_(torch.randn(5, generator=g, dtype=torch.float64))  # cancels (center)
        msgd.log_lr["theta"].copy_(math.log(alpha) + a)
    x = torch.zeros(1, 1, dtype=torch.float64)
    assert torch.allclose(mirror.adapt(x, c[0])["theta"], msgd.adapt(x, c[0])["theta"], atol=1e-12)


def test_map_overhead_counts_the_init():
    learner = MirrorMeta(tiny_mlp(), F.mse_loss, "monotone", map_kwargs={"hidden": 8})
    n = sum(p.numel() for p in learner.model.parameters())
    assert learner.overhead() == pytest.approx((2 * n + 3 * 8 * 4) / n)
    batch = regression_batch()
    assert learner.mirror_map.diagnostics()["n_params"] == n + 3 * 8 * 4 and batch.n_tasks == 8


def test_block_iaf_log_scale_is_clamped():
    m, shapes = _perturbed_iaf()
    with torch.no_grad():
        for head in m.heads_s.values():
            head.bias.fill_(1e3)
    out = m(_rand(shapes, 9))
    assert all(bool(torch.isfinite(out[n]).all()) for n in shapes)
    assert m.slope_bounds()[1] == pytest.approx(math.exp(10.0))


def test_icnn_map_symmetric_jacobian_bounded_below_and_inverts():
    from optimlab.meta import ICNNGradientMap

    shapes = {"a": (3, 2), "b": (4,)}
    m = ICNNGradientMap.for_params(shapes, hidden=(8, 8), dtype=torch.float64, generator=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for net in m.nets.values():
            net.a.abs_()  # active output weights
    u = _rand(shapes, 4)
    for n in shapes:
        x = u[n].reshape(-1)
        J = torch.func.jacfwd(lambda y, n=n: m({**u, n: y.reshape(shapes[n])})[n].reshape(-1))(x).detach()
        s = float(m._s(n).detach())
        assert torch.allclose(J, J.T, atol=1e-10, rtol=0)
        assert float(torch.linalg.eigvalsh(J).min()) >= s - 1e-10
        assert float(torch.linalg.eigvalsh(J).max()) > s + 1e-6  # the ICNN is active
    back = m.to_dual({n: t.detach() for n, t in m(u).items()})
    assert max(float((back[n] - u[n]).abs().max()) for n in shapes) <= 1e-8
    assert m.is_gradient_field and m.diagnostics()["min_slope"] >= m.min_slope
    with pytest.raises(ValueError, match="max_numel"):
        ICNNGradientMap.for_params({"w": (100, 50)}, max_numel=4096)
