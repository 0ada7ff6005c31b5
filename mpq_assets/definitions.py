"""The code location: every experiment's assets, the resource, the codec sensor, the automation sensor
and one nightly fill schedule per experiment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dagster import Definitions, ExecutorDefinition

from mpq_assets.defs.assets import experiment_assets
from mpq_assets.defs.automation import automation_sensor, nightly_fill_schedule
from mpq_assets.defs.resources import MpqResource
from mpq_assets.defs.sensors import codec_registry_sensor, spool_merge_sensor
from mpq_assets.experiments import EXPERIMENTS, Experiment

# one resource and one set of platform sensors per process, so the Definitions of several experiments (a study
# folder's components) merge into one code location
DEFAULT_MPQ = MpqResource()
PLATFORM_SENSORS = (codec_registry_sensor, automation_sensor, spool_merge_sensor())


def build_definitions(experiments: Iterable[Experiment] | None = None, mpq: MpqResource | None = None, *,
                      executor: ExecutorDefinition | None = None,
                      gpu_op_tags: Mapping[str, Any] | None = None, sensors: bool = True) -> Definitions:
    """One code location. Deployments pass their ``executor`` (Dask, Kubernetes) and the op tags
    their executor reads for ``pool="gpu"`` assets; the default runs everything on this machine.
    ``sensors=False`` leaves out the platform's sensors (a study component's share: the study's code location
    adds them once, :func:`platform_definitions`)."""
    exps = list(EXPERIMENTS.values() if experiments is None else experiments)
    groups = {e.name: experiment_assets(e, gpu_op_tags=gpu_op_tags) for e in exps}
    return Definitions(
        assets=[a for assets in groups.values() for a in assets],
        resources={"mpq": mpq or DEFAULT_MPQ},
        sensors=list(PLATFORM_SENSORS) if sensors else [],
        schedules=[nightly_fill_schedule(name, assets) for name, assets in groups.items()],
        executor=executor,
    )


def platform_definitions() -> Definitions:
    """The resource and sensors every code location needs once: codec partitions, automation, spool merge."""
    return Definitions(resources={"mpq": DEFAULT_MPQ}, sensors=list(PLATFORM_SENSORS))


defs = build_definitions()
