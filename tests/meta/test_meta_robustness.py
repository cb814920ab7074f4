"""Bad input, non-finite handling, batch norm and dropout under vmap, persistence and graph-free evaluation."""

from __future__ import annotations

import copy
import resource

import pytest
import torch
from _meta_helpers import regression_batch, tiny_mlp
from torch import nn
from torch.nn import functional as F

from optimlab.meta import (
    MAML,
    ElementwiseMonotoneMap,
    MetaSGD,
    MirrorMeta,
    SinusoidTasks,
    TaskBatch,
    meta_train,
)
from optimlab.meta.iaf import BlockIAFMap


@pytest.mark.parametrize("kw,match", [
    ({"inner_steps": -1}, "inner_steps"), ({"inner_steps": 1.5}, "inner_steps"), ({"inner_lr": 0.0}, "inner_lr"),
    ({"inner_lr": float("nan")}, "inner_lr"), ({"inner_lr": float("inf")}, "inner_lr"),
    ({"chunk_size": 0}, "chunk_size"), ({"second_order_last": -1}, "second_order_last"),
    ({"inner_steps": 2, "second_order_last": 3}, "second_order_last"), ({"task_parallel": "pmap"}, "task_parallel"),
    ({"adapt": ["nope"]}, "available"),
])
def test_bad_learner_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        MAML(tiny_mlp(), F.mse_loss, **kw)


def test_bad_map_arguments_raise():
    with pytest.raises(ValueError, match="min_slope"):
        ElementwiseMonotoneMap.for_params({"a": (2,)}, min_slope=0.0)
    with pytest.raises(ValueError, match="hidden"):
        ElementwiseMonotoneMap.for_params({"a": (2,)}, hidden=-1)
    with pytest.raises(ValueError, match="block_size"):
        BlockIAFMap.for_params({"a": (2,)}, block_size=0)
    with pytest.raises(ValueError, match="affine.*iaf.*monotone"):
        MirrorMeta(tiny_mlp(), F.mse_loss, "quadratic")
    with pytest.raises(ValueError, match="identifiable"):
        MirrorMeta(tiny_mlp(), F.mse_loss, learn_inner_lr=True)


def test_bad_batches_raise():
    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=1)
    b = regression_batch()
    with pytest.raises(ValueError, match="task dimension"):
        learner.meta_loss(TaskBatch(b.x_support[:3], b.y_support, b.x_query, b.y_query))
    with pytest.raises(ValueError, match="feature shape"):
        learner.meta_loss(TaskBatch(b.x_support, b.y_support, b.x_query[..., :1], b.y_query))


def _bn_model(track: bool):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8, track_running_stats=track), nn.ReLU(),
                             nn.Linear(8, 1)).double()


def test_batch_norm_running_stats_rejected_and_transductive_bn_works():
    with pytest.raises(ValueError, match="replace_all_batch_norm_modules_"):
        MAML(_bn_model(True), F.mse_loss)
    model = _bn_model(True)
    torch.func.replace_all_batch_norm_modules_(model)
    learner = MAML(model, F.mse_loss, inner_steps=1)
    buffers = {n: b.clone() for n, b in learner.model.named_buffers()}
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    learner.meta_step(regression_batch(), opt)
    assert all(torch.equal(buffers[n], b) for n, b in learner.model.named_buffers())
    MAML(_bn_model(True), F.mse_loss, task_parallel="loop")  # the loop path accepts running statistics


def test_dropout_needs_randomness_different():
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.5), nn.Linear(8, 1)).double()
    with pytest.raises(ValueError, match="different"):
        MAML(model, F.mse_loss)
    learner = MAML(model, F.mse_loss, inner_steps=1, randomness="different")
    assert torch.isfinite(learner.meta_loss(regression_batch()))


def _inf_batch():
    b = regression_batch()
    y = b.y_query.clone()
    y[2] = float("inf")
    return TaskBatch(b.x_support, b.y_support, b.x_query, y)


