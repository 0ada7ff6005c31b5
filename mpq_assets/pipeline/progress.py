"""Progress of long loops: items done / total, rate and ETA, in the run's log and, for scripted runs, the terminal.

A loop logs at most ~10 lines (every 10% of its items) plus one at least every
``interval_s`` seconds, so a slow partition is never silent for long in Dagster's
run log and the UI. Scripted runs (``mpq demo``, ``mpq run``) silence Dagster's
console logger and call :func:`echo_to` instead: once a step has run for 5 s, on
a terminal its progress is one line rewritten in place, elsewhere (a CI log, a
pipe) the same lines as the log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_echo: Callable[[str, bool], None] | None = None
ECHO_AFTER_S = 5.0


@contextmanager
def echo_to(write: Callable[[str], None] | None = None) -> Iterator[None]:
    """While active, progress also goes to the terminal (``write``: e.g. the demo's ``print``; None: stderr)."""
    global _echo
    stream = sys.stderr
    tty = write is None and stream.isatty()

    def show(message: str, final: bool) -> None:
        if tty:
            stream.write("\r    " + message[:150].ljust(150) + ("\n" if final else ""))
            stream.flush()
        elif write is not None:
            write(f"    {message}")
        else:
            stream.write(f"    {message}\n")

    before, _echo = _echo, show
    try:
        yield
    finally:
        _echo = before


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, log: logging.Logger | logging.LoggerAdapter, what: str, total: int,
                 interval_s: float = 30.0) -> None:
        self.log, self.what, self.total = log, what, total
        self.start = self.last = time.perf_counter()
        self.every = max(1, total // 10)
        self.interval_s = interval_s

    def step(self, done: int) -> None:
        now = time.perf_counter()
        if not (done == self.total or done % self.every == 0 or now - self.last >= self.interval_s):
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {_duration((self.total - done) / rate)}" if rate > 0 and done < self.total else ""
        message = (f"{self.what}: {done}/{self.total} items ({rate:.2f} items/s{eta})" if done < self.total else
                   f"{self.what}: {done}/{self.total} items in {_duration(elapsed)}")
        self.log.info(message)
        if _echo is not None and elapsed >= ECHO_AFTER_S:  # the terminal hears only about slow steps
            _echo(message, done == self.total)
