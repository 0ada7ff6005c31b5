"""The prediction steps: each task on the uncompressed originals (``reference_predictions``) and on the
cached reconstructions of every partition of a run (``predictions``).

Byte-identical files are predicted once (``memo``). On a CPU device the models run in worker processes
(``workers``), a few files per job; on a GPU they run here in batches, with files read ahead in threads.
Summaries go to DuckDB, arrays stream into each partition's ``.npz`` (``store.predictions``), so memory
holds a bounded number of jobs whatever the dataset size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mpq_assets.artifacts import predictions_path
from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.media.item import Item, load_item
from mpq_assets.pipeline.memo import PREDICTIONS, file_digest
from mpq_assets.pipeline.progress import Progress
from mpq_assets.pipeline.step import (
    REFERENCE,
    Key,
    StepSummary,
    errors_frame,
    failed_note,
    item_labels,
    make_task,
    manifest,
    partition_rows,
    score_frame,
    skip_note,
)
from mpq_assets.pipeline.workers import default_workers, in_order, pool_workers, read_ahead
from mpq_assets.settings import Settings, load_settings
from mpq_assets.store import ResultsStore
from mpq_assets.store.predictions import ArraysWriter, with_arrays
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction, Task

log = logging.getLogger(__name__)
PREDICT_JOB = 4  # reconstructions per worker job (amortises the hand-over, keeps memory flat)


@dataclass(frozen=True)
class _PredictJob:
    """Distinct files (by digest) for one task, predicted in a worker process one at a time."""

    task: str
    args: tuple[tuple[str, Any], ...]
    settings: Settings
    entries: tuple[tuple[str, str, str], ...]  # (digest, path, modality)


def _predict_job(job: _PredictJob) -> dict[str, Prediction | str]:
    from mpq_assets.tasks.registry import make_task

    task = make_task(job.task, device="cpu", batch_size=1, settings=job.settings, **dict(job.args))
    out: dict[str, Prediction | str] = {}
    for digest, path, modality in job.entries:
        try:
            out[digest] = task.predict([load_item(path, modality)])[0]
        except ModelNotAvailableError:
            raise
        except Exception as exc:
            out[digest] = f"{type(exc).__name__}: {exc}"
    return out


def predict_files(task: Task, spec: TaskSpec, entries: Sequence[tuple[str, str, str]], workers: int,
                  settings: Settings | None = None) -> Iterator[dict[str, Prediction | str]]:
    """Predictions of distinct files (digest, path, modality), chunk by chunk: in workers, or here in batches
    with files read ahead in as many threads as the ``settings`` give workers."""
    settings = settings or load_settings()
    if workers > 1:
        args = tuple(sorted(dict(spec.args).items()))
        jobs = [_PredictJob(spec.task, args, settings, tuple(entries[i:i + PREDICT_JOB]))
                for i in range(0, len(entries), PREDICT_JOB)]
        yield from in_order(jobs, _predict_job, workers)
        return
    size = 1 if task.device.type == "cpu" else max(task.batch_size, 1)  # CPU: single items are faster
    chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
    for loaded in read_ahead(_load_entry, chunks, default_workers(settings)):
        yield _predict_loaded(task, loaded)


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
    rows_by_digest: dict[str, list[tuple[Key, str]]] = field(default_factory=dict)  # file -> its (partition, item)

    def deliver(self, results: dict[str, Prediction | str], writers: dict[Key, ArraysWriter],
                memo_key: tuple[Any, ...]) -> None:
        """Each file's prediction (or error) to every (partition, item) that has that file."""
        for digest, p in results.items():
            if isinstance(p, Prediction):
                PREDICTIONS.put((*memo_key, digest), p)
            for key, item_id in self.rows_by_digest[digest]:
                if isinstance(p, str):
                    self.errors[key].append(dict(item_id=item_id, error=p))
                    continue
                self.preds[key][item_id] = Prediction(p.summary, None)
                if p.array is not None:
                    writers[key].add(item_id, p.array)


