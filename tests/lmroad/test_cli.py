"""Tests of the command line: ``python -m lmroad train|sample|eval|road``.

In-process calls of ``cli.main([...])`` (fast), plus one fresh process for
the resume that must continue exactly where another process stopped.
Errors from bad input must be one line, no traceback, non-zero status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lmroad import cli
from lmroad.checkpoint import read_checkpoint
from lmroad.train_config import RANGES, Range

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--hidden-size", "16", "--batch-size", "4",
        "--block-size", "16", "--eval-iters", "2", "--log-interval", "2", "--warmup-iters", "2",
        "--progress", "none"]


@pytest.fixture(scope="module")
def text_file(tiny_text):
    return tiny_text(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, text_file):
    """A tiny LSTM and Transformer trained once for the sample/eval tests."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(limits=None):
        _keep_thread_variables(mp)
        for model in ("lstm", "transformer"):
            code = cli.main(["train", "--model", model, "--data", str(text_file), "--max-iters", "6",
                             "--eval-interval", "3", "--out", str(root / model), *TINY])
            assert code == 0
    return root


def _keep_thread_variables(mp: pytest.MonkeyPatch) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            mp.setenv(var, os.environ[var])
        else:
            mp.delenv(var, raising=False)


def one_line_error(capsys, code, expected_code, *fragments):
    err = capsys.readouterr().err
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert any(all(f in line for f in fragments) for line in lines), err
    return err


@pytest.fixture(autouse=True)
def blas_limits(monkeypatch):
    """Every command applies --threads (default 1) to this process: restore the BLAS thread
    limit and the thread variables after each test."""
    _keep_thread_variables(monkeypatch)
    with threadpool_limits(limits=None):
        yield



# =========================================================================== end to end

def test_train_writes_checkpoints_and_metrics(trained):
    for model in ("lstm", "transformer"):
        c = read_checkpoint(trained / model)
        assert (c.model_kind, c.step) == (model, 6)
        assert c.train_config["max_iters"] == 6 and c.train_config["n_embd"] == 16
        assert (trained / model / "best" / "checkpoint.json").is_file()
        steps = [json.loads(line)["step"] for line in (trained / model / "metrics.jsonl").open()
                 if json.loads(line)["split"] == "val"]
        assert steps == [0, 3, 6]


