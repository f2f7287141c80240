"""lmroad.data.bpe: GPT-2's byte-level BPE, checked against Hugging Face.

The references are built here, never downloaded: a Hugging Face ``tokenizers``
ByteLevel BPE trained on a small text (its vocab.json and merges.txt are what a
GPT-2 folder holds), loaded into ours; ours trained and saved, loaded by
``tokenizers`` and by ``transformers.GPT2TokenizerFast``. Both must give the
same ids for the same text, and our training the same merges as HF's trainer.

Unicode versions: our pre-tokenizer knows letters and numbers from Python's
``unicodedata`` (Unicode 14.0 in Python 3.11); HF's regex engine (Oniguruma)
knows a newer Unicode. A sweep of every code point found them disagreeing only
on code points that are unassigned (category Cn) in Python's Unicode and
letters in HF's (9392 of them, e.g. U+1C89, U+A7CB, U+105C0): Python calls
them "other symbols". So the texts compared with HF are drawn from assigned
characters (no Cn; no Cs, the lone surrogates, which no UTF-8 tokenizer takes).
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lmroad import checkpoint as ckpt_mod
from lmroad import cli
from lmroad.checkpoint import read_checkpoint
from lmroad.data import (
    BPETokenizer,
    CharTokenizer,
    Corpus,
    Tokenizer,
    build_tokenizer,
    bytes_to_unicode,
    pretokenize,
    tiny_corpus,
    tokenizer_from_dict,
)
from lmroad.data.bpe import _WHITESPACE
from lmroad.train_config import TrainConfig

hf = pytest.importorskip("tokenizers", reason="the reference: pip install tokenizers (the interop extra)")
from hf_bpe import hf_byte_level, hf_train  # noqa: E402  (after the skip: it imports tokenizers)

# A training text with a bit of everything the tests then encode: English with contractions,
# several scripts, emoji, digits, punctuation, whitespace runs
SAMPLE = (tiny_corpus(seed=3, n_chars=6000).train
          + "It's done, they're here; we've seen I'm sure you'll say he'd won.  \n\n\t  \n"
          + "Straße naïve café Ελληνικά καλημέρα русский привет 日本語のテキスト 한국어 中文字符 "
          + "🙂 👍🏽 👨‍👩‍👧 🏳️‍🌈 1234 56.78 3,141,592 !!! ??? ... --- (x) [y] {z} ") * 3

WORDS = ["the", " The", " king", "ROMEO:", "naïve", "Straße", " καλημέρα", " привет", "日本語", "한국어",
         "🙂", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "e\u0301", "1234", " 56", "3.14", "'s", "'t", "'re", "'ve",
         "'m", "'ll", "'d", "'S", "don't", "''s", "?'s", "<|endoftext|>", "<|endoftext", "|>", "...",
         "?!", "\u200d", "\x1c"]
# whitespace: runs of White_Space of every kind, and U+001C, which str.isspace() calls space but is not
SPACES = " \t\n\r\x0b\x0c\x85\xa0\u2028\u3000\x1c"
# characters assigned in this Python's Unicode (see the module docstring for why)
ASSIGNED = st.characters(blacklist_categories=("Cs", "Cn"))
pieces = st.one_of(st.sampled_from(WORDS), st.text(alphabet=SPACES, min_size=1, max_size=6),
                   st.text(alphabet=ASSIGNED, max_size=8), st.integers(0, 10**7).map(str))
texts = st.lists(pieces, max_size=24).map("".join)
V = 500            # the references' vocabulary: SAMPLE runs out of pairs at 597
EXAMPLES = ["Hello  world!\n\n  It's 2024 —  naïve   ",
            "a<|endoftext|>b <|endoftext|> <|endoftext|><|endoftext|>",
            "   \n\t\n  x  \n", "👨‍👩‍👧👍🏽 e\u0301 'S 's''s", "", " ", "\x1c\x1d \x1c a"]


def _merges_of(folder) -> list[tuple[str, str]]:
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]


@pytest.fixture(scope="module")
def hf_trained(tmp_path_factory):
    """(HF tokenizer, its folder with vocab.json + merges.txt, ours loaded from them)."""
    folder = tmp_path_factory.mktemp("hf-bpe")
    tok = hf_train(SAMPLE, V)
    tok.model.save(str(folder))
    return tok, folder, BPETokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def ours_saved(tmp_path_factory):
    """(ours trained on SAMPLE, the folder it saved, HF's tokenizer loaded from that folder)."""
    folder = tmp_path_factory.mktemp("our-bpe")
    ours = BPETokenizer.train(SAMPLE, V)
    ours.save(folder)
    theirs = hf_byte_level(hf.models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    theirs.add_special_tokens(["<|endoftext|>"])
    return ours, folder, theirs


@pytest.fixture(scope="module")
def gpt2_fast(ours_saved):
    transformers = pytest.importorskip("transformers", reason="GPT2TokenizerFast: pip install transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(str(ours_saved[1]), local_files_only=True)


# ---------------------------------------------------------------------------- the byte table, the regex

def test_byte_table_is_gpt2s():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert [table[b] for b in (ord(" "), ord("\n"), 0, ord("A"), 0xAD)] == ["Ġ", "Ċ", "Ā", "A", "Ń"]
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert set(table.values()) == set(hf.pre_tokenizers.ByteLevel.alphabet())
    ours = BPETokenizer.train("abc", 300)
    # GPT-2's ids: "!" is 0, byte 0 ("Ā") is 188, the space ("Ġ") 220, <|endoftext|> the last
    assert (ours.stoi["!"], ours.stoi["Ā"], ours.stoi["Ġ"]) == (0, 188, 220)
    assert ours.vocab[-1] == "<|endoftext|>"


def test_whitespace_is_unicode_white_space_not_str_isspace():
    body = re.compile(f"[{_WHITESPACE}]")
    ours = {chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and body.fullmatch(chr(c))}
    isspace = {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert isspace - ours == {"\x1c", "\x1d", "\x1e", "\x1f"} and ours <= isspace


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
@example("Hello  world, it's 2024!\n")
def test_pretokens_concatenate_back_to_the_text(s):
    assert "".join(pretokenize(s)) == s


@given(texts)
def test_pretokens_are_hf_byte_levels(s):
    table = bytes_to_unicode()
    ours = ["".join(table[b] for b in w.encode("utf-8")) for w in pretokenize(s)]
    theirs = [w for w, _ in hf.pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(s)]
    assert ours == theirs


def test_pretokenizer_agrees_with_hf_at_every_category_boundary():
    """Both ends of every run of code points of one general category (where a code point range
    in our classes starts or stops), and every 101st code point, assigned ones only, in contexts
    that tell letters, numbers, symbols and whitespace apart; compared by the pieces' ends."""
    points = [c for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    category = [unicodedata.category(chr(c))[0] for c in points]
    chosen = [c for i, c in enumerate(points) if i % 101 == 0 or i + 1 == len(points)
              or category[i] != category[i + 1] or category[i] != category[i - 1]]
    text = "".join(f"x{chr(c)} 1{chr(c)}  {chr(c)}{chr(c)}\n" for c in chosen)
    ends = [end for _, (_, end) in hf.pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]
    assert list(itertools.accumulate(map(len, pretokenize(text)))) == ends


def test_pretokenize_examples():
    assert pretokenize("Hello  world, it's\n\n  2024!") == \
        ["Hello", " ", " world", ",", " it", "'s", "\n\n ", " 2024", "!"]
    assert pretokenize("?'s ''s 'S") == ["?'", "s", " ''", "s", " '", "S"]     # contractions start a match
    assert pretokenize("a\x1c b") == ["a", "\x1c", " b"]                          # U+001C is a symbol


# ---------------------------------------------------------------------------- encode like HF

@given(texts)
@example(EXAMPLES[0])
@example(EXAMPLES[1])
@example(EXAMPLES[2])
@example(EXAMPLES[3])
@example(EXAMPLES[6])
def test_hf_trained_files_encode_and_decode_as_hf_does(hf_trained, s):
    theirs, _, ours = hf_trained
    ids = ours.encode(s)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ids.tolist() == theirs.encode(s).ids
    assert ours.decode(ids) == theirs.decode(ids.tolist(), skip_special_tokens=False) == s


@given(texts)
@example(EXAMPLES[0])
@example(EXAMPLES[1])
@example(EXAMPLES[3])
def test_our_saved_files_encode_in_hf_as_in_ours(ours_saved, s):
    ours, _, theirs = ours_saved
    assert ours.encode(s).tolist() == theirs.encode(s).ids


@given(texts)
@example(EXAMPLES[1])
def test_gpt2_tokenizer_fast_reads_our_files_and_agrees(ours_saved, gpt2_fast, s):
    ours = ours_saved[0]
    assert ours.encode(s).tolist() == gpt2_fast(s)["input_ids"]


def test_gpt2_tokenizer_fast_on_hf_files_and_endoftext(hf_trained):
    transformers = pytest.importorskip("transformers")
    folder = hf_trained[1]
    theirs = transformers.GPT2TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    # positional: transformers 4 names them vocab_file, merges_file, 5 vocab, merges (and silently
    # builds an empty tokenizer from vocab_file=..., merges_file=...)
    direct = transformers.GPT2TokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
    ours = hf_trained[2]
    text = "ROMEO: It's <|endoftext|>the king's 日本語 🙂<|endoftext|>"
    ids = ours.encode(text)
    assert ids.tolist() == theirs(text)["input_ids"] == direct(text)["input_ids"]
    assert ids.tolist().count(ours.stoi["<|endoftext|>"]) == 2
    assert ours.decode(ids) == theirs.decode(ids.tolist(), skip_special_tokens=False) == text


@given(st.lists(st.integers(0, V - 1), max_size=12))
def test_any_ids_decode_as_hf_does_invalid_utf8_included(hf_trained, ids):
    theirs, _, ours = hf_trained
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=False)


def test_special_tokens_longest_first_and_only_whole():
    base = BPETokenizer.train("abc", 260)
    tok = BPETokenizer(base.vocab + ["<a>", "<a><b>"], [], ["<a>", "<a><b>"])
    ids = tok.encode("x<a><b><a>y<a")
    assert [tok.vocab[i] for i in ids] == ["x", "<a><b>", "<a>", "y", "<", "a"]


# ---------------------------------------------------------------------------- round trips

@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
@example("汉字 and emoji 🙂👍🏽\r\nline two\r\n\tend<|endoftext|>")
def test_decode_encode_is_the_identity_on_any_text(ours_saved, s):
    ours = ours_saved[0]
    assert ours.decode(ours.encode(s)) == s
    assert ours.encode_bytes(s.encode("utf-8")).tolist() == ours.encode(s).tolist()


@given(st.binary(max_size=80))
@example(b"\xff\xfe\x00 abc \xed\xa0\x80 \xf0\x9f\x99")
@example(b"<|endoftext|>\x80")
def test_decode_bytes_encode_bytes_is_the_identity_on_any_bytes(ours_saved, b):
    ours = ours_saved[0]
    assert ours.decode_bytes(ours.encode_bytes(b)) == b
    assert ours.decode(ours.encode_bytes(b)) == b.decode("utf-8", "replace")


def test_invalid_utf8_decodes_to_the_replacement_character(ours_saved):
    ours = ours_saved[0]
    emoji = ours.encode_bytes("🙂".encode())
    assert ours.decode(ours.encode_bytes(b"a\xffb")) == "a\ufffdb"
    cut = ours.encode_bytes("🙂".encode()[:3])              # half a character, as a model may emit
    assert ours.decode(cut) == "\ufffd" and ours.decode(emoji) == "🙂"
    strict = BPETokenizer.from_dict({**ours.to_dict(), "errors": "strict"})
    with pytest.raises(UnicodeDecodeError):
        strict.decode(cut)
    assert BPETokenizer.from_dict({**ours.to_dict(), "errors": "ignore"}).decode(cut) == ""


def test_a_lone_surrogate_is_a_clear_error_and_bytes_take_it(ours_saved):
    ours = ours_saved[0]
    with pytest.raises(ValueError, match=re.escape("BPETokenizer.encode: the text holds a lone surrogate "
                                                   "U+D800 at index 2")):
        ours.encode("ab\ud800c")
    raw = "ab\udcffc".encode("utf-8", "surrogateescape")       # how Python smuggles a byte in a str
    assert ours.decode_bytes(ours.encode_bytes(raw)) == raw == b"ab\xffc"


def test_encode_is_cached_and_repeatable(ours_saved):
    ours = ours_saved[0]
    first = ours.encode(SAMPLE[:2000])
    assert ours._cache and np.array_equal(ours.encode(SAMPLE[:2000]), first)


# ---------------------------------------------------------------------------- training

def _reference_merges(text: str, vocab_size: int) -> list[tuple[str, str]]:
    """BPE training the slow, obvious way: recount every pair after every merge."""
    table = bytes_to_unicode()
    tokens = sorted(table.values())
    words = {tuple(tokens.index(table[b]) for b in w.encode("utf-8")): n
             for w, n in Counter(pretokenize(text.replace("<|endoftext|>", "\n"))).items()}
    merges = []
    while len(tokens) + 1 < vocab_size:
        pairs = Counter()
        for w, n in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += n
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], p))      # most frequent; ties: smallest ids
        tokens.append(tokens[a] + tokens[b])
        merges.append((tokens[a], tokens[b]))
        merged = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(len(tokens) - 1)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        words = merged
    return merges


small_texts = st.lists(st.sampled_from([" a", " ab", " abc", "bca", " aaa", "cc", " ba", "!", " 1"]),
                       min_size=1, max_size=30).map("".join)


@given(small_texts, st.integers(257, 290))
@example(" aaa aaaa aaaaa", 270)                          # overlapping pairs: "aaa" holds (a, a) twice
def test_every_merge_is_the_most_frequent_pair_at_its_time(text, vocab_size):
    tok = BPETokenizer.train(text, vocab_size)
    assert tok.merges == _reference_merges(text, vocab_size)
    assert tok.vocab_size == 256 + len(tok.merges) + 1 <= vocab_size


@given(small_texts, st.integers(257, 290))
def test_merges_equal_hf_trainers_ties_included(tmp_path_factory, text, vocab_size):
    folder = tmp_path_factory.mktemp("hf-small")
    hf_train(text, vocab_size).model.save(str(folder))
    assert BPETokenizer.train(text, vocab_size).merges == _merges_of(folder)


def test_merges_equal_hf_trainers_on_a_larger_text(hf_trained):
    theirs, folder, _ = hf_trained
    ours = BPETokenizer.train(SAMPLE, V)
    assert ours.merges == _merges_of(folder) and len(ours.merges) == V - 257
    assert sorted(ours.vocab) == sorted(theirs.get_vocab())           # the same tokens, other ids


def test_training_is_deterministic_and_stops_when_no_pair_is_left():
    a, b = BPETokenizer.train(SAMPLE[:3000], 400), BPETokenizer.train(SAMPLE[:3000], 400)
    assert a.vocab == b.vocab and a.merges == b.merges
    tiny = BPETokenizer.train("abab", 1000)                    # "abab": ab, then abab
    assert tiny.merges == [("a", "b"), ("ab", "ab")] and tiny.vocab_size == 259


def test_special_tokens_are_cut_out_before_training():
    tok = BPETokenizer.train("<|endoftext|>" * 50 + " hi", 300)
    assert not any("endof" in t for t in tok.vocab[:-1])
    assert tok.encode("<|endoftext|>").tolist() == [tok.vocab_size - 1]
    none = BPETokenizer.train("<|endoftext|> hi", 300, special_tokens=())
    assert "<|endoftext|>" not in none.vocab and none.special_tokens == ()


# ---------------------------------------------------------------------------- serialisation

def test_to_dict_survives_json_and_every_from_dict(ours_saved):
    ours = ours_saved[0]
    d = json.loads(json.dumps(ours.to_dict()))
    assert d["type"] == "bpe" and d["merges"][0] == " ".join(ours.merges[0])
    assert set(d) == {"type", "vocab", "merges", "special_tokens", "errors"}
    for back in (tokenizer_from_dict(d), Tokenizer.from_dict(d), BPETokenizer.from_dict(d)):
        assert isinstance(back, BPETokenizer)
        assert back.vocab == ours.vocab and back.merges == ours.merges
        assert back.encode(SAMPLE[:500]).tolist() == ours.encode(SAMPLE[:500]).tolist()
    with pytest.raises(ValueError, match="CharTokenizer.from_dict: the dict describes a BPETokenizer"):
        CharTokenizer.from_dict(d)
    assert repr(ours) == (f"BPETokenizer(vocab_size={V}, merges={V - 257}, "
                          "special_tokens=['<|endoftext|>'], errors='replace')")


def test_save_writes_gpt2s_files_and_from_pretrained_reads_them(ours_saved, tmp_path):
    ours, folder, _ = ours_saved
    assert (folder / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["<|endoftext|>"] == V - 1 and vocab["Ġ"] == 220
    back = BPETokenizer.from_pretrained(folder)
    assert back.vocab == ours.vocab and back.merges == ours.merges
    assert back.special_tokens == ("<|endoftext|>",)
    plain = BPETokenizer.from_files(folder / "vocab.json", folder / "merges.txt", special_tokens=[])
    assert plain.special_tokens == () and V - 1 not in plain.encode("<|endoftext|>")   # then plain text


def test_checkpoint_accepts_a_bpe_tokenizer_and_refuses_a_bad_one(ours_saved):
    d = ours_saved[0].to_dict()
    problem = ckpt_mod._tokenizer_problem
    assert problem(d, V) is None
    assert f"more than the model's vocab_size {V - 1}" in problem(d, V - 1)
    assert "'merges'" in problem({k: v for k, v in d.items() if k != "merges"}, V)
    assert "'unk_token'" in problem({**d, "unk_token": None}, V)
    assert "lists of strings" in problem({**d, "merges": [1, 2]}, V)
    assert "lists of strings" in problem({**d, "special_tokens": "<|endoftext|>"}, V)
    assert "'errors' a string" in problem({**d, "errors": 3}, V)
    assert "not in the vocabulary" in problem({**d, "merges": d["merges"] + ["Ġ zzz"]}, V)
    assert "errors='bad' is not valid" in problem({**d, "errors": "bad"}, V)


# ---------------------------------------------------------------------------- bad files, bad arguments

def _write(folder, vocab, merges: str):
    folder.mkdir(exist_ok=True)
    text = vocab if isinstance(vocab, str) else json.dumps(vocab)
    (folder / "vocab.json").write_text(text, encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    return folder


def _valid_files() -> tuple[dict, str]:
    tok = BPETokenizer.train("hello hello world", 270)
    return dict(tok.stoi), "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in tok.merges)


def _bad_files():
    vocab, merges = _valid_files()
    n = len(vocab)
    without = {t: i for t, i in vocab.items() if t != "Ā"}
    yield "not json", "{", merges, ("is not JSON",)
    yield "not an object", "[1, 2]", merges, ("must hold a non-empty JSON object",)
    yield "id out of range", {**vocab, "hello": n}, merges, ("token 'hello' has id", f"0 to {n - 1}")
    yield "id not an int", {**vocab, "hello": "5"}, merges, ("token 'hello' has id '5'",)
    yield "id twice", {**vocab, "hello": 3}, merges, ("id 3 is given to 2 tokens",)
    yield "token twice", json.dumps(vocab)[:-1] + ', "hello": 0}', merges, ("token 'hello' is listed twice",)
    yield "byte missing", {t: (i if i < vocab["Ā"] else i - 1) for t, i in without.items()}, merges, \
        ("lacks 1 of the 256 one-byte tokens", "'Ā' (byte 0x00)")
    yield "not a byte char", {**vocab, "hé\u4e00": n}, merges, ("token 'hé一'", "U+4E00", "special_tokens")
    yield "three parts", vocab, merges + "a b c\n", ("merges.txt, line",
                                                      "expected two tokens separated by one space")
    yield "part missing", vocab, merges + "zq x\n", ("its left token 'zq' is not in the vocabulary",)
    yield "result missing", vocab, merges + "x y\n", ("the merged token 'xy' is not in the vocabulary",)
    first = merges.splitlines()[1]
    yield "merge twice", vocab, merges + first + "\n", (f"line {len(merges.splitlines()) + 1}",
                                                        f"'{first}' repeats the merge of rank 0")


BAD_FILES = list(_bad_files())


@pytest.mark.parametrize(("vocab", "merges", "fragments"), [b[1:] for b in BAD_FILES],
                         ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_refused_naming_the_problem(vocab, merges, fragments, tmp_path):
    folder = _write(tmp_path / "tok", vocab, merges)
    with pytest.raises(ValueError) as info:
        BPETokenizer.from_pretrained(folder)
    message = str(info.value)
    assert message.startswith("BPETokenizer.from_files: ") and all(f in message for f in fragments), message


def test_the_valid_files_load(tmp_path):
    tok = BPETokenizer.from_pretrained(_write(tmp_path / "tok", *_valid_files()))
    assert tok.decode(tok.encode("hello world")) == "hello world"


def test_missing_files_and_special_tokens_are_named(tmp_path):
    with pytest.raises(ValueError, match="has no vocab.json and no merges.txt"):
        BPETokenizer.from_pretrained(tmp_path)
    folder = _write(tmp_path / "tok", *_valid_files())
    with pytest.raises(ValueError, match="special token '<pad>' is not in the vocabulary"):
        BPETokenizer.from_files(folder / "vocab.json", folder / "merges.txt", special_tokens=["<pad>"])
    with pytest.raises(ValueError, match="cannot read"):
        BPETokenizer.from_files(folder / "nope.json", folder / "merges.txt")


@pytest.mark.parametrize(("call", "error", "fragments"), [
    (lambda: BPETokenizer.train("abc", 256), ValueError, ("BPETokenizer.train: vocab_size=256 is too small",
                                                          "256 one-byte tokens and 1 special", ">= 257")),
    (lambda: BPETokenizer.train("abc", 256, special_tokens=()), None, ()),
    (lambda: BPETokenizer.train("abc", True), ValueError, ("vocab_size=True",)),
    (lambda: BPETokenizer.train(b"abc", 300), TypeError, ("expected a str, got bytes",)),
    (lambda: BPETokenizer.train("abc", 300, special_tokens="<|endoftext|>"), TypeError,
     ("special_tokens must be a sequence",)),
    (lambda: BPETokenizer.train("abc", 300, special_tokens=["a"]), ValueError,
     ("special token 'a' is spelled like a one-byte token",)),
    (lambda: BPETokenizer.train("a\ud800", 300), ValueError, ("lone surrogate U+D800 at index 1",)),
    (lambda: BPETokenizer.train("abc", 300, errors="skip"), ValueError,
     ("errors='skip' is not valid", "'replace', 'strict', 'ignore', 'backslashreplace'")),
    (lambda: BPETokenizer.train("abc", 300).encode(b"abc"), TypeError, ("use encode_bytes",)),
    (lambda: BPETokenizer.train("abc", 300).encode_bytes("abc"), TypeError, ("use encode for a str",)),
    (lambda: BPETokenizer.train("abc", 300).decode([300]), IndexError, ("token id 300 is out of range",)),
    (lambda: BPETokenizer.train("abc", 300).decode([[1]]), ValueError, ("decode one row at a time",)),
    (lambda: BPETokenizer.from_dict({"type": "bpe", "vocab": ["a"]}), ValueError, ("'merges'",)),
    (lambda: BPETokenizer.from_dict({"type": "bpe", "vocab": ["a"], "merges": "a b"}), TypeError,
     ("'merges' must be a list of strings",)),
])
def test_bad_arguments_are_refused_naming_the_problem(call, error, fragments):
    if error is None:
        assert call().vocab_size == 256
        return
    with pytest.raises(error) as info:
        call()
    assert all(f in str(info.value) for f in fragments), str(info.value)


# ---------------------------------------------------------------------------- lmroad: corpus, config, CLI

def test_build_tokenizer_learns_on_the_training_text_only():
    corpus = Corpus("t", train="the king and the queen\n" * 20, val="zzzz zzzz zzzz\n" * 20)
    tok = build_tokenizer("bpe", corpus, vocab_size=270)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 270
    assert not any("z" in t for t in tok.vocab[256:])
    assert tok.decode(tok.encode(corpus.val)) == corpus.val             # unseen text still encodes
    with pytest.raises(ValueError, match="valid: 'char', 'word', 'bpe'"):
        build_tokenizer("sentencepiece", corpus)


def test_vocab_size_setting_is_checked_naming_the_flag():
    assert TrainConfig(tokenizer="bpe", vocab_size=257).validate().vocab_size == 257
    with pytest.raises(ValueError, match=r"--vocab-size must be an integer >= 257, got 256"):
        TrainConfig(tokenizer="bpe", vocab_size=256).validate()
    with pytest.raises(ValueError, match="--tokenizer must be 'char', 'word' or 'bpe'"):
        TrainConfig(tokenizer="gpt2").validate()


def test_cli_trains_resumes_samples_and_evaluates_with_bpe(tiny_text, tmp_path, capsys):
    from threadpoolctl import threadpool_limits
    out = tmp_path / "run"
    tiny = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "4", "--block-size", "16",
            "--eval-iters", "1", "--warmup-iters", "1", "--progress", "none", "--no-plot"]
    with threadpool_limits(limits=None):
        assert cli.main(["train", "--data", str(tiny_text(2)), "--tokenizer", "bpe", "--vocab-size", "300",
                         "--max-iters", "2", "--out", str(out), *tiny]) == 0
        saved = read_checkpoint(out)
        assert saved.tokenizer["type"] == "bpe" and len(saved.tokenizer["vocab"]) == 300
        assert saved.train_config["vocab_size"] == 300 and saved.model_config["vocab_size"] == 300
        assert cli.main(["train", "--resume", "--out", str(out), "--max-iters", "3", "--progress", "none",
                         "--no-plot"]) == 0
        resumed = read_checkpoint(out)
        assert resumed.step == 3 and resumed.tokenizer == saved.tokenizer
        capsys.readouterr()
        assert cli.main(["sample", "--checkpoint", str(out), "--prompt", "ALDER: 🙂", "--max-new-tokens", "5",
                         "--seed", "0"]) == 0
        assert capsys.readouterr().out.startswith("ALDER: 🙂")
        assert cli.main(["sample", "--checkpoint", str(out), "--max-new-tokens", "3", "--seed", "0"]) == 0
        assert cli.main(["eval", "--checkpoint", str(out), "--json"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loss"] > 0


def test_unicodedata_version_is_what_the_comparisons_assume():
    """If this Python's Unicode is newer, the Cn exclusion above is merely cautious, never wrong."""
    assert tuple(map(int, unicodedata.unidata_version.split("."))) >= (13, 0, 0)
