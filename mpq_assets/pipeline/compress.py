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

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mpq_assets.artifacts import atomic_write_bytes, bitstream_path, decoded_path
from mpq_assets.codecs import get_codec, parse_ratio
from mpq_assets.codecs.base import Codec, Encoded
from mpq_assets.codecs.rate_control import budget_for
from mpq_assets.media.audio import Audio
from mpq_assets.media.item import Item, load_item, lossless_bytes, raw_bytes
from mpq_assets.pipeline.progress import Progress
from mpq_assets.pipeline.workers import bounded_map, can_start_workers, default_workers, shutdown_workers

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


@dataclass(frozen=True)
class Target:
    """One item at one target ratio: the partition's bitrate key, the ratio, the item's byte budget and the
    file its bitstream goes to."""

    bitrate: str
    ratio: float
    budget: int
    path: Path

    @classmethod
    def at(cls, bitrate: str, raw: int, path: Path) -> Target:
        """The target of an item of ``raw`` bytes at the partition ``bitrate`` (e.g. ``"100x"``)."""
        ratio = parse_ratio(bitrate)
        return cls(bitrate, ratio, budget_for(raw, ratio), Path(path))


def _row(item: Item, target: Target, encoded: Encoded, encode_s: float, decode_s: float, recon: Path) -> dict:
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
    return dict(target_ratio=target.ratio, budget_bytes=target.budget, bytes=size, bpp=bpp, kbps=kbps,
                achieved_ratio=raw / size, setting=encoded.setting, rate_met=encoded.rate_met,
                trials=encoded.trials, encode_s=encode_s, decode_s=decode_s, path=str(target.path),
                decoded_path=str(recon), sha256=hashlib.sha256(encoded.data).hexdigest(), raw_bytes=raw,
                pixels=pixels, duration_s=duration)


Searched = tuple[list[Encoded | Exception], list[float]]  # per target: the bitstream (or failure), seconds


def _search(codec: Codec, item: Item, targets: Sequence[Target]) -> Searched:
    """Rate control for every target of one item (shared search); a failure is isolated to its target."""
    budgets = [t.budget for t in targets]
    t0 = time.perf_counter()
    try:
        encoded: list[Encoded | Exception] = list(codec.encode_to_budgets(item, budgets))
        elapsed = time.perf_counter() - t0
        times = [e.seconds if e.seconds is not None else elapsed / len(budgets) for e in encoded]
        return encoded, times
    except Exception:
        if len(budgets) == 1:
            raise
    encoded, times = [], []  # retry target by target so one failing setting cannot sink the others
    for b in budgets:
        t0 = time.perf_counter()
        try:
            encoded.append(codec.encode_to_budget(item, b))
        except Exception as exc:
            encoded.append(exc)
        times.append(time.perf_counter() - t0)
    return encoded, times


def _finish(codec: Codec, item: Item, targets: Sequence[Target], searched: Searched,
            decoded: dict[bytes, tuple[Item, float]] | None = None) -> list[dict | Exception]:
    """Write each target's bitstream and reconstruction; decode each distinct bitstream once.

    ``decoded`` may hold decodes already made (bitstream -> (item, seconds)), e.g. by a batched decode.
    """
    decoded = {} if decoded is None else decoded
    files: dict[bytes, bytes] = {}  # bitstream -> reconstruction file bytes
    out: list[dict | Exception] = []
    modality = "audio" if isinstance(item, Audio) else "image"
    for target, enc, enc_s in zip(targets, *searched, strict=True):
        if isinstance(enc, Exception):
            out.append(enc)
            continue
        try:
            atomic_write_bytes(target.path, enc.data)
            if enc.data not in decoded:
                t0 = time.perf_counter()
                decoded[enc.data] = (codec.decode(enc.data, like=item), time.perf_counter() - t0)
            recon_item, dec_s = decoded[enc.data]
            if enc.data not in files:
                files[enc.data] = lossless_bytes(recon_item)
            recon = decoded_path(target.path, modality)
            atomic_write_bytes(recon, files[enc.data])
            out.append(_row(item, target, enc, enc_s, dec_s, recon))
        except Exception as exc:
            out.append(exc)
    return out


@dataclass(frozen=True)
class Failed:
    """A failed (item, target): ``error`` is ``"ExceptionType: message"`` (picklable whatever the exception)."""

    error: str


def failures(results: list[dict | Exception]) -> list[dict | Failed]:
    return [Failed(f"{type(r).__name__}: {r}") if isinstance(r, Exception) else r for r in results]


@dataclass(frozen=True)
class EncodeJob:
    """One item and one codec at several targets: what a worker process gets (small and picklable)."""

    codec: Codec
    item_id: str
    original_path: str
    modality: str
    targets: tuple[Target, ...]


def run_job(job: EncodeJob) -> list[dict | Exception]:
    """Rate control, files and rows of one job, here; one result per target."""
    try:
        item = load_item(job.original_path, job.modality)
        return _finish(job.codec, item, job.targets, _search(job.codec, item, job.targets))
    except Exception as exc:
        return [exc] * len(job.targets)


def _run_job_in_worker(job: EncodeJob) -> list[dict | Failed]:
    return failures(run_job(job))