def test_sample_prints_prompt_and_continuations_reproducibly(trained, capsys):
    args = ["sample", "--checkpoint", str(trained / "lstm"), "--prompt", "ALDER:", "--max-new-tokens",
            "20", "--num-samples", "2", "--seed", "3", "--top-k", "5", "--top-p", "0.9"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert cli.main(args) == 0
    assert capsys.readouterr().out == first
    samples = first[:-1].split("\n---------------\n")
    assert len(samples) == 2 and all(s.startswith("ALDER:") for s in samples)
    assert all(len(s) == len("ALDER:") + 20 for s in samples)      # characters: one per token


def test_greedy_sampling_from_a_prompt_file(trained, tmp_path, capsys):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("BRIONY:\n", encoding="utf-8")
    outputs = []
    for seed in ("1", "2"):
        assert cli.main(["sample", "--checkpoint", str(trained / "transformer"), "--prompt-file",
                         str(prompt), "--temperature", "0", "--max-new-tokens", "12", "--seed", seed]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("BRIONY:\n")


def test_eval_on_a_split_and_on_a_file(trained, text_file, capsys):
    assert cli.main(["eval", "--checkpoint", str(trained / "lstm"), "--json"]) == 0
    val = json.loads(capsys.readouterr().out)
    assert val["model"] == "lstm" and val["step"] == 6
    assert val["bpc"] == pytest.approx(val["loss"] / np.log(2))
    assert val["perplexity"] == pytest.approx(np.exp(val["loss"]))
    assert cli.main(["eval", "--checkpoint", str(trained / "transformer" / "best"), "--split", "train",
                     "--max-batches", "2"]) == 0
    line = capsys.readouterr().out
    assert "(train): loss" in line and "perplexity" in line and "bpc" in line
    assert cli.main(["eval", "--checkpoint", str(trained / "lstm"), "--data", str(text_file), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["tokens"] > val["tokens"]


def test_config_file_values_are_overridden_by_flags(text_file, tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text(f'[train]\nmodel = "gru"\ndata = "{text_file}"\nmax_iters = 3\nlr = 0.005\n'
                    f'eval_interval = 100\n', encoding="utf-8")
    assert cli.main(["train", "--config", str(toml), "--max-iters", "2", "--out", str(tmp_path / "a"),
                     *TINY]) == 0
    saved = read_checkpoint(tmp_path / "a").train_config
    assert (saved["model"], saved["max_iters"], saved["lr"]) == ("gru", 2, 0.005)
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"model": "rnn", "data": str(text_file), "max-iters": 1}), encoding="utf-8")
    assert cli.main(["train", "--config", str(js), "--out", str(tmp_path / "b"), *TINY]) == 0
    assert read_checkpoint(tmp_path / "b").model_kind == "rnn"


def test_train_on_the_fake_device_samples_on_cpu(text_file, tmp_path, capsys):
    assert cli.main(["train", "--model", "ngram", "--data", str(text_file), "--device", "fake",
                     "--out", str(tmp_path), *TINY]) == 0
    assert cli.main(["sample", "--checkpoint", str(tmp_path), "--max-new-tokens", "5", "--seed", "0"]) == 0
    assert len(capsys.readouterr().out) == len("\n") + 5 + 1


def test_resume_in_a_fresh_process_continues_exactly(text_file, tmp_path):
    common = ["--model", "lstm", "--data", str(text_file), "--dropout", "0.1", "--eval-interval", "2",
              "--lr-decay-iters", "6", *TINY]
    assert cli.main(["train", *common, "--max-iters", "6", "--out", str(tmp_path / "straight")]) == 0
    assert cli.main(["train", *common, "--max-iters", "4", "--out", str(tmp_path / "split")]) == 0
    proc = subprocess.run([sys.executable, "-m", "lmroad", "train", "--resume", "--out",
                           str(tmp_path / "split"), "--max-iters", "6"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    a, b = read_checkpoint(tmp_path / "straight"), read_checkpoint(tmp_path / "split")
    assert a.step == b.step == 6
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k], err_msg=k)

    def curve(run):
        records = map(json.loads, (tmp_path / run / "metrics.jsonl").open())
        return [(r["step"], r["split"], r["loss"]) for r in records]
    assert curve("split") == curve("straight")


def test_resume_with_more_steps_keeps_the_schedule_and_says_so(text_file, tmp_path, capsys):
    common = ["--model", "gru", "--data", str(text_file), "--out", str(tmp_path), "--eval-interval", "100",
              *TINY]
    assert cli.main(["train", *common, "--max-iters", "4"]) == 0
    resume = ["train", "--resume", "--out", str(tmp_path), "--max-iters", "8", "--progress", "lines"]
    assert cli.main(resume) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "note: --max-iters 8 differs from the horizon of this run's learning-rate schedule (4 steps)" \
        in err
    saved = read_checkpoint(tmp_path)
    assert saved.step == 8 and saved.extra["lr_schedule"]["lr_decay_iters"] == 4
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").open()
           if json.loads(line)["split"] == "train"]
    assert lrs[-2:] == [saved.extra["lr_schedule"]["min_lr"]] * 2          # steps 6 and 8: past the horizon


def test_ctrl_c_during_cli_training_saves_and_exits_130(text_file, tmp_path, monkeypatch, capsys):
    from lmroad import train as train_mod
    real = train_mod.train

    def interrupted_train(cfg, on_step=None, stream=None):
        def ctrl_c(step, info):
            if step == 2:
                raise KeyboardInterrupt
        return real(cfg, on_step=ctrl_c, stream=stream)

    monkeypatch.setattr(train_mod, "train", interrupted_train)
    code = cli.main(["train", "--model", "transformer", "--data", str(text_file), "--max-iters", "5",
                     "--out", str(tmp_path), *TINY[:-2]])
    assert code == 130
    assert "interrupted at step 2" in capsys.readouterr().err
    assert read_checkpoint(tmp_path).step == 2


def test_a_new_run_does_not_silently_replace_an_old_one(text_file, tmp_path, capsys):
    args = ["train", "--model", "gru", "--data", str(text_file), "--max-iters", "2", "--eval-interval", "1",
            "--out", str(tmp_path), *TINY]
    assert cli.main(args) == 0
    one_line_error(capsys, cli.main(args), 2, "already holds a checkpoint (step 2)", "--overwrite")
    one_line_error(capsys, cli.main([*args, "--overwrite", "--resume"]), 2, "cannot be used together")
    assert cli.main([*args, "--max-iters", "1", "--overwrite"]) == 0     # the last flag wins
    assert read_checkpoint(tmp_path).step == 1 and read_checkpoint(tmp_path / "best").step == 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert steps == [0, 1]                                   # the old run's log is gone too


# =========================================================================== road

def test_road_runs_the_experiment_module_with_the_remaining_arguments(monkeypatch):
    seen = {}
    fake = types.ModuleType("lmroad.experiments.road")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "lmroad.experiments.road", fake)
    assert cli.main(["road", "--quick", "--out", "x"]) == 0
    assert seen["argv"] == ["--quick", "--out", "x"]


