"""Byte-level BPE: lmroad's BPETokenizer (pure Python) against Hugging Face tokenizers (Rust), side by side.

    python benchmarks/bpe.py                                   # vocab 512, 2048, 8192 on Shakespeare
    python benchmarks/bpe.py --vocab-sizes 1024,4096 --repeats 3
    python benchmarks/bpe.py --smoke                           # the tiny corpus, vocab 300, once

For each vocabulary size, on the training text of ``--corpus`` (Shakespeare's
works by default, 4.6 million characters), in one process, the two
alternating repetitions:

    train    ours: ``BPETokenizer.train(text, V)``; HF: a ByteLevel BPE
             (``add_prefix_space=False``) with ``BpeTrainer(vocab_size=V,
             initial_alphabet=ByteLevel.alphabet(), special_tokens=
             ["<|endoftext|>"])``, ``train_from_iterator([text])``: the same
             text as one string, so both see the same pre-tokens.
    encode   the whole text as one string, with the tokenizer each trained;
             ours with an empty word cache ("cold"), and again with the cache
             the first call filled ("warm", ours only).

Checks, not timings: the two trainings learn the same merges
(``same_merges``) and the two encoders give the same tokens (``same_ids``;
HF's trainer numbers ``<|endoftext|>`` 0, ours last). The pre-tokenizer's
regex is built before the clock starts (~0.3 s, once a process).
HF tokenizers runs on ``--threads`` threads (``RAYON_NUM_THREADS``, default 1,
as every benchmark here); one string leaves it little to do in parallel anyway.

Prints one JSON line per (vocabulary size, framework) (seconds: median, min,
max) and one with the ratios ours / HF (above 1: ours is slower); a table and
the command go to stderr. Without ``tokenizers`` installed, ours alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import common


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab-sizes", default="512,2048,8192", metavar="V,V,...",
                    help="vocabulary sizes, each >= 257 (default 512,2048,8192)")
    ap.add_argument("--corpus", default="shakespeare",
                    help="a corpus name or a text file (default shakespeare)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repetitions per framework (default 3)")
    ap.add_argument("--threads", type=common.parse_threads, default=1, metavar="N",
                    help="HF tokenizers' threads (RAYON_NUM_THREADS; default 1)")
    ap.add_argument("--no-hf", action="store_true", help="time lmroad's BPETokenizer alone")
    ap.add_argument("--smoke", action="store_true", help="the tiny corpus, vocab 300, one repeat (the tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.vocab_sizes, args.corpus, args.repeats = "300", "tiny", 1
    try:
        args.vocab_sizes = [int(v) for v in args.vocab_sizes.split(",")]
    except ValueError:
        ap.error(f"--vocab-sizes: expected integers separated by commas, got {args.vocab_sizes!r}")
    if not args.vocab_sizes or min(args.vocab_sizes) < 257 or args.repeats < 1:
        ap.error(f"--vocab-sizes must each be >= 257 (256 bytes + <|endoftext|>) and --repeats >= 1, "
                 f"got {args.vocab_sizes} and {args.repeats}")
    return args


def hf_or_none(threads: int, refused: bool):
    if refused:
        return None
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))    # read when its thread pool starts
    try:
        import tokenizers
    except ImportError:
        print("# Hugging Face tokenizers is not installed: timing ours alone (pip install tokenizers)",
              file=sys.stderr)
        return None
    return tokenizers


def hf_train(hf, text: str, vocab_size: int):
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
                                     special_tokens=["<|endoftext|>"])
    tok.train_from_iterator([text], trainer)
    return tok


def hf_merges(tok) -> list[tuple[str, str]]:
    """The merges of a trained HF BPE, in rank order (from its JSON)."""
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def hf_encode(tok, text: str) -> list[int]:
    return tok.encode(text).ids


def timed(fn, *args):
    """(seconds, result) of ``fn(*args)``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main(argv=None) -> None:
    args = parse_args(argv)
    hf = hf_or_none(args.threads, args.no_hf)
    from lmroad.data import BPETokenizer, load_corpus, pretokenize

    text = load_corpus(args.corpus).train
    pretokenize("")                 # builds the pre-tokenizer's regex (once a process, ~0.3 s), untimed
    env = common.environment()
    if hf is not None:
        env["tokenizers"] = hf.__version__
    rows = []
    for V in args.vocab_sizes:
        times: dict[str, dict[str, list[float]]] = {"lmroad": {"train": [], "encode": [], "encode_warm": []}}
        if hf is not None:
            times["hf_tokenizers"] = {"train": [], "encode": []}
        ours = theirs = ids = their_ids = None
        for _ in range(args.repeats):                 # alternating: both see the same machine noise
            t, ours = timed(BPETokenizer.train, text, V)
            times["lmroad"]["train"].append(t)
            ours._cache.clear()                       # cold: every distinct word tokenized afresh
            t, ids = timed(ours.encode, text)
            times["lmroad"]["encode"].append(t)
            times["lmroad"]["encode_warm"].append(timed(ours.encode, text)[0])
            if hf is not None:
                t, theirs = timed(hf_train, hf, text, V)
                times["hf_tokenizers"]["train"].append(t)
                t, their_ids = timed(hf_encode, theirs, text)
                times["hf_tokenizers"]["encode"].append(t)
        config = {"vocab_size": V, "corpus": args.corpus, "chars": len(text), "threads": args.threads,
                  "tokens": len(ids), "merges": len(ours.merges)}
        for name, phases in times.items():
            line = {"bench": "bpe", "framework": name, "repeats": args.repeats, "config": config,
                    "s": {phase: common.summary(xs, 1) for phase, xs in phases.items()}, "env": env}
            print(json.dumps(line), flush=True)
        median = {name: {ph: statistics.median(xs) for ph, xs in phases.items()}
                  for name, phases in times.items()}
        ratio = {}
        if hf is not None:
            ratio = {ph: median["lmroad"][ph] / median["hf_tokenizers"][ph] for ph in ("train", "encode")}
            # HF's trainer gives <|endoftext|> id 0, ours the last id: compare the tokens
            check = {"same_merges": ours.merges == hf_merges(theirs),
                     "same_ids": [ours.vocab[i] for i in ids.tolist()] == list(map(theirs.id_to_token,
                                                                                     their_ids))}
        else:
            check = {}
        print(json.dumps({"bench": "bpe-ratio", "config": config,
                          "ratio": {"lmroad/hf_tokenizers": ratio} if ratio else {}, **check}), flush=True)
        rows.append((V, median, ratio, check, len(ids)))

    lines = [f"byte-level BPE on {args.corpus!r} ({len(text):,} characters), seconds (median of "
             f"{args.repeats}); ratio: lmroad / HF tokenizers",
             f"{'vocab':>6} {'tokens':>10} {'train lmroad':>13} {'train HF':>9} {'ratio':>6} "
             f"{'encode lmroad':>14} {'(warm)':>7} {'encode HF':>10} {'ratio':>6}  same merges, ids"]
    def cell(d: dict, k: str, w: int) -> str:
        return f"{d[k]:>{w}.2f}" if k in d else f"{'-':>{w}}"

    for V, median, ratio, check, n in rows:
        ours_m, hf_m = median["lmroad"], median.get("hf_tokenizers", {})
        lines.append(f"{V:>6} {n:>10,} {cell(ours_m, 'train', 13)} {cell(hf_m, 'train', 9)} "
                     f"{cell(ratio, 'train', 6)} {cell(ours_m, 'encode', 14)} "
                     f"{cell(ours_m, 'encode_warm', 7)} "
                     f"{cell(hf_m, 'encode', 10)} {cell(ratio, 'encode', 6)}  "
                     f"{check.get('same_merges', '-')}, {check.get('same_ids', '-')}")
    given = argv if argv is not None else sys.argv[1:]
    lines.append("command: python " + " ".join(["benchmarks/bpe.py", *given]))
    print("\n".join(lines), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
