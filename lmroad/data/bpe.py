"""Byte-level BPE: GPT-2's tokenizer, written out to be read.

    tok = BPETokenizer.train(corpus.train, vocab_size=1024)     # learn merges on a text
    tok = BPETokenizer.from_pretrained("path/to/gpt2")          # vocab.json + merges.txt of a HF folder
    ids = tok.encode("Hello world<|endoftext|>")                # np.ndarray int64, shape (n,)
    tok.decode(ids) == "Hello world<|endoftext|>"
    tok.save("my-tokenizer")                                    # GPT-2's two files, which HF loads

How GPT-2 turns text into ids, in four steps:

1. **Special tokens** such as ``<|endoftext|>`` are cut out of the text first;
   each is one id (50256 in GPT-2), never split.
2. **Pre-tokenization** cuts the rest into words with GPT-2's regular expression
   (``pretokenize``): contractions, a space and a run of letters, a space and
   a run of digits, a space and a run of other symbols, runs of whitespace.
   A merge never crosses a word's edge, and a word's ids depend only on the
   word, so each distinct word is tokenized once and cached.
3. **Bytes.** A word is its UTF-8 bytes; each byte starts as one token.
   There are 256 of them, so every text (every byte string, even invalid
   UTF-8) has a tokenization: no unknown token is ever needed. In
   ``vocab.json`` and ``merges.txt`` a byte is written as one printable
   character (``bytes_to_unicode``: the space is ``Ġ``, a newline ``Ċ``), so
   the token " the" is spelled ``Ġthe``.
4. **Merges.** ``merges.txt`` lists pairs of tokens, most important first
   (the rank). Repeatedly, the adjacent pair of lowest rank (the leftmost of
   equal ones) is replaced by its merged token, until no adjacent pair has a
   merge. This is the order Hugging Face ``tokenizers`` applies them in.

Decoding concatenates the tokens' bytes and decodes them as UTF-8 with
``errors="replace"`` (as GPT-2 does): a sequence cut in the middle of a
character decodes to U+FFFD. ``encode_bytes``/``decode_bytes`` work on bytes
instead and round-trip any byte string exactly.

Training (``BPETokenizer.train``) learns the merges: starting from the 256
bytes, it repeatedly merges the most frequent adjacent pair of tokens,
counted over the text's distinct words weighted by how often each occurs.

A Python ``str`` can hold lone surrogates (U+D800..U+DFFF), which are not
characters and have no UTF-8 bytes: ``encode`` refuses them with a
ValueError (encode such data with ``encode_bytes``, e.g. of
``s.encode("utf-8", "surrogateescape")``).

The ``errors`` of a BPETokenizer is GPT-2's: how ``decode`` treats bytes that
are not UTF-8 ("replace", the default, "strict", "ignore",
"backslashreplace"). No token is ever unknown to a byte-level BPE, so the
unknown-token policies of the other tokenizers do not apply.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import os
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .tokenizers import _MAX_LISTED, Tokenizer

__all__ = ["BPETokenizer", "bytes_to_unicode", "pretokenize", "ENDOFTEXT"]

ENDOFTEXT = "<|endoftext|>"          # GPT-2's one special token (id 50256 there)
_DECODE_ERRORS = ("replace", "strict", "ignore", "backslashreplace")
_CACHE_LIMIT = 200_000               # distinct words whose ids encode() remembers


# ---------------------------------------------------------------------------- bytes as characters

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: byte value -> the printable character that spells it.

    Why: a vocabulary file needs every token as visible text, and merges.txt
    separates a pair with a space, so no token may contain whitespace or a
    control character. The 188 bytes that are printable non-space Latin-1
    characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves;
    the other 68 (the control characters, space, DEL, no-break space, soft
    hyphen) get the code points 256, 257, ... in byte order: 0x00 -> ``Ā``,
    0x0A (newline) -> ``Ċ``, 0x20 (space) -> ``Ġ``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return dict(sorted(table.items()))


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}
# The ids of a trained tokenizer's first 256 tokens: the byte characters in code point
# order, as in GPT-2's vocab.json ("!" is 0, "Ā" (byte 0) is 188) and HF's trainer
_BYTE_CHARS = sorted(_BYTE_TO_CHAR.values())


# ---------------------------------------------------------------------------- pre-tokenization

# Unicode's White_Space: what \s means in GPT-2's regex (the `regex` module, Oniguruma, Rust).
# Python's str.isspace() also says True for U+001C..U+001F (the file, group, record and unit
# separators), which are not White_Space, so the class is spelled out.
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _letter_and_number_classes() -> tuple[str, str]:
    """The bodies of two regex character classes: every code point whose Unicode general
    category is a letter (L*), and every one that is a number (N*), as ranges, from one
    pass over the code points in ``unicodedata`` (about 0.3 s)."""
    ranges: dict[str, list[str]] = {"L": [], "N": []}
    start = 0
    categories = (unicodedata.category(chr(cp))[0] for cp in range(sys.maxunicode + 1))
    for major, run in itertools.groupby(categories):
        end = start + sum(1 for _ in run) - 1
        if major in ranges:
            ranges[major].append(f"\\U{start:08x}-\\U{end:08x}")
        start = end + 1
    return "".join(ranges["L"]), "".join(ranges["N"])


@functools.cache
def _pretokenizer() -> re.Pattern:
    r"""GPT-2's pattern

        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

    in Python's ``re``, which has no \p{...}: the letter and number classes are listed as
    code point ranges from ``unicodedata`` (built once, on first use), \s is White_Space.
    The alternatives are tried in order at each position. ``\s+(?!\S)`` takes a run of
    whitespace but its last character when a word follows, so that the word keeps its
    leading space (" world"); ``\s+`` then takes a last lone one."""
    letters, numbers = _letter_and_number_classes()
    space = _WHITESPACE
    return re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+"
                      rf"| ?[^{space}{letters}{numbers}]+|[{space}]+(?![^{space}])|[{space}]+")


def pretokenize(text: str) -> list[str]:
    """GPT-2's words of ``text``; they concatenate back to ``text``.

    >>> pretokenize("Hello  world, it's 2024!\\n")
    ['Hello', ' ', ' world', ',', ' it', "'s", ' 2024', '!', '\\n']
    """
    return _pretokenizer().findall(text)


# ---------------------------------------------------------------------------- the tokenizer

class _MergeError(ValueError):
    """A bad merge; ``index`` is its rank, so that from_files can name the line."""

    def __init__(self, message: str, index: int, reason: str):
        super().__init__(message)
        self.index, self.reason = index, reason


def _check_decode_errors(errors: Any, where: str) -> str:
    if errors not in _DECODE_ERRORS:
        valid = ", ".join(map(repr, _DECODE_ERRORS))
        raise ValueError(f"{where}: errors={errors!r} is not valid; it says how decode() treats bytes "
                         f"that are not UTF-8, use one of {valid}")
    return errors


def _utf8(text: str, where: str, what: str = "the text") -> bytes:
    """``text`` as UTF-8, or a ValueError naming the lone surrogate that has no UTF-8 form."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where}: {what} holds a lone surrogate U+{ord(text[e.start]):04X} at index "
                         f"{e.start}, which is not a character and has no UTF-8 bytes; remove it, or "
                         "tokenize bytes with encode_bytes (e.g. of s.encode('utf-8', 'surrogateescape') "
                         "for text read with errors='surrogateescape')") from None


