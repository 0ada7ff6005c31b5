"""Worker processes and read-ahead threads, shared by every step.

CPU encoders, metrics and models run in a pool of spawned worker processes, one per core with one
torch thread each (``MPQ_WORKERS``): on a small shared machine that beats torch's threads inside one
process. The pool starts once per process and is kept; a changed ``MPQ_*`` setting starts a new one.
On a GPU the models stay in the step's process and files are read ahead in threads instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from mpq_assets.settings import Settings, child_environment, load_settings

WORKERS_ENV = "MPQ_WORKERS"
LOADER_THREADS = 8  # threads reading files ahead of an in-process model (a GPU's, or MPQ_WORKERS=1)

_POOLS: dict[tuple[int, tuple[tuple[str, str], ...]], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def default_workers(settings: Settings | None = None) -> int:
    """Worker processes for CPU codecs: the settings' ``MPQ_WORKERS``, else the cores this process may use."""
    text = (settings or load_settings()).workers
    if text:
        try:
            return max(1, int(text))
        except ValueError as exc:
            raise ValueError(f"{WORKERS_ENV}={text!r} is not a whole number") from exc
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    """Worker processes compute on one core each: torch (imported later, if at all) and BLAS get one thread."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, started once per process and kept (``shutdown_workers`` stops it).

    Spawned, not forked: safe beside torch's and Dagster's threads. Encoders and the
    evaluation steps' models and metrics (CPU only) share it. Workers see the
    environment of their start, so a changed ``MPQ_*`` setting starts a new pool.
    """
    key = (workers, child_environment())
    stale = []
    with _POOLS_LOCK:
        if key not in _POOLS:
            stale = [_POOLS.pop(k) for k in list(_POOLS)]
            _POOLS[key] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_init_worker)
        pool = _POOLS[key]
    for old in stale:
        old.shutdown(wait=False, cancel_futures=True)
    return pool


def shutdown_workers() -> None:
    """Stop the worker processes (they start again on the next parallel encode)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_workers)
# A Dagster step runs in a multiprocessing child, and a child joins its own children *before* atexit
# handlers run: without this finalizer the idle workers are joined forever and the run never ends.
multiprocessing.util.Finalize(None, shutdown_workers, exitpriority=100)


def can_start_workers() -> bool:
    """False inside a daemonic process (Dask's default workers, some executors): those may not have children."""
    return not multiprocessing.current_process().daemon


def bounded_map(run: Callable[[Any], Any], jobs: Sequence[Any], workers: int) -> Iterator[Any]:
    """``run(job)`` for each job in the worker pool, results in job order. A bounded look-ahead (at most 2
    jobs per worker in flight) keeps memory flat for any dataset size."""
    pool = worker_pool(workers)
    pending: deque[Future] = deque(pool.submit(run, job) for job in jobs[:2 * workers])
    queued = len(pending)
    while pending:
        result = pending.popleft().result()
        if queued < len(jobs):
            pending.append(pool.submit(run, jobs[queued]))
            queued += 1
        yield result


def pool_workers(settings: Settings) -> int:
    """Worker processes for the model stages: on CPU the cores (``MPQ_WORKERS``); on a GPU none (this process)."""
    from mpq_assets.device import resolve_device

    if resolve_device(settings.device).type != "cpu":
        return 1
    return default_workers(settings)


def in_order(jobs: Sequence[Any], run: Callable[[Any], Any], workers: int) -> Iterator[Any]:
    """``run(job)`` for each job, results in order: in the worker pool (at most 2 jobs per worker in flight)
    or here. A job's exception is raised here."""
    if workers <= 1 or len(jobs) <= 1 or not can_start_workers():
        for job in jobs:
            yield run(job)
        return
    yield from bounded_map(run, jobs, workers)


def read_ahead(load: Callable[[Any], Any], chunks: Sequence[Sequence[Any]], threads: int) -> Iterator[list[Any]]:
    """``[load(x) for x in chunk]`` for each chunk, computed in ``threads`` threads (at most LOADER_THREADS) two
    chunks ahead of the caller, so a device is not left waiting for one CPU thread to decode its next batch
    (decoders release the GIL)."""
    with ThreadPoolExecutor(max(1, min(LOADER_THREADS, threads)), thread_name_prefix="mpq-load") as pool:
        ahead = deque(pool.map(load, c) for c in chunks[:2])
        for k in range(len(chunks)):
            if k + 2 < len(chunks):
                ahead.append(pool.map(load, chunks[k + 2]))
            yield list(ahead.popleft())