def _decode_distinct(codec: Codec, loaded: Sequence[tuple[int, Item]],
                     batch: Sequence[Searched]) -> dict[bytes, tuple[Item, float]]:
    """Every distinct bitstream of a batch decoded in one batched call ({} if it fails: decoded one by one)."""
    distinct: dict[bytes, Item] = {}
    for (_, item), (encs, _) in zip(loaded, batch, strict=True):
        for e in encs:
            if isinstance(e, Encoded):
                distinct.setdefault(e.data, item)
    if not distinct:
        return {}
    t0 = time.perf_counter()
    try:
        recons = codec.decode_batch(list(distinct), list(distinct.values()))
    except Exception:
        return {}  # _finish decodes one by one and reports the failing item
    each = (time.perf_counter() - t0) / len(distinct)
    return {d: (r, each) for d, r in zip(distinct, recons, strict=True)}


def run_batch(codec: Codec, jobs: Sequence[EncodeJob]) -> list[list[dict | Exception]]:
    """Jobs of one batched codec: rate control and decoding through the model's batched calls."""
    out: list[list[dict | Exception] | None] = [None] * len(jobs)
    loaded: list[tuple[int, Item]] = []
    for k, job in enumerate(jobs):
        try:
            item = load_item(job.original_path, job.modality)
            codec.check(item)  # an item the codec cannot take stays out of the batch
            loaded.append((k, item))
        except Exception as exc:
            out[k] = [exc] * len(job.targets)
    if loaded:
        items = [item for _, item in loaded]
        budgets = [[t.budget for t in jobs[k].targets] for k, _ in loaded]
        t0 = time.perf_counter()
        batch: list[Searched] | None
        try:
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
                n = len(jobs[k].targets)
                try:
                    batch.append(_search(codec, item, jobs[k].targets))
                except Exception as exc:
                    batch.append(([exc] * n, [0.0] * n))
        else:
            decoded = _decode_distinct(codec, loaded, batch)
        for (k, item), searched in zip(loaded, batch, strict=True):
            out[k] = _finish(codec, item, jobs[k].targets, searched, decoded)
    return [o if o is not None else [] for o in out]


def map_jobs(codec: Codec, jobs: Sequence[EncodeJob], workers: int) -> Iterator[list[dict | Failed]]:
    """Results per job, in order: in worker processes, in batches, or here."""
    if codec.batched:  # a window of several device batches, so that items of one size can fill them
        window = max(BATCH, 4 * codec.batch_size)
        for start in range(0, len(jobs), window):
            yield from (failures(r) for r in run_batch(codec, jobs[start:start + window]))
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
        yield failures(run_job(job))


# ------------------------------------------------------------------------------------------------------ partitions


def _partition_plan(partitions: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    plan: dict[str, list[str]] = {}
    for codec, bitrate in partitions:
        bitrates = plan.setdefault(codec, [])
        if bitrate not in bitrates:
            bitrates.append(bitrate)
    return plan


def ready_codec(experiment: Experiment, codec_name: str, settings: Settings) -> Codec:
    """The codec built for the deployment (its device and batch size), or the error that fails the partition."""
    from mpq_assets.device import parse_codec_batch

    # the deployment's device and batch size (MpqResource), not only the environment
    codec = get_codec(codec_name, device=settings.device, batch_size=parse_codec_batch(settings.codec_batch),
                      settings=settings)
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
    for bitrates in plan.values():
        for bitrate in bitrates:
            parse_ratio(bitrate)
    codecs = {name: ready_codec(experiment, name, settings) for name in plan}  # every codec checked before work
    manifest = store.query("SELECT item_id, original_path, modality, raw_bytes FROM items WHERE experiment = ? "
                           "ORDER BY item_id", [experiment.name])
    if manifest.empty:
        raise RuntimeError(f"experiment {experiment.name} has no items in {store.path}: materialise "
                           f"{experiment.name}/dataset first")
    workers = default_workers(settings) if workers is None else max(1, workers)
    summaries: dict[tuple[str, str], CompressSummary] = {}
    for codec_name, bitrates in plan.items():
        codec_start = time.perf_counter()
        codec = codecs[codec_name]
        jobs = [EncodeJob(codec, rec.item_id, rec.original_path, rec.modality, tuple(
                    Target.at(b, int(rec.raw_bytes), bitstream_path(settings, experiment.name, codec.name,
                                                                    codec.extension, b, rec.item_id))
                    for b in bitrates))
                for rec in manifest.itertuples(index=False)]
        rows: dict[str, list[dict]] = {b: [] for b in bitrates}
        errors: dict[str, list[dict]] = {b: [] for b in bitrates}
        progress = Progress(logger, f"{experiment.name}/compressed {codec_name}@{','.join(bitrates)}", len(jobs))
        for done, (job, results) in enumerate(zip(jobs, map_jobs(codec, jobs, workers), strict=True), 1):
            for target, result in zip(job.targets, results, strict=True):
                if isinstance(result, Failed):  # an item that fails is reported, the partition goes on
                    logger.warning("%s %s@%s: item %s failed: %s", experiment.name, codec_name, target.bitrate,
                                   job.item_id, result.error)
                    errors[target.bitrate].append(dict(item_id=job.item_id, error=result.error))
                else:
                    rows[target.bitrate].append(dict(item_id=job.item_id, **result))
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
