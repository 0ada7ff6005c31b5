"""The evaluation steps: reference predictions, quality metrics, predictions, task scores.

Every step reads the reconstruction that ``compressed`` decoded once and cached
(``compressed.decoded_path``), never the bitstream, so each bitstream is decoded
once per partition. Models and metrics load once per process (registry caches).
Per-item failures become error rows; the partition completes.

The ``*_partitions`` functions take several (codec, bitrate) partitions at once
(a backfill run of many partitions) and write each step's rows in one store
transaction:

- quality goes item by item: each original is loaded and *prepared* once per
  metric (``QualityMetric.prepare``: its LPIPS features, its filtered SSIM
  statistics) and scored against its reconstructions in every partition;
- byte-identical reconstructions (every ratio a codec cannot reach falls back
  to the same lowest setting) are scored and predicted once (``memo``);
- on a CPU device the model work runs in worker processes, one per core with
  one torch thread each (``MPQ_WORKERS``; the pool ``compressed`` uses): on a
  small shared machine that beats torch's threads inside one process, whose
  synchronisation stalls whenever another job holds a core. One item at a time
  per worker: on CPU a batch of 8 is slower than 8 single items for these
  models and metrics (measured, docs/performance.md). On a GPU the step runs in
  this process with batches on the device.
- memory does not grow with the dataset: quality holds one item's
  reconstructions, predictions a bounded number of jobs in flight, and the
  prediction arrays stream into their ``.npz`` file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpq_assets.codecs.base import Item
from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.pipeline.compress import bounded_map, can_start_workers, default_workers, load_item
from mpq_assets.pipeline.memo import METRIC_VALUES, PREDICTIONS, file_digest
from mpq_assets.pipeline.progress import Progress
from mpq_assets.settings import Settings
from mpq_assets.storage_paths import safe_join
from mpq_assets.store import ResultsStore
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction, Task

log = logging.getLogger(__name__)
REFERENCE = "reference"  # codec and bitrate value of predictions on the uncompressed items
BATCH = 8
PREDICT_JOB = 4  # reconstructions per worker job (amortises the hand-over, keeps memory flat)
LOADER_THREADS = 8  # threads reading files ahead of an in-process model (a GPU's, or MPQ_WORKERS=1)

Key = tuple[str, str]  # (codec, bitrate)


@dataclass
class StepSummary:
    items: int = 0
    errors: int = 0
    rows: int = 0
    notes: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start:start + size]


def _manifest(store: ResultsStore, experiment: Experiment) -> pd.DataFrame:
    items = store.query("SELECT item_id, original_path, label, modality FROM items WHERE experiment = ? "
                        "ORDER BY item_id", [experiment.name])
    if items.empty:
        raise RuntimeError(f"experiment {experiment.name} has no items: materialise {experiment.name}/dataset first")
    return items


def _failed_compressions(store: ResultsStore, experiment: Experiment, partitions: Sequence[Key]) -> dict[Key, int]:
    """Partitions whose ``compressed`` step ran but failed on every item: their error count (no rows)."""
    counts = store.query("SELECT codec, bitrate, count(*) AS n FROM errors WHERE experiment = ? AND stage = "
                         "'compressed' GROUP BY codec, bitrate", [experiment.name])
    failed = {(r.codec, r.bitrate): int(r.n) for r in counts.itertuples(index=False)}
    present = store.query("SELECT DISTINCT codec, bitrate FROM compressed WHERE experiment = ?", [experiment.name])
    with_rows = set(zip(present["codec"], present["bitrate"], strict=True))
    return {k: failed[k] for k in dict.fromkeys(partitions) if k in failed and k not in with_rows}


def _failed_note(key: Key, errors: int) -> str:
    return (f"{key[0]}@{key[1]}: every item failed in compressed ({errors} error(s); see the errors table): "
            "nothing to measure")


def _partitions(store: ResultsStore, experiment: Experiment, partitions: Sequence[Key]
                ) -> tuple[pd.DataFrame, dict[Key, int]]:
    """The compressed rows of every partition given (in item order), and the partitions whose every item
    failed in ``compressed`` (no rows, their error count); any other partition without rows is an error."""
    parts = list(dict.fromkeys(partitions))
    if not parts:
        raise ValueError("no partitions given")
    rows = store.query(
        "SELECT c.codec, c.bitrate, c.item_id, c.decoded_path, i.original_path, i.label, i.modality FROM compressed c "
        "JOIN items i USING (experiment, item_id) WHERE c.experiment = ? ORDER BY c.item_id, c.codec, c.bitrate",
        [experiment.name])
    wanted = pd.DataFrame(parts, columns=["codec", "bitrate"])
    rows = rows.merge(wanted, on=["codec", "bitrate"], how="inner")
    present = set(zip(rows["codec"], rows["bitrate"], strict=True))
    failed = _failed_compressions(store, experiment, [k for k in parts if k not in present])
    for codec, bitrate in parts:
        if (codec, bitrate) not in present and (codec, bitrate) not in failed:
            raise RuntimeError(f"{experiment.name}/compressed has no rows for {codec}@{bitrate}: materialise that "
                               "partition first")
    return rows.sort_values(["item_id", "codec", "bitrate"], kind="stable").reset_index(drop=True), failed


def _make_task(spec: TaskSpec, settings: Settings) -> Task:
    from mpq_assets.tasks.registry import make_task

    return make_task(spec.task, device=settings.device, **dict(spec.args))


def _skip_note(experiment: Experiment, spec: TaskSpec, exc: Exception) -> str:
    return f"{experiment.name}: task {spec.name} skipped, its model is not available. {exc}"


def _arrays_path(settings: Settings, experiment: str, task: str, codec: str, bitrate: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "predictions", task, f"{codec}__{bitrate}.npz")


class _ArraysWriter:
    """An ``.npz`` written array by array (a zip of ``.npy`` members, what ``np.savez_compressed`` writes),
    published atomically on ``close``: no partition's arrays are ever all in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self.zip.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.zip.close()
        self.tmp.unlink(missing_ok=True)


