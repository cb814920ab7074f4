"""The claims' shared fixtures: one seeded training loop (same batch order as the loop it replaced), digits split."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from optimlab.data import load_sklearn
from optimlab.experiments import _fixtures as fx
from optimlab.metrics import memory
from optimlab.sam import SAM


def _data(n: int = 70):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _old_train_classifier(model, opt, X, y, *, epochs, batch_size, seed, two_pass, scheduler=None):
    """The loop of the former experiments/common.py, verbatim in substance: the reference for batch order."""
    gen = torch.Generator().manual_seed(seed)
    n, losses = X.shape[0], []
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(X.device)
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = X[idx], y[idx]
            if two_pass:
                def closure(xb=xb, yb=yb):
                    loss = F.cross_entropy(model(xb), yb)
                    loss.backward()
                    return loss
                loss = opt.step(closure)
            else:
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            if scheduler is not None:
                scheduler.step()
        losses.append(total / count)
    return losses


def _setup(method: str, seed: int = 3):
    model = fx.make_mlp([6, 16, 3], seed=seed)
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = SAM(base=base, rho=0.05) if method == "sam" else base
    return model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)


@pytest.mark.parametrize("method", ["sgd", "sam"])
def test_train_classifier_matches_the_loop_it_replaced(method):
    X, y = _data()
    m_old, o_old, s_old = _setup(method)
    m_new, o_new, s_new = _setup(method)
    ref = _old_train_classifier(m_old, o_old, X, y, epochs=3, batch_size=16, seed=7, two_pass=method == "sam",
                                scheduler=s_old)
    hist = fx.train_classifier(m_new, o_new, X, y, epochs=3, batch_size=16, seed=7, two_pass=method == "sam",
                               scheduler=s_new)
    assert hist.train_loss == ref and hist.steps == 3 * 5
    for a, b in zip(m_old.parameters(), m_new.parameters()):
        assert torch.equal(a, b)


def test_train_detects_two_pass_methods():
    X, y = _data()
    m1, o1, _ = _setup("sam")
    m2, o2, _ = _setup("sam")
    h1 = fx.train(m1, o1, X, y, epochs=2, batch_size=16, generator=torch.Generator().manual_seed(1))
    h2 = fx.train(m2, o2, X, y, epochs=2, batch_size=16, generator=torch.Generator().manual_seed(1), two_pass=True)
    assert h1.train_loss == h2.train_loss
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_train_hooks_max_steps_and_drop_last():
    X, y = _data(70)
    model, opt, _ = _setup("sgd")
    events: list[tuple] = []
    hist = fx.train(model, opt, X, y, epochs=5, batch_size=16, generator=torch.Generator().manual_seed(0),
                    before_step=lambda t, xb, yb: events.append(("before", t, len(xb))),
                    on_step=lambda t: events.append(("step", t)), on_epoch=lambda e: events.append(("epoch", e)),
                    max_steps=7, drop_last=True)
    # 70 samples, batches of 16 with the last (6) dropped: 4 steps an epoch; stopped after step 7.
    assert hist.steps == 7 and len(hist.train_loss) == 2
    assert [e for e in events if e[0] == "epoch"] == [("epoch", 1), ("epoch", 2)]
    assert [e[1] for e in events if e[0] == "step"] == list(range(1, 8))
    assert all(e[2] == 16 for e in events if e[0] == "before")
    assert events[:2] == [("before", 1, 16), ("step", 1)]


def test_train_custom_loss_and_divergence():
    X, y = _data()
    model, opt, _ = _setup("sgd")
    seen = []

    def loss_fn(out, target):
        seen.append(out.shape)
        return F.cross_entropy(out, target)

    fx.train(model, opt, X, y, epochs=1, batch_size=32, generator=torch.Generator().manual_seed(0), loss_fn=loss_fn)
    assert seen == [torch.Size([32, 3]), torch.Size([32, 3]), torch.Size([6, 3])]
    with pytest.raises(FloatingPointError, match="diverged"):
        fx.train(model, opt, X, y, epochs=1, batch_size=32, generator=torch.Generator().manual_seed(0),
                 loss_fn=lambda out, target: F.cross_entropy(out, target) * float("nan"))
    with pytest.raises(ValueError, match="max_steps"):
        fx.train(model, opt, X, y, epochs=1, batch_size=32, generator=torch.Generator(), max_steps=0)


def test_digits_split_and_memory_tracker():
    a, b = fx.digits_split(2), load_sklearn("digits", seed=2)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test) and a.n_classes == 10
    assert fx.peak_memory is memory.peak_memory and fx.state_bytes is memory.state_bytes  # one copy


def test_evaluate_restores_the_training_flag():
    X, y = _data()
    model = fx.make_mlp([6, 8, 3], seed=0)
    loss, acc = fx.evaluate(model, X, y)
    assert model.training and loss > 0 and 0 <= acc <= 100
    with fx.torch_threads(1):
        assert torch.get_num_threads() == 1
