"""The spool merge as a Dagster sensor: the daemon is the single DuckDB writer in spool mode.

No ``from __future__ import annotations`` here: Dagster inspects the sensor function's annotations.
"""

from dagster import DefaultSensorStatus, SensorDefinition, SensorEvaluationContext, SkipReason, sensor

from mpq_assets.resources import MpqResource
from mpq_assets.store.spool import merge_spool

SPOOL_MERGE_SENSOR = "mpq_spool_merge"


def spool_merge_sensor(name: str = SPOOL_MERGE_SENSOR, *, minimum_interval_seconds: int = 30,
                       max_seconds: float = 40.0,
                       default_status: DefaultSensorStatus = DefaultSensorStatus.RUNNING) -> SensorDefinition:
    """A sensor that applies pending spool units to DuckDB on every tick (at most ``max_seconds`` of work per
    tick, under Dagster's 60 s sensor timeout). Where spool mode is off (no ``MPQ_SPOOL_DIR`` / resource
    ``spool_dir``) each tick is a cheap skip. The sensor requests no runs: it only merges, and the daemon
    evaluates one tick at a time, so it is the one writer. Register it once per deployment; it uses the
    ``mpq`` resource (``MpqResource``) to find the results file and the spool."""

    @sensor(name=name, minimum_interval_seconds=minimum_interval_seconds, default_status=default_status,
            description="Applies spooled result units (Parquet, written by workers in spool mode) to the DuckDB "
                        "file, oldest first, one transaction per unit; failed units are named in the tick.")
    def _merge(context: SensorEvaluationContext, mpq: MpqResource):
        store = mpq.store()
        if store.spool_dir is None:
            return SkipReason("spool mode is off (MPQ_SPOOL_DIR unset): workers write DuckDB directly")
        summary = merge_spool(store, max_seconds=max_seconds)
        for unit, reason in summary.failed:
            context.log.error(f"spool unit {unit} not merged, moved to {store.spool_dir / 'failed'}: {reason}")
        if summary.merged or summary.already_applied:
            context.log.info(summary.describe())
        return SkipReason(summary.describe())

    return _merge
