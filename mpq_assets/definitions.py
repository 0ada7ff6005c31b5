"""The code location: every experiment's assets, the resource, and the codec sensor."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import Definitions

from mpq_assets.assets import experiment_assets
from mpq_assets.experiments import EXPERIMENTS, Experiment
from mpq_assets.resources import MpqResource
from mpq_assets.sensors import codec_registry_sensor


def build_definitions(experiments: Iterable[Experiment] | None = None, mpq: MpqResource | None = None) -> Definitions:
    exps = list(EXPERIMENTS.values() if experiments is None else experiments)
    return Definitions(
        assets=[a for e in exps for a in experiment_assets(e)],
        resources={"mpq": mpq or MpqResource()},
        sensors=[codec_registry_sensor],
    )


defs = build_definitions()
