"""Progress lines for long loops, at most ~10 per loop so logs stay readable."""

from __future__ import annotations

import logging
import time


class Progress:
    def __init__(self, log: logging.Logger | logging.LoggerAdapter, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.start = time.perf_counter()
        self.every = max(1, total // 10)

    def step(self, done: int) -> None:
        if done == self.total or done % self.every == 0:
            elapsed = time.perf_counter() - self.start
            rate = done / elapsed if elapsed > 0 else 0.0
            self.log.info("%s: %d/%d items (%.1f items/s)", self.what, done, self.total, rate)
