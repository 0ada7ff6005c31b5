"""Measuring a benchmark path: wall time per stage and peak memory."""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Clock:
    """Wall time per stage; a stage entered inside another counts for itself only (exclusive times).

    ``with clock("encode"): ...``; ``clock.seconds`` maps stage -> seconds.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []  # [stage, seconds spent in nested stages]

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._stack.append([stage, 0.0])
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            _, nested = self._stack.pop()
            self.seconds[stage] += elapsed - nested
            if self._stack:
                self._stack[-1][1] += elapsed


class TimedStore:
    """A ResultsStore whose calls count as the ``store`` stage (DuckDB reads and writes)."""

    def __init__(self, store: Any, clock: Clock) -> None:
        self._store, self._clock = store, clock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in ("replace_partitions", "replace_partition", "query"):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._clock("store"):
                return attr(*args, **kwargs)

        return timed


class PeakMemory:
    """Peak memory of this process and all its children (worker processes), sampled.

    ``psutil`` (when installed) samples, every ``interval`` seconds, the sum over the
    process tree of each process's PSS (proportional set size: shared library pages
    split between the processes mapping them, so N workers importing torch are not
    counted N times; RSS where PSS is unavailable); ``getrusage`` adds the exact peak
    RSS of this process.

    Reading PSS parses ``/proc/<pid>/smaps``: ~15 ms for a process that imported
    torch. Sampled every 20 ms, three such processes kept the sampler busy most of a
    core and slowed the very paths it measured, so the wait after each sample grows
    to keep the sampler's share of one core at ``duty`` (2 %) or less.
    """

    def __init__(self, interval: float = 0.02, duty: float = 0.02) -> None:
        self.interval, self.duty = interval, duty
        self.samples = 0
        self.peak_tree_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            t0 = time.perf_counter()
            total = 0
            with contextlib.suppress(psutil.Error):
                for proc in [me, *me.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a worker that just exited
                        try:
                            total += proc.memory_full_info().pss
                        except (AttributeError, psutil.AccessDenied):
                            total += proc.memory_info().rss
            self.peak_tree_mb = max(self.peak_tree_mb or 0.0, total / 2**20)
            self.samples += 1
            spent = time.perf_counter() - t0
            self._stop.wait(max(self.interval, spent * (1 - self.duty) / self.duty))

    def start(self) -> PeakMemory:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return self
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        # (RUSAGE_CHILDREN is no help: a spawned child is forked before it execs, so its peak is this process's)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return {"peak_main_mb": own, "peak_tree_mb": self.peak_tree_mb}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (a path's MPQ_HOME, device, ...), then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