def load_predictions(store: ResultsStore, settings: Settings, experiment: str, task: str, codec: str,
                     bitrate: str, model: str | None = None) -> dict[str, Prediction]:
    """Predictions of one partition (summary from DuckDB, arrays from the artifact), by item id.

    With ``model``, predictions made by another model are refused: scores must never mix models.
    """
    df = store.query("SELECT item_id, prediction, model FROM predictions WHERE experiment = ? AND task = ? AND "
                     "codec = ? AND bitrate = ?", [experiment, task, codec, bitrate])
    return _predictions_from(df, settings, experiment, task, codec, bitrate, model)


def _predictions_from(df: pd.DataFrame, settings: Settings, experiment: str, task: str, codec: str, bitrate: str,
                      model: str | None) -> dict[str, Prediction]:
    if model is not None and len(df) and set(df["model"]) != {model}:
        raise RuntimeError(f"{experiment} {task} predictions for {codec}@{bitrate} were made by "
                           f"{sorted(set(df['model']))}, not {model}: re-materialise them before scoring")
    path = _arrays_path(settings, experiment, task, codec, bitrate)
    arrays = _PartitionArrays(path) if path.exists() and len(df) else None
    return {r.item_id: _StoredPrediction(json.loads(r.prediction), arrays, r.item_id) for r in df.itertuples()}


class _PartitionArrays:
    """A partition's ``.npz`` of prediction arrays, opened once; each member is read when asked for, and the
    last one read is kept (scorers look at an item's array several times before the next item's)."""

    def __init__(self, path: Path) -> None:
        self.npz = np.load(path)
        self.names = set(self.npz.files)
        self._last: tuple[str, np.ndarray] | None = None

    def get(self, name: str) -> np.ndarray | None:
        if name not in self.names:
            return None
        if self._last is None or self._last[0] != name:
            self._last = (name, self.npz[name])
        return self._last[1]