def test_road_missing_is_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lmroad.experiments.road", None)   # import fails as if absent
    code = cli.main(["road"])
    one_line_error(capsys, code, 1, "lmroad road: error:", "lmroad/experiments/road.py")


# =========================================================================== bad input

@pytest.mark.parametrize(("argv", "code", "fragments"), [
    (["train", "--lr", "-1"], 2, ("lmroad train: error: argument --lr:", "a finite number > 0, got '-1'")),
    (["train", "--max-iters", "abc"], 2, ("--max-iters", "expected an integer")),
    (["train", "--batch-size", "0"], 2, ("argument --batch-size:", "must be an integer >= 1, got '0'")),
    (["train", "--model", "mamba"], 2, ("--model", "invalid choice")),
    (["train", "--device", "tpu"], 2, ("--device", "invalid device")),
    (["train", "--data", "/no/such/file.txt"], 2, ("lmroad train: error:", "/no/such/file.txt")),
    (["train", "--min-lr", "1", "--lr", "0.1"], 2, ("--min-lr must be in",)),
    (["train", "--resume", "--out", "/no/such/run"], 1, ("lmroad train: error:", "no checkpoint")),
    (["sample", "--checkpoint", "/no/such/run"], 1, ("lmroad sample: error:", "no such checkpoint")),
    (["eval", "--checkpoint", "/no/such/run"], 1, ("lmroad eval: error:", "no such checkpoint")),
    (["sample"], 2, ("--checkpoint",)),
    (["frobnicate"], 2, ("invalid choice",)),
])
def test_bad_arguments_print_one_line_and_exit_nonzero(argv, code, fragments, capsys):
    one_line_error(capsys, cli.main(argv), code, *fragments)


@pytest.mark.parametrize(("extra", "fragments"), [
    (["--top-k", "0"], ("argument --top-k:", "must be an integer >= 1")),
    (["--top-p", "1.5"], ("argument --top-p:", "must be a finite number in (0, 1], got '1.5'")),
    (["--top-p", "0"], ("argument --top-p:", "in (0, 1]")),
    (["--temperature", "-0.5"], ("argument --temperature:", "must be a finite number >= 0")),
    (["--temperature", "nan"], ("argument --temperature:", "must be a finite number >= 0, got 'nan'")),
    (["--max-new-tokens", "-3"], ("argument --max-new-tokens:", "must be an integer >= 0")),
    (["--num-samples", "0"], ("argument --num-samples:", "must be an integer >= 1")),
    (["--prompt", "Zebra€"], ("--prompt has 2 character(s)", "'Z'", "'€'")),
    (["--prompt", ""], ("--prompt must not be empty",)),
    (["--prompt", "a", "--prompt-file", "p.txt"], ("not allowed with",)),
    (["--prompt-file", "/no/such/prompt.txt"], ("--prompt-file",)),
])
def test_bad_sampling_values_are_one_line_errors_with_status_2(trained, extra, fragments, capsys):
    code = cli.main(["sample", "--checkpoint", str(trained / "lstm"), "--max-new-tokens", "3", *extra]
                    if "--max-new-tokens" not in extra else
                    ["sample", "--checkpoint", str(trained / "lstm"), *extra])
    one_line_error(capsys, code, 2, *fragments)


