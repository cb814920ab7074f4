"""Offline data sets as seeded train/test tensors. Nothing here downloads: scikit-learn's bundled sets and
seeded synthetic generators only (never a ``sklearn.datasets.fetch_*`` loader)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from optimlab._random import GeneratorLike, check_generator
from optimlab._validation import Interval, check

CLASSIFICATION = ("digits", "breast_cancer", "wine", "iris")
REGRESSION = ("diabetes",)


@dataclass(frozen=True)
class Split:
    """A train/test split. Features are standardised with the TRAIN mean and std (``feature_mean/std``)."""

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    n_classes: int | None
    name: str
    feature_mean: Tensor
    feature_std: Tensor

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def to(self, device: str | torch.device) -> Split:
        """A copy with every tensor on ``device``."""
        return replace(self, **{k: getattr(self, k).to(device) for k in
                                ("X_train", "y_train", "X_test", "y_test", "feature_mean", "feature_std")})


_COUNT = Interval(1, None, integer=True)
_SEED = Interval(0, 2**32 - 1, integer=True)  # a split seed is stored in results, so an int (DESIGN: seed)


def _split(X: np.ndarray, y: np.ndarray, *, name: str, classification: bool, test_size: float, seed: int,
           standardize: bool, dtype: torch.dtype, device: str | torch.device) -> Split:
    from sklearn.model_selection import train_test_split

    test_size = check(Interval(0, 1, closed="neither"), test_size, "test_size")
    seed = check(_SEED, seed, "seed")
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed,
                                          stratify=y if classification else None)
    mean = Xtr.mean(axis=0) if standardize else np.zeros(X.shape[1])
    std = Xtr.std(axis=0) if standardize else np.ones(X.shape[1])
    std = np.where(std > 0, std, 1.0)  # constant features (e.g. digits' blank pixels) are left at 0
    ydt = torch.int64 if classification else dtype

    def t(a, dt):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

    return Split(t((Xtr - mean) / std, dtype), t(ytr, ydt), t((Xte - mean) / std, dtype), t(yte, ydt),
                 len(np.unique(y)) if classification else None, name, t(mean, dtype), t(std, dtype))


def load_sklearn(name: str, *, test_size: float = 0.3, seed: int = 0, standardize: bool = True,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Split:
    """One of scikit-learn's bundled sets as a standardised, seeded split (stratified for classification).

    ``name`` ∈ {digits, breast_cancer, wine, iris} (classification, int64 labels) or {diabetes} (regression).
    """
    from sklearn import datasets

    if name not in CLASSIFICATION + REGRESSION:
        raise ValueError(f"name must be one of {CLASSIFICATION + REGRESSION}, got {name!r}")
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return _split(X, y, name=name, classification=name in CLASSIFICATION, test_size=test_size, seed=seed,
                  standardize=standardize, dtype=dtype, device=device)


def make_classification(n_samples: int, n_features: int, n_informative: int, n_classes: int, *, seed: int,
                        test_size: float = 0.3, dtype: torch.dtype = torch.float32,
                        device: str | torch.device = "cpu") -> Split:
    """scikit-learn's ``make_classification`` (``random_state=seed``) through the same split/standardise path."""
    from sklearn import datasets

    X, y = datasets.make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_informative,
                                        n_redundant=0, n_classes=n_classes, random_state=seed)
    return _split(X, y, name="make_classification", classification=True, test_size=test_size, seed=seed,
                  standardize=True, dtype=dtype, device=device)


def linear_regression(n: int, d: int, *, noise: float = 0.0, generator: GeneratorLike = 0,
                      dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor, Tensor]:
    """(X, y, w) with X ~ N(0, I), w ~ N(0, I/d), y = X w + noise·N(0, 1); ``generator``: an int seed or a
    ``torch.Generator`` (:func:`optimlab._random.check_generator`)."""
    check(_COUNT, n, "n")
    check(_COUNT, d, "d")
    check(Interval(0, None), noise, "noise")
    g = check_generator(generator)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    w = torch.randn(d, generator=g, dtype=dtype) / d**0.5
    return X, X @ w + noise * torch.randn(n, generator=g, dtype=dtype), w


def teacher_student_mlp(n: int, d_in: int, d_hidden: int, d_out: int, *, generator: GeneratorLike = 0,
                        dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(X, y) with y = W2 tanh(W1 X) from a random teacher (He-scaled), X ~ N(0, I); ``generator`` as in
    :func:`linear_regression`."""
    for value, name in ((n, "n"), (d_in, "d_in"), (d_hidden, "d_hidden"), (d_out, "d_out")):
        check(_COUNT, value, name)
    g = check_generator(generator)
    X = torch.randn(n, d_in, generator=g, dtype=dtype)
    W1 = torch.randn(d_in, d_hidden, generator=g, dtype=dtype) / d_in**0.5
    W2 = torch.randn(d_hidden, d_out, generator=g, dtype=dtype) / d_hidden**0.5
    return X, torch.tanh(X @ W1) @ W2


def batches(n: int, batch_size: int, *, generator: torch.Generator, drop_last: bool = False) -> list[Tensor]:
    """Index minibatches of a seeded permutation of ``range(n)`` (no DataLoader)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    perm = torch.randperm(n, generator=generator)
    out = list(perm.split(batch_size))
    return out[:-1] if drop_last and out and len(out[-1]) < batch_size else out


def iterate_minibatches(X: Tensor, y: Tensor, batch_size: int, *,
                        generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(X[idx], y[idx])`` over one seeded pass of the data."""
    for idx in batches(X.shape[0], batch_size, generator=generator):
        idx = idx.to(X.device)
        yield X[idx], y[idx]
