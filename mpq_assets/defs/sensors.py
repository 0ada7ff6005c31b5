"""The sensors: the codec registry sensor, which keeps the dynamic codec partitions in step with the
codec registry, and the spool merge, which keeps DuckDB single-writer in spool mode.

Codec partitions are added through ``SensorResult(dynamic_partitions_requests=...)``,
never by mutating the instance, so every change is visible in the sensor's
history in the UI. A codec joins once it can run here: its libraries are
installed and, for neural codecs, its weights are cached. A codec whose
weights arrive later (``mpq models pull``) joins on the next tick, and the
automation conditions then backfill its partitions.

No ``from __future__ import annotations`` here: Dagster inspects the sensor functions' annotations.
"""

import json
from collections.abc import Callable

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from mpq_assets.codecs import codec_names, get_codec
from mpq_assets.defs.partitions import codec_partitions_name
from mpq_assets.defs.resources import MpqResource
from mpq_assets.media.item import MODALITIES
from mpq_assets.settings import Settings
from mpq_assets.store.spool import merge_spool


def not_ready_reason(name: str, settings: Settings | None = None) -> str | None:
    """Why a registered codec cannot run here yet (weights not cached where the deployment's ``settings`` look),
    or None when it can."""
    try:
        return get_codec(name, settings=settings).weights_missing()
    except Exception as exc:  # a plugin whose constructor fails stays out, with the reason in the log
        return f"{type(exc).__name__}: {exc}"


def missing_codec_partitions(existing: dict[str, list[str]],
                             not_ready: Callable[[str], str | None] = lambda _: None
                             ) -> list[AddDynamicPartitionsRequest]:
    """Requests for registry codecs that ``existing`` (partitions name -> keys) lacks and that are ready."""
    requests = []
    for modality in MODALITIES:
        name = codec_partitions_name(modality)
        have = set(existing.get(name, []))
        new = [c for c in codec_names(modality) if c not in have and not_ready(c) is None]
        if new:
            requests.append(AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=new))
    return requests


@sensor(
    name="codec_registry_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds codecs from the registry (built-ins + mpq.codecs entry points) as codec partitions once "
    "they can run here (neural codecs: when their weights are cached).",
)
def codec_registry_sensor(context: SensorEvaluationContext, mpq: MpqResource) -> SensorResult:
    requests, reasons = pending_codec_partitions(context.instance, mpq.settings())
    # the cursor keeps the waiting codecs of the last tick: a codec is logged when it starts or stops
    # waiting, not on every 30 s tick
    before = set(json.loads(context.cursor)) if context.cursor else set()
    for codec in sorted(set(reasons) - before):
        context.log.info("codec %s waits for: %s", codec, _short(reasons[codec]))
    for codec in sorted(before - set(reasons)):
        context.log.info("codec %s no longer waits", codec)
    cursor = json.dumps(sorted(reasons))
    if not requests:
        waiting = f"; waiting for {', '.join(sorted(reasons))} (`mpq models` says why)" if reasons else ""
        return SensorResult(skip_reason=f"every ready codec already has partitions{waiting}", cursor=cursor)
    for r in requests:
        context.log.info("adding %s to %s", list(r.partition_keys), r.partitions_def_name)
    return SensorResult(dynamic_partitions_requests=requests, cursor=cursor)


def _short(reason: str, limit: int = 160) -> str:
    first = reason.splitlines()[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def pending_codec_partitions(instance: DagsterInstance, settings: Settings
                             ) -> tuple[list[AddDynamicPartitionsRequest], dict[str, str]]:
    """(requests for the ready codecs the instance lacks partitions for, codec -> why it is not ready)."""
    existing = {codec_partitions_name(m): list(instance.get_dynamic_partitions(codec_partitions_name(m)))
                for m in MODALITIES}
    reasons: dict[str, str] = {}

    def not_ready(codec: str) -> str | None:
        reason = not_ready_reason(codec, settings)
        if reason:
            reasons[codec] = reason
        return reason

    return missing_codec_partitions(existing, not_ready), reasons


def sync_codec_partitions(instance: DagsterInstance, settings: Settings) -> tuple[dict[str, list[str]],
                                                                                  dict[str, str]]:
    """Register every ready codec as a partition now, as the sensor would on its next tick (for runs without a
    daemon: the plain ``dagster`` CLI, scripts). Returns (partitions name -> codecs added, codec -> why not)."""
    requests, reasons = pending_codec_partitions(instance, settings)
    added = {}
    for r in requests:
        instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
        added[r.partitions_def_name] = list(r.partition_keys)
    return added, reasons


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
