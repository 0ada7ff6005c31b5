"""Asset factory: each experiment becomes one asset group, keys prefixed by its name.

Assets stay thin: read the partition, call the domain step in ``pipeline``,
report metadata. All rows go through the ResultsStore. Model-heavy assets carry
``pool="gpu"``; partitioned assets backfill as a single run so models load once.
"""

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    MaterializeResult,
    MetadataValue,
    asset,
)

from mpq_assets.analysis import png_markdown
from mpq_assets.defs.automation import analysis_condition, follow_condition, sweep_condition
from mpq_assets.defs.partitions import codec_bitrate_partitions, split_key
from mpq_assets.defs.resources import GPU_POOL, MpqResource
from mpq_assets.defs.training import matrix_figure, training_assets
from mpq_assets.experiments import Experiment
from mpq_assets.pipeline import analyse
from mpq_assets.pipeline import gains as gains_step
from mpq_assets.pipeline import predict as predict_step
from mpq_assets.pipeline import quality as quality_step
from mpq_assets.pipeline import scores as scores_step
from mpq_assets.pipeline.compress import compress_partitions
from mpq_assets.pipeline.ingest import ingest
from mpq_assets.pipeline.step import StepSummary

# unpartitioned, computed over every partition (so materialised after the partitions)
ANALYSES = ("trained_models", "transfer_matrix", "rate_curves", "correlations", "compression_gains", "report")


def _markdown_table(frame: Any, limit: int = 40) -> MetadataValue:
    if frame is None or frame.empty:
        return MetadataValue.md("(no rows)")
    shown = frame.head(limit)
    more = f"\n\n({len(frame) - limit} more rows in DuckDB)" if len(frame) > limit else ""
    return MetadataValue.md(shown.to_markdown(index=False, floatfmt=".4g") + more)


def _figure_metadata(figs: dict[str, bytes]) -> dict[str, Any]:
    return {f"plot_{name}": MetadataValue.md(png_markdown(png, name)) for name, png in figs.items()}


def _round(value: float | None, digits: int = 3) -> float:
    return round(value, digits) if value is not None else float("nan")


