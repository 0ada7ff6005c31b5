"""Asset factory: each experiment becomes one asset group, keys prefixed by its name.

Assets stay thin: read the partition, call the domain step in ``pipeline``,
report metadata. All rows go through the ResultsStore. Model-heavy assets carry
``pool="gpu"``; partitioned assets backfill as a single run so models load once.
"""

from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mpq_assets.experiments import Experiment
from mpq_assets.partitions import codec_bitrate_partitions, split_key
from mpq_assets.pipeline import evaluate
from mpq_assets.pipeline.compress import compress_partition
from mpq_assets.pipeline.ingest import ingest
from mpq_assets.resources import MpqResource

GPU_POOL = "gpu"


def _round(value: float | None, digits: int = 3) -> float:
    return round(value, digits) if value is not None else float("nan")


def _metadata(per_partition: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over the run's partitions; the single partition's details inline, else as JSON."""
    rows = list(per_partition.values())
    totals = {k: sum(r[k] for r in rows) for k in ("items", "errors") if all(k in r for r in rows)}
    if len(rows) == 1:
        return {**rows[0], **totals}
    return {**totals, "partitions": MetadataValue.json(per_partition)}


def _each_partition(context: AssetExecutionContext, experiment: Experiment,
                    step: Callable[[str, str], dict[str, Any]]) -> MaterializeResult:
    per_partition = {}
    for key in context.partition_keys:  # several keys when a backfill runs as one run
        codec, bitrate = split_key(experiment.modality, key)
        per_partition[key] = step(codec, bitrate)
    return MaterializeResult(metadata=_metadata(per_partition))


def _summary_metadata(s: evaluate.StepSummary) -> dict[str, Any]:
    meta: dict[str, Any] = {"items": s.items, "errors": s.errors, "rows": s.rows, **s.means}
    if s.notes:
        meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in s.notes))
    return meta


def experiment_assets(experiment: Experiment, *, gpu_op_tags: Mapping[str, Any] | None = None
                      ) -> list[AssetsDefinition]:
    """The experiment's asset group. ``gpu_op_tags`` go on every ``pool="gpu"`` asset (a deployment's
    executor reads them, e.g. ``dagster-k8s/config`` requesting ``nvidia.com/gpu``)."""
    name = experiment.name
    partitions = codec_bitrate_partitions(experiment.modality)
    common = dict(group_name=name, kinds={"duckdb", "python"})
    partitioned = dict(partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(), **common)
    gpu = dict(pool=GPU_POOL, op_tags=dict(gpu_op_tags or {}))

    @asset(key=[name, "dataset"], description=f"Item manifest of {name} ({experiment.description}); "
           "originals cached on disk.", **common)
    def dataset(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        summary = ingest(experiment, mpq.store(), mpq.settings(), context.log)
        return MaterializeResult(metadata={
            "items": summary.items,
            "errors": summary.errors,
            "error_items": MetadataValue.json(summary.error_items),
            "raw_MB": round(summary.raw_mb, 3),
        })

    # pool: neural codecs (CompressAI, HiFiC, EnCodec) run on the device like the models do
    @asset(key=[name, "compressed"], deps=[dataset.key], **gpu, description=f"{name} compressed by one "
           "codec at one target ratio: bitstream files, cached reconstructions, achieved rates.", **partitioned)
    def compressed(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store, settings = mpq.store(), mpq.settings()

        def step(codec: str, bitrate: str) -> dict[str, Any]:
            s = compress_partition(experiment, codec, bitrate, store, settings, context.log)
            return dict(items=s.items, errors=s.errors, missed_target=s.missed_target,
                        mean_ratio=_round(s.mean_ratio, 2), mean_bpp=_round(s.mean_bpp, 4),
                        mean_kbps=_round(s.mean_kbps, 2), seconds=round(s.seconds, 2))

        return _each_partition(context, experiment, step)

    assets = [dataset, compressed]

    if experiment.quality_metrics:
        @asset(key=[name, "quality"], deps=[compressed.key], **gpu,
               description=f"Full-reference quality ({', '.join(experiment.quality_metrics)}) of each "
               "reconstruction against its original.", **partitioned)
        def quality(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _each_partition(context, experiment, lambda c, b: _summary_metadata(
                evaluate.quality_partition(experiment, c, b, store, settings, context.log)))

        assets.append(quality)

    if experiment.tasks:
        task_names = ", ".join(t.name for t in experiment.tasks)

        @asset(key=[name, "reference_predictions"], deps=[dataset.key], **gpu,
               description=f"Task outputs ({task_names}) on the uncompressed items: the label-free reference.",
               **common)
        def reference_predictions(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            s = evaluate.reference_predictions(experiment, mpq.store(), mpq.settings(), context.log)
            return MaterializeResult(metadata=_summary_metadata(s))

        @asset(key=[name, "predictions"], deps=[compressed.key], **gpu,
               description=f"Task outputs ({task_names}) on each reconstruction.", **partitioned)
        def predictions(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _each_partition(context, experiment, lambda c, b: _summary_metadata(
                evaluate.predictions_partition(experiment, c, b, store, settings, context.log)))

        @asset(key=[name, "task_scores"], deps=[predictions.key, reference_predictions.key],
               description="Task scores vs labels and label-free vs the reference predictions.", **partitioned)
        def task_scores(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _each_partition(context, experiment, lambda c, b: _summary_metadata(
                evaluate.task_scores_partition(experiment, c, b, store, settings, context.log)))

        assets += [reference_predictions, predictions, task_scores]

    return assets
