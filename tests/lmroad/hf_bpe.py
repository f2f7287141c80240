"""Hugging Face's byte-level BPE set up as GPT-2's (the reference lmroad's BPETokenizer is
checked against), for test_bpe.py and test_interop_torch.py. Needs the tokenizers package:
import this module after ``pytest.importorskip("tokenizers")``."""

from __future__ import annotations

import tokenizers as hf


def hf_byte_level(model) -> hf.Tokenizer:
    """A tokenizers.Tokenizer around ``model`` with GPT-2's ByteLevel pre-tokenizer and decoder."""
    tok = hf.Tokenizer(model)
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)   # use_regex: GPT-2's regex
    tok.decoder = hf.decoders.ByteLevel()
    return tok


def hf_train(text: str, vocab_size: int) -> hf.Tokenizer:
    """HF's BPE trained on ``text``: the 256 bytes, merges, then <|endoftext|>, as GPT-2's."""
    tok = hf_byte_level(hf.models.BPE())
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
                                     special_tokens=["<|endoftext|>"])
    tok.train_from_iterator([text], trainer)
    return tok
