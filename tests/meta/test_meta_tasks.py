"""Task samplers and the analytic floors of the synthetic families."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from optimlab.meta import (
    DigitsFewShot,
    ExpGeometryTasks,
    PoissonTasks,
    QuadraticTasks,
    SinusoidTasks,
    TaskBatch,
)


@pytest.mark.parametrize("make", [lambda: SinusoidTasks(seed=3), lambda: ExpGeometryTasks(seed=3),
                                  lambda: PoissonTasks(seed=3), lambda: QuadraticTasks(seed=3),
                                  lambda: DigitsFewShot(seed=3)])
def test_same_seed_same_batches_and_global_rng_untouched(make):
    state = torch.random.get_rng_state()
    a, b = make().sample(4, "train"), make().sample(4, "train")
    for x, y in zip(a[:4], b[:4]):
        assert torch.equal(x, y)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = make().sample(4, "test")
    assert not torch.equal(a.y_support, c.y_support) or not torch.equal(a.x_support, c.x_support)
    a.validate()


def test_digits_split_disjoint_shapes_and_labels():
    t = DigitsFewShot(ways=5, shots=1, queries=15, seed=0)
    train = {d for d, _ in t.class_names["train"]}
    test = {d for d, _ in t.class_names["test"]}
    assert train == set(range(6)) and test == {6, 7, 8, 9} and not train & test
    assert len(t.class_names["train"]) == 24 and len(t.class_names["test"]) == 16
    b = t.sample(6)
    assert b.x_support.shape == (6, 5, 64) and b.x_query.shape == (6, 75, 64)
    for i in range(6):
        assert sorted(b.y_support[i].tolist()) == list(range(5))
    assert len({tuple(b.y_support[i].tolist()) for i in range(6)}) > 1  # permuted per task
    assert DigitsFewShot(shots=1, test_queries=1, seed=0).sample(2, "test").x_query.shape == (2, 5, 64)
    with pytest.raises(ValueError, match="disjoint"):
        DigitsFewShot(train_digits=(0, 1), test_digits=(1, 2))


def test_poisson_info_carries_true_log_rates():
    b = PoissonTasks(seed=0).sample(3)
    x, c, w = b.x_query, b.info["intercept"], b.info["weights"]
    expected = c[:, None] + (x @ w[:, :, None])[..., 0]
    assert torch.allclose(b.info["log_rate_query"], expected)
    assert b.x_support.shape == (3, 20, 5) and b.y_query.shape == (3, 50, 1)
    assert float(PoissonTasks.metric(b.info["log_rate_query"][0][:, None], b.y_query[0], b.task(0).info)) == 0.0


@pytest.mark.parametrize("K,expected", [(1, 10.558), (3, 5.340)])
def test_exp_geometry_linear_floor(K, expected):
    assert ExpGeometryTasks().linear_floor(K) == pytest.approx(expected, rel=0.01)


def test_exp_geometry_second_basin_exists():
    """A polish started at (θ₀, p) = (0.07, 0.105) stays in the second K = 3 basin near 5.46."""
    u = -3 + 6 * (np.arange(20_000) + 0.5) / 20_000
    b = np.exp(u)

    def value(z):
        t = np.full_like(u, z[0])
        for _ in range(3):
            t = t - np.exp(z[1]) * (np.exp(t) - b)
        return 20 * np.mean(b * (np.expm1(t - u) - (t - u)))

    res = minimize(value, np.array([0.07, np.log(0.105)]), method="L-BFGS-B")
    assert res.fun == pytest.approx(5.46, rel=0.01)


def test_quadratic_diagonal_floor_against_lbfgs_and_monte_carlo():
    q = QuadraticTasks(seed=0)
    A = q.A.numpy()
    scale = np.mean(np.diag(A))

    def gap(p):
        M = np.eye(20) - np.diag(p) @ A
        return 0.5 * np.trace(M.T @ A @ M) / scale

    res = minimize(gap, np.full(20, 0.1), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
    floor = q.diagonal_floor()
    assert res.fun == pytest.approx(floor, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    e0 = torch.randn(200_000, 20, generator=g, dtype=torch.float64)
    M = torch.eye(20, dtype=torch.float64) - torch.diag(torch.as_tensor(res.x)) @ q.A
    e1 = e0 @ M.T
    mc = float(0.5 * ((e1 @ q.A) * e1).sum(1).mean() / torch.diagonal(q.A).mean())
    assert mc == pytest.approx(floor, rel=0.01)


def test_task_batch_validation_and_task():
    b = SinusoidTasks(seed=0).sample(3)
    assert b.task(1).x_support.shape == (10, 1) and b.n_tasks == 3
    with pytest.raises(ValueError, match="task dimension"):
        TaskBatch(b.x_support, b.y_support[:2], b.x_query, b.y_query).validate()
    with pytest.raises(ValueError, match="feature shape"):
        TaskBatch(b.x_support, b.y_support, torch.zeros(3, 10, 2), b.y_query).validate()
    with pytest.raises(ValueError, match="split"):
        SinusoidTasks(seed=0).sample(3, "dev")
