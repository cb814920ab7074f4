"""Offline data: scikit-learn's bundled sets, label noise, seeded synthetic problems. Nothing downloads."""

from optimlab.data.datasets import (
                                    Split,
                                    batches,
                                    iterate_minibatches,
                                    linear_regression,
                                    load_sklearn,
                                    make_classification,
                                    teacher_student_mlp,
)
from optimlab.data.noise import pairwise, symmetric

__all__ = ["Split", "batches", "iterate_minibatches", "linear_regression", "load_sklearn", "make_classification",
           "pairwise", "symmetric", "teacher_student_mlp"]
