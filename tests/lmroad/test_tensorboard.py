"""TensorBoard event files (lmroad/tensorboard.py) and ``lmroad train --log tensorboard``.

The format is checked against published CRC-32C check values and
hand-assembled bytes, and every file a run writes is read back by this file's
own small TFRecord and protobuf reader: none of it needs anything installed.
Where tensorboard is installed (``pip install -e ".[interop]"``), TensorBoard's
own reader must see the same scalars, which must be the records of
metrics.jsonl, to float32.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmroad import cli
from lmroad.tensorboard import (
    SummaryWriter,
    crc32c,
    file_version_event,
    masked_crc32c,
    scalar_event,
    tfrecord,
)
from lmroad.train import TrainConfig, train
from lmroad.train_log import open_tensorboard, tensorboard_scalars

ROOT = Path(__file__).resolve().parents[2]
NEEDS_TENSORBOARD = 'the cross-check needs tensorboard: pip install -e ".[interop]"'
FLAGS = ["--model", "lstm", "--batch-size", "4", "--block-size", "16", "--n-embd", "8", "--hidden-size",
         "16", "--eval-interval", "3", "--eval-iters", "1", "--log-interval", "1", "--warmup-iters", "2",
         "--seed", "3", "--progress", "none", "--no-plot"]


def _config(text_file, out, **kw) -> TrainConfig:
    base = dict(model="lstm", data=str(text_file), out=str(out), max_iters=6, batch_size=4, block_size=16,
                n_embd=8, hidden_size=16, eval_interval=3, eval_iters=1, log_interval=1, seed=3,
                progress="none", log="tensorboard")
    return TrainConfig(**{**base, **kw})


def _jsonl(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def _records_of(path: Path) -> list[bytes]:
    """The data of each TFRecord in ``path``, both checksums checked (our reader, to test the
    framing without TensorBoard)."""
    raw, records, at = path.read_bytes(), [], 0
    while at < len(raw):
        header = raw[at:at + 8]
        (length,), (crc,) = struct.unpack("<Q", header), struct.unpack("<I", raw[at + 8:at + 12])
        assert crc == masked_crc32c(header)
        data = raw[at + 12:at + 12 + length]
        assert struct.unpack("<I", raw[at + 12 + length:at + 16 + length])[0] == masked_crc32c(data)
        records.append(data)
        at += 16 + length
    assert at == len(raw)
    return records


def _event_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("events.out.tfevents.*"))


def _decode(message: bytes) -> dict[int, list]:
    """Field number -> its values, of one protobuf message (wire types 0, 1, 2 and 5)."""
    fields: dict[int, list] = {}
    at = 0

    def varint() -> int:
        nonlocal at
        n = shift = 0
        while True:
            b = message[at]
            at += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return n
    while at < len(message):
        key = varint()
        wire = key & 7
        if wire == 0:
            value = varint()
            value = value - 2**64 if value >= 2**63 else value          # int64
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = struct.unpack("<d" if wire == 1 else "<f", message[at:at + size])[0]
            at += size
        else:
            assert wire == 2, wire
            size = varint()
            value, at = message[at:at + size], at + size
        fields.setdefault(key >> 3, []).append(value)
    return fields


def _our_scalars(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, value, wall time)] in ``folder``'s event files, in name order, decoded by
    this file's own reader."""
    shown: dict[str, list] = {}
    for path in _event_files(folder):
        first, *events = (_decode(r) for r in _records_of(path))
        assert first[3] == [b"brain.Event:2"] and 5 not in first
        for event in events:
            for value in _decode(event[5][0])[1]:
                value = _decode(value)
                shown.setdefault(value[1][0].decode(), []).append((event[2][0], value[2][0], event[1][0]))
    return shown