def _distinct_files(frame: pd.DataFrame, path_col: str, run: _TaskRun) -> list[tuple[str, str, str]]:
    """(digest, path, modality) of every distinct file in ``frame``; a file that cannot be read is an error."""
    entries: list[tuple[str, str, str]] = []
    for rec in frame.itertuples(index=False):
        key = (rec.codec, rec.bitrate)
        path = getattr(rec, path_col)
        try:
            digest = file_digest(path)
        except Exception as exc:
            run.errors[key].append(dict(item_id=rec.item_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        if digest not in run.rows_by_digest:
            run.rows_by_digest[digest] = []
            entries.append((digest, path, rec.modality))
        run.rows_by_digest[digest].append((key, rec.item_id))
    return entries


def _run_task(experiment: Experiment, spec: TaskSpec, settings: Settings, frame: pd.DataFrame, path_col: str,
              logger: logging.Logger | logging.LoggerAdapter, what: str) -> tuple[Task, _TaskRun]:
    """Predict one task over every row of ``frame`` (columns codec, bitrate, item_id, modality, ``path_col``).

    Identical files (same digest) are predicted once, here and across calls (``PREDICTIONS``). Arrays go
    straight into each partition's ``.npz``; the returned predictions keep only their summaries.
    Raises ModelNotAvailableError when the task's model is missing.
    """
    task = make_task(spec, settings)
    keys = list(dict.fromkeys(zip(frame["codec"], frame["bitrate"], strict=True)))
    run = _TaskRun({k: {} for k in keys}, {k: [] for k in keys})
    entries = _distinct_files(frame, path_col, run)
    writers = {k: ArraysWriter(predictions_path(settings, experiment.name, spec.name, *k)) for k in keys}
    progress = Progress(logger, what, len(entries))
    try:
        memo_key = (id(task), task.model_id)  # one task object per (task, arguments, device) in a process
        hits = {e[0]: PREDICTIONS.get((*memo_key, e[0])) for e in entries}
        fresh = [e for e in entries if hits[e[0]] is None]
        run.deliver({d: p for d, p in hits.items() if p is not None}, writers, memo_key)  # predicted before
        done = len(entries) - len(fresh)
        for results in predict_files(task, spec, fresh, pool_workers(settings), settings):
            run.deliver(results, writers, memo_key)
            done += len(results)
            progress.step(done)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return task, run


def _run_or_skip(experiment: Experiment, spec: TaskSpec, settings: Settings, frame: pd.DataFrame, path_col: str,
                 logger: logging.Logger | logging.LoggerAdapter, what: str) -> tuple[Task, _TaskRun] | str:
    """``_run_task``, or for an optional task whose model is not available the note saying it was skipped
    (logged at info: it goes into the asset's metadata, and callers decide how loud to be)."""
    try:
        return _run_task(experiment, spec, settings, frame, path_col, logger, what)
    except ModelNotAvailableError as exc:
        if not spec.optional:
            raise
        note = skip_note(experiment, spec, exc)
        logger.info(note)
        return note


def _prediction_rows(preds: dict[str, Prediction], model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=i, prediction=json.dumps(p.summary), model=model) for i, p in preds.items()],
                        columns=["item_id", "prediction", "model"])


def reference_predictions(experiment: Experiment, store: ResultsStore, settings: Settings,
                          logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the uncompressed originals; scored against labels where they exist."""
    items = manifest(store, experiment).assign(codec=REFERENCE, bitrate=REFERENCE)
    summary = StepSummary(items=len(items))
    key = (REFERENCE, REFERENCE)
    for spec in experiment.tasks:
        keys = {"experiment": experiment.name, "codec": REFERENCE, "bitrate": REFERENCE, "task": spec.name}
        ran = _run_or_skip(experiment, spec, settings, items, "original_path", logger,
                           f"{experiment.name}/{spec.name} reference")
        if isinstance(ran, str):
            summary.notes.append(ran)
            store.replace_partitions([("predictions", keys, _prediction_rows({}, "")),
                                      ("task_scores", keys, score_frame([], ""))])  # no stale rows survive
            continue
        task, run = ran
        preds = with_arrays(settings, experiment.name, spec.name, key, run.preds[key])
        ids = [i for i in items["item_id"] if i in preds]
        labels = item_labels(items, spec)
        scores = task.score_labels(ids, [preds[i] for i in ids], [labels[i] for i in ids])
        store.replace_partitions([
            ("predictions", keys, _prediction_rows(preds, task.model_id)),
            ("task_scores", keys, score_frame(scores, task.model_id)),
            ("errors", {"experiment": experiment.name, "stage": f"reference_predictions:{spec.name}",
                        "codec": REFERENCE, "bitrate": REFERENCE}, errors_frame(run.errors[key])),
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
    frame, failed = partition_rows(store, experiment, parts)
    counts = frame.groupby(["codec", "bitrate"]).size()
    summaries = {k: StepSummary(items=int(counts.get(k, 0))) for k in parts}
    for key, n in failed.items():
        summaries[key].notes.append(failed_note(key, n))
    writes: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
    for spec in experiment.tasks:
        ran = _run_or_skip(experiment, spec, settings, frame, "decoded_path", logger,
                           f"{experiment.name}/{spec.name} {len(parts)} partition(s)")
        if isinstance(ran, str):
            note = ran
            for codec, bitrate in parts:
                summaries[(codec, bitrate)].notes.append(note)
                keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
                writes += [("predictions", keys, _prediction_rows({}, "")),
                           ("task_scores", keys, score_frame([], ""))]  # no stale rows survive
            continue
        task, run = ran
        for codec, bitrate in parts:
            preds, errors = run.preds.get((codec, bitrate), {}), run.errors.get((codec, bitrate), [])
            keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
            writes += [("predictions", keys, _prediction_rows(preds, task.model_id)),
                       ("errors", {"experiment": experiment.name, "stage": f"predictions:{spec.name}", "codec": codec,
                                   "bitrate": bitrate}, errors_frame(errors))]
            summaries[(codec, bitrate)].errors += len(errors)
            summaries[(codec, bitrate)].rows += len(preds)
    store.replace_partitions(writes)
    return summaries


def predictions_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore,
                          settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the cached reconstructions of one codec x bitrate partition."""
    return predictions_partitions(experiment, [(codec, bitrate)], store, settings, logger)[(codec, bitrate)]
