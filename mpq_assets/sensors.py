"""Keeps the dynamic codec partitions in step with the codec registry.

Partitions are added through ``SensorResult(dynamic_partitions_requests=...)``,
never by mutating the instance, so every change is visible in the sensor's
history in the UI.
"""


from dagster import AddDynamicPartitionsRequest, DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from mpq_assets.codecs import codec_names
from mpq_assets.codecs.base import MODALITIES
from mpq_assets.partitions import codec_partitions_name


def missing_codec_partitions(existing: dict[str, list[str]]) -> list[AddDynamicPartitionsRequest]:
    """Requests for registry codecs that ``existing`` (partitions name -> keys) lacks."""
    requests = []
    for modality in MODALITIES:
        name = codec_partitions_name(modality)
        new = [c for c in codec_names(modality) if c not in set(existing.get(name, []))]
        if new:
            requests.append(AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=new))
    return requests


@sensor(
    name="codec_registry_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds codecs from the registry (built-ins + mpq.codecs entry points) as codec partitions.",
)
def codec_registry_sensor(context: SensorEvaluationContext) -> SensorResult:
    existing = {
        codec_partitions_name(m): list(context.instance.get_dynamic_partitions(codec_partitions_name(m)))
        for m in MODALITIES
    }
    requests = missing_codec_partitions(existing)
    if not requests:
        return SensorResult(skip_reason="every registered codec already has partitions")
    for r in requests:
        context.log.info("adding %s to %s", list(r.partition_keys), r.partitions_def_name)
    return SensorResult(dynamic_partitions_requests=requests)
