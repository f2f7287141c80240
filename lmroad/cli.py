"""The command line: ``python -m lmroad train|sample|eval|plot|import|export|road`` (or the
``lmroad`` script).

    python -m lmroad train --model lstm --data notes.txt --max-iters 2000 --out out/lstm
    python -m lmroad train --out out/lstm --resume --max-iters 4000   # continue the same run
    python -m lmroad train --config runs/gpt.toml --lr 3e-4           # a file, flags override it
    python -m lmroad sample --checkpoint out/lstm --prompt "ROMEO:" --top-k 40 --num-samples 3
    python -m lmroad eval --checkpoint out/lstm/best --split val
    python -m lmroad plot out/lstm                                    # -> out/lstm/metrics.png
    python -m lmroad train --model lstm --log tensorboard             # + out/lstm/tensorboard/
    python -m lmroad road                                             # every model, one report
    python -m lmroad import --from hf-gpt2 gpt2/ --out out/gpt2       # GPT-2 as a checkpoint
    python -m lmroad export --to hf-gpt2 --checkpoint out/transformer --out out/hf
    python -m lmroad train --threads 2 ...                            # 2 BLAS threads (default 1)

Settings of ``train`` come from, highest first: the flags, the ``--config``
file (TOML or JSON, keys as the flags without dashes: ``max_iters = 500``),
the checkpoint being resumed, the defaults of ``TrainConfig``.

Every numeric flag has a range, in its ``--help`` line and checked while the
line is parsed (``lmroad train: error: argument --lr: must be a finite number
> 0, got '-1'``); the ranges of ``train``'s flags are ``lmroad.train_config.RANGES``,
which ``TrainConfig.validate`` checks too, for config files. A string flag
takes a non-empty value, a choice flag lists its choices.

A mistake in the input (an invalid value, a missing file, a corrupt
checkpoint) prints one line, ``lmroad <command>: error: ...``, and exits
with status 2 (invalid arguments) or 1 (a file or device problem, running
out of memory, a diverged run); set LMROAD_DEBUG=1 to see the traceback
instead. An interrupted ``train`` saves a checkpoint and exits with 130.
Every ``train`` that exits with 0 leaves a checkpoint ``sample`` and ``eval``
accept (``--max-iters 0``: the initial model).

``--threads N``, anywhere on the line and for every command (``road`` too),
limits NumPy's BLAS to N threads before the command runs
(``lmroad.threads.set_threads``); without it, 1 thread (why: lmroad/threads.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

from .threads import add_threads_argument, parse_threads, set_threads
from .train_config import RANGES, Range

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


def _in(r: Range):
    """An argument type: a number in the range ``r``, else argparse's "argument --flag: ..."
    error saying what was given and what is valid."""
    def parse(text: str):
        try:
            v = r.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {r}, got {text!r}") from None
        if v not in r:
            raise argparse.ArgumentTypeError(f"must be {r}, got {text!r}")
        return v
    parse.__name__ = r.kind.__name__
    return parse


def _nonempty(text: str) -> str:
    """An argument type: any string but an empty one (``--out ""`` would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty, got {text!r}")
    return text


def _with_range(text: str, r: Range, default=None) -> str:
    """A help line: what the flag is, its range, its default: "peak learning rate (> 0; default 0.001)"."""
    bounds = r.bounds or ("any finite number" if r.kind is float else "any integer")
    return f"{text} ({bounds}" + ("" if default is None else f"; default {default}") + ")"


# sample's and eval's numeric flags (train's are lmroad.train_config.RANGES)
_SAMPLE_RANGES = {"max_new_tokens": Range(int, 0), "temperature": Range(float, 0),
                  "top_k": Range(int, 1), "top_p": Range(float, 0, 1, low_open=True),
                  "num_samples": Range(int, 1), "seed": Range(int, 0)}
_EVAL_RANGES = {"batch_size": Range(int, 1), "block_size": Range(int, 1), "max_batches": Range(int, 1)}


# --------------------------------------------------------------------------- the parser

# The flags of ``train``, a table per group: flag, kind, help (a line that does not start with
# "--" goes on with the help above it). Kinds: num (a number in its RANGES entry, which the
# help states), str (not empty), device. "(default ...)" is added from TrainConfig.
_TRAIN_FLAGS = {
    "model": """
        --n-layer         num     transformer blocks
        --n-head          num     attention heads
        --n-embd          num     embedding width
        --hidden-size     num     recurrent state size
        --num-layers      num     stacked recurrent layers
        --ngram-n         num     n of the n-gram model, at most the training text's length; counting
                                  to order n keeps up to n(n+1)/2 ids per training token
        --dropout         num     dropout probability
        --forget-bias     num     LSTM only: initial forget-gate bias, 1.0 starts the gates open
    """,
    "data": """
        --corpus          str     corpus name: shakespeare or tiny
        --data            str     a UTF-8 text file instead of --corpus (its last 10%% is validation)
        --vocab-size      num     --tokenizer bpe: tokens in the vocabulary, the 256 bytes,
                                  <|endoftext|> and the merges learned on the training text
    """,
    "optimisation": """
        --device          device  cpu, cuda, cuda:N or fake
        --max-iters       num     optimizer steps; 0 saves the initial model
        --batch-size      num     windows per batch; a recurrent model reads the text as this many
                                  lanes, each at least --block-size + 1 tokens long
        --block-size      num     tokens per window, at most the text's length - 1
        --lr              num     peak learning rate
        --min-lr          num     learning rate at the end of the cosine, at most --lr
        --warmup-iters    num     steps of linear warmup
        --lr-decay-iters  num     the step where the cosine reaches --min-lr, constant after it;
                                  unset: --max-iters of a new run, a resumed run keeps its own
        --weight-decay    num     AdamW decay of the weight matrices, below 1/--lr
        --beta1           num     AdamW beta1
        --beta2           num     AdamW beta2
        --grad-clip       num     max gradient norm, 0 = off
        --grad-accum-steps num    micro-batches of --batch-size per step, their gradients summed:
                                  the update of a batch this many times larger
        --max-skipped-steps num   a step whose loss or gradient norm is NaN or infinite is skipped
                                  (no update); more than this many in a row stop the run; 0 = stop
                                  at the first
        --seed            num     seed of the initial weights, dropout and batches
    """,
    "evaluation and output": """
        --eval-interval   num     steps between evaluations and checkpoints
        --eval-iters      num     validation batches per evaluation, 0 = all
        --log-interval    num     steps between progress lines
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
    for title, flags in _TRAIN_FLAGS.items():
        group = p.add_argument_group(title)
        if title == "model":
            group.add_argument("--model", choices=MODEL_KINDS,
                               help=f"{', '.join(MODEL_KINDS)} (default {defaults.model})")
        if title == "data":
            group.add_argument("--tokenizer", choices=("char", "word", "bpe"),
                               help=f"char, word or bpe (GPT-2's byte-level BPE, --vocab-size tokens "
                                    f"learned on the training text) (default {defaults.tokenizer})")
        for flag, kind, text in _flag_rows(flags):
            name = flag[2:].replace("-", "_")
            default = getattr(defaults, name)
            if kind == "num":
                r = RANGES[name]
                group.add_argument(flag, type=_in(r), metavar="N" if r.kind is int else "X",
                                   help=_with_range(text, r, default))
                continue
            metavar = "DEVICE" if kind == "device" else {"--corpus": "NAME", "--out": "DIR"}.get(flag, "PATH")
            group.add_argument(flag, type=_device if kind == "device" else _nonempty, metavar=metavar,
                               help=text if default is None else f"{text} (default {default})")
    group.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    group.add_argument("--overwrite", action="store_true",
                       help="start afresh in --out, deleting the run saved there")
    group.add_argument("--progress", choices=("auto", "bar", "lines", "none"),
                       help="a tqdm bar on a terminal, else lines (default auto)")
    group.add_argument("--log", choices=("jsonl", "tensorboard"),
                       help="jsonl: OUT/metrics.jsonl and metrics.csv, always written; tensorboard: "
                            "also TensorBoard event files in OUT/tensorboard/, for tensorboard --logdir "
                            "OUT/tensorboard (default jsonl)")
    group.add_argument("--config", type=_nonempty, metavar="FILE", help="a TOML or JSON file of settings")
    group.add_argument("--no-plot", action="store_true",
                       help="do not draw OUT/metrics.png at the end (drawn when matplotlib is installed)")
    add_threads_argument(group)


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="draw a run's loss and learning-rate curves to a PNG",
                       description="Draw the training and validation loss and the learning rate of "
                                   "a run against the step (from DIR/metrics.jsonl), and write "
                                   "DIR/metrics.csv. Needs matplotlib for the PNG. For curves to "
                                   "explore while a run trains, train it with --log tensorboard and "
                                   "run tensorboard --logdir DIR/tensorboard.")
    p.add_argument("run", type=_nonempty, metavar="DIR", help="a folder lmroad train wrote, e.g. out/lstm")
    p.add_argument("--out", type=_nonempty, metavar="PNG", help="where to draw (default DIR/metrics.png)")
    add_threads_argument(p)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate text from a checkpoint",
                       description="Generate text from a trained checkpoint.")
    p.add_argument("--checkpoint", required=True, type=_nonempty, metavar="DIR",
                   help="a checkpoint folder, e.g. out/lstm, or a Hugging Face GPT-2 folder (or a "
                        "nanoGPT export)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="text to continue, not empty (default: a newline)")
    src.add_argument("--prompt-file", type=_nonempty, metavar="PATH",
                     help="read the prompt from a UTF-8 file")
    r = _SAMPLE_RANGES
    p.add_argument("--max-new-tokens", type=_in(r["max_new_tokens"]), default=500, metavar="N",
                   help=_with_range("tokens to generate", r["max_new_tokens"], 500))
    p.add_argument("--temperature", type=_in(r["temperature"]), default=1.0, metavar="X",
                   help=_with_range("divides the logits; 0 = greedy", r["temperature"], 1.0))
    p.add_argument("--top-k", type=_in(r["top_k"]), default=None, metavar="N",
                   help=_with_range("sample from the k most probable tokens", r["top_k"], "all"))
    p.add_argument("--top-p", type=_in(r["top_p"]), default=None, metavar="X",
                   help=_with_range("nucleus sampling: the fewest tokens whose probability reaches p",
                                    r["top_p"], "off"))
    p.add_argument("--num-samples", type=_in(r["num_samples"]), default=1, metavar="N",
                   help=_with_range("continuations, drawn as one batch", r["num_samples"], 1))
    p.add_argument("--seed", type=_in(r["seed"]), default=None, metavar="N",
                   help=_with_range("makes the samples reproducible", r["seed"], "random"))
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or fake (default cpu)")
    add_threads_argument(p)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="loss, perplexity and bits per character of a checkpoint",
                       description="Evaluate a checkpoint on a split of its corpus or on a text file.")
    p.add_argument("--checkpoint", required=True, type=_nonempty, metavar="DIR",
                   help="a checkpoint folder, e.g. out/lstm")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="val or train: a split of the corpus it was trained on (default val)")
    p.add_argument("--data", type=_nonempty, metavar="PATH",
                   help="evaluate on this whole text file instead of a split")
    r = _EVAL_RANGES
    p.add_argument("--batch-size", type=_in(r["batch_size"]), default=None, metavar="N",
                   help=_with_range("windows per batch", r["batch_size"], "as trained"))
    p.add_argument("--block-size", type=_in(r["block_size"]), default=None, metavar="N",
                   help=_with_range("tokens per window, at most a Transformer's context", r["block_size"],
                                    "as trained"))
    p.add_argument("--max-batches", type=_in(r["max_batches"]), default=None, metavar="N",
                   help=_with_range("evaluate only the first N batches", r["max_batches"], "all"))
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or fake (default cpu)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_threads_argument(p)


def _add_import(sub) -> None:
    from .interop import SOURCES
    p = sub.add_parser("import", help="a GPT-2 or nanoGPT model as an lmroad checkpoint",
                       description="Read a Hugging Face GPT-2 folder (config.json, model.safetensors, "
                                   "vocab.json, merges.txt) or a nanoGPT checkpoint and save it as an "
                                   "lmroad checkpoint, for lmroad sample, eval and export. Nothing is "
                                   "downloaded.")
    p.add_argument("path", type=_nonempty, metavar="PATH", help="the model folder (or nanoGPT's ckpt.pt)")
    p.add_argument("--from", dest="source", choices=SOURCES, default=None,
                   help="what PATH holds (default: guessed from its files)")
    p.add_argument("--out", required=True, type=_nonempty, metavar="DIR",
                   help="the checkpoint folder to write")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also read PyTorch .bin/.pt files, which are pickles and can run code when loaded "
                        "(read with torch.load(weights_only=True)); off by default")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    add_threads_argument(p)


def _add_export(sub) -> None:
    from .interop import TARGETS
    p = sub.add_parser("export", help="a checkpoint's model for PyTorch, nanoGPT or Hugging Face",
                       description="Write the model of an lmroad checkpoint as safetensors with the "
                                   "target's names and layouts, and its config (and tokenizer) beside: "
                                   "torch (RNN, LSTM, GRU models: nn.Embedding + nn.RNN/LSTM/GRU + "
                                   "nn.Linear), nanogpt or hf-gpt2 (Transformer models).")
    p.add_argument("--to", required=True, choices=TARGETS, help="the target layout")
    p.add_argument("--checkpoint", required=True, type=_nonempty, metavar="DIR",
                   help="a checkpoint folder, e.g. out/transformer")
    p.add_argument("--out", required=True, type=_nonempty, metavar="DIR", help="the folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    add_threads_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmroad", description="The road of language models, "
                                     "from n-gram to Transformer, on minigrad.",
                                     epilog="Every command takes --threads N (anywhere on the line): "
                                            "BLAS threads, default 1 (see lmroad train --help).")
    sub = parser.add_subparsers(dest="command", metavar="{train,sample,eval,plot,import,export,road}")
    sub.required = True
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    _add_plot(sub)
    _add_import(sub)
    _add_export(sub)
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
    flags = {k: v for k, v in vars(args).items()
             if k not in ("command", "config", "resume", "threads", "no_plot")}
    settings = load_config_file(args.config) if getattr(args, "config", None) else {}
    settings = {**{k.replace("-", "_"): v for k, v in settings.items()}, **flags}
    cfg = resolve_config(settings, resume=getattr(args, "resume", False))
    result = train(cfg)
    if result.interrupted:
        return EXIT_INTERRUPTED
    best = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    skipped = (f", {result.skipped_steps} step(s) skipped (non-finite loss or gradient)"
               if result.skipped_steps else "")
    from minigrad import distributed
    if distributed.rank() != 0:
        return 0
    drawn = None
    if not getattr(args, "no_plot", False) and importlib.util.find_spec("matplotlib") is not None:
        from .train_log import plot_metrics
        drawn = plot_metrics(result.out)
    if cfg.progress != "none":
        plotted = f"; curves in {drawn}" if drawn is not None else ""
        if cfg.log == "tensorboard":
            plotted += f"; tensorboard --logdir {result.out / 'tensorboard'}"
        print(f"done: {cfg.model} at step {result.step}{best}{skipped}; checkpoints in {result.out}"
              f"{plotted}", file=sys.stderr)
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    from .train_log import plot_metrics, write_csv
    run = Path(args.run)
    if not (run / "metrics.jsonl").is_file():
        raise ValueError(f"{run}: no metrics.jsonl here; give a folder lmroad train wrote (its --out)")
    csv_path = write_csv(run)
    png = plot_metrics(run, args.out)
    print(f"{png}\n{csv_path}")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from .interop import import_pretrained
    path = import_pretrained(args.path, args.out, args.source, allow_pickle=args.allow_pickle,
                             overwrite=args.overwrite)
    print(f"{path}\nsample: python -m lmroad sample --checkpoint {args.out} --prompt \"...\"")
    return 0


def _run_export(args: argparse.Namespace) -> int:
    from .interop import export_checkpoint
    for path in export_checkpoint(args.checkpoint, args.to, args.out, overwrite=args.overwrite):
        print(path)
    return 0


def _load_for_sampling(folder: str, device: str):
    """(model, Checkpoint) from an lmroad checkpoint, or straight from a Hugging Face GPT-2
    folder or a nanoGPT export (``lmroad.interop``)."""
    from .checkpoint import Checkpoint, has_checkpoint, load_model
    from .interop import is_pretrained, load_pretrained
    if has_checkpoint(folder) or not is_pretrained(folder):
        return load_model(folder, device)
    model, tokenizer = load_pretrained(folder)
    info = Checkpoint(directory=Path(folder), model_kind=model.model_type,
                      model_config=dataclasses.asdict(model.config), weights={},
                      tokenizer=None if tokenizer is None else tokenizer.to_dict())
    return model.to(device), info


def _run_sample(args: argparse.Namespace) -> int:
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
    loaded = _load_for_sampling(args.checkpoint, args.device)
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
    context = ckpt.model_config.get("block_size") if ckpt.model_kind == "transformer" else None
    # an imported model has no training settings: windows of 64 tokens, or its whole context if shorter
    block = args.block_size or saved.get("block_size") or min(64, context or 64)
    batch = args.batch_size or saved.get("batch_size") or 32
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
    from .interop import InteropError
    from .train import TrainingDiverged
    return ((ValueError, TypeError, IndexError),
            (CheckpointError, CorpusError, InteropError, DeviceError, TrainingDiverged, OSError,
             MemoryError, ImportError))


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
    run = {"train": _run_train, "sample": _run_sample, "eval": _run_eval, "plot": _run_plot,
           "import": _run_import, "export": _run_export}[args.command]
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
        if isinstance(e, MemoryError):              # NumPy's says how much it could not allocate
            message = f"out of memory: {message}; choose smaller sizes"
        print(f"lmroad {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, bad_input) and not isinstance(e, failures) else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
