"""The command line: ``python -m lmroad train|sample|eval|road`` (or the ``lmroad`` script).

    python -m lmroad train --model lstm --data notes.txt --max-iters 2000 --out out/lstm
    python -m lmroad train --out out/lstm --resume --max-iters 4000   # continue the same run
    python -m lmroad train --config runs/gpt.toml --lr 3e-4           # a file, flags override it
    python -m lmroad sample --checkpoint out/lstm --prompt "ROMEO:" --top-k 40 --num-samples 3
    python -m lmroad eval --checkpoint out/lstm/best --split val
    python -m lmroad road                                             # every model, one report
    python -m lmroad train --threads 2 ...                            # 2 BLAS threads (default 1)

Settings of ``train`` come from, highest first: the flags, the ``--config``
file (TOML or JSON, keys as the flags without dashes: ``max_iters = 500``),
the checkpoint being resumed, the defaults of ``TrainConfig``.

A mistake in the input (an invalid value, a missing file, a corrupt
checkpoint) prints one line, ``lmroad <command>: error: ...``, and exits
with status 2 (invalid arguments) or 1 (a file or device problem); set
LMROAD_DEBUG=1 to see the traceback instead. An interrupted ``train``
saves a checkpoint and exits with 130.

``--threads N``, anywhere on the line and for every command (``road`` too),
limits NumPy's BLAS to N threads before the command runs
(``lmroad.threads.set_threads``); without it, 1 thread (why: lmroad/threads.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .threads import add_threads_argument, parse_threads, set_threads

__all__ = ["main", "build_parser", "load_config_file"]

EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130


# --------------------------------------------------------------------------- argument types

def _device(text: str) -> str:
    from minigrad.backend import Device
    try:
        Device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid device {text!r} (choose cpu, cuda, cuda:N or fake)") \
            from None
    return text


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    parse.__name__ = "int"
    return parse


def _float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return v


# --------------------------------------------------------------------------- the parser

# The flags of ``train``, a table per group: flag, kind, help (a line that does not start with
# "--" goes on with the help above it). Kinds: pos (an int >= 1), count (an int >= 0), float,
# str, device. "(default ...)" is added from TrainConfig.
_TRAIN_FLAGS = {
    "model": """
        --n-layer         pos     transformer blocks
        --n-head          pos     attention heads
        --n-embd          pos     embedding width
        --hidden-size     pos     recurrent state size
        --num-layers      pos     stacked recurrent layers
        --ngram-n         pos     n of the n-gram model
        --dropout         float   dropout probability
        --forget-bias     float   LSTM only: initial forget-gate bias (1.0 starts the gates open)
    """,
    "data": """
        --corpus          str     corpus name: shakespeare or tiny
        --data            str     a UTF-8 text file instead of --corpus (its last 10%% is validation)
    """,
    "optimisation": """
        --device          device  cpu, cuda, cuda:N or fake
        --max-iters       count   optimizer steps
        --batch-size      pos     windows per batch
        --block-size      pos     tokens per window
        --lr              float   peak learning rate
        --min-lr          float   learning rate at the end of the cosine
        --warmup-iters    count   steps of linear warmup
        --lr-decay-iters  count   the step where the cosine reaches --min-lr, constant after it
                                  (None: --max-iters of a new run; a resumed run keeps its own)
        --weight-decay    float   AdamW decay of the weight matrices
        --beta1           float   AdamW beta1
        --beta2           float   AdamW beta2
        --grad-clip       float   max gradient norm, 0 = off
        --seed            count   seed of the initial weights, dropout and batches
    """,
    "evaluation and output": """
        --eval-interval   pos     steps between evaluations and checkpoints
        --eval-iters      count   validation batches per evaluation, 0 = all
        --log-interval    pos     steps between progress lines
        --out             str     checkpoint folder (None: out/<model>)
    """,
}


def _flag_rows(table: str) -> list[tuple[str, str, str]]:
    """(flag, kind, help) per flag of one of ``_TRAIN_FLAGS``' tables."""
    rows: list[tuple[str, str, str]] = []
    for line in filter(None, (raw.strip() for raw in table.splitlines())):
        if line.startswith("--"):
            flag, kind, text = line.split(None, 2)
            rows.append((flag, kind, text))
        else:                                       # the help of the row above, continued
            flag, kind, text = rows[-1]
            rows[-1] = (flag, kind, f"{text} {line}")
    return rows