def test_eval_block_size_longer_than_the_transformer_context_is_refused(trained, capsys):
    code = cli.main(["eval", "--checkpoint", str(trained / "transformer"), "--block-size", "64"])
    one_line_error(capsys, code, 2, "--block-size 64 is longer than the model's context of 16")


def test_config_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("max_iters = 3\nlearning_rate = 0.1\n", encoding="utf-8")
    one_line_error(capsys, cli.main(["train", "--config", str(bad)]), 2, "unknown setting 'learning_rate'")
    broken = tmp_path / "broken.toml"
    broken.write_text("max_iters = = 3\n", encoding="utf-8")
    one_line_error(capsys, cli.main(["train", "--config", str(broken)]), 2, "not valid TOML")
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps({"max_iters": "many"}), encoding="utf-8")
    one_line_error(capsys, cli.main(["train", "--config", str(typed)]), 2, "--max-iters must be an integer")
    one_line_error(capsys, cli.main(["train", "--config", str(tmp_path / "none.toml")]), 2, "cannot read")


def test_toml_on_python_310_without_tomli_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    path = tmp_path / "run.toml"
    path.write_text("max_iters = 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Python 3.11\\+ or the tomli package"):
        cli.load_config_file(path)


def test_corrupt_checkpoint_is_one_line_with_status_1(trained, tmp_path, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(trained / "lstm", broken)
    (broken / "checkpoint.json").write_text("{ not json", encoding="utf-8")
    one_line_error(capsys, cli.main(["sample", "--checkpoint", str(broken)]), 1,
                   "lmroad sample: error:", "not valid JSON")
    one_line_error(capsys, cli.main(["eval", "--checkpoint", str(broken)]), 1, "lmroad eval: error:")


def test_help_exits_zero(capsys):
    assert cli.main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert cli.main(["train", "--help"]) == 0
    assert "--max-iters" in capsys.readouterr().out


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info
    return {d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}


def test_threads_flag_is_taken_anywhere_and_validated(blas_limits, capsys):
    assert cli._take_threads(["train", "--threads", "2", "--model", "lstm"]) == \
        (["train", "--model", "lstm"], 2)
    assert cli._take_threads(["sample", "--threads=3", "--seed", "1"]) == (["sample", "--seed", "1"], 3)
    assert cli._take_threads(["eval", "--json"]) == (["eval", "--json"], None)
    one_line_error(capsys, cli.main(["--threads", "zero", "train"]), cli.EXIT_USAGE,
                   "--threads", "expected a positive integer, got 'zero'")
    one_line_error(capsys, cli.main(["train", "--threads", "0"]), cli.EXIT_USAGE, "--threads", "positive")
    one_line_error(capsys, cli.main(["train", "--threads"]), cli.EXIT_USAGE, "--threads",
                   "expected one argument")


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_every_command_applies_threads_at_run_time_default_one(command, trained, blas_limits, capsys):
    args = {"train": ["train", "--model", "ngram", "--data", "MISSING"],
            "sample": ["sample", "--checkpoint", str(trained / "lstm"), "--max-new-tokens", "2"],
            "eval": ["eval", "--checkpoint", str(trained / "lstm"), "--max-batches", "1"]}[command]
    cli.main([*args, "--threads", "2"])                 # after NumPy was imported: still applied
    assert _blas_threads() == {2}
    cli.main(args)
    assert _blas_threads() == {1}                       # without the flag: the default rule
    capsys.readouterr()


def test_road_gets_the_thread_limit_before_it_runs(monkeypatch, blas_limits):
    seen = {}
    fake = types.ModuleType("lmroad.experiments.road")

    def main(argv):
        from lmroad.threads import get_threads
        seen.update(argv=argv, blas=_blas_threads(), applied=get_threads())
        return 0
    fake.main = main
    monkeypatch.setitem(sys.modules, "lmroad.experiments.road", fake)
    assert cli.main(["road", "--quick", "--threads", "2", "--out", "x"]) == 0
    assert seen == {"argv": ["--quick", "--out", "x"], "blas": {2}, "applied": 2}
    assert cli.main(["road"]) == 0 and seen["blas"] == {1} and seen["applied"] == 1


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_every_command_help_shows_threads_and_its_default(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N" in text and "default 1" in text


def test_the_top_level_help_says_every_command_takes_threads(capsys):
    assert cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Every command takes --threads N" in text


# =========================================================================== every flag's range

def _bad_values(r: Range) -> list[str]:
    """Values outside ``r`` (or not numbers at all), as typed on a command line."""
    bad = ["abc", "", "1e400x"]
    bad += ["1.5", "1e3"] if r.kind is int else ["nan", "inf", "-inf"]
    if r.low is not None:
        bad.append(repr(r.low if r.low_open else r.low - 1))
    if r.high is not None:
        bad.append(repr(r.high if r.high_open else r.high + 1))
    return bad


def _flag_cases():
    """(command line before the flag, flag, range) for every numeric flag of train, sample, eval."""
    yield from ((["train"], "--" + name.replace("_", "-"), r) for name, r in RANGES.items())
    yield from ((["sample", "--checkpoint", "x"], "--" + name.replace("_", "-"), r)
                for name, r in cli._SAMPLE_RANGES.items())
    yield from ((["eval", "--checkpoint", "x"], "--" + name.replace("_", "-"), r)
                for name, r in cli._EVAL_RANGES.items())


BAD_FLAG_VALUES = [(head, flag, value, str(r)) for head, flag, r in _flag_cases() for value in _bad_values(r)]


@pytest.mark.parametrize(("head", "flag", "value", "valid"), BAD_FLAG_VALUES,
                         ids=[f"{h[0]}{f}={v!r}" for h, f, v, _ in BAD_FLAG_VALUES])
def test_every_numeric_flag_refuses_a_value_outside_its_range_while_parsing(head, flag, value, valid, capsys):
    # --flag=value: argparse reads a lone "-inf" as another option, not as a value
    err = one_line_error(capsys, cli.main([*head, f"{flag}={value}"]), 2, f"argument {flag}:", valid,
                         repr(value))
    assert f"lmroad {head[0]}: error:" in err


@pytest.mark.parametrize(("head", "flag"), [
    (["train"], "--out"), (["train"], "--data"), (["train"], "--corpus"), (["train"], "--config"),
    (["sample"], "--checkpoint"), (["sample", "--checkpoint", "x"], "--prompt-file"),
    (["eval"], "--checkpoint"), (["eval", "--checkpoint", "x"], "--data"),
])
def test_a_path_flag_refuses_an_empty_string(head, flag, capsys):
    one_line_error(capsys, cli.main([*head, flag, ""]), 2, f"argument {flag}:", "must not be empty")


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--model", "mamba"], ("--model", "invalid choice", "ngram", "transformer")),
    (["--tokenizer", "sentencepiece"], ("--tokenizer", "invalid choice", "char", "word", "bpe")),
    (["--progress", "fancy"], ("--progress", "invalid choice", "lines")),
    (["--device", "tpu"], ("--device", "cpu, cuda, cuda:N or fake")),
])
def test_a_choice_flag_lists_its_choices(argv, fragments, capsys):
    one_line_error(capsys, cli.main(["train", *argv]), 2, *fragments)


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--lr", "0.1", "--min-lr", "0.2"], ("--min-lr must be in [0, --lr=0.1], got 0.2",)),
    (["--lr", "0.01", "--weight-decay", "100"], ("--weight-decay 100 with --lr 0.01", "below 1/--lr = 100")),
    (["--n-embd", "10", "--n-head", "4"], ("--n-embd (10) must be divisible by --n-head (4)",)),
])
def test_flags_that_constrain_each_other_are_checked_before_training(argv, fragments, capsys, tmp_path):
    one_line_error(capsys, cli.main(["train", *argv, "--out", str(tmp_path)]), 2, "lmroad train: error:",
                   *fragments)
    assert not any(tmp_path.iterdir())


