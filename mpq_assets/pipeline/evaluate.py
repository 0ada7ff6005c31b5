"""The evaluation steps: reference predictions, quality metrics, predictions, task scores.

Every step reads the reconstruction that ``compressed`` decoded once and cached
(``compressed.decoded_path``), never the bitstream, so each bitstream is decoded
once per partition. Models and metrics load once per process (registry caches).
Per-item failures become error rows; the partition completes.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mpq_assets.codecs.base import Item
from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.pipeline.compress import load_item
from mpq_assets.pipeline.memo import METRIC_VALUES, PREDICTIONS, file_digest
from mpq_assets.pipeline.progress import Progress
from mpq_assets.settings import Settings
from mpq_assets.storage_paths import atomic_write_bytes, safe_join
from mpq_assets.store import ResultsStore
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction, Task

log = logging.getLogger(__name__)
REFERENCE = "reference"  # codec and bitrate value of predictions on the uncompressed items
BATCH = 8


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


def _partition(store: ResultsStore, experiment: Experiment, codec: str, bitrate: str) -> pd.DataFrame:
    rows = store.query(
        "SELECT c.item_id, c.decoded_path, i.original_path, i.label, i.modality FROM compressed c "
        "JOIN items i USING (experiment, item_id) WHERE c.experiment = ? AND c.codec = ? AND c.bitrate = ? "
        "ORDER BY c.item_id", [experiment.name, codec, bitrate])
    if rows.empty:
        raise RuntimeError(f"{experiment.name}/compressed has no rows for {codec}@{bitrate}: materialise that "
                           "partition first")
    return rows


def _make_task(spec: TaskSpec, settings: Settings) -> Task:
    from mpq_assets.tasks.registry import make_task

    return make_task(spec.task, device=settings.device, **dict(spec.args))


def _skip_note(experiment: Experiment, spec: TaskSpec, exc: Exception) -> str:
    return f"{experiment.name}: task {spec.name} skipped, its model is not available. {exc}"


def _arrays_path(settings: Settings, experiment: str, task: str, codec: str, bitrate: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "predictions", task, f"{codec}__{bitrate}.npz")


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_predictions(store: ResultsStore, settings: Settings, experiment: str, task: str, codec: str,
                     bitrate: str, model: str | None = None) -> dict[str, Prediction]:
    """Predictions of one partition (summary from DuckDB, arrays from the artifact), by item id.

    With ``model``, predictions made by another model are refused: scores must never mix models.
    """
    df = store.query("SELECT item_id, prediction, model FROM predictions WHERE experiment = ? AND task = ? AND "
                     "codec = ? AND bitrate = ?", [experiment, task, codec, bitrate])
    if model is not None and len(df) and set(df["model"]) != {model}:
        raise RuntimeError(f"{experiment} {task} predictions for {codec}@{bitrate} were made by "
                           f"{sorted(set(df['model']))}, not {model}: re-materialise them before scoring")
    path = _arrays_path(settings, experiment, task, codec, bitrate)
    arrays = dict(np.load(path)) if path.exists() else {}
    return {r.item_id: Prediction(json.loads(r.prediction), arrays.get(r.item_id)) for r in df.itertuples()}


def _predict(task: Task, frame: pd.DataFrame, path_col: str, logger: logging.Logger | logging.LoggerAdapter,
             what: str) -> tuple[dict[str, Prediction], list[dict]]:
    preds: dict[str, Prediction] = {}
    errors: list[dict] = []
    progress = Progress(logger, what, len(frame))
    done = 0
    keys: dict[str, tuple] = {}
    for batch in _batches(frame, max(task.batch_size, 1)):
        loaded: list[tuple[str, Item]] = []
        for rec in batch.itertuples(index=False):
            try:
                path = getattr(rec, path_col)
                # one task object per (task, arguments, device) in a process: its id keys its settings too
                keys[rec.item_id] = (id(task), task.model_id, file_digest(path))
                hit = PREDICTIONS.get(keys[rec.item_id])
                if hit is not None:  # a byte-identical reconstruction was already predicted
                    preds[rec.item_id] = hit
                    continue
                loaded.append((rec.item_id, load_item(path, rec.modality)))
            except Exception as exc:
                errors.append(dict(item_id=rec.item_id, error=f"{type(exc).__name__}: {exc}"))
        if loaded:
            try:
                out = task.predict([it for _, it in loaded])
                fresh = {iid: p for (iid, _), p in zip(loaded, out, strict=True)}
            except ModelNotAvailableError:
                raise
            except Exception:  # retry one by one so a single bad item cannot sink the batch
                fresh = {}
                for iid, it in loaded:
                    try:
                        fresh[iid] = task.predict([it])[0]
                    except ModelNotAvailableError:
                        raise
                    except Exception as exc:
                        errors.append(dict(item_id=iid, error=f"{type(exc).__name__}: {exc}"))
            for iid, p in fresh.items():
                PREDICTIONS.put(keys[iid], p)
            preds.update(fresh)
        done += len(batch)
        progress.step(done)
    return preds, errors


def _run_task(experiment: Experiment, spec: TaskSpec, settings: Settings, store: ResultsStore, frame: pd.DataFrame,
              path_col: str, codec: str, bitrate: str, summary: StepSummary,
              logger: logging.Logger | logging.LoggerAdapter) -> tuple[Task, dict[str, Prediction], list[dict]] | None:
    """Predict one task over ``frame`` and keep its arrays; None when an optional task's model is missing."""
    task = _make_task(spec, settings)
    try:
        preds, errors = _predict(task, frame, path_col, logger, f"{experiment.name}/{spec.name} {codec}@{bitrate}")
    except ModelNotAvailableError as exc:
        if not spec.optional:
            raise
        summary.notes.append(_skip_note(experiment, spec, exc))
        logger.info(summary.notes[-1])  # recorded in the asset's metadata; callers decide how loud
        keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
        store.replace_partitions([("predictions", keys, _prediction_rows({}, "")),
                                  ("task_scores", keys, _score_frame([], ""))])  # no stale rows survive
        return None
    _save_arrays(_arrays_path(settings, experiment.name, spec.name, codec, bitrate),
                 {i: p.array for i, p in preds.items() if p.array is not None})
    return task, preds, errors


