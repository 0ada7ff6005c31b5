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


def build_definitions(experiments: Iterable[Experiment] | None = None, mpq: MpqResource | None = None, *,
                      executor: ExecutorDefinition | None = None,
                      gpu_op_tags: Mapping[str, Any] | None = None) -> Definitions:
    """One code location. Deployments pass their ``executor`` (Dask, Kubernetes) and the op tags
    their executor reads for ``pool="gpu"`` assets; the default runs everything on this machine."""
    exps = list(EXPERIMENTS.values() if experiments is None else experiments)
    groups = {e.name: experiment_assets(e, gpu_op_tags=gpu_op_tags) for e in exps}
    return Definitions(
        assets=[a for assets in groups.values() for a in assets],
        resources={"mpq": mpq or MpqResource()},
        sensors=[codec_registry_sensor, automation_sensor, spool_merge_sensor()],
        schedules=[nightly_fill_schedule(name, assets) for name, assets in groups.items()],
        executor=executor,
    )


defs = build_definitions()
