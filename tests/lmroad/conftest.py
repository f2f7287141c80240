"""Fixtures shared by lmroad's training, CLI and non-finite tests."""

from __future__ import annotations

import pytest

from lmroad.data import tiny_corpus


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    """``tiny_text(seed)``: a 6000-character synthetic text (train + val) in a file."""
    def write(seed: int):
        corpus = tiny_corpus(seed=seed, n_chars=6000)
        path = tmp_path_factory.mktemp("data") / "tiny.txt"
        path.write_text(corpus.train + corpus.val, encoding="utf-8")
        return path
    return write


@pytest.fixture(scope="module")
def text_file(tiny_text):
    return tiny_text(0)