def test_nonfinite_raise_leaves_state_untouched_and_skip_counts():
    learner = MetaSGD(tiny_mlp(), F.mse_loss, inner_steps=1, inner_lr=0.1)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    learner.meta_step(regression_batch(), opt)
    params = {n: p.detach().clone() for n, p in learner.named_parameters()}
    opt_state = {k: {kk: vv.clone() for kk, vv in v.items()} for k, v in opt.state_dict()["state"].items()}
    with pytest.raises(FloatingPointError):
        learner.meta_step(_inf_batch(), opt, nonfinite="raise")
    assert all(torch.equal(params[n], p) for n, p in learner.named_parameters())
    for k, v in opt.state_dict()["state"].items():
        assert all(torch.equal(opt_state[k][kk], vv) for kk, vv in v.items())
    info = learner.meta_step(_inf_batch(), opt, nonfinite="skip")
    assert info["skipped"] and learner.skipped_steps == 1
    assert all(p.grad is None for p in learner.parameters())
    assert all(torch.equal(params[n], p) for n, p in learner.named_parameters())


def test_evaluate_reports_diverging_tasks():
    learner = MAML(tiny_mlp(dtype=torch.float32, act=nn.ReLU), F.mse_loss, inner_steps=1, inner_lr=1e12)
    b = regression_batch(dtype=torch.float32)
    xs = b.x_support.clone()
    xs[:4] *= 1e3
    ev = learner.evaluate(TaskBatch(xs, b.y_support * 1e3, b.x_query, b.y_query), steps=(0, 1, 5))
    assert float(ev.nonfinite_fraction[-1]) > 0 and bool(torch.isfinite(ev.median[0]))
    assert ev.steps == (0, 1, 5) and ev.per_task.shape == (3, 8)


def test_evaluate_is_graph_free_and_does_not_leak():
    learner = MirrorMeta(tiny_mlp(), F.mse_loss, "monotone", inner_steps=1, inner_lr=0.1, task_parallel="loop")
    b = regression_batch(B=2)
    ev = learner.evaluate(b)
    assert not any(t.requires_grad for t in (ev.mean, ev.ci95, ev.median, ev.per_task))
    for _ in range(10):
        learner.evaluate(b)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(100):
        learner.evaluate(b)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 10 * 1024  # KiB on Linux


def test_state_dict_round_trip_resumes_bitwise():
    def make():
        learner = MirrorMeta(tiny_mlp(dtype=torch.float32), F.mse_loss, "monotone", inner_steps=1, inner_lr=0.1)
        return learner, torch.optim.Adam(learner.parameters(), lr=1e-2)

    batches = [regression_batch(B=4, seed=s, dtype=torch.float32) for s in range(5)]
    a, opt_a = make()
    for b in batches[:2]:
        a.meta_step(b, opt_a)
    b_learner, opt_b = make()
    b_learner.load_state_dict(copy.deepcopy(a.state_dict()))  # as if saved and loaded
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for b in batches[2:]:
        assert a.meta_step(b, opt_a)["loss"] == b_learner.meta_step(b, opt_b)["loss"]
    assert set(a.state_dict()) == set(b_learner.state_dict())


def test_meta_train_result_fields():
    tasks = SinusoidTasks(seed=0)
    learner = MAML(tasks.make_model(), F.mse_loss, inner_steps=1, inner_lr=0.01)
    res = meta_train(learner, tasks, torch.optim.Adam(learner.parameters(), 1e-3), steps=5, batch_size=4,
                     log_every=2)
    assert res.status == "max_iter" and res.iterations == 5 and not res.converged
    assert res.history["step"] == [0.0, 2.0, 4.0] and res.certificate["skipped_steps"] == 0
    with pytest.raises(ValueError, match="batch_size"):
        meta_train(learner, tasks, torch.optim.Adam(learner.parameters(), 1e-3), steps=5, batch_size=0)


def test_meta_train_stops_as_diverged_on_raise():
    class InfSampler:
        def sample(self, n, split="train"):
            return _inf_batch()

    learner = MAML(tiny_mlp(), F.mse_loss, inner_steps=1, inner_lr=0.1)
    res = meta_train(learner, InfSampler(), torch.optim.SGD(learner.parameters(), lr=0.1), steps=3, batch_size=8)
    assert res.status == "diverged" and res.iterations == 0
    res = meta_train(learner, InfSampler(), torch.optim.SGD(learner.parameters(), lr=0.1), steps=3, batch_size=8,
                     nonfinite="skip")
    assert res.status == "max_iter" and res.certificate["skipped_steps"] == 3
