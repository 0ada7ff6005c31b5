"""The ``compressed`` step: codecs at target ratios over every item of an experiment.

For each item: each ratio becomes a byte budget, rate control picks the setting,
the bitstream is written as a real file (atomically), and it is decoded once.
Failures become error rows; the partition's other items still complete, and a
failed write leaves the previous rows in DuckDB untouched.

:func:`compress_partitions` does several (codec, bitrate) partitions in one
pass (what a backfill run of many partitions gets), item by item:

- an item is loaded once for all its partitions, and the target ratios of one
  codec share one ladder search (``Codec.encode_to_budgets``), so a rung
  measured for one ratio is not encoded again for the next;
- ratios that pick the same setting write the same bitstream: it is decoded
  once and its reconstruction encoded once;
- codecs marked ``parallel_encode`` (Pillow, FFmpeg: CPU work that holds the
  GIL) spread items over worker processes, one per core (``MPQ_WORKERS``);
  codecs whose ``batched`` is true (the neural codecs with ``batch_size`` > 1,
  the default on a GPU) get items in groups for their batched model calls
  instead;
- memory does not grow with the dataset: items stream through (a worker holds
  one item, a batched codec a window of at most ``max(BATCH, 4 x batch_size)``
  items) and only the small rows are kept.

:func:`compress_partition` is the one-partition case.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpq_assets.codecs import budget_bytes, get_codec, parse_ratio, raw_bytes
from mpq_assets.codecs.base import Codec, Encoded, Item
from mpq_assets.media.audio import Audio, load_audio
from mpq_assets.media.image import load_image
from mpq_assets.pipeline.progress import Progress
from mpq_assets.storage_paths import atomic_write_bytes, safe_join

if TYPE_CHECKING:
    import pandas as pd

    from mpq_assets.experiments import Experiment
    from mpq_assets.settings import Settings
    from mpq_assets.store import ResultsStore

log = logging.getLogger(__name__)

COMPRESSED_COLUMNS = ["item_id", "target_ratio", "budget_bytes", "bytes", "bpp", "kbps", "achieved_ratio",
                      "setting", "rate_met", "trials", "encode_s", "decode_s", "path", "decoded_path", "sha256",
                      "raw_bytes", "pixels", "duration_s"]
BATCH = 8  # items per group for batched (neural) codecs, at least; a group holds 4 device batches
PNG_LEVEL = 1  # reconstructions: lossless either way; level 1 writes ~3x faster than 6 for ~10 % more bytes
WORKERS_ENV = "MPQ_WORKERS"


@dataclass(frozen=True)
class CompressSummary:
    codec: str
    bitrate: str
    items: int
    errors: int
    missed_target: int
    ratio: float | None      # pooled over the items: sum(raw bytes) / sum(bytes), as rate_summary
    bpp: float | None
    kbps: float | None
    seconds: float


def bitstream_path(settings: Settings, experiment: str, codec: Codec, bitrate: str, item_id: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "compressed", codec.name, bitrate,
                     f"{item_id}{codec.extension}")


def decoded_path(bitstream: Path, item: Item) -> Path:
    """Where the lossless copy of the reconstruction lives (PNG / 16-bit FLAC), beside the bitstream."""
    suffix = ".flac" if isinstance(item, Audio) else ".png"
    return bitstream.parent / "decoded" / f"{bitstream.stem}{suffix}"


def load_item(path: str | Path, modality: str) -> Item:
    """Load an original or a cached reconstruction."""
    return load_audio(path) if modality == "audio" else load_image(path)


def reconstruction_bytes(decoded: Item) -> bytes:
    """The lossless file of a reconstruction: 16-bit FLAC for audio, PNG for images."""
    buf = io.BytesIO()
    if isinstance(decoded, Audio):
        import soundfile as sf

        sf.write(buf, decoded.samples.T, decoded.sample_rate, format="FLAC", subtype="PCM_16")
    else:
        from PIL import Image

        Image.fromarray(decoded, "RGB").save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def _row(item: Item, ratio: float, budget: int, encoded: Encoded, encode_s: float, decode_s: float, path: Path,
         recon: Path) -> dict:
    """One ``compressed`` row. The bitstream's content hash tells the analyses which partitions are one
    operating point; raw bytes, pixels and seconds are the denominators of pooled partition rates."""
    size = len(encoded.data)
    bits = size * 8
    pixels = duration = None
    if isinstance(item, Audio):
        duration = item.duration_s
        bpp, kbps = None, bits / duration / 1000.0
    else:
        pixels = int(item.shape[0] * item.shape[1])
        bpp, kbps = bits / pixels, None
    raw = raw_bytes(item)
    return dict(target_ratio=ratio, budget_bytes=budget, bytes=size, bpp=bpp, kbps=kbps,
                achieved_ratio=raw / size, setting=encoded.setting, rate_met=encoded.rate_met,
                trials=encoded.trials, encode_s=encode_s, decode_s=decode_s, path=str(path),
                decoded_path=str(recon), sha256=hashlib.sha256(encoded.data).hexdigest(), raw_bytes=raw,
                pixels=pixels, duration_s=duration)


def compress_item(codec: Codec, item: Item, ratio: float, path: Path) -> dict:
    """Rate-controlled encode of one item at one ratio, written to ``path``; returns its ``compressed`` row."""
    return _finish(codec, item, [ratio], [path], *_search(codec, item, [ratio]))[0]


def _search(codec: Codec, item: Item, ratios: Sequence[float]) -> tuple[list[Encoded | Exception], list[float]]:
    """Rate control for every ratio of one item (shared search); a failure is isolated to its ratio."""
    budgets = [budget_bytes(item, r) for r in ratios]
    t0 = time.perf_counter()
    try:
        encoded: list[Encoded | Exception] = list(codec.encode_to_budgets(item, budgets))
        elapsed = time.perf_counter() - t0
        times = [e.seconds if e.seconds is not None else elapsed / len(budgets) for e in encoded]
        return encoded, times
    except Exception:
        if len(budgets) == 1:
            raise
    encoded, times = [], []  # retry ratio by ratio so one failing setting cannot sink the others
    for b in budgets:
        t0 = time.perf_counter()
        try:
            encoded.append(codec.encode_to_budget(item, b))
        except Exception as exc:
            encoded.append(exc)
        times.append(time.perf_counter() - t0)
    return encoded, times


def _finish(codec: Codec, item: Item, ratios: Sequence[float], paths: Sequence[Path],
            encoded: Sequence[Encoded | Exception], times: Sequence[float],
            decoded: dict[bytes, tuple[Item, float]] | None = None) -> list[dict | Exception]:
    """Write each ratio's bitstream and reconstruction; decode each distinct bitstream once.

    ``decoded`` may hold decodes already made (bitstream -> (item, seconds)), e.g. by a batched decode.
    """
    decoded = {} if decoded is None else decoded
    files: dict[bytes, bytes] = {}  # bitstream -> reconstruction file bytes
    out: list[dict | Exception] = []
    for ratio, path, enc, enc_s in zip(ratios, paths, encoded, times, strict=True):
        if isinstance(enc, Exception):
            out.append(enc)
            continue
        try:
            atomic_write_bytes(path, enc.data)
            if enc.data not in decoded:
                t0 = time.perf_counter()
                decoded[enc.data] = (codec.decode(enc.data, like=item), time.perf_counter() - t0)
            recon_item, dec_s = decoded[enc.data]
            if enc.data not in files:
                files[enc.data] = reconstruction_bytes(recon_item)
            recon = decoded_path(path, item)
            atomic_write_bytes(recon, files[enc.data])
            out.append(_row(item, ratio, budget_bytes(item, ratio), enc, enc_s, dec_s, path, recon))
        except Exception as exc:
            out.append(exc)
    return out


@dataclass(frozen=True)
class Failed:
    """A failed (item, ratio): ``error`` is ``"ExceptionType: message"`` (picklable whatever the exception)."""

    error: str


def _failures(results: list[dict | Exception]) -> list[dict | Failed]:
    return [Failed(f"{type(r).__name__}: {r}") if isinstance(r, Exception) else r for r in results]


@dataclass(frozen=True)
class _Job:
    """One item and one codec at several ratios: what a worker process gets (small and picklable)."""

    codec: Codec
    item_id: str
    original_path: str
    modality: str
    ratios: tuple[float, ...]
    paths: tuple[Path, ...]


def _run_job(job: _Job) -> list[dict | Exception]:
    try:
        item = load_item(job.original_path, job.modality)
        encoded, times = _search(job.codec, item, job.ratios)
        return _finish(job.codec, item, job.ratios, job.paths, encoded, times)
    except Exception as exc:
        return [exc] * len(job.ratios)


def _run_job_in_worker(job: _Job) -> list[dict | Failed]:
    return _failures(_run_job(job))


def _run_batch(codec: Codec, jobs: Sequence[_Job]) -> list[list[dict | Exception]]:
    """Jobs of one batched codec: rate control and decoding through the model's batched calls."""
    out: list[list[dict | Exception] | None] = [None] * len(jobs)
    loaded: list[tuple[int, Item]] = []
    for k, job in enumerate(jobs):
        try:
            item = load_item(job.original_path, job.modality)
            codec.check(item)  # an item the codec cannot take stays out of the batch
            loaded.append((k, item))
        except Exception as exc:
            out[k] = [exc] * len(job.ratios)
    if loaded:
        items = [item for _, item in loaded]
        budgets = [[budget_bytes(item, r) for r in jobs[k].ratios] for k, item in loaded]
        t0 = time.perf_counter()
        try:
            batch: list[tuple[list[Encoded | Exception], list[float]]] | None = None
            results = codec.encode_to_budgets_batch(items, budgets)
            elapsed = (time.perf_counter() - t0) / len(items)
            batch = [(list(r), [e.seconds if e.seconds is not None else elapsed / len(r) for e in r])
                     for r in results]
        except Exception as exc:
            log.warning("%s: a batch of %d items failed (%s: %s); encoding them one by one to isolate the item",
                        codec.name, len(items), type(exc).__name__, exc)
            batch = None
        decoded: dict[bytes, tuple[Item, float]] = {}
        if batch is None:  # one item failed the batch: item by item isolates it
            batch = []
            for (k, item) in loaded:
                try:
                    batch.append(_search(codec, item, jobs[k].ratios))
                except Exception as exc:
                    batch.append(([exc] * len(jobs[k].ratios), [0.0] * len(jobs[k].ratios)))
        else:
            distinct: dict[bytes, Item] = {}
            for (_, item), (encs, _) in zip(loaded, batch, strict=True):
                for e in encs:
                    if isinstance(e, Encoded):
                        distinct.setdefault(e.data, item)
            if distinct:
                t0 = time.perf_counter()
                try:
                    recons = codec.decode_batch(list(distinct), list(distinct.values()))
                    each = (time.perf_counter() - t0) / len(distinct)
                    decoded = {d: (r, each) for d, r in zip(distinct, recons, strict=True)}
                except Exception:
                    decoded = {}  # _finish decodes one by one and reports the failing item
        for (k, item), (encs, times) in zip(loaded, batch, strict=True):
            job = jobs[k]
            out[k] = _finish(codec, item, job.ratios, job.paths, encs, times, decoded)
    return [o if o is not None else [] for o in out]