class _StoredPrediction(Prediction):
    """A stored prediction whose array stays in its partition's ``.npz`` until used: scoring a partition
    then holds one item's array at a time, not all of them (segmentation maps)."""

    def __init__(self, summary: dict[str, Any], arrays: _PartitionArrays | None, item_id: str) -> None:
        self.summary = summary
        self._arrays, self._item_id = arrays, item_id

    @property  # type: ignore[override]
    def array(self) -> np.ndarray | None:
        return None if self._arrays is None else self._arrays.get(self._item_id)


# ------------------------------------------------------------------------------------------------ worker processes


def _pool_workers(settings: Settings) -> int:
    """Worker processes for the model stages: on CPU the cores (``MPQ_WORKERS``); on a GPU none (this process)."""
    from mpq_assets.device import resolve_device

    if resolve_device(settings.device).type != "cpu":
        return 1
    return default_workers()


def _in_order(jobs: Sequence[Any], run: Callable[[Any], Any], workers: int) -> Iterator[Any]:
    """``run(job)`` for each job, results in order: in the worker pool (at most 2 jobs per worker in flight)
    or here. A job's exception is raised here."""
    if workers <= 1 or len(jobs) <= 1 or not can_start_workers():
        for job in jobs:
            yield run(job)
        return
    yield from bounded_map(run, jobs, workers)


_WORKER_METRICS: dict[str, Any] = {}


def _metric(name: str, device: str) -> Any:
    """One metric object per (name, device) in a process (LPIPS loads its network once)."""
    from mpq_assets.quality.registry import make_metric

    key = f"{name}@{device}"
    if key not in _WORKER_METRICS:
        _WORKER_METRICS[key] = make_metric(name, device)
    return _WORKER_METRICS[key]


@dataclass(frozen=True)
class _QualityJob:
    """One original and its distinct reconstructions (by digest) with the metrics each still needs."""

    device: str
    original_path: str
    modality: str
    recons: tuple[tuple[str, str, tuple[str, ...]], ...]  # (digest, path, metric names)


@dataclass
class _QualityResult:
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # digest -> metric -> value
    errors: dict[str, str] = field(default_factory=dict)               # digest -> error
    skipped: dict[str, str] = field(default_factory=dict)              # metric -> why the original cannot be scored
    failed: str | None = None                                          # the original itself failed


def _quality_job(job: _QualityJob) -> _QualityResult:
    out = _QualityResult()
    try:
        ref = load_item(job.original_path, job.modality)
    except Exception as exc:
        out.failed = f"{type(exc).__name__}: {exc}"
        return out
    names = list(dict.fromkeys(m for _, _, ms in job.recons for m in ms))
    metrics = {name: _metric(name, job.device) for name in names}
    for name, metric in metrics.items():
        reason = metric.applicable(ref)
        if reason:
            out.skipped[name] = reason
    dists: dict[str, Item] = {}
    for digest, path, _ in job.recons:
        try:
            dists[digest] = load_item(path, job.modality)
        except Exception as exc:
            out.errors[digest] = f"{type(exc).__name__}: {exc}"
    for name, metric in metrics.items():
        if name in out.skipped:
            continue
        todo = [d for d, _, ms in job.recons if name in ms and d in dists]
        if not todo:
            continue
        try:
            prepared = metric.prepare(ref)
            # one reconstruction per call: on CPU a batch is slower (docs/performance.md), and it isolates failures
            for d in todo:
                out.values.setdefault(d, {})[name] = float(metric.score_prepared(prepared, [dists[d]])[0])
        except Exception as exc:
            for d in todo:
                if name not in out.values.get(d, {}):
                    out.errors.setdefault(d, f"{name}: {type(exc).__name__}: {exc}")
    return out


