"""Shared pieces of the architecture, acceptance and heads tests."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import pytest
import torch

from ppsd_real.arch import zoo
from ppsd_real.model_loading import ModelSpec


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is faster than two fighting over a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SHIPPED = Path(__file__).resolve().parents[1] / "ppsd_real" / "models" / "stdlib-lm"
_ROOT = Path(tempfile.mkdtemp(prefix="ppsd-arch-tests-"))


@functools.cache
def with_tokenizer(model_type: str) -> ModelSpec:
    """A tiny random checkpoint of ``model_type`` with the shipped model's tokenizer (vocab
    2048), as a user's folder: config, weights, tokenizer."""
    folder = zoo.save_tiny(model_type, _ROOT / f"{model_type}-tok", tokenizer_from=SHIPPED)
    return ModelSpec(preset=None, path=str(folder))


def scratch(name: str) -> Path:
    """A fresh folder for one test's files."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_ROOT))
