"""Declarative automation: what runs by itself, and when.

- Partitioned sweep assets (``compressed``, ``quality``, ``predictions``,
  ``task_scores``) use :meth:`AutomationCondition.on_missing` with one change
  (see :func:`sweep_condition`): partitions that *appear* while their
  dependencies exist (the codec sensor adds a new codec, or a neural codec
  whose weights were just pulled) are materialised. The
  automation sensor emits all of them as ONE backfill; our single-run backfill
  policy then runs each asset once over every new partition (models load once).
- ``reference_predictions`` is eager: it follows the dataset.
- The analyses (``correlations``, ``rate_curves``, ``compression_gains``, ``report``) recompute after
  any partition upstream updates, once nothing upstream is still running. They
  deliberately do not wait for *every* partition (a codec that cannot run here
  would block them forever); they analyse what exists.
- The nightly schedule per experiment requests every partition that is still
  missing (failed earlier, or existed before automation was switched on).

Re-materialising ``dataset`` does not re-run the sweep by itself: a sweep costs
hours, so that is a decision for a person (select the partitions in the UI).
"""

from collections.abc import Sequence
from datetime import datetime

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

NIGHTLY_CRON = "0 3 * * *"


def sweep_condition() -> AutomationCondition:
    """Partitioned assets: a partition that appears while its dependencies exist is filled.

    ``on_missing`` alone remembers partitions that appeared *before* the dataset and sweeps them all
    when the dataset first materialises, or not, depending on whether the automation sensor ticked
    between the two (a race against the codec sensor). Requiring the dependencies at the moment the
    partition appears makes it deterministic: new codecs are swept at once; partitions that predate
    their dataset are left to a person or to the nightly fill schedule.
    """
    appeared_with_deps = (
        (AutomationCondition.missing().newly_true() & ~AutomationCondition.any_deps_missing())
        .since_last_handled()
        .with_label("appeared_with_deps")
    )
    return AutomationCondition.on_missing().replace("missing_since_last_handled", appeared_with_deps)


def follow_condition() -> AutomationCondition:
    """Unpartitioned assets downstream of unpartitioned ones: update when a dependency does."""
    return AutomationCondition.eager()


def analysis_condition() -> AutomationCondition:
    """Analyses over all partitions: after any upstream partition updates, once none is in progress."""
    return (
        (AutomationCondition.newly_missing() | AutomationCondition.any_deps_updated()).since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("after_any_partition_update")


automation_sensor = AutomationConditionSensorDefinition(
    "mpq_automation_sensor",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the assets' automation conditions: backfills new codec partitions, keeps the "
    "reference predictions and the analyses up to date.",
)


def missing_partitions(instance: DagsterInstance, partitions_def: PartitionsDefinition,
                       materialized: Sequence[set[str]]) -> list[str]:
    """Partition keys that at least one asset (``materialized``: its materialised keys) lacks."""
    keys = partitions_def.get_partition_keys(dynamic_partitions_store=instance)
    return [k for k in keys if any(k not in done for done in materialized)]


def nightly_fill_schedule(experiment: str, assets: Sequence[AssetsDefinition]) -> ScheduleDefinition:
    """A schedule that requests, each night, every partition of ``experiment`` some sweep asset lacks."""
    partitioned = [a for a in assets if a.partitions_def is not None]
    roots = [key for a in assets if a.partitions_def is None for key in a.keys if key.path[-1] == "dataset"]
    keys = [key for a in partitioned for key in a.keys]
    partitions_def = partitioned[0].partitions_def
    job = define_asset_job(f"{experiment}__sweep", selection=keys,
                           description=f"Every partitioned asset of {experiment} for one codec x ratio.")

    @schedule(cron_schedule=NIGHTLY_CRON, job=job, name=f"{experiment}__nightly_fill",
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Nightly: materialise every {experiment} partition that is still missing.")
    def fill(context: ScheduleEvaluationContext):  # noqa: ANN202 (Dagster reads the return type itself)
        instance = context.instance
        if any(instance.get_latest_materialization_event(AssetKey(k.path)) is None for k in roots):
            return SkipReason(f"{experiment}/dataset is not materialised yet")
        done = [instance.get_materialized_partitions(k) for k in keys]
        missing = missing_partitions(instance, partitions_def, done)
        if not missing:
            return SkipReason(f"every {experiment} partition is materialised")
        night = (context.scheduled_execution_time or datetime.now()).strftime("%Y-%m-%d")
        context.log.info("%s: %d missing partitions", experiment, len(missing))
        return [RunRequest(run_key=f"{night}:{key}", partition_key=key) for key in missing]

    return fill