# ------------------------------------------------------------------------------------------------ worker processes

_POOLS: dict[tuple[int, tuple[tuple[str, str], ...]], ProcessPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def default_workers() -> int:
    """Worker processes for CPU codecs: ``MPQ_WORKERS``, else the cores this process may use."""
    text = os.environ.get(WORKERS_ENV, "").strip()
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


def _environment() -> tuple[tuple[str, str], ...]:
    """The settings a worker reads from its environment (MPQ_*, HF_*, TORCH_HOME), fixed when it starts."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("MPQ_", "HF_", "TORCH_HOME"))))


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, started once per process and kept (``shutdown_workers`` stops it).

    Spawned, not forked: safe beside torch's and Dagster's threads. Encoders and the
    evaluation steps' models and metrics (CPU only) share it. Workers see the
    environment of their start, so a changed ``MPQ_*`` setting starts a new pool.
    """
    key = (workers, _environment())
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


def _map_jobs(codec: Codec, jobs: Sequence[_Job], workers: int) -> Iterator[list[dict | Failed]]:
    """Results per job, in order: in worker processes, in batches, or here."""
    if codec.batched:  # a window of several device batches, so that items of one size can fill them
        window = max(BATCH, 4 * codec.batch_size)
        for start in range(0, len(jobs), window):
            yield from (_failures(r) for r in _run_batch(codec, jobs[start:start + window]))
        return
    done = 0
    if codec.parallel_encode and workers > 1 and len(jobs) > 1 and can_start_workers():
        try:
            for result in bounded_map(_run_job_in_worker, jobs, workers):
                done += 1
                yield result
            return
        except BrokenProcessPool as exc:  # a worker died (e.g. a crashing encoder): finish here, in-process
            log.warning("%s: a worker process died (%s); encoding the remaining items in-process", codec.name, exc)
            shutdown_workers()
    for job in jobs[done:]:
        yield _failures(_run_job(job))


# ------------------------------------------------------------------------------------------------------ partitions


def _partition_plan(partitions: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    plan: dict[str, list[str]] = {}
    for codec, bitrate in partitions:
        bitrates = plan.setdefault(codec, [])
        if bitrate not in bitrates:
            bitrates.append(bitrate)
    return plan


def _ready_codec(experiment: Experiment, codec_name: str, settings: Settings) -> Codec:
    from mpq_assets.device import parse_codec_batch

    # the deployment's device and batch size (MpqResource), not only the environment
    codec = get_codec(codec_name, device=settings.device, batch_size=parse_codec_batch(settings.codec_batch))
    missing = codec.weights_missing()
    if missing:  # fail the partition with the fix, rather than one identical error row per item
        from mpq_assets.weights import ModelNotAvailableError

        raise ModelNotAvailableError(f"codec {codec_name}: {missing}")
    if codec.modality != experiment.modality:
        raise ValueError(f"codec {codec_name} is for {codec.modality}, experiment {experiment.name} is "
                         f"{experiment.modality}")
    return codec


def compress_partitions(experiment: Experiment, partitions: Sequence[tuple[str, str]], store: ResultsStore,
                        settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log,
                        workers: int | None = None) -> dict[tuple[str, str], CompressSummary]:
    """Compress every (codec, bitrate) partition given, item by item; one summary per partition.

    Each codec's partitions are written to the store together once its items are
    done (one transaction), so a codec that fails later leaves earlier ones written.
    """
    import pandas as pd

    start = time.perf_counter()
    plan = _partition_plan(partitions)
    for codec_name, bitrates in plan.items():
        for bitrate in bitrates:
            parse_ratio(bitrate)
        _ready_codec(experiment, codec_name, settings)  # every codec checked before any work
    manifest = store.query("SELECT item_id, original_path, modality FROM items WHERE experiment = ? "
                           "ORDER BY item_id", [experiment.name])
    if manifest.empty:
        raise RuntimeError(f"experiment {experiment.name} has no items in {store.path}: materialise "
                           f"{experiment.name}/dataset first")
    workers = default_workers() if workers is None else max(1, workers)
    summaries: dict[tuple[str, str], CompressSummary] = {}
    for codec_name, bitrates in plan.items():
        codec_start = time.perf_counter()
        codec = _ready_codec(experiment, codec_name, settings)
        ratios = tuple(parse_ratio(b) for b in bitrates)
        jobs = [_Job(codec, rec.item_id, rec.original_path, rec.modality, ratios,
                     tuple(bitstream_path(settings, experiment.name, codec, b, rec.item_id) for b in bitrates))
                for rec in manifest.itertuples(index=False)]
        rows: dict[str, list[dict]] = {b: [] for b in bitrates}
        errors: dict[str, list[dict]] = {b: [] for b in bitrates}
        progress = Progress(logger, f"{experiment.name}/compressed {codec_name}@{','.join(bitrates)}", len(jobs))
        for done, (job, results) in enumerate(zip(jobs, _map_jobs(codec, jobs, workers), strict=True), 1):
            for bitrate, result in zip(bitrates, results, strict=True):
                if isinstance(result, Failed):  # an item that fails is reported, the partition goes on
                    logger.warning("%s %s@%s: item %s failed: %s", experiment.name, codec_name, bitrate, job.item_id,
                                   result.error)
                    errors[bitrate].append(dict(item_id=job.item_id, error=result.error))
                else:
                    rows[bitrate].append(dict(item_id=job.item_id, **result))
            progress.step(done)
        writes: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
        frames = {}
        for bitrate in bitrates:
            frames[bitrate] = pd.DataFrame(rows[bitrate], columns=COMPRESSED_COLUMNS)
            keys = {"experiment": experiment.name, "codec": codec_name, "bitrate": bitrate}
            writes += [("compressed", keys, frames[bitrate]),
                       ("errors", {**keys, "stage": "compressed"},
                        pd.DataFrame(errors[bitrate], columns=["item_id", "error"]))]
        store.replace_partitions(writes)
        seconds = (time.perf_counter() - codec_start) / len(bitrates)
        for bitrate in bitrates:
            summaries[(codec_name, bitrate)] = _summary(codec_name, bitrate, frames[bitrate], len(errors[bitrate]),
                                                        seconds)
    logger.debug("compressed %d partitions in %.1fs", len(summaries), time.perf_counter() - start)
    return summaries


def pooled_rates(frame: pd.DataFrame) -> tuple[float | None, float | None, float | None]:
    """(ratio, bpp, kbps) of a partition's ``compressed`` rows, pooled as the ``rate_summary`` view pools them:
    summed raw bytes over summed bytes, summed bits over summed pixels / seconds."""
    total = float(frame["bytes"].sum()) if len(frame) else 0.0
    if not total:
        return None, None, None
    pixels = float(frame["pixels"].dropna().sum())
    seconds = float(frame["duration_s"].dropna().sum())
    return (float(frame["raw_bytes"].sum()) / total, 8.0 * total / pixels if pixels else None,
            8.0 * total / seconds / 1000.0 if seconds else None)


def _summary(codec: str, bitrate: str, frame: pd.DataFrame, errors: int, seconds: float) -> CompressSummary:
    return CompressSummary(codec, bitrate, len(frame), errors, int((~frame["rate_met"].astype(bool)).sum()),
                           *pooled_rates(frame), seconds)


def compress_partition(experiment: Experiment, codec_name: str, bitrate: str, store: ResultsStore,
                       settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log,
                       workers: int | None = None) -> CompressSummary:
    """One codec at one target ratio (:func:`compress_partitions` with one partition)."""
    start = time.perf_counter()
    summary = compress_partitions(experiment, [(codec_name, bitrate)], store, settings, logger, workers)
    s = summary[(codec_name, bitrate)]
    return dataclasses.replace(s, seconds=time.perf_counter() - start)