def _prediction_rows(preds: dict[str, Prediction], model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=i, prediction=json.dumps(p.summary), model=model) for i, p in preds.items()],
                        columns=["item_id", "prediction", "model"])


def _score_frame(scores: Sequence, model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=s.item_id, metric=s.metric, value=float(s.value), n=int(s.n), model=model)
                         for s in scores], columns=["item_id", "metric", "value", "n", "model"])


def _errors_frame(errors: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(errors, columns=["item_id", "error"])


def reference_predictions(experiment: Experiment, store: ResultsStore, settings: Settings,
                          logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the uncompressed originals; scored against labels where they exist."""
    items = _manifest(store, experiment)
    summary = StepSummary(items=len(items))
    for spec in experiment.tasks:
        ran = _run_task(experiment, spec, settings, store, items, "original_path", REFERENCE, REFERENCE, summary,
                        logger)
        if ran is None:
            continue
        task, preds, errors = ran
        ids = [i for i in items["item_id"] if i in preds]
        labels = dict(zip(items["item_id"], items["label"], strict=True))
        scores = task.score_labels(ids, [preds[i] for i in ids], [labels[i] for i in ids])
        keys = {"experiment": experiment.name, "codec": REFERENCE, "bitrate": REFERENCE, "task": spec.name}
        store.replace_partitions([
            ("predictions", keys, _prediction_rows(preds, task.model_id)),
            ("task_scores", keys, _score_frame(scores, task.model_id)),
            ("errors", {"experiment": experiment.name, "stage": f"reference_predictions:{spec.name}",
                        "codec": REFERENCE, "bitrate": REFERENCE}, _errors_frame(errors)),
        ])
        summary.errors += len(errors)
        summary.rows += len(preds)
        summary.means.update({f"{spec.name}.{s.metric}": round(s.value, 4) for s in scores if s.item_id is None})
    return summary


def predictions_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore,
                          settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Each task on the cached reconstructions of one codec x bitrate partition."""
    frame = _partition(store, experiment, codec, bitrate)
    summary = StepSummary(items=len(frame))
    for spec in experiment.tasks:
        ran = _run_task(experiment, spec, settings, store, frame, "decoded_path", codec, bitrate, summary, logger)
        if ran is None:
            continue
        task, preds, errors = ran
        keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
        store.replace_partitions([
            ("predictions", keys, _prediction_rows(preds, task.model_id)),
            ("errors", {"experiment": experiment.name, "stage": f"predictions:{spec.name}", "codec": codec,
                        "bitrate": bitrate}, _errors_frame(errors)),
        ])
        summary.errors += len(errors)
        summary.rows += len(preds)
    return summary


def task_scores_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore,
                          settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Scores of one partition's predictions: vs labels, and label-free vs the reference predictions."""
    items = _manifest(store, experiment)
    labels = dict(zip(items["item_id"], items["label"], strict=True))
    summary = StepSummary(items=len(items))
    for spec in experiment.tasks:
        task = _make_task(spec, settings)
        preds = load_predictions(store, settings, experiment.name, spec.name, codec, bitrate, task.model_id)
        ref = load_predictions(store, settings, experiment.name, spec.name, REFERENCE, REFERENCE, task.model_id)
        if spec.optional and not preds and not ref:
            summary.notes.append(f"{experiment.name}: task {spec.name} has no predictions (optional task whose "
                                 "model is not available): not scored")
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
        keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
        summary.rows += store.replace_partition("task_scores", keys, _score_frame(scores, task.model_id))
        summary.means.update({f"{spec.name}.{s.metric}": round(s.value, 4) for s in scores if s.item_id is None})
    return summary


def quality_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore, settings: Settings,
                      logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Full-reference quality metrics between each original and its cached reconstruction."""
    from mpq_assets.device import resolve_device
    from mpq_assets.quality.registry import make_metric

    frame = _partition(store, experiment, codec, bitrate)
    device = resolve_device(settings.device)
    metrics = [make_metric(name, device) for name in experiment.quality_metrics]
    rows: list[dict] = []
    errors: list[dict] = []
    skipped: dict[str, list[str]] = {}
    progress = Progress(logger, f"{experiment.name}/quality {codec}@{bitrate}", len(frame))
    done = 0
    for batch in _batches(frame, BATCH):
        refs, dists, ids, digests = [], [], [], []
        for rec in batch.itertuples(index=False):
            try:  # all four or none, so values can never shift to another item
                pair = (file_digest(rec.original_path), file_digest(rec.decoded_path))
                ref, dist = load_item(rec.original_path, rec.modality), load_item(rec.decoded_path, rec.modality)
                digests.append(pair)
                refs.append(ref)
                dists.append(dist)
                ids.append(rec.item_id)
            except Exception as exc:
                errors.append(dict(item_id=rec.item_id, error=f"{type(exc).__name__}: {exc}"))
        for metric in metrics:
            keep = []
            for k, ref in enumerate(refs):
                reason = metric.applicable(ref)
                memo = METRIC_VALUES.get((metric.info.name, *digests[k]))
                if reason:
                    skipped.setdefault(metric.info.name, []).append(f"{ids[k]} ({reason})")
                elif memo is not None:  # same original and byte-identical reconstruction: same value
                    rows.append(dict(item_id=ids[k], metric=metric.info.name, value=memo))
                else:
                    keep.append(k)
            if not keep:
                continue
            metric.reset()
            try:
                metric.update([refs[k] for k in keep], [dists[k] for k in keep])
                values = metric.compute()
            except Exception as exc:
                for k in keep:
                    errors.append(dict(item_id=ids[k], error=f"{metric.info.name}: {type(exc).__name__}: {exc}"))
                continue
            for k, v in zip(keep, values, strict=True):
                METRIC_VALUES.put((metric.info.name, *digests[k]), float(v))
                rows.append(dict(item_id=ids[k], metric=metric.info.name, value=float(v)))
        done += len(batch)
        progress.step(done)
    df = pd.DataFrame(rows, columns=["item_id", "metric", "value"])
    keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate}
    store.replace_partitions([
        ("quality", keys, df),
        ("errors", {**keys, "stage": "quality"}, _errors_frame(errors)),
    ])
    summary = StepSummary(items=len(frame), errors=len(errors), rows=len(df))
    for name, ids_ in skipped.items():
        note = f"{name} skipped for {len(ids_)} item(s): {'; '.join(ids_)}"
        logger.info(note)
        summary.notes.append(note)
    if len(df):
        summary.means = {k: round(float(v), 4) for k, v in df.groupby("metric")["value"].mean().items()}
    return summary
