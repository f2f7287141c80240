"""What a training run shows while it runs: progress (a tqdm bar, or a plain
line every ``log_interval`` steps), its messages and evaluation lines, and the
Ctrl-C guard that turns the first Ctrl-C into "stop after this step".

Part of ``lmroad.train``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["Progress", "StopOnCtrlC", "eval_line"]


class Progress:
    """Messages, and per-step progress: a tqdm bar (loss, tokens/s, ETA) when tqdm is
    installed and the output is a terminal, else a plain line every ``log_interval`` steps.
    ``mode``: "auto", "bar" (a bar even off a terminal), "lines", "none" (silent)."""

    def __init__(self, mode: str, total: int, log_interval: int, stream=None):
        self.mode, self.total, self.log_interval = mode, total, log_interval
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None

    def start(self, step: int) -> None:
        """Begin counting at ``step`` (of ``total``)."""
        if self.mode in ("auto", "bar"):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            tty = getattr(self.stream, "isatty", lambda: False)()
            if tqdm is not None and (self.mode == "bar" or tty):
                self.bar = tqdm(total=self.total, initial=step, file=self.stream, unit="step",
                                dynamic_ncols=True)
        self.t0 = self.t_last = time.perf_counter()
        self.step0, self.tokens, self.tokens_last = step, 0, 0

    def update(self, step: int, loss: float, lr: float, tokens: int) -> None:
        self.tokens += tokens
        now = time.perf_counter()
        if self.bar is not None:
            rate = self.tokens / max(now - self.t0, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} tok/s", refresh=False)
            self.bar.update(1)
        elif step % self.log_interval == 0 or step == self.total:
            rate = (self.tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
            eta = (now - self.t0) / max(step - self.step0, 1) * (self.total - step)
            self.write(f"step {step:>{len(str(self.total))}}/{self.total} | loss {loss:.4f} | "
                       f"lr {lr:.2e} | {rate:,.0f} tok/s | eta {_duration(eta)}")
            self.t_last, self.tokens_last = now, self.tokens

    def write(self, line: str) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class StopOnCtrlC:
    """While active (main thread only), the first Ctrl-C asks the loop to stop after
    the current step; a second one raises KeyboardInterrupt at once."""

    def __init__(self, say: Callable[[str], None]):
        self.requested = False
        self.say = say
        self._old = None

    def __enter__(self) -> StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to stop now)")

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def eval_line(ev: dict) -> str:
    bpc = f" | bpc {ev['bpc']:.4f}" if ev.get("bpc") is not None else ""
    return f"step {ev['step']}: val loss {ev['loss']:.4f} | perplexity {ev['perplexity']:.2f}{bpc}"