def _add_train(sub) -> None:
    from .train import MODEL_KINDS, TrainConfig
    p = sub.add_parser("train", help="train a model (or continue one with --resume)",
                       description="Train a language model. Settings: flags > --config file > "
                                   "the resumed checkpoint > defaults.",
                       argument_default=argparse.SUPPRESS)     # absent flags stay absent
    defaults = TrainConfig()
    types = {"pos": _int_at_least(1), "count": _int_at_least(0), "float": _float, "str": str,
             "device": _device}
    for title, flags in _TRAIN_FLAGS.items():
        group = p.add_argument_group(title)
        if title == "model":
            group.add_argument("--model", choices=MODEL_KINDS, help=f"(default {defaults.model})")
        if title == "data":
            group.add_argument("--tokenizer", choices=("char", "word"),
                               help=f"(default {defaults.tokenizer})")
        for flag, kind, text in _flag_rows(flags):
            default = getattr(defaults, flag[2:].replace("-", "_"))
            metavar = {"pos": "N", "count": "N", "float": "X", "device": "DEVICE",
                       "str": {"--corpus": "NAME", "--out": "DIR"}.get(flag, "PATH")}[kind]
            group.add_argument(flag, type=types[kind], metavar=metavar,
                               help=text if default is None else f"{text} (default {default})")
    group.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh in --out, deleting the run saved there")
    group.add_argument("--progress", choices=("auto", "bar", "lines", "none"),
                       help="a tqdm bar on a terminal, else lines (default auto)")
    group.add_argument("--config", metavar="FILE", help="a TOML or JSON file of settings")
    add_threads_argument(group)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a trained checkpoint.")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="a checkpoint folder, e.g. out/lstm")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="text to continue (default: a newline)")
    src.add_argument("--prompt-file", metavar="PATH", help="read the prompt from a UTF-8 file")
    p.add_argument("--max-new-tokens", type=_int_at_least(0), default=500)
    p.add_argument("--temperature", type=_float, default=1.0, help="0 = greedy (default 1.0)")
    p.add_argument("--top-k", type=_int_at_least(1), default=None)
    p.add_argument("--top-p", type=_float, default=None, help="nucleus sampling, in (0, 1]")
    p.add_argument("--num-samples", type=_int_at_least(1), default=1)
    p.add_argument("--seed", type=_int_at_least(0), default=None)
    p.add_argument("--device", type=_device, default="cpu")
    add_threads_argument(p)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity and bits per character of a checkpoint",
                       description="Evaluate a checkpoint on a split of its corpus or on a text file.")
    p.add_argument("--checkpoint", required=True, metavar="DIR")
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--data", metavar="PATH", help="evaluate on this whole text file instead of a split")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, help="(default: as trained)")
    p.add_argument("--block-size", type=_int_at_least(1), default=None, help="(default: as trained)")
    p.add_argument("--max-batches", type=_int_at_least(1), default=None, help="(default: all)")
    p.add_argument("--device", type=_device, default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_threads_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmroad", description="The road of language models, "
                                     "from n-gram to Transformer, on minigrad.",
                                     epilog="Every command takes --threads N (anywhere on the line): "
                                            "BLAS threads, default 1 (see lmroad train --help).")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,eval,road}")
    sub.required = True
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    sub.add_parser("road", help="train every model and write the comparison report "
                   "(python -m lmroad road --help)", add_help=False)
    return parser


# --------------------------------------------------------------------------- config files