@dataclass(frozen=True)
class _PredictJob:
    """Distinct files (by digest) for one task, predicted in a worker process one at a time."""

    task: str
    args: tuple[tuple[str, Any], ...]
    entries: tuple[tuple[str, str, str], ...]  # (digest, path, modality)


def _predict_job(job: _PredictJob) -> dict[str, Prediction | str]:
    from mpq_assets.tasks.registry import make_task

    task = make_task(job.task, device="cpu", batch_size=1, **dict(job.args))
    out: dict[str, Prediction | str] = {}
    for digest, path, modality in job.entries:
        try:
            out[digest] = task.predict([load_item(path, modality)])[0]
        except ModelNotAvailableError:
            raise
        except Exception as exc:
            out[digest] = f"{type(exc).__name__}: {exc}"
    return out


# ------------------------------------------------------------------------------------------------------- predict


def _predict_files(task: Task, spec: TaskSpec, entries: Sequence[tuple[str, str, str]], workers: int
                   ) -> Iterator[dict[str, Prediction | str]]:
    """Predictions of distinct files (digest, path, modality), chunk by chunk: in workers, or here in batches."""
    if workers > 1:
        jobs = [_PredictJob(spec.task, tuple(sorted(dict(spec.args).items())), tuple(entries[i:i + PREDICT_JOB]))
                for i in range(0, len(entries), PREDICT_JOB)]
        yield from _in_order(jobs, _predict_job, workers)
        return
    size = 1 if task.device.type == "cpu" else max(task.batch_size, 1)  # CPU: single items are faster
    chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
    # Files are read and decoded in threads (the decoders release the GIL), one chunk ahead of the model,
    # so that a device is not left waiting for one CPU thread to decode its next batch.
    with ThreadPoolExecutor(max(1, min(LOADER_THREADS, default_workers())), thread_name_prefix="mpq-load") as pool:
        ahead = deque(pool.map(_load_entry, c) for c in chunks[:2])
        for k in range(len(chunks)):
            if k + 2 < len(chunks):
                ahead.append(pool.map(_load_entry, chunks[k + 2]))
            yield _predict_loaded(task, list(ahead.popleft()))


def _load_entry(entry: tuple[str, str, str]) -> tuple[str, Item | str]:
    """(digest, the item) or (digest, why it could not be read)."""
    digest, path, modality = entry
    try:
        return digest, load_item(path, modality)
    except Exception as exc:
        return digest, f"{type(exc).__name__}: {exc}"


def _predict_loaded(task: Task, chunk: Sequence[tuple[str, Item | str]]) -> dict[str, Prediction | str]:
    """One batch of loaded items through the task; a failing batch is retried item by item."""
    out: dict[str, Prediction | str] = {d: it for d, it in chunk if isinstance(it, str)}
    loaded = [(d, it) for d, it in chunk if not isinstance(it, str)]
    if loaded:
        try:
            out.update({d: p for (d, _), p in zip(loaded, task.predict([it for _, it in loaded]), strict=True)})
        except ModelNotAvailableError:
            raise
        except Exception:  # retry one by one so a single bad item cannot sink the batch
            for d, it in loaded:
                try:
                    out[d] = task.predict([it])[0]
                except ModelNotAvailableError:
                    raise
                except Exception as exc:
                    out[d] = f"{type(exc).__name__}: {exc}"
    return out


@dataclass
class _TaskRun:
    """One task's predictions over several partitions: summaries in memory, arrays streamed to disk."""

    preds: dict[Key, dict[str, Prediction]]
    errors: dict[Key, list[dict]]


