"""lmroad.threads: one rule for BLAS threads, applied at run time through threadpoolctl."""

from __future__ import annotations

import argparse
import os

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from lmroad import threads


def blas_threads() -> list[int]:
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Every test leaves the process's thread limits and environment as it found them."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    with threadpool_limits(limits=None):            # records the current limits, restores them on exit
        yield
    monkeypatch.setattr(threads, "_applied", threads._applied)


def test_set_threads_changes_what_the_blas_library_reports():
    assert blas_threads(), "no BLAS library loaded (NumPy should be)"
    assert threads.set_threads(2) == 2
    assert set(blas_threads()) == {2} and threads.get_threads() == 2
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"      # for libraries loaded later, child processes
    assert threads.set_threads(1) == 1
    assert set(blas_threads()) == {1} and threads.get_threads() == 1


def test_none_is_the_default_rule_of_one_thread():
    assert threads.DEFAULT_THREADS == threads.default_threads() == 1
    threads.set_threads(2)
    assert threads.set_threads() == 1 and set(blas_threads()) == {1}


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, "2", True])
def test_invalid_counts_are_clear_value_errors(bad):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        threads.set_threads(bad)


@pytest.mark.parametrize(("text", "message"), [("0", "must be a positive integer"), ("-2", "positive"),
                                                ("two", "expected a positive integer, got 'two'")])
def test_the_flag_refuses_what_is_not_a_positive_integer(text, message, capsys):
    parser = argparse.ArgumentParser(prog="p")
    threads.add_threads_argument(parser)
    assert parser.parse_args([]).threads is None
    assert parser.parse_args(["--threads", "3"]).threads == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", text])
    assert "argument --threads" in capsys.readouterr().err


def test_the_flag_help_states_the_default_and_why():
    parser = argparse.ArgumentParser(prog="p")
    threads.add_threads_argument(parser)
    text = " ".join(parser.format_help().split())
    assert "--threads N" in text and "default 1" in text and "spin-waits" in text