def _read_by_tensorboard(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, value, wall time)] as TensorBoard's EventAccumulator reads ``folder``."""
    pytest.importorskip("tensorboard", reason=NEEDS_TENSORBOARD)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})    # 0: keep every event
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _expected(records: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    """What TensorBoard should show for these metrics.jsonl records: each number as float32."""
    out: dict[str, list] = {}
    for r in records:
        for tag, value in tensorboard_scalars(r):
            out.setdefault(tag, []).append((r["step"], float(np.float32(value)), r["time"]))
    return out


def _shown(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """The scalars in ``folder`` by our reader, and, where tensorboard is installed, the same
    as TensorBoard's reader shows them."""
    ours = _our_scalars(folder)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return ours
    assert _read_by_tensorboard(folder) == ours
    return ours


# =========================================================================== the format, by hand

@pytest.mark.parametrize(("data", "crc"), [
    (b"123456789", 0xE3069283),                      # the check value of CRC-32C
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),                         # RFC 3720 (iSCSI), appendix B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_gives_the_published_check_values(data, crc):
    assert crc32c(data) == crc


def _crc32c_bitwise(data: bytes) -> int:
    """CRC-32C by the definition: one bit at a time, no table."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


@given(st.binary(max_size=300))
def test_the_table_crc_equals_the_bitwise_definition(data):
    assert crc32c(data) == _crc32c_bitwise(data)


def test_the_mask_rotates_right_by_15_and_adds_the_constant():
    crc = crc32c(b"123456789")
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == (rotated + 0xA282EAD8) % 2**32


def test_the_docstrings_example_event_byte_for_byte():
    expected = bytes.fromhex("09 0000000000000000  1003  2a0d 0a0b 0a04 6c6f7373 15 00002040")
    assert scalar_event("loss", 2.5, 3, 0.0) == expected
    assert file_version_event(1.0) == (b"\x09" + struct.pack("<d", 1.0) + b"\x10\x00"
                                       + b"\x1a\x0dbrain.Event:2")


def test_a_negative_step_is_ten_bytes_of_twos_complement_and_big_values_overflow_to_infinity():
    event = scalar_event("t", 1e39, -1, 0.0)
    assert event[9:20] == b"\x10" + b"\xff" * 9 + b"\x01"
    assert struct.unpack("<f", event[-4:])[0] == np.inf     # float32 stops at 3.4e38
    assert struct.unpack("<f", scalar_event("t", -1e39, 0, 0.0)[-4:])[0] == -np.inf


def test_a_tfrecord_frames_its_data_with_two_checksums():
    framed = tfrecord(b"abc")
    assert framed[:8] == struct.pack("<Q", 3) and framed[12:15] == b"abc" and len(framed) == 19
    assert framed[8:12] == struct.pack("<I", masked_crc32c(framed[:8]))
    assert framed[15:] == struct.pack("<I", masked_crc32c(b"abc"))


def test_the_writer_makes_one_whole_file_at_the_first_flush_named_as_tensorboard_expects(tmp_path):
    with SummaryWriter(tmp_path / "tb") as w:
        w.add_scalar("train/loss", 2.5, 3, walltime=0.0)
        assert not (tmp_path / "tb").exists()                 # nothing before the first flush
        w.flush()
        assert _records_of(w.path)[1:] == [scalar_event("train/loss", 2.5, 3, 0.0)]
        w.add_scalar("train/loss", np.float32(2.0), np.int64(4), walltime=1.0)   # NumPy scalars too
    assert re.fullmatch(rf"events\.out\.tfevents\.\d{{10}}\.[^/]+\.{os.getpid()}\.\d+", w.path.name)
    records = _records_of(w.path)
    assert records[0].endswith(b"\x1a\x0dbrain.Event:2") and len(records) == 3
    assert records[2] == scalar_event("train/loss", 2.0, 4, 1.0)
    assert os.listdir(tmp_path / "tb") == [w.path.name]       # no temporary file left


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda w: w.add_scalar("", 1.0, 0), ValueError, "the tag must be a non-empty string"),
    (lambda w: w.add_scalar("x", "high", 0), TypeError, r"add_scalar\('x'\): the value must be a number"),
    (lambda w: w.add_scalar("x", 1.0, 1.5), TypeError, "global_step must be an integer, got 1.5"),
    (lambda w: w.add_scalar("x", 1.0, True), TypeError, "global_step must be an integer"),
    (lambda w: w.add_scalar("x", 1.0, 2**63), ValueError, "does not fit an int64"),
])
def test_bad_scalars_are_refused_naming_the_tag(tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(SummaryWriter(tmp_path))


def test_adding_after_close_is_an_error(tmp_path):
    w = SummaryWriter(tmp_path)
    w.close()
    w.close()                                                  # a second close does nothing
    with pytest.raises(ValueError, match="after close"):
        w.add_scalar("x", 1.0, 0)
    with pytest.raises(ValueError, match="flush_secs must be a number > 0"):
        SummaryWriter(tmp_path, flush_secs=0)


def test_a_record_becomes_one_scalar_per_number_tagged_by_split():
    record = {"step": 4, "split": "train", "loss": 2.0, "lr": 1e-3, "grad_norm": None, "skipped": True,
              "reason": "the loss is nan", "skipped_steps": 1, "time": 5.0}
    assert tensorboard_scalars(record) == [("train/loss", 2.0), ("train/lr", 1e-3), ("train/skipped", 1.0),
                                           ("train/skipped_steps", 1.0)]
    assert tensorboard_scalars({"step": 0, "split": "val", "loss": float("nan")}) == []   # null in the log


# =========================================================================== TensorBoard's own reader

def test_tensorboard_reads_our_file_version_and_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason=NEEDS_TENSORBOARD)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    with SummaryWriter(tmp_path) as w:
        for step in range(5):
            w.add_scalar("train/loss", 1 / (step + 1), step, walltime=100.0 + step)
        w.add_scalar("val/perplexity", 1e39, 4, walltime=200.0)
    events = list(EventFileLoader(str(w.path)).Load())
    assert events[0].file_version == "brain.Event:2" and events[0].step == 0
    assert [(e.step, e.summary.value[0].tag) for e in events[1:3]] == [(0, "train/loss"), (1, "train/loss")]
    assert _read_by_tensorboard(tmp_path) == {
        "train/loss": [(s, float(np.float32(1 / (s + 1))), 100.0 + s) for s in range(5)],
        "val/perplexity": [(4, float("inf"), 200.0)]}


def test_our_crc_equals_tensorboards(tmp_path):
    pytest.importorskip("tensorboard", reason=NEEDS_TENSORBOARD)
    from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as tb
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 100, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == tb.crc32c(data) and masked_crc32c(data) == tb.masked_crc32c(data)


# =========================================================================== --log tensorboard

def test_log_defaults_to_jsonl_and_writes_no_events(text_file, tmp_path):
    train(_config(text_file, tmp_path, max_iters=2, log="jsonl"))
    assert (tmp_path / "metrics.jsonl").is_file() and (tmp_path / "metrics.csv").is_file()
    assert not (tmp_path / "tensorboard").exists()
    assert TrainConfig().log == "jsonl"


def test_a_bad_log_value_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["train", "--log", "wandb", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "argument --log: invalid choice: 'wandb'" in err and "'tensorboard'" in err
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"log": "TensorBoard"}))
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "lmroad train: error: --log must be jsonl" in err and "or tensorboard" in err
    assert "got 'TensorBoard'" in err and "Traceback" not in err


def test_a_new_run_in_an_old_folder_drops_the_old_events_and_only_them(text_file, tmp_path):
    with SummaryWriter(tmp_path / "tensorboard") as w:       # events of a run that left no checkpoint
        w.add_scalar("train/loss", 9.0, 1)
    (tmp_path / "tensorboard" / "notes.txt").write_text("mine")
    train(_config(text_file, tmp_path, max_iters=1))
    [events] = _event_files(tmp_path / "tensorboard")
    assert events != w.path and (tmp_path / "tensorboard" / "notes.txt").read_text() == "mine"
    train(_config(text_file, tmp_path, max_iters=1, log="jsonl", overwrite=True))
    assert _event_files(tmp_path / "tensorboard") == []      # --overwrite removes the old run's events


def test_the_events_are_the_records_of_metrics_jsonl(text_file, tmp_path):
    train(_config(text_file, tmp_path))
    records = _jsonl(tmp_path)
    shown = _shown(tmp_path / "tensorboard")
    assert {"train/loss", "train/lr", "val/loss", "val/perplexity", "val/bpc"} <= set(shown)
    assert shown == _expected(records)
    assert [s for s, _, _ in shown["val/loss"]] == [0, 3, 6]
    assert len(_event_files(tmp_path / "tensorboard")) == 1


def test_a_crashed_run_resumed_from_the_cli_shows_each_step_once(text_file, tmp_path):
    def crash(step, info):
        if step == 5:                    # after the checkpoint at 3, records 4 and 5 logged
            raise RuntimeError("power cut")
    with pytest.raises(RuntimeError, match="power cut"):
        train(_config(text_file, tmp_path, max_iters=8), on_step=crash)
    before = _shown(tmp_path / "tensorboard")
    assert [s for s, _, _ in before["train/loss"]] == [1, 2, 3, 4, 5]      # 4, 5: after the checkpoint
    # resumed: the log and its events are cut back to step 3; 4 to 8 are trained again
    assert cli.main(["train", "--resume", "--out", str(tmp_path), "--max-iters", "8", "--progress",
                     "none", "--no-plot"]) == 0
    records = _jsonl(tmp_path)
    shown = _shown(tmp_path / "tensorboard")
    assert [s for s, _, _ in shown["train/loss"]] == list(range(1, 9))      # each step once
    assert [s for s, _, _ in shown["val/loss"]] == [0, 3, 6, 8]
    assert shown == _expected(records)


def test_resume_through_the_cli_appends_and_keeps_one_history(text_file, tmp_path):
    out = ["--data", str(text_file), "--out", str(tmp_path), *FLAGS]
    assert cli.main(["train", *out, "--max-iters", "4", "--log", "tensorboard"]) == 0
    first = _shown(tmp_path / "tensorboard")
    # --log is the run's setting: the resume keeps it
    assert cli.main(["train", "--resume", "--out", str(tmp_path), "--max-iters", "7", "--progress",
                     "none", "--no-plot"]) == 0
    shown = _shown(tmp_path / "tensorboard")
    assert shown == _expected(_jsonl(tmp_path))
    assert all(shown[tag][:len(first[tag])] == first[tag] for tag in first)   # the history, unchanged
    for tag, points in shown.items():
        steps = [s for s, _, _ in points]
        assert steps == sorted(set(steps)), tag                 # no step twice
    assert [s for s, _, _ in shown["train/loss"]] == list(range(1, 8))
    assert len(_event_files(tmp_path / "tensorboard")) == 1     # the rewritten history, appended to


def test_tensorboard_turned_on_at_a_resume_shows_the_whole_run(text_file, tmp_path):
    train(_config(text_file, tmp_path, max_iters=3, log="jsonl"))
    assert not (tmp_path / "tensorboard").exists()
    train(_config(text_file, tmp_path, resume=True))             # --log tensorboard from here on
    shown = _shown(tmp_path / "tensorboard")
    assert shown == _expected(_jsonl(tmp_path)) and shown["train/loss"][0][0] == 1


def test_open_tensorboard_replaces_the_folders_events_with_the_log(text_file, tmp_path):
    train(_config(text_file, tmp_path, max_iters=3))
    stale = SummaryWriter(tmp_path / "tensorboard")
    stale.add_scalar("train/loss", 9.0, 100)
    stale.close()
    writer = open_tensorboard(tmp_path)
    writer.close()
    assert _event_files(tmp_path / "tensorboard") == [writer.path]
    assert _shown(tmp_path / "tensorboard") == _expected(_jsonl(tmp_path))


def test_on_two_ranks_rank_0_alone_writes_the_events(text_file, tmp_path):
    pytest.importorskip("mpi4py", reason='needs mpi4py and mpich: pip install -e ".[distributed]"')
    from minigrad import distributed as dist
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", "2", sys.executable, "-m", "lmroad",
           "train", "--data", str(text_file), "--out", str(tmp_path), "--max-iters", "4", "--log",
           "tensorboard", *FLAGS]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    for var in dist.launcher_variables(env):                    # start as a fresh job
        env.pop(var)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(_event_files(tmp_path / "tensorboard")) == 1
    shown = _shown(tmp_path / "tensorboard")
    assert shown == _expected(_jsonl(tmp_path))
    assert [s for s, _, _ in shown["train/loss"]] == [1, 2, 3, 4]