def _metadata(per_partition: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals over the run's partitions; the single partition's details inline, else as JSON."""
    rows = list(per_partition.values())
    totals = {k: sum(r[k] for r in rows) for k in ("items", "errors") if all(k in r for r in rows)}
    if len(rows) == 1:
        return {**rows[0], **totals}
    return {**totals, "partitions": MetadataValue.json(per_partition)}


def _all_partitions(context: AssetExecutionContext, experiment: Experiment,
                    step: Callable[[list[tuple[str, str]]], dict[tuple[str, str], Any]],
                    summarise: Callable[[Any], dict[str, Any]]) -> MaterializeResult:
    """Run ``step`` once over every partition of the run (several when a backfill runs as one run: the
    steps share encodes, originals and loaded models across them) and report each partition."""
    keys = list(context.partition_keys)
    parts = [split_key(experiment.modality, key) for key in keys]
    results = step(parts)
    return MaterializeResult(metadata=_metadata({key: summarise(results[p]) for key, p in zip(keys, parts,
                                                                                              strict=True)}))


def _summary_metadata(s: StepSummary) -> dict[str, Any]:
    meta: dict[str, Any] = {"items": s.items, "errors": s.errors, "rows": s.rows, **s.means}
    if s.notes:
        meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in s.notes))
    return meta


def experiment_assets(experiment: Experiment, *, gpu_op_tags: Mapping[str, Any] | None = None
                      ) -> list[AssetsDefinition]:
    """The experiment's asset group. ``gpu_op_tags`` go on every ``pool="gpu"`` asset (a deployment's
    executor reads them, e.g. ``dagster-k8s/config`` requesting ``nvidia.com/gpu``)."""
    # backfill_policy is beta in Dagster 1.13 and used knowingly (single-run backfills): not 32 warnings per load
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
        sweep = _sweep_assets(experiment, gpu_op_tags)
        if experiment.training is None:
            return sweep + analysis_assets(experiment, sweep)
        # the training split: its own dataset and compressed partitions, then the models and the matrix
        split = [a for a in _sweep_assets(experiment.training_split(), gpu_op_tags)
                 if a.key.path[-1] in ("dataset", "compressed")]
        own = {a.key.path[-1]: a.key for a in sweep if a.key.path[-1] in ("dataset", "compressed")}
        studied = training_assets(experiment, split, own, dict(gpu_op_tags or {}))
        return split + sweep + studied + analysis_assets(experiment, sweep, extra=studied[-1:])


def _sweep_assets(experiment: Experiment, gpu_op_tags: Mapping[str, Any] | None) -> list[AssetsDefinition]:
    """dataset, compressed and, as the experiment declares them, quality, the predictions and task scores."""
    name = experiment.name
    partitions = codec_bitrate_partitions(experiment.modality)
    common = dict(group_name=name, kinds={"duckdb", "python"})
    partitioned = dict(partitions_def=partitions, backfill_policy=BackfillPolicy.single_run(),
                       automation_condition=sweep_condition(), **common)
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

        def summarise(s: Any) -> dict[str, Any]:
            return dict(items=s.items, errors=s.errors, missed_target=s.missed_target,
                        ratio=_round(s.ratio, 2), bpp=_round(s.bpp, 4), kbps=_round(s.kbps, 2),
                        seconds=round(s.seconds, 2))

        return _all_partitions(context, experiment, lambda parts: compress_partitions(
            experiment, parts, store, settings, context.log), summarise)

    assets = [dataset, compressed]

    if experiment.quality_metrics:
        @asset(key=[name, "quality"], deps=[compressed.key], **gpu,
               description=f"Full-reference quality ({', '.join(experiment.quality_metrics)}) of each "
               "reconstruction against its original.", **partitioned)
        def quality(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _all_partitions(context, experiment, lambda parts: quality_step.quality_partitions(
                experiment, parts, store, settings, context.log), _summary_metadata)

        assets.append(quality)

    if experiment.tasks:
        task_names = ", ".join(t.name for t in experiment.tasks)

        @asset(key=[name, "reference_predictions"], deps=[dataset.key], **gpu, automation_condition=follow_condition(),
               description=f"Task outputs ({task_names}) on the uncompressed items: the label-free reference.",
               **common)
        def reference_predictions(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            s = predict_step.reference_predictions(experiment, mpq.store(), mpq.settings(), context.log)
            return MaterializeResult(metadata=_summary_metadata(s))

        @asset(key=[name, "predictions"], deps=[compressed.key], **gpu,
               description=f"Task outputs ({task_names}) on each reconstruction.", **partitioned)
        def predictions(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _all_partitions(context, experiment, lambda parts: predict_step.predictions_partitions(
                experiment, parts, store, settings, context.log), _summary_metadata)

        @asset(key=[name, "task_scores"], deps=[predictions.key, reference_predictions.key],
               description="Task scores vs labels and label-free vs the reference predictions.", **partitioned)
        def task_scores(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store, settings = mpq.store(), mpq.settings()
            return _all_partitions(context, experiment, lambda parts: scores_step.task_scores_partitions(
                experiment, parts, store, settings, context.log), _summary_metadata)

        assets += [reference_predictions, predictions, task_scores]

    return assets


def analysis_assets(experiment: Experiment, sweep: list[AssetsDefinition],
                    extra: list[AssetsDefinition] = ()) -> list[AssetsDefinition]:  # type: ignore[assignment]
    """rate_curves, correlations (when the experiment has tasks and quality metrics), compression_gains (when it
    has tasks) and the HTML report."""
    name = experiment.name
    keys = {a.key.path[-1]: a.key for a in sweep}
    common = dict(group_name=name, kinds={"duckdb", "python"}, automation_condition=analysis_condition())
    measured = [keys[k] for k in ("compressed", "quality", "task_scores") if k in keys]

    @asset(key=[name, "rate_curves"], deps=measured, description=f"BD-rate of each {name} codec against "
           f"{experiment.bd_anchor} (and every codec with enough points) on task and quality measures, and the "
           "highest achieved ratio keeping 95% of the reference task score, over distinct operating points; "
           "plots of task score vs achieved rate.", **common)
    def rate_curves(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store = mpq.store()
        table = analyse.rate_curves(experiment, store)
        figs = analyse.figures(experiment, store, kinds=("rate",))
        shown = table[["codec", "measure", "points", "merged", "missed", "bd_rate", "bd_rate_note", "kept_ratio",
                       "kept_note"]]
        points = analyse.point_summary(store, name)
        return MaterializeResult(metadata={"rows": len(table), "codecs": int(table["codec"].nunique()),
                                           "operating_points": _markdown_table(points),
                                           "bd_rates": _markdown_table(shown), **_figure_metadata(figs)})

    analyses = [rate_curves]
    if experiment.tasks and experiment.quality_metrics:
        @asset(key=[name, "correlations"], deps=measured, description="Pearson, Spearman and Kendall "
               "correlation (bootstrap 95% CI, n) of every task metric with every quality metric, across "
               "distinct operating points and across (item, point) pairs, and which quality metric predicts "
               "each task best (with the sign its direction implies).", **common)
        def correlations(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            store = mpq.store()
            table, ranking = analyse.correlations(experiment, store)
            figs = analyse.figures(experiment, store, kinds=("correlation",))
            best = ranking[ranking["best"].astype(bool)] if len(ranking) else ranking  # rank 1 with a real r
            cols = ["level", "task", "task_metric", "method", "quality_metric", "r", "ci_low", "ci_high", "n",
                    "merged", "missed"]
            return MaterializeResult(metadata={"rows": len(table),
                                               "best_predictors": _markdown_table(best[cols] if len(best) else best),
                                               **_figure_metadata(figs)})

        analyses.append(correlations)

    if experiment.tasks:
        @asset(key=[name, "compression_gains"], deps=measured, description="Each labelled task measure at each "
               "distinct operating point minus its score on the same items uncompressed, with a paired bootstrap "
               "95% interval that resamples items; flags points where compression helped (or hurt) with the "
               "interval excluding 0, and Benjamini-Hochberg q-values over the experiment.", **common)
        def compression_gains(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
            table = gains_step.compression_gains(experiment, mpq.store())
            cols = ["task", "metric", "point", "ratio", "items", "reference", "compressed", "difference", "ci_low",
                    "ci_high", "q_value"]
            helped, hurt = table.loc[table["helped"].astype(bool)], table.loc[table["hurt"].astype(bool)]
            return MaterializeResult(metadata={"rows": len(table), "helped": len(helped), "hurt": len(hurt),
                                               "compression_helped": _markdown_table(helped[cols])})

        analyses.append(compression_gains)

    @asset(key=[name, "report"], deps=[a.key for a in [*analyses, *extra]], description=f"Static HTML report of {name} "
           "(tables and plots) under the reports folder (data/reports/ by default).",
           group_name=name, kinds={"html"}, automation_condition=follow_condition())
    def report(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store = mpq.store()
        figs = {**analyse.figures(experiment, store), **matrix_figure(store, name)}
        path = analyse.write_report(experiment, store, mpq.settings().reports_dir, figs)
        context.log.info("report written to %s", path)
        return MaterializeResult(metadata={"path": MetadataValue.path(str(path)),
                                           "index": MetadataValue.path(str(path.parent / "index.html"))})

    return [*analyses, report]