def _run_task(experiment: Experiment, spec: TaskSpec, settings: Settings, frame: pd.DataFrame, path_col: str,
              logger: logging.Logger | logging.LoggerAdapter, what: str) -> tuple[Task, _TaskRun]:
    """Predict one task over every row of ``frame`` (columns codec, bitrate, item_id, modality, ``path_col``).

    Identical files (same digest) are predicted once, here and across calls (``PREDICTIONS``). Arrays go
    straight into each partition's ``.npz``; the returned predictions keep only their summaries.
    Raises ModelNotAvailableError when the task's model is missing.
    """
    task = _make_task(spec, settings)
    keys = list(dict.fromkeys(zip(frame["codec"], frame["bitrate"], strict=True)))
    run = _TaskRun({k: {} for k in keys}, {k: [] for k in keys})
    rows_by_digest: dict[str, list[tuple[Key, str]]] = {}
    entries: list[tuple[str, str, str]] = []
    for rec in frame.itertuples(index=False):
        key = (rec.codec, rec.bitrate)
        path = getattr(rec, path_col)
        try:
            digest = file_digest(path)
        except Exception as exc:
            run.errors[key].append(dict(item_id=rec.item_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        if digest not in rows_by_digest:
            rows_by_digest[digest] = []
            entries.append((digest, path, rec.modality))
        rows_by_digest[digest].append((key, rec.item_id))
    writers = {k: _ArraysWriter(_arrays_path(settings, experiment.name, spec.name, *k)) for k in keys}
    progress = Progress(logger, what, len(entries))
    done = 0
    try:
        memo_key = (id(task), task.model_id)  # one task object per (task, arguments, device) in a process
        hits: dict[str, Prediction] = {}
        fresh = []
        for entry in entries:
            hit = PREDICTIONS.get((*memo_key, entry[0]))
            if hit is None:
                fresh.append(entry)
            else:
                hits[entry[0]] = hit

        def deliver(results: dict[str, Prediction | str]) -> None:
            for digest, p in results.items():
                if isinstance(p, Prediction):
                    PREDICTIONS.put((*memo_key, digest), p)
                for key, item_id in rows_by_digest[digest]:
                    if isinstance(p, str):
                        run.errors[key].append(dict(item_id=item_id, error=p))
                        continue
                    run.preds[key][item_id] = Prediction(p.summary, None)
                    if p.array is not None:
                        writers[key].add(item_id, p.array)

        deliver(hits)  # type: ignore[arg-type]  # a byte-identical file was already predicted
        done = len(hits)
        workers = _pool_workers(settings)
        for results in _predict_files(task, spec, fresh, workers):
            deliver(results)
            done += len(results)
            progress.step(done)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return task, run


def _prediction_rows(preds: dict[str, Prediction], model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=i, prediction=json.dumps(p.summary), model=model) for i, p in preds.items()],
                        columns=["item_id", "prediction", "model"])


def _score_frame(scores: Sequence, model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=s.item_id, metric=s.metric, value=float(s.value), n=int(s.n), model=model)
                         for s in scores], columns=["item_id", "metric", "value", "n", "model"])


