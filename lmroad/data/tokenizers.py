"""Tokenizers: text <-> integer token ids.

Three tokenizers share one interface (``Tokenizer``):

    CharTokenizer   one token per Unicode code point; the vocabulary is the
                    sorted set of characters of a text.
    WordTokenizer   words (with a leading space attached, GPT-2 style),
                    single punctuation marks and single whitespace characters,
                    so that the tokens concatenate back to the exact text.
    BPETokenizer    GPT-2's byte-level BPE (bpe.py): learned merges of UTF-8
                    bytes, so every text encodes; no token is ever unknown.

    tok = CharTokenizer.from_text(corpus.train + corpus.val)
    ids = tok.encode("ROMEO:")              # np.ndarray int64, shape (n,)
    tok.decode(ids) == "ROMEO:"
    tok2 = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))

For text whose tokens are all in the vocabulary (any text, for a BPETokenizer),
``decode(encode(s)) == s``. Tokens outside the vocabulary are handled by the
``errors`` policy (a BPETokenizer's ``errors`` is GPT-2's instead: how decode
treats bytes that are not UTF-8):

    "strict"   (default) raise a ValueError listing them
    "skip"     drop them
    "replace"  map them to the unknown token; only a tokenizer made with an
               ``unk_token`` can do this (asking otherwise is a ValueError).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "tokenizer_from_dict"]

_ERRORS = ("strict", "skip", "replace")
_MAX_LISTED = 10  # unknown tokens named in an error message before "and N more"


def _check_errors(errors: str, where: str, unk_token: str | None) -> str:
    if errors not in _ERRORS:
        valid = ", ".join(map(repr, _ERRORS))
        raise ValueError(f"{where}: errors={errors!r} is not valid; use one of {valid}")
    if errors == "replace" and unk_token is None:
        raise ValueError(f"{where}: errors='replace' needs an unknown token, but this tokenizer has none; "
                         "make it with unk_token=... or use errors='strict' or 'skip'")
    return errors


def _unknown_error(where: str, what: str, unknown: Sequence[str]) -> ValueError:
    listed = ", ".join(repr(u) for u in unknown[:_MAX_LISTED])
    more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
    noun = what if len(unknown) == 1 else what + "s"
    return ValueError(f"{where}: {len(unknown)} {noun} not in the vocabulary: {listed}{more} "
                      "(pass errors='skip' to drop them, or errors='replace' with a tokenizer "
                      "that has an unk_token)")


def _as_id_array(ids: Any, where: str) -> np.ndarray:
    """Token ids from a list, a NumPy array or a minigrad Tensor, as a 1-D int64 array."""
    if hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):  # a minigrad Tensor
        ids = ids.numpy()
    arr = np.asarray(ids)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: token ids must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D sequence of token ids, got shape {arr.shape}; "
                         "decode one row at a time")
    return arr.astype(np.int64, copy=False)


class Tokenizer:
    """The shared interface. Subclasses define ``_split`` (text -> tokens) and
    may override ``encode``/``decode`` with faster versions.

    Attributes:
        vocab: the token strings; a token's id is its index here.
        unk_token: the token used by ``errors="replace"``, or None.
        errors: the default policy for tokens outside the vocabulary.
    """

    kind = ""  # the "type" stored by to_dict()

    def __init__(self, vocab: Iterable[str], unk_token: str | None = None, errors: str = "strict"):
        name = type(self).__name__
        vocab = list(vocab)
        for tok in vocab:
            if not isinstance(tok, str) or not tok:
                raise TypeError(f"{name}: vocabulary entries must be non-empty strings, got {tok!r}")
        if unk_token is not None and unk_token not in vocab:
            vocab.append(unk_token)
        if len(set(vocab)) != len(vocab):
            dups = sorted(t for t, n in Counter(vocab).items() if n > 1)
            raise ValueError(f"{name}: the vocabulary has duplicate tokens: {dups[:_MAX_LISTED]}")
        if not vocab:
            raise ValueError(f"{name}: the vocabulary is empty")
        self.vocab: list[str] = vocab
        self.unk_token = unk_token
        self.errors = _check_errors(errors, name, unk_token)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def unk_id(self) -> int | None:
        return None if self.unk_token is None else self.stoi[self.unk_token]

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        unk = f", unk_token={self.unk_token!r}" if self.unk_token is not None else ""
        return f"{type(self).__name__}(vocab_size={self.vocab_size}{unk}, errors={self.errors!r})"

    # ------------------------------------------------------------------ encode / decode

    def _split(self, text: str) -> list[str]:
        raise NotImplementedError

    def encode(self, text: str, errors: str | None = None) -> np.ndarray:
        """``text`` -> token ids, an int64 array of shape (n_tokens,)."""
        where = f"{type(self).__name__}.encode"
        errors = _check_errors(self.errors if errors is None else errors, where, self.unk_token)
        if not isinstance(text, str):
            raise TypeError(f"{where}: expected a str, got {type(text).__name__}")
        tokens = self._split(text)
        stoi, missing = self.stoi, -1
        ids = np.fromiter((stoi.get(t, missing) for t in tokens), dtype=np.int64, count=len(tokens))
        return self._handle_unknown(ids, lambda mask: [t for t, m in zip(tokens, mask) if m], errors,
                                    where, "token")

    def _handle_unknown(self, ids: np.ndarray, unknown_tokens, errors: str, where: str,
                        what: str) -> np.ndarray:
        """Apply the ``errors`` policy to ids where -1 marks an unknown token.
        ``unknown_tokens(mask)`` lists the tokens at the masked positions."""
        mask = ids < 0
        if not mask.any():
            return ids
        if errors == "strict":
            unique = list(dict.fromkeys(unknown_tokens(mask)))  # in order of first appearance
            raise _unknown_error(where, what, unique)
        if errors == "skip":
            return ids[~mask]
        ids[mask] = self.unk_id
        return ids

    def decode(self, ids: Any) -> str:
        """Token ids (list, 1-D array or minigrad Tensor) -> text."""
        ids = self._checked_ids(ids, f"{type(self).__name__}.decode")
        vocab = self.vocab
        return "".join([vocab[i] for i in ids.tolist()])

    def _checked_ids(self, ids: Any, where: str) -> np.ndarray:
        arr = _as_id_array(ids, where)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = int(arr[(arr < 0) | (arr >= self.vocab_size)][0])
            raise IndexError(f"{where}: token id {bad} is out of range for vocab_size {self.vocab_size}")
        return arr

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict:
        """A JSON-able description from which ``from_dict`` rebuilds this tokenizer."""
        return {"type": self.kind, "vocab": list(self.vocab), "unk_token": self.unk_token,
                "errors": self.errors}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        """Rebuild a tokenizer from ``to_dict()``'s output. On ``Tokenizer`` itself this
        dispatches on ``d["type"]``; on a subclass the type must match."""
        if not isinstance(d, dict) or "type" not in d or "vocab" not in d:
            raise ValueError(f"{cls.__name__}.from_dict: expected a dict with keys 'type' and 'vocab' "
                             f"(as written by to_dict()), got {d!r:.200}")
        from .bpe import BPETokenizer  # bpe.py builds on this module
        kinds = {sub.kind: sub for sub in (CharTokenizer, WordTokenizer, BPETokenizer)}
        if d["type"] not in kinds:
            raise ValueError(f"{cls.__name__}.from_dict: unknown tokenizer type {d['type']!r}; "
                             f"valid: {', '.join(map(repr, kinds))}")
        target = kinds[d["type"]]
        if cls is not Tokenizer and target is not cls:
            raise ValueError(f"{cls.__name__}.from_dict: the dict describes a {target.__name__}")
        return target._from_dict(d)

    @classmethod
    def _from_dict(cls, d: dict) -> Tokenizer:
        """This class from a dict whose "type" is its kind (BPETokenizer has more keys)."""
        return cls(d["vocab"], unk_token=d.get("unk_token"), errors=d.get("errors", "strict"))


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild whichever tokenizer ``d`` describes (e.g. from a checkpoint's JSON)."""
    return Tokenizer.from_dict(d)