class BPETokenizer(Tokenizer):
    """Byte-level BPE, GPT-2's scheme (see the module docstring).

    ``BPETokenizer(vocab, merges, special_tokens=(), errors="replace")``:

        vocab           the tokens in id order, each spelled in GPT-2's byte characters
                        (``bytes_to_unicode``), except the special tokens, which are plain
                        text; all 256 one-byte tokens must be there.
        merges          pairs ``(left, right)`` of tokens (or strings "left right"), lowest
                        rank first; both and their concatenation must be in ``vocab``.
        special_tokens  tokens of ``vocab`` matched in the text before anything else and
                        encoded as their one id (longest first where they overlap).
        errors          how ``decode`` treats bytes that are not UTF-8.

    Usually made with ``train``, ``from_files``/``from_pretrained`` or ``from_dict``.
    """

    kind = "bpe"

    def __init__(self, vocab: Iterable[str], merges: Iterable[tuple[str, str] | str],
                 special_tokens: Iterable[str] = (), errors: str = "replace"):
        name = type(self).__name__
        super().__init__(vocab)              # non-empty unique strings: self.vocab, self.stoi
        self.errors = _check_decode_errors(errors, name)
        stoi = self.stoi

        specials = list(special_tokens)
        for tok in specials:
            if not isinstance(tok, str) or tok not in stoi:
                raise ValueError(f"{name}: special token {tok!r} is not in the vocabulary; a special "
                                 "token must be one of its tokens (GPT-2's is '<|endoftext|>')")
        if len(set(specials)) != len(specials):
            raise ValueError(f"{name}: special tokens listed twice: "
                             f"{sorted(t for t, n in Counter(specials).items() if n > 1)}")
        self.special_tokens: tuple[str, ...] = tuple(specials)
        special = set(specials)

        # every token's bytes: a special token's are its UTF-8 text, the others' are spelled
        self._token_bytes: list[bytes] = []
        for i, tok in enumerate(self.vocab):
            if tok in special:
                self._token_bytes.append(_utf8(tok, name, f"special token {tok!r}"))
                continue
            stray = [c for c in tok if c not in _CHAR_TO_BYTE]
            if stray:
                raise ValueError(f"{name}: token {tok!r} (id {i}) has {stray[0]!r} (U+{ord(stray[0]):04X}), "
                                 "which is not one of the 256 byte characters of GPT-2's alphabet "
                                 "(bytes_to_unicode); if it is a special token, list it in special_tokens")
            self._token_bytes.append(bytes(_CHAR_TO_BYTE[c] for c in tok))
        missing = [c for c in _BYTE_CHARS if c not in stoi or c in special]
        if missing:
            shown = ", ".join(f"{c!r} (byte 0x{_CHAR_TO_BYTE[c]:02x})" for c in missing[:_MAX_LISTED])
            raise ValueError(f"{name}: the vocabulary lacks {len(missing)} of the 256 one-byte tokens "
                             f"a byte-level BPE starts from: {shown}")
        self._byte_ids = [stoi[_BYTE_TO_CHAR[b]] for b in range(256)]   # byte value -> id

        # (left id, right id) -> (rank, merged id), the table the encoder looks pairs up in
        self.merges: list[tuple[str, str]] = []
        self._merge_of: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, merge in enumerate(merges):
            left, right = self._parse_merge(merge, rank)
            ids = (stoi[left], stoi[right])
            if ids in self._merge_of:
                first = self._merge_of[ids][0]
                raise _MergeError(f"{name}: merge {rank} ({left} {right}) repeats merge {first}", rank,
                                  f"'{left} {right}' repeats the merge of rank {first}")
            self._merge_of[ids] = (rank, stoi[left + right])
            self.merges.append((left, right))

        if specials:
            # longest first: at one position the longest special token wins, as in HF
            alternatives = "|".join(map(re.escape, sorted(specials, key=len, reverse=True)))
            self._special_pattern: re.Pattern | None = re.compile(f"({alternatives})")
        else:
            self._special_pattern = None
        self._cache: dict[str, list[int]] = {}

    def _parse_merge(self, merge: Any, rank: int) -> tuple[str, str]:
        """One merge as (left, right), checked against the vocabulary."""
        name = type(self).__name__
        if isinstance(merge, str):
            parts = merge.split(" ")
        elif isinstance(merge, (tuple, list)):
            parts = list(merge)
        else:
            parts = None
        if not (parts and len(parts) == 2 and all(isinstance(p, str) and p for p in parts)):
            reason = f"expected two tokens separated by one space, got {merge!r:.80}"
            raise _MergeError(f"{name}: merge {rank}: {reason}", rank, reason)
        left, right = parts
        for what, tok in (("its left token", left), ("its right token", right),
                          ("the merged token", left + right)):
            if tok not in self.stoi:
                reason = f"'{left} {right}': {what} {tok!r} is not in the vocabulary"
            elif tok in self.special_tokens:
                reason = f"'{left} {right}': {what} {tok!r} is a special token, which merges never touch"
            else:
                continue
            raise _MergeError(f"{name}: merge {rank} {reason}", rank, reason)
        return left, right

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={list(self.special_tokens)}, errors={self.errors!r})")

    # ------------------------------------------------------------------ encode

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> token ids, an int64 array of shape (n_tokens,), as GPT-2 (and HF's
        GPT2TokenizerFast) encode it, special tokens in the text included."""
        where = "BPETokenizer.encode"
        if not isinstance(text, str):
            hint = "; use encode_bytes for bytes" if isinstance(text, (bytes, bytearray)) else ""
            raise TypeError(f"{where}: expected a str, got {type(text).__name__}{hint}")
        _utf8(text, where)                 # refuses lone surrogates, before any work
        return self._encode_text(text)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        """Any bytes -> token ids; ``decode_bytes`` gives back exactly ``data``.

        Valid UTF-8 is tokenized as ``encode`` tokenizes its text. The bytes that are not
        UTF-8 are read as Python's "surrogateescape" characters (U+DC80..U+DCFF), which
        pre-tokenize as symbols, and each is its own byte again in the tokens."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"BPETokenizer.encode_bytes: expected bytes, got {type(data).__name__}"
                            + ("; use encode for a str" if isinstance(data, str) else ""))
        return self._encode_text(bytes(data).decode("utf-8", "surrogateescape"))

    def _encode_text(self, text: str) -> np.ndarray:
        ids: list[int] = []
        pieces = self._special_pattern.split(text) if self._special_pattern else [text]
        # re.split with a group alternates: text, special token, text, ..., text
        for k, piece in enumerate(pieces):
            if k % 2:
                ids.append(self.stoi[piece])
            elif piece:
                self._encode_words(piece, ids)
        return np.array(ids, dtype=np.int64)

    def _encode_words(self, text: str, out: list[int]) -> None:
        cache = self._cache
        for word in pretokenize(text):
            word_ids = cache.get(word)
            if word_ids is None:
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                word_ids = cache[word] = self._bpe(word.encode("utf-8", "surrogateescape"))
            out.extend(word_ids)

    def _bpe(self, word: bytes) -> list[int]:
        """The ids of one pre-tokenized word: its bytes, merged pair by pair.

        As Hugging Face's ``Word::merge_all``: a heap holds (rank, position, merged id)
        of every adjacent pair that has a merge; the smallest rank is merged first, the
        leftmost of equal ranks. Merging symbol ``i`` with the one after it links ``i``
        to the next but one and offers the two new pairs; entries whose pair has changed
        since are skipped when they come up. O(n log n) in the word's length."""
        ids: list[int | None] = [self._byte_ids[b] for b in word]
        n = len(ids)
        if n < 2:
            return ids
        merge_of = self._merge_of
        nxt = list(range(1, n + 1))          # the next live symbol after i (n: none)
        prev = list(range(-1, n - 1))        # the previous one (-1: none)
        heap = []
        for i in range(n - 1):
            m = merge_of.get((ids[i], ids[i + 1]))
            if m is not None:
                heap.append((m[0], i, m[1]))
        heapq.heapify(heap)
        while heap:
            _, i, new = heapq.heappop(heap)
            j = nxt[i]
            if ids[i] is None or j >= n:
                continue                                     # i was merged away, or is last
            m = merge_of.get((ids[i], ids[j]))
            if m is None or m[1] != new:
                continue                                     # the pair at i changed since
            ids[i], ids[j] = new, None                       # i takes j's place
            nxt[i] = nxt[j]
            if nxt[i] < n:
                prev[nxt[i]] = i
            if prev[i] >= 0:
                m = merge_of.get((ids[prev[i]], new))
                if m is not None:
                    heapq.heappush(heap, (m[0], prev[i], m[1]))
            if nxt[i] < n:
                m = merge_of.get((new, ids[nxt[i]]))
                if m is not None:
                    heapq.heappush(heap, (m[0], i, m[1]))
        return [t for t in ids if t is not None]

    # ------------------------------------------------------------------ decode

    def decode_bytes(self, ids: Any) -> bytes:
        """Token ids (list, 1-D array or minigrad Tensor) -> their bytes, concatenated."""
        ids = self._checked_ids(ids, "BPETokenizer.decode_bytes")
        token_bytes = self._token_bytes
        return b"".join([token_bytes[i] for i in ids.tolist()])

    def decode(self, ids: Any) -> str:
        """Token ids -> text: their bytes decoded as UTF-8 with ``self.errors`` ("replace":
        bytes that are not UTF-8, e.g. half a character, become U+FFFD)."""
        ids = self._checked_ids(ids, "BPETokenizer.decode")
        token_bytes = self._token_bytes
        return b"".join([token_bytes[i] for i in ids.tolist()]).decode("utf-8", self.errors)

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Sequence[str] = (ENDOFTEXT,),
              errors: str = "replace") -> BPETokenizer:
        """Learn a byte-level BPE of ``vocab_size`` tokens on ``text``.

        The vocabulary: the 256 one-byte tokens (ids 0..255, in the order of GPT-2's),
        then one token per merge, in the order learned, then ``special_tokens`` (as
        GPT-2's ``<|endoftext|>`` is its last id). Special tokens are cut out of the
        text first, so no merge learns their pieces.

        Each step merges the most frequent adjacent pair of tokens, counted over every
        position of every word (so "aaa" holds the pair (a, a) twice), the words being
        the text's distinct pre-tokens weighted by their number. Ties go to the pair
        whose left token has the smaller id, then the right one's: the rule of Hugging
        Face's BpeTrainer, whose merges these are on the same text. Training stops
        early, with a smaller vocabulary, when no pair is left.

        Only the words a merge touches are updated: the pair counts change by the pairs
        those words lose and gain, and a heap, refreshed lazily, finds the next pair.
        """
        where = f"{cls.__name__}.train"
        if not isinstance(text, str):
            raise TypeError(f"{where}: expected a str, got {type(text).__name__}")
        _utf8(text, where)
        specials = list(special_tokens) if not isinstance(special_tokens, str) else None
        if specials is None or not all(isinstance(t, str) and t for t in specials):
            raise TypeError(f"{where}: special_tokens must be a sequence of non-empty strings, "
                            f"got {special_tokens!r:.80}")
        least = 256 + len(set(specials))
        integer = isinstance(vocab_size, (int, np.integer)) and not isinstance(vocab_size, bool)
        if not integer or vocab_size < least:
            raise ValueError(f"{where}: vocab_size={vocab_size!r} is too small: the vocabulary holds the 256 "
                             f"one-byte tokens and {len(set(specials))} special token(s), so it must be an "
                             f"integer >= {least}")
        clash = [t for t in specials if t in _BYTE_CHARS]
        if clash:
            raise ValueError(f"{where}: special token {clash[0]!r} is spelled like a one-byte token; "
                             "choose special tokens such as '<|endoftext|>'")
        specials = list(dict.fromkeys(specials))
        tokens, merges = _learn_merges(_word_counts(text, specials), int(vocab_size) - len(specials),
                                       set(specials), where)
        return cls(tokens + specials, merges, specials, errors)

    # ------------------------------------------------------------------ files

    @classmethod
    def from_files(cls, vocab_json: str | os.PathLike, merges_txt: str | os.PathLike,
                   special_tokens: Sequence[str] | None = None, errors: str = "replace") -> BPETokenizer:
        """GPT-2's ``vocab.json`` (token -> id) and ``merges.txt`` (one "left right" pair a
        line, lowest rank first, after an optional ``#version`` line), as in a Hugging Face
        model folder. ``special_tokens`` (default: ``<|endoftext|>`` if the vocabulary has
        it, as GPT2TokenizerFast does) must be tokens of the vocabulary."""
        where = f"{cls.__name__}.from_files"
        vocab = _read_vocab_json(Path(vocab_json), where)
        merges, lines = _read_merges_txt(Path(merges_txt), where)
        if special_tokens is None:
            special_tokens = [ENDOFTEXT] if ENDOFTEXT in vocab else []
        try:
            return cls(vocab, merges, special_tokens, errors)
        except _MergeError as e:
            raise ValueError(f"{where}: {merges_txt}, line {lines[e.index]}: {e.reason}") from None
        except ValueError as e:
            raise ValueError(f"{where}: {vocab_json}: {e}") from None

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, special_tokens: Sequence[str] | None = None,
                        errors: str = "replace") -> BPETokenizer:
        """``from_files`` of ``folder/vocab.json`` and ``folder/merges.txt`` (a local folder,
        e.g. a downloaded GPT-2: nothing is fetched)."""
        folder = Path(folder)
        missing = [f for f in ("vocab.json", "merges.txt") if not (folder / f).is_file()]
        if missing:
            raise ValueError(f"{cls.__name__}.from_pretrained: {folder} has no {' and no '.join(missing)}; "
                             "a GPT-2 tokenizer folder holds vocab.json and merges.txt")
        return cls.from_files(folder / "vocab.json", folder / "merges.txt", special_tokens, errors)

    def to_files(self) -> dict[str, bytes]:
        """``{"vocab.json": ..., "merges.txt": ...}``: the two files in GPT-2's format."""
        lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in self.merges]
        return {"vocab.json": json.dumps(self.stoi, ensure_ascii=False).encode("utf-8"),
                "merges.txt": ("\n".join(lines) + "\n").encode("utf-8")}

    def save(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``vocab.json`` and ``merges.txt`` in GPT-2's format into ``folder`` (made if
        needed); ``from_pretrained`` and Hugging Face's tokenizers read them back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.to_files().items():
            (folder / name).write_bytes(data)
        return folder / "vocab.json", folder / "merges.txt"

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict:
        return {"type": self.kind, "vocab": list(self.vocab), "merges": [f"{a} {b}" for a, b in self.merges],
                "special_tokens": list(self.special_tokens), "errors": self.errors}

    @classmethod
    def _from_dict(cls, d: dict) -> BPETokenizer:
        where = f"{cls.__name__}.from_dict"
        extra = set(d) - {"type", "vocab", "merges", "special_tokens", "errors"}
        if "merges" not in d or extra:
            raise ValueError(f"{where}: a 'bpe' dict has keys 'type', 'vocab', 'merges', 'special_tokens', "
                             f"'errors'; got {sorted(d)}")
        for key in ("vocab", "merges", "special_tokens"):
            v = d.get(key, [])
            if not (isinstance(v, list) and all(isinstance(t, str) for t in v)):
                raise TypeError(f"{where}: {key!r} must be a list of strings, got {v!r:.80}")
        return cls(d["vocab"], d["merges"], d.get("special_tokens", []), d.get("errors", "replace"))