def _errors_frame(errors: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(errors, columns=["item_id", "error"])


def _with_arrays(settings: Settings, experiment: str, task: str, key: Key,
                 preds: dict[str, Prediction]) -> dict[str, Prediction]:
    """The summaries of ``preds`` with their arrays read back from the partition's ``.npz``."""
    path = _arrays_path(settings, experiment, task, *key)
    if not path.exists():
        return preds
    arrays = _PartitionArrays(path)
    return {i: _StoredPrediction(p.summary, arrays, i) for i, p in preds.items()}


def reference_predictions(experiment: Experiment, store: ResultsStore, settings: Settings,
                          logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the uncompressed originals; scored against labels where they exist."""
    items = _manifest(store, experiment).assign(codec=REFERENCE, bitrate=REFERENCE)
    summary = StepSummary(items=len(items))
    key = (REFERENCE, REFERENCE)
    for spec in experiment.tasks:
        keys = {"experiment": experiment.name, "codec": REFERENCE, "bitrate": REFERENCE, "task": spec.name}
        try:
            task, run = _run_task(experiment, spec, settings, items, "original_path", logger,
                                  f"{experiment.name}/{spec.name} reference")
        except ModelNotAvailableError as exc:
            if not spec.optional:
                raise
            summary.notes.append(_skip_note(experiment, spec, exc))
            logger.info(summary.notes[-1])  # recorded in the asset's metadata; callers decide how loud
            store.replace_partitions([("predictions", keys, _prediction_rows({}, "")),
                                      ("task_scores", keys, _score_frame([], ""))])  # no stale rows survive
            continue
        preds = _with_arrays(settings, experiment.name, spec.name, key, run.preds[key])
        ids = [i for i in items["item_id"] if i in preds]
        labels = dict(zip(items["item_id"], items["label"], strict=True))
        scores = task.score_labels(ids, [preds[i] for i in ids], [labels[i] for i in ids])
        store.replace_partitions([
            ("predictions", keys, _prediction_rows(preds, task.model_id)),
            ("task_scores", keys, _score_frame(scores, task.model_id)),
            ("errors", {"experiment": experiment.name, "stage": f"reference_predictions:{spec.name}",
                        "codec": REFERENCE, "bitrate": REFERENCE}, _errors_frame(run.errors[key])),
        ])
        summary.errors += len(run.errors[key])
        summary.rows += len(preds)
        summary.means.update({f"{spec.name}.{s.metric}": round(s.value, 4) for s in scores if s.item_id is None})
    return summary


def predictions_partitions(experiment: Experiment, partitions: Sequence[Key], store: ResultsStore,
                           settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log
                           ) -> dict[Key, StepSummary]:
    """Each task on the cached reconstructions of every (codec, bitrate) partition given; one store write."""
    parts = list(dict.fromkeys(partitions))
    frame, failed = _partitions(store, experiment, parts)
    counts = frame.groupby(["codec", "bitrate"]).size()
    summaries = {k: StepSummary(items=int(counts.get(k, 0))) for k in parts}
    for key, n in failed.items():
        summaries[key].notes.append(_failed_note(key, n))
    writes: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
    for spec in experiment.tasks:
        try:
            task, run = _run_task(experiment, spec, settings, frame, "decoded_path", logger,
                                  f"{experiment.name}/{spec.name} {len(parts)} partition(s)")
        except ModelNotAvailableError as exc:
            if not spec.optional:
                raise
            note = _skip_note(experiment, spec, exc)
            logger.info(note)
            for codec, bitrate in parts:
                summaries[(codec, bitrate)].notes.append(note)
                keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
                writes += [("predictions", keys, _prediction_rows({}, "")),
                           ("task_scores", keys, _score_frame([], ""))]  # no stale rows survive
            continue
        for codec, bitrate in parts:
            preds, errors = run.preds.get((codec, bitrate), {}), run.errors.get((codec, bitrate), [])
            keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
            writes += [("predictions", keys, _prediction_rows(preds, task.model_id)),
                       ("errors", {"experiment": experiment.name, "stage": f"predictions:{spec.name}", "codec": codec,
                                   "bitrate": bitrate}, _errors_frame(errors))]
            summaries[(codec, bitrate)].errors += len(errors)
            summaries[(codec, bitrate)].rows += len(preds)
    store.replace_partitions(writes)
    return summaries


def predictions_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore,
                          settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the cached reconstructions of one codec x bitrate partition."""
    return predictions_partitions(experiment, [(codec, bitrate)], store, settings, logger)[(codec, bitrate)]


def task_scores_partitions(experiment: Experiment, partitions: Sequence[Key], store: ResultsStore,
                           settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log
                           ) -> dict[Key, StepSummary]:
    """Scores of every partition's predictions: vs labels, and label-free vs the reference predictions.

    The reference predictions are read once, each partition's predictions in one query; one store write.
    """
    parts = list(dict.fromkeys(partitions))
    items = _manifest(store, experiment)
    labels = dict(zip(items["item_id"], items["label"], strict=True))
    summaries = {k: StepSummary(items=len(items)) for k in parts}
    failed = _failed_compressions(store, experiment, parts)
    for key, n in failed.items():
        summaries[key].items = 0
        summaries[key].notes.append(_failed_note(key, n))
    writes: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
    for spec in experiment.tasks:
        task = _make_task(spec, settings)
        rows = store.query("SELECT codec, bitrate, item_id, prediction, model FROM predictions WHERE experiment = ? "
                           "AND task = ?", [experiment.name, spec.name])
        grouped = {k: df for k, df in rows.groupby(["codec", "bitrate"])}
        empty = rows.iloc[0:0]

        def partition_predictions(key: Key, grouped: dict = grouped, empty: pd.DataFrame = empty,
                                  spec: TaskSpec = spec, task: Task = task) -> dict[str, Prediction]:
            return _predictions_from(grouped.get(key, empty), settings, experiment.name, spec.name, *key,
                                     task.model_id)

        ref = partition_predictions((REFERENCE, REFERENCE))
        for codec, bitrate in parts:
            keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
            if (codec, bitrate) in failed:  # nothing was coded, so nothing to score: no stale rows survive
                writes.append(("task_scores", keys, _score_frame([], task.model_id)))
                continue
            preds = partition_predictions((codec, bitrate))
            if spec.optional and not preds and not ref:
                summaries[(codec, bitrate)].notes.append(
                    f"{experiment.name}: task {spec.name} has no predictions (optional task whose model is not "
                    "available): not scored")
                continue
            if not preds:
                raise RuntimeError(f"no {spec.name} predictions for {experiment.name} {codec}@{bitrate}: materialise "
                                   f"{experiment.name}/predictions for that partition first")
            if not ref:
                raise RuntimeError(f"no reference {spec.name} predictions for {experiment.name}: materialise "
                                   f"{experiment.name}/reference_predictions first")
            ids = sorted(preds)
            scores = list(task.score_labels(ids, [preds[i] for i in ids], [labels.get(i) for i in ids]))
            both = [i for i in ids if i in ref]
            scores += task.score_reference(both, [preds[i] for i in both], [ref[i] for i in both])
            frame = _score_frame(scores, task.model_id)
            writes.append(("task_scores", keys, frame))
            summaries[(codec, bitrate)].rows += len(frame)
            summaries[(codec, bitrate)].means.update(
                {f"{spec.name}.{s.metric}": round(s.value, 4) for s in scores if s.item_id is None})
    if writes:
        store.replace_partitions(writes)
    return summaries


def task_scores_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore,
                          settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Scores of one partition's predictions: vs labels, and label-free vs the reference predictions."""
    return task_scores_partitions(experiment, [(codec, bitrate)], store, settings, logger)[(codec, bitrate)]


# ------------------------------------------------------------------------------------------------------- quality


def _quality_jobs(frame: pd.DataFrame, metric_names: Sequence[str], device: str,
                  errors: dict[Key, list[dict]]) -> Iterable[tuple[str, list, str, _QualityJob]]:
    """Per item: (item_id, its partition rows with digests, original digest, the job for what the memo lacks)."""
    for item_id, recs in frame.groupby("item_id", sort=False):
        recs = list(recs.itertuples(index=False))
        try:
            ref_digest = file_digest(recs[0].original_path)
        except Exception as exc:
            for rec in recs:
                errors[(rec.codec, rec.bitrate)].append(dict(item_id=item_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        located = []
        needed: dict[str, tuple[str, set[str]]] = {}  # digest -> (path, metrics)
        for rec in recs:
            key = (rec.codec, rec.bitrate)
            try:
                digest = file_digest(rec.decoded_path)
            except Exception as exc:
                errors[key].append(dict(item_id=item_id, error=f"{type(exc).__name__}: {exc}"))
                continue
            located.append((key, digest))
            for name in metric_names:
                if METRIC_VALUES.get((name, ref_digest, digest)) is None:
                    needed.setdefault(digest, (rec.decoded_path, set()))[1].add(name)
        # the original is always checked (applicable) by the job, even when the memo has every value
        job = _QualityJob(device, recs[0].original_path, recs[0].modality,
                          tuple((d, p, tuple(sorted(ms))) for d, (p, ms) in needed.items()))
        yield item_id, located, ref_digest, job


def quality_partitions(experiment: Experiment, partitions: Sequence[Key], store: ResultsStore,
                       settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log
                       ) -> dict[Key, StepSummary]:
    """Full-reference quality of every (codec, bitrate) partition given, item by item; one store write.

    Each original is loaded once and prepared once per metric, then scored against its
    reconstructions in every partition; byte-identical reconstructions are scored once.
    """
    from mpq_assets.device import resolve_device

    parts = list(dict.fromkeys(partitions))
    frame, failed = _partitions(store, experiment, parts)
    device = str(resolve_device(settings.device))
    names = list(experiment.quality_metrics)
    rows: dict[Key, list[dict]] = {p: [] for p in parts}
    errors: dict[Key, list[dict]] = {p: [] for p in parts}
    skipped: dict[Key, dict[str, list[str]]] = {p: {} for p in parts}
    planned = list(_quality_jobs(frame, names, device, errors))
    workers = _pool_workers(settings)
    progress = Progress(logger, f"{experiment.name}/quality {len(parts)} partition(s)", len(planned))
    results = _in_order([job for *_, job in planned], _quality_job, workers)
    for done, ((item_id, located, ref_digest, _), result) in enumerate(zip(planned, results, strict=True), 1):
        if result.failed:
            for key, _ in located:
                errors[key].append(dict(item_id=item_id, error=result.failed))
            progress.step(done)
            continue
        for digest, values in result.values.items():
            for name, value in values.items():
                METRIC_VALUES.put((name, ref_digest, digest), value)
        for key, digest in located:
            if digest in result.errors:
                errors[key].append(dict(item_id=item_id, error=result.errors[digest]))
            for name in names:
                if name in result.skipped:
                    skipped[key].setdefault(name, []).append(f"{item_id} ({result.skipped[name]})")
                    continue
                value = METRIC_VALUES.get((name, ref_digest, digest))
                if value is not None:
                    rows[key].append(dict(item_id=item_id, metric=name, value=value))
        progress.step(done)
    writes = []
    summaries: dict[Key, StepSummary] = {}
    counts = frame.groupby(["codec", "bitrate"]).size()
    for key in parts:
        df = pd.DataFrame(rows[key], columns=["item_id", "metric", "value"])
        keys = {"experiment": experiment.name, "codec": key[0], "bitrate": key[1]}
        writes += [("quality", keys, df), ("errors", {**keys, "stage": "quality"}, _errors_frame(errors[key]))]
        summary = StepSummary(items=int(counts.get(key, 0)), errors=len(errors[key]), rows=len(df))
        if key in failed:
            summary.notes.append(_failed_note(key, failed[key]))
        for name, ids_ in skipped[key].items():
            note = f"{name} skipped for {len(ids_)} item(s): {'; '.join(ids_)}"
            logger.info(note)
            summary.notes.append(note)
        if len(df):
            summary.means = {k: round(float(v), 4) for k, v in df.groupby("metric")["value"].mean().items()}
        summaries[key] = summary
    store.replace_partitions(writes)
    return summaries


def quality_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore, settings: Settings,
                      logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Full-reference quality metrics between each original and its cached reconstruction."""
    return quality_partitions(experiment, [(codec, bitrate)], store, settings, logger)[(codec, bitrate)]
