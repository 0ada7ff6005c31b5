"""The ``task_scores`` step: every partition's predictions scored against labels, and label-free against
the predictions on the uncompressed items. The reference predictions are read once per task, each
partition's predictions in one query; one store write."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.pipeline.step import (
    REFERENCE,
    Key,
    StepSummary,
    failed_compressions,
    failed_note,
    item_labels,
    make_task,
    manifest,
    score_frame,
)
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore
from mpq_assets.store.predictions import predictions_from
from mpq_assets.tasks.base import Prediction, Task

log = logging.getLogger(__name__)


def task_scores_partitions(experiment: Experiment, partitions: Sequence[Key], store: ResultsStore,
                           settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log
                           ) -> dict[Key, StepSummary]:
    """Scores of every partition's predictions: vs labels, and label-free vs the reference predictions.

    The reference predictions are read once, each partition's predictions in one query; one store write.
    """
    parts = list(dict.fromkeys(partitions))
    items = manifest(store, experiment)
    summaries = {k: StepSummary(items=len(items)) for k in parts}
    failed = failed_compressions(store, experiment, parts)
    for key, n in failed.items():
        summaries[key].items = 0
        summaries[key].notes.append(failed_note(key, n))
    writes: list[tuple[str, dict[str, Any], pd.DataFrame]] = []
    for spec in experiment.tasks:
        task = make_task(spec, settings)
        labels = item_labels(items, spec)
        rows = store.query("SELECT codec, bitrate, item_id, prediction, model FROM predictions WHERE experiment = ? "
                           "AND task = ?", [experiment.name, spec.name])
        grouped = {k: df for k, df in rows.groupby(["codec", "bitrate"])}
        empty = rows.iloc[0:0]

        def partition_predictions(key: Key, grouped: dict = grouped, empty: pd.DataFrame = empty,
                                  spec: TaskSpec = spec, task: Task = task) -> dict[str, Prediction]:
            return predictions_from(grouped.get(key, empty), settings, experiment.name, spec.name, *key,
                                     task.model_id)

        ref = partition_predictions((REFERENCE, REFERENCE))
        for codec, bitrate in parts:
            keys = {"experiment": experiment.name, "codec": codec, "bitrate": bitrate, "task": spec.name}
            if (codec, bitrate) in failed:  # nothing was coded, so nothing to score: no stale rows survive
                writes.append(("task_scores", keys, score_frame([], task.model_id)))
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
            frame = score_frame(scores, task.model_id)
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
