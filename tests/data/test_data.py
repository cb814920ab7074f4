"""Offline data: splits, standardisation, determinism, label noise."""

import numpy as np
import pytest
import torch

from optimlab.data import batches, linear_regression, load_sklearn, make_classification, pairwise, symmetric


def test_digits_split_is_stratified_standardised_and_seeded():
    s = load_sklearn("digits", seed=3)
    assert s.X_train.shape == (1257, 64) and s.X_test.shape == (540, 64) and s.n_classes == 10
    assert s.X_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    total = torch.bincount(torch.cat([s.y_train, s.y_test]), minlength=10).double()
    expected_train = total * s.n_train / total.sum()
    assert (torch.bincount(s.y_train, minlength=10) - expected_train).abs().max() <= 1.0
    nonconst = s.feature_std != 1
    torch.testing.assert_close(s.X_train.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.X_train.std(0, unbiased=False)[nonconst], torch.ones(int(nonconst.sum())),
                               atol=1e-4, rtol=0)
    # the test set uses the train statistics: undoing them gives the raw pixel values (integers 0..16)
    raw = s.X_test * s.feature_std + s.feature_mean
    torch.testing.assert_close(raw, raw.round(), atol=1e-4, rtol=0)
    again, other = load_sklearn("digits", seed=3), load_sklearn("digits", seed=4)
    assert torch.equal(again.X_train, s.X_train) and not torch.equal(other.X_train, s.X_train)


def test_regression_and_unknown_name():
    d = load_sklearn("diabetes", seed=0)
    assert d.n_classes is None and d.y_train.is_floating_point()
    with pytest.raises(ValueError, match="name"):
        load_sklearn("mnist")
    with pytest.raises(ValueError, match="test_size"):
        load_sklearn("iris", test_size=1.5)


def test_synthetic_generators_are_seeded():
    a, b = make_classification(300, 10, 5, 3, seed=1), make_classification(300, 10, 5, 3, seed=1)
    assert torch.equal(a.X_train, b.X_train) and a.n_classes == 3
    X, y, w = linear_regression(50, 4, noise=0.0, generator=2)
    torch.testing.assert_close(X @ w, y)
    idx = batches(10, 4, generator=torch.Generator().manual_seed(0))
    assert [len(i) for i in idx] == [4, 4, 2] and sorted(torch.cat(idx).tolist()) == list(range(10))


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_symmetric_noise_flips_exactly_and_to_other_classes(rate):
    y = torch.arange(1000) % 10
    y0 = y.clone()
    noisy, mask = symmetric(y, rate, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, y0)  # input untouched
    assert int(mask.sum()) == round(rate * 1000)
    assert torch.all(noisy[mask] != y[mask]) and torch.equal(noisy[~mask], y[~mask])
    assert torch.equal(noisy, symmetric(y, rate, 10, generator=0)[0])


def test_symmetric_noise_is_uniform_over_other_classes():
    y = torch.zeros(20000, dtype=torch.int64)
    noisy, _ = symmetric(y, 1.0, 5, generator=1)
    counts = torch.bincount(noisy, minlength=5)[1:].double()
    chi2 = float(((counts - 5000) ** 2 / 5000).sum())
    assert counts.sum() == 20000 and chi2 < 16.3  # chi-square, 3 dof, p = 0.001


def test_pairwise_noise_and_bad_rates():
    y = torch.tensor([0, 1, 2, 3] * 25)
    noisy, mask = pairwise(y, 0.4, 4, generator=0)
    assert int(mask.sum()) == 40 and torch.equal(noisy[mask], (y[mask] + 1) % 4)
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="rate"):
            symmetric(y, bad, 4, generator=0)
    with pytest.raises(ValueError, match="rate"):
        pairwise(y, 1.0, 4, generator=0)


def test_no_fetch_loader_is_used():
    import optimlab.data.datasets as mod

    assert "fetch_" not in open(mod.__file__).read().replace("``sklearn.datasets.fetch_*``", "")
    assert np.isfinite(load_sklearn("wine").X_train.numpy()).all()


def test_split_arguments_are_validated():
    from optimlab.data import load_sklearn

    for kwargs, pattern in (({"test_size": 1.0}, "test_size must be a finite number in"),
                            ({"seed": True}, r"seed must be an integer in \[0, 4294967295\], got True"),
                            ({"seed": -1}, "seed must be an integer")):
        with pytest.raises(ValueError, match=pattern):
            load_sklearn("digits", **kwargs)
