"""Asset factory: each experiment becomes one asset group, keys prefixed by its name.

Assets stay thin: read the partition, call the domain step in ``pipeline``,
report metadata. All rows go through the ResultsStore.
"""


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
from mpq_assets.pipeline.compress import compress_partition
from mpq_assets.pipeline.ingest import ingest
from mpq_assets.resources import MpqResource


def _round(value: float | None, digits: int = 3) -> float:
    return round(value, digits) if value is not None else float("nan")


def experiment_assets(experiment: Experiment) -> list[AssetsDefinition]:
    name = experiment.name
    partitions = codec_bitrate_partitions(experiment.modality)

    @asset(
        key=[name, "dataset"],
        group_name=name,
        description=f"Item manifest of {name} ({experiment.description}); originals cached on disk.",
        kinds={"duckdb", "python"},
    )
    def dataset(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        summary = ingest(experiment, mpq.store(), mpq.settings(), context.log)
        return MaterializeResult(metadata={
            "items": summary.items,
            "errors": summary.errors,
            "error_items": MetadataValue.json(summary.error_items),
            "raw_MB": round(summary.raw_mb, 3),
        })

    @asset(
        key=[name, "compressed"],
        group_name=name,
        deps=[dataset.key],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        description=f"{name} compressed by one codec at one target ratio: bitstream files + achieved rates.",
        kinds={"duckdb", "python"},
    )
    def compressed(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store, settings = mpq.store(), mpq.settings()
        per_partition = {}
        for key in context.partition_keys:  # several keys when a backfill runs as one run
            codec, bitrate = split_key(experiment.modality, key)
            s = compress_partition(experiment, codec, bitrate, store, settings, context.log)
            per_partition[key] = dict(items=s.items, errors=s.errors, missed_target=s.missed_target,
                                      mean_ratio=_round(s.mean_ratio, 2), mean_bpp=_round(s.mean_bpp, 4),
                                      mean_kbps=_round(s.mean_kbps, 2), seconds=round(s.seconds, 2))
        rows = list(per_partition.values())
        metadata = {
            "items": sum(r["items"] for r in rows),
            "errors": sum(r["errors"] for r in rows),
            "missed_target": sum(r["missed_target"] for r in rows),
        }
        if len(rows) == 1:
            metadata.update({k: v for k, v in rows[0].items() if k not in metadata})
        else:
            metadata["partitions"] = MetadataValue.json(per_partition)
        return MaterializeResult(metadata=metadata)

    return [dataset, compressed]
