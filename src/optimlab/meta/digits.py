"""Few-shot classification tasks from scikit-learn's bundled ``load_digits`` (1,797 8×8 images, scaled by 1/16),
an offline stand-in for Omniglot: each digit at 0/90/180/270° is its own class (the rotation trick used for
Omniglot in MAML, arXiv:1703.03400, and in the mirror-descent meta-learning code of arXiv:2312.13486), and the
classes of the test digits never appear in training tasks."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from optimlab._validation import Interval, check
from optimlab.meta.tasks import TaskBatch, _Sampler


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images / 16.0, data.target


class DigitsFewShot(_Sampler):
    """N-way K-shot tasks: ``ways`` classes drawn from the split's classes, ``shots`` support and ``queries``
    query images per class (``test_queries`` on val/test tasks; None = ``queries``); labels 0..ways−1 are a
    fresh random permutation per task. ``flat=True``: images as 64-vectors, else [1, 8, 8]."""

    owner = "DigitsFewShot"

    def __init__(self, ways: int = 5, shots: int = 1, queries: int = 15, test_queries: int | None = None, *,
                 rotations: bool = True, train_digits=(0, 1, 2, 3, 4, 5), val_digits=(), test_digits=(6, 7, 8, 9),
                 flat: bool = True, seed: int = 0, dtype=torch.float32) -> None:
        super().__init__(seed)
        pos = Interval(1, None, integer=True)
        self.ways = check(Interval(2, None, integer=True), ways, "ways", owner=self.owner)
        self.shots = check(pos, shots, "shots", owner=self.owner)
        self.queries = check(pos, queries, "queries", owner=self.owner)
        self.test_queries = self.queries if test_queries is None else check(pos, test_queries, "test_queries",
                                                                             owner=self.owner)
        digits = {"train": tuple(train_digits), "val": tuple(val_digits), "test": tuple(test_digits)}
        used = [d for v in digits.values() for d in v]
        if len(set(used)) != len(used) or not set(used) <= set(range(10)):
            raise ValueError(f"{self.owner}: train_digits, val_digits and test_digits must be disjoint subsets of "
                             f"0..9, got {digits}")
        raw_images, raw_labels = _digits()
        images = torch.as_tensor(raw_images, dtype=dtype)
        labels = torch.as_tensor(raw_labels)
        self.flat, self.dtype = flat, dtype
        n_rot = 4 if rotations else 1
        self.classes: dict[str, list[torch.Tensor]] = {}
        self.class_names: dict[str, list[tuple[int, int]]] = {}
        for split, ds in digits.items():
            self.classes[split], self.class_names[split] = [], []
            for d in ds:
                for r in range(n_rot):
                    self.classes[split].append(torch.rot90(images[labels == d], r, dims=(1, 2)).contiguous())
                    self.class_names[split].append((d, 90 * r))
        self.loss_fn = nn.functional.cross_entropy

    @staticmethod
    def metric(logits, y, info=None):
        """Query accuracy."""
        return (logits.argmax(-1) == y).to(logits.dtype).mean()

    def make_model(self, *, seed: int | None = None, hidden: int = 64) -> nn.Module:
        """MLP 64-hidden-hidden-ways with ReLU (flat images)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed if seed is None else seed)
            return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, self.ways)).to(self.dtype)

    def sample(self, n_tasks: int, split: str = "train") -> TaskBatch:
        g, n = self.generator(split), self._check_n(n_tasks)
        pool = self.classes[split]
        if len(pool) < self.ways:
            raise ValueError(f"{self.owner}: split {split!r} has {len(pool)} classes, fewer than ways={self.ways}")
        q = self.queries if split == "train" else self.test_queries
        xs, ys, xq, yq = [], [], [], []
        for _ in range(n):
            chosen = torch.randperm(len(pool), generator=g)[:self.ways]
            perm = torch.randperm(self.ways, generator=g)
            sx, sy, qx, qy = [], [], [], []
            for label, c in zip(perm.tolist(), chosen.tolist()):
                imgs = pool[c]
                idx = torch.randperm(len(imgs), generator=g)[:self.shots + q]
                sx.append(imgs[idx[:self.shots]])
                qx.append(imgs[idx[self.shots:]])
                sy += [label] * self.shots
                qy += [label] * q
            xs.append(torch.cat(sx)), xq.append(torch.cat(qx))
            ys.append(torch.tensor(sy)), yq.append(torch.tensor(qy))
        shape = (-1, 64) if self.flat else (-1, 1, 8, 8)
        return TaskBatch(torch.stack([x.reshape(shape) for x in xs]), torch.stack(ys),
                         torch.stack([x.reshape(shape) for x in xq]), torch.stack(yq), None)


__all__ = ["DigitsFewShot"]