# ---------------------------------------------------------------------------- reading GPT-2's files

def _read_text(path: Path, where: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ValueError(f"{where}: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None


def _read_vocab_json(path: Path, where: str) -> list[str]:
    """The tokens of a vocab.json ({token: id}) in id order; the ids must be 0..n-1, each once."""
    def no_token_twice(pairs: list[tuple[str, Any]]) -> dict:
        table = dict(pairs)
        if len(table) < len(pairs):                   # json.loads would keep the last silently
            twice = next(t for t, n in Counter(t for t, _ in pairs).items() if n > 1)
            raise ValueError(f"{where}: {path}: token {twice!r} is listed twice")
        return table

    try:
        table = json.loads(_read_text(path, where), object_pairs_hook=no_token_twice)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: {path} is not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{where}: {path} must hold a non-empty JSON object {{token: id}}, "
                         f"got {type(table).__name__}")
    bad = [(t, i) for t, i in table.items() if isinstance(i, bool) or not isinstance(i, int)
           or not 0 <= i < len(table)]
    if bad:
        t, i = bad[0]
        raise ValueError(f"{where}: {path}: token {t!r} has id {i!r}; the ids of {len(table)} tokens must "
                         f"be the integers 0 to {len(table) - 1}")
    by_id: dict[int, list[str]] = defaultdict(list)
    for t, i in table.items():
        by_id[i].append(t)
    twice = sorted((i, ts) for i, ts in by_id.items() if len(ts) > 1)
    if twice:
        i, ts = twice[0]
        raise ValueError(f"{where}: {path}: id {i} is given to {len(ts)} tokens "
                         f"({', '.join(map(repr, ts[:3]))}); the ids must be the integers 0 to "
                         f"{len(table) - 1}, each once")
    return [by_id[i][0] for i in range(len(table))]


def _read_merges_txt(path: Path, where: str) -> tuple[list[str], list[int]]:
    """The merge lines of a merges.txt, and the line number (1-based) of each."""
    merges, lines = [], []
    for number, line in enumerate(_read_text(path, where).split("\n"), start=1):
        line = line.rstrip("\r")
        if (number == 1 and line.startswith("#version")) or not line:
            continue
        merges.append(line)
        lines.append(number)
    return merges, lines


# ---------------------------------------------------------------------------- training

def _word_counts(text: str, specials: list[str]) -> Counter:
    """How often each distinct pre-token occurs in ``text``, special tokens cut out."""
    if specials:
        pattern = "|".join(map(re.escape, sorted(specials, key=len, reverse=True)))
        pieces = re.split(pattern, text)
    else:
        pieces = [text]
    counts: Counter = Counter()
    for piece in pieces:
        counts.update(pretokenize(piece))
    return counts


def _merge_pair(word: list[int], a: int, b: int, new: int) -> list[int]:
    """``word`` with every (a, b), left to right, replaced by ``new`` ("aaa" -> "(aa)a")."""
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _learn_merges(word_counts: Counter, target: int, specials: set[str],
                  where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """BPE training (see ``BPETokenizer.train``): the tokens (byte tokens first) and the
    merges, learned until there are ``target`` tokens or no pair is left."""
    tokens = list(_BYTE_CHARS)                         # id -> byte-level spelling
    id_of = {t: i for i, t in enumerate(tokens)}
    byte_id = [id_of[_BYTE_TO_CHAR[b]] for b in range(256)]
    words = [[byte_id[b] for b in w.encode("utf-8")] for w in word_counts]
    counts = list(word_counts.values())

    pair_count: dict[tuple[int, int], int] = defaultdict(int)      # over all words, weighted
    words_with: dict[tuple[int, int], set[int]] = defaultdict(set)  # a superset: may hold stale words
    for w, (word, n) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_count[pair] += n
            words_with[pair].add(w)
    # a max-heap of (count, pair) as (-count, left, right): equal counts pop the smallest pair
    # first. Counts only fall, except for pairs holding the new token, which are pushed anew,
    # so an entry's count is at least the pair's: one that is too high is refreshed and put back
    heap = [(-c, a, b) for (a, b), c in pair_count.items()]
    heapq.heapify(heap)

    merges: list[tuple[str, str]] = []
    while len(tokens) < target and heap:
        negative, a, b = heapq.heappop(heap)
        count = pair_count[(a, b)]
        if count != -negative:
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        spelled = tokens[a] + tokens[b]
        if spelled in specials:
            raise ValueError(f"{where}: the learned token {spelled!r} is spelled like the special token "
                             f"{spelled!r}; choose special tokens such as '<|endoftext|>'")
        # a token spelled like an earlier one would reuse its id (as HF's trainer does), but
        # with merges applied to every word in one order, no token seems to arise twice
        new = id_of.get(spelled)
        if new is None:
            new = id_of[spelled] = len(tokens)
            tokens.append(spelled)
        merges.append((tokens[a], tokens[b]))
        grown = set()
        for w in words_with.pop((a, b)):
            word = words[w]
            merged = _merge_pair(word, a, b, new)
            if len(merged) == len(word):
                continue                               # a stale entry: the pair left this word
            n = counts[w]
            for pair in zip(word, word[1:]):
                pair_count[pair] -= n
            for pair in zip(merged, merged[1:]):
                pair_count[pair] += n
                if new in pair:                        # only pairs with the new token appear
                    words_with[pair].add(w)
                    grown.add(pair)
            words[w] = merged
        del pair_count[(a, b)]                         # now 0: every occurrence was merged
        for pair in grown:
            heapq.heappush(heap, (-pair_count[pair], *pair))
    return tokens, merges