def test_every_numeric_flag_states_its_range_in_its_help():
    parsers = build_subparsers()
    tables = [("train", RANGES), ("sample", cli._SAMPLE_RANGES), ("eval", cli._EVAL_RANGES)]
    for command, ranges in tables:
        actions = {a.dest: a for a in parsers[command]._actions}
        for name, r in ranges.items():
            assert f"({r.bounds or 'any finite number'}" in actions[name].help, (command, name)


def build_subparsers() -> dict:
    import argparse
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


# =========================================================================== edge values end usable

EDGE_RUNS = [    # extra flags, the exit status they lead to (0: a checkpoint; 1, 2: a one-line error)
    (["--max-iters", "0"], 0),                                  # the initial model, saved
    (["--max-iters", "0", "--model", "lstm"], 0),
    (["--max-iters", "1", "--eval-interval", "1000"], 0),       # saved at the end all the same
    (["--max-iters", "2", "--eval-interval", "1", "--log-interval", "1000000"], 0),
    (["--eval-iters", "0"], 0),                                 # all of the validation text
    (["--eval-iters", "1000000"], 0),
    (["--batch-size", "300", "--eval-iters", "1"], 0),          # more windows than the text has
    (["--batch-size", "1000", "--model", "gru"], 2),            # lanes shorter than a window
    (["--block-size", "1"], 0),
    (["--block-size", "1000000"], 2),                           # longer than the text
    (["--warmup-iters", "1000000"], 0),
    (["--lr-decay-iters", "0"], 0),
    (["--min-lr", "0.001", "--lr", "0.001"], 0),
    (["--lr", "1e30", "--weight-decay", "0", "--warmup-iters", "0", "--min-lr", "0"], 1),   # diverges
    (["--dropout", "0.99", "--model", "lstm"], 0),
    (["--grad-clip", "0"], 0),
    (["--grad-clip", "1e-30"], 0),
    (["--beta1", "0", "--beta2", "0"], 0),
    (["--seed", "0"], 0),
    (["--seed", str(2**70)], 0),
    (["--max-skipped-steps", "0"], 0),
    (["--model", "ngram", "--ngram-n", "1"], 0),
    (["--model", "ngram", "--ngram-n", "10"], 0),
    (["--tokenizer", "word", "--block-size", "4"], 0),
    (["--model", "lstm", "--forget-bias", "1e30"], 0),
    (["--n-head", "16"], 0),                                    # heads of width 1
    (["--model", "rnn", "--num-layers", "3"], 0),
    (["--device", "fake", "--max-iters", "1"], 0),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy's, from the run that diverges
@pytest.mark.parametrize(("extra", "expected"), EDGE_RUNS, ids=[" ".join(e) for e, _ in EDGE_RUNS])
def test_every_train_that_exits_0_leaves_a_checkpoint_sample_and_eval_accept(extra, expected, text_file,
                                                                            tmp_path, capsys):
    """Each edge value either trains, and then sample and eval take its checkpoint, or is a
    one-line error; never a traceback, never a 0 without a usable checkpoint."""
    argv = ["train", "--data", str(text_file), "--out", str(tmp_path), "--max-iters", "3",
            "--eval-interval", "2", *TINY, *extra]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == expected and "Traceback" not in err, err
    if code != 0:
        assert err.strip().splitlines()[-1].startswith("lmroad train: error:"), err
        assert not (tmp_path / "checkpoint.json").exists()
        return
    max_iters = int(argv[len(argv) - argv[::-1].index("--max-iters")])           # the last one given
    assert read_checkpoint(tmp_path).step == (0 if "ngram" in extra else max_iters)
    assert cli.main(["sample", "--checkpoint", str(tmp_path), "--max-new-tokens", "5", "--seed", "0"]) == 0, \
        capsys.readouterr().err
    assert cli.main(["eval", "--checkpoint", str(tmp_path), "--max-batches", "2", "--json"]) == 0, \
        capsys.readouterr().err
    assert np.isfinite(json.loads(capsys.readouterr().out.splitlines()[-1])["loss"])


def test_train_reports_skipped_steps_when_done(text_file, tmp_path, monkeypatch, capsys):
    from lmroad.models import TransformerLM
    real = TransformerLM.forward
    calls = {"n": 0}

    def nan_on_step_2(self, idx, targets=None):
        logits, loss = real(self, idx, targets)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 2:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(TransformerLM, "forward", nan_on_step_2)
    args = ["train", "--data", str(text_file), "--out", str(tmp_path), "--max-iters", "3", *TINY[:-2],
            "--progress", "lines", "--max-skipped-steps", "1"]
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "warning: step 2: the loss is nan" in err
    assert "done: transformer at step 3" in err and "1 step(s) skipped (non-finite loss or gradient)" in err