def load_config_file(path: str | os.PathLike) -> dict:
    """Settings from a TOML (``.toml``) or JSON file: a flat table, or one ``[train]`` table."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"--config {path}: cannot read ({e.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {path}: not valid JSON ({e})") from None
    else:
        try:
            import tomllib
        except ImportError:                       # Python 3.10
            try:
                import tomli as tomllib
            except ImportError:
                raise ValueError(f"--config {path}: reading TOML needs Python 3.11+ or the tomli "
                                 "package (pip install tomli); or write the settings as JSON") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"--config {path}: not valid TOML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a table of settings")
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    for bad in ("config", "resume", "overwrite"):
        if bad in data:
            raise ValueError(f"--config {path}: {bad!r} cannot be set in a config file; use the flag")
    return data


# --------------------------------------------------------------------------- the commands

def _run_train(args: argparse.Namespace) -> int:
    from .train import resolve_config, train
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "threads")}
    settings = load_config_file(args.config) if getattr(args, "config", None) else {}
    settings = {**{k.replace("-", "_"): v for k, v in settings.items()}, **flags}
    cfg = resolve_config(settings, resume=getattr(args, "resume", False))
    result = train(cfg)
    if result.interrupted:
        return EXIT_INTERRUPTED
    best = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    if cfg.progress != "none":
        print(f"done: {cfg.model} at step {result.step}{best}; checkpoints in {result.out}", file=sys.stderr)
    return 0


def _run_sample(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .sample import check_sample_args, sample
    check_sample_args(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.num_samples,
                      args.seed)
    prompt = args.prompt
    if args.prompt_file is not None:
        try:
            prompt = Path(args.prompt_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--prompt-file {args.prompt_file}: cannot read it as UTF-8 text "
                             f"({e})") from None
    loaded = load_model(args.checkpoint, args.device)
    texts = sample(loaded, prompt=prompt, max_new_tokens=args.max_new_tokens,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                   num_samples=args.num_samples, seed=args.seed, device=args.device)
    for i, text in enumerate(texts):
        if i:
            print("---------------")
        print(text)
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from .checkpoint import load_model
    from .data import load_corpus, tokenizer_from_dict
    from .train import evaluate
    model, ckpt = load_model(args.checkpoint, args.device)
    if ckpt.tokenizer is None:
        raise ValueError(f"{ckpt.json_path}: the checkpoint holds no tokenizer")
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    saved = ckpt.train_config or {}
    if args.data is not None:
        path = Path(args.data)
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--data {path}: cannot read it as UTF-8 text ({e})") from None
        where = str(path)
    else:
        source = saved.get("data") or saved.get("corpus")
        if not source:
            raise ValueError(f"{ckpt.json_path}: does not say which corpus it was trained on; pass --data")
        corpus = load_corpus(source)
        text, where = getattr(corpus, args.split), f"{source} ({args.split})"
    try:
        ids = tokenizer.encode(text)
    except ValueError as e:
        raise ValueError(f"{where}: the model's tokenizer cannot encode this text: {e}") from None
    block = args.block_size or saved.get("block_size") or 64
    batch = args.batch_size or saved.get("batch_size") or 32
    context = ckpt.model_config.get("block_size") if ckpt.model_kind == "transformer" else None
    if context is not None and block > context:
        raise ValueError(f"--block-size {block} is longer than the model's context of {context} tokens")
    if len(ids) < block + 1:
        raise ValueError(f"{where}: {len(ids)} tokens, too few for --block-size {block}")
    result = evaluate(model, ids, block, batch, max_batches=args.max_batches, device=args.device,
                      chars_per_token=len(text) / max(len(ids), 1))
    result = {"checkpoint": str(ckpt.directory), "model": ckpt.model_kind, "step": ckpt.step,
              "data": where, **result}
    if args.json:
        print(json.dumps(result))
    else:
        bpc = f" | bpc {result['bpc']:.4f}" if result["bpc"] is not None else ""
        print(f"{ckpt.model_kind} step {ckpt.step} on {where}: loss {result['loss']:.4f} | perplexity "
              f"{result['perplexity']:.3f}{bpc} | {result['tokens']:,} tokens")
    return 0


def _run_road(argv: list[str]) -> int:
    import importlib
    try:
        road = importlib.import_module("lmroad.experiments.road")
    except ModuleNotFoundError as e:
        if e.name not in ("lmroad.experiments.road", "lmroad.experiments"):
            raise                                  # road.py exists but something it needs is missing
        print("lmroad road: error: the road experiment (lmroad/experiments/road.py) is not part of this "
              "installation yet", file=sys.stderr)
        return EXIT_FAILURE
    code = road.main(argv)
    return int(code or 0)


# --------------------------------------------------------------------------- entry point

def _user_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(mistakes in the arguments, problems with files or devices)."""
    from minigrad.errors import DeviceError

    from .checkpoint import CheckpointError
    from .data import CorpusError
    from .train import TrainingDiverged
    return ((ValueError, TypeError, IndexError),
            (CheckpointError, CorpusError, DeviceError, TrainingDiverged, OSError))


def _take_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """Remove ``--threads N`` / ``--threads=N`` (allowed anywhere, the last one wins) from
    ``argv``; returns the rest and N (None if absent). SystemExit with a one-line message
    for a missing or invalid N. (Taken out before argparse so that it works in any
    position and for ``road``, whose arguments cli.py passes on unparsed.)"""
    out, n = [], None
    it = iter(argv)
    for a in it:
        if a == "--":
            out.append(a)
            out.extend(it)
            break
        if a == "--threads" or a.startswith("--threads="):
            text = a.split("=", 1)[1] if "=" in a else next(it, None)
            if text is None:
                raise SystemExit("lmroad: error: argument --threads: expected one argument")
            try:
                n = parse_threads(text)
            except argparse.ArgumentTypeError as e:
                raise SystemExit(f"lmroad: error: argument --threads: {e}") from None
        else:
            out.append(a)
    return out, n


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (the ``lmroad`` script exits with it).
    ``--threads N`` anywhere on the line sets the BLAS thread count (default 1)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, threads = _take_threads(argv)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    set_threads(threads)                          # None: the default rule (lmroad.threads)
    if argv and argv[0] == "road":
        return _run_road(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:                       # argparse has printed usage and the error
        return int(e.code or 0)
    run = {"train": _run_train, "sample": _run_sample, "eval": _run_eval}[args.command]
    bad_input, failures = _user_errors()
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"lmroad {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except bad_input + failures as e:
        if os.environ.get("LMROAD_DEBUG"):
            raise
        message = str(e) or type(e).__name__
        print(f"lmroad {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, bad_input) and not isinstance(e, failures) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