# ---------------------------------------------------------------------------- characters

class CharTokenizer(Tokenizer):
    """One token per Unicode code point (so an emoji made of several code
    points, or a CRLF line break, is several tokens).

    ``CharTokenizer(vocab)`` takes the characters in id order;
    ``CharTokenizer.from_text(text)`` uses the sorted unique characters of ``text``.
    ``unk_token``, if given, is one character (appended to the vocabulary if absent).
    """

    kind = "char"

    def __init__(self, vocab: Iterable[str], unk_token: str | None = None, errors: str = "strict"):
        vocab = list(vocab)
        for c in vocab + ([unk_token] if unk_token is not None else []):
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer: every vocabulary entry and the unk_token must be a "
                                 f"single character, got {c!r}")
        super().__init__(vocab, unk_token, errors)
        # Encoding and decoding work on arrays of code points: a 5-million-character
        # corpus is encoded in milliseconds rather than a Python loop's seconds.
        points = np.array([ord(c) for c in self.vocab], dtype=np.int64)  # (V,) id -> code point
        self._points = points.astype(np.uint32)
        # code point -> id; the last entry (-1, "unknown") catches every larger code point
        self._id_of_point = np.full(int(points.max()) + 2, -1, dtype=np.int64)
        self._id_of_point[points] = np.arange(len(points))

    @classmethod
    def from_text(cls, text: str, unk_token: str | None = None, errors: str = "strict") -> CharTokenizer:
        """The vocabulary is the sorted set of characters in ``text``."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.from_text: expected a str, got {type(text).__name__}")
        return cls(sorted(set(text)), unk_token=unk_token, errors=errors)

    def _split(self, text: str) -> list[str]:
        return list(text)

    def encode(self, text: str, errors: str | None = None) -> np.ndarray:
        """``text`` -> ids, int64 of shape (len(text),) (fewer with errors="skip")."""
        where = "CharTokenizer.encode"
        errors = _check_errors(self.errors if errors is None else errors, where, self.unk_token)
        if not isinstance(text, str):
            raise TypeError(f"{where}: expected a str, got {type(text).__name__}")
        # surrogatepass: a Python str may hold lone surrogates; they are code points too
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (n,)
        table = self._id_of_point
        ids = table[np.minimum(points, len(table) - 1)]  # (n,), -1 where unknown
        return self._handle_unknown(ids, lambda mask: [chr(p) for p in points[mask].tolist()], errors,
                                    where, "character")

    def decode(self, ids: Any) -> str:
        ids = self._checked_ids(ids, "CharTokenizer.decode")
        return self._points[ids].tobytes().decode("utf-32-le", "surrogatepass")


# ---------------------------------------------------------------------------- words

# A token is one of: an optional space and a word (letters/digits/underscore, with
# inner apostrophes as in "reliev'd"); an optional space and one other symbol; a CRLF;
# any one whitespace character. Every character falls in one of these, so the tokens
# always concatenate back to the text.
_WORD_PATTERN = re.compile(r" ?\w+(?:'\w+)*| ?[^\w\s]|\r\n|\s")


class WordTokenizer(Tokenizer):
    """Words with their leading space (" the", "And"), single punctuation marks
    and single whitespace characters; ``"".join(tokens) == text`` always.

    ``WordTokenizer.from_text(text, min_freq=..., max_size=...)`` keeps the most
    frequent tokens; when it has to drop some, it needs an ``unk_token`` (a
    string the splitter never produces, e.g. the default suggestion "<unk>").
    """

    kind = "word"

    @staticmethod
    def split(text: str) -> list[str]:
        """The tokens of ``text``; they concatenate back to ``text``."""
        return _WORD_PATTERN.findall(text)

    def _split(self, text: str) -> list[str]:
        return self.split(text)

    @classmethod
    def from_text(cls, text: str, min_freq: int = 1, max_size: int | None = None,
                  unk_token: str | None = None, errors: str = "strict") -> WordTokenizer:
        """Vocabulary: the tokens of ``text`` seen at least ``min_freq`` times, the most
        frequent first (ties alphabetical), at most ``max_size`` of them including
        ``unk_token``."""
        if not isinstance(text, str):
            raise TypeError(f"WordTokenizer.from_text: expected a str, got {type(text).__name__}")
        if min_freq < 1 or (max_size is not None and max_size < 1 + (unk_token is not None)):
            raise ValueError(f"WordTokenizer.from_text: need min_freq >= 1 and room for at least one "
                             f"token in max_size, got min_freq={min_freq}, max_size={max_size}")
        counts = Counter(cls.split(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [tok for tok, n in ranked if n >= min_freq]
        if max_size is not None:
            kept = kept[:max_size - (unk_token is not None)]
        if len(kept) < len(counts) and unk_token is None:
            raise ValueError(f"WordTokenizer.from_text: min_freq={min_freq}, max_size={max_size} drop "
                             f"{len(counts) - len(kept)} of {len(counts)} tokens, so an unk_token is "
                             "needed to stand for them (e.g. unk_token='<unk>')")
        if unk_token is not None and unk_token in kept:
            kept.remove(unk_token)
        return cls(kept + ([unk_token] if unk_token is not None else []), unk_token, errors)
