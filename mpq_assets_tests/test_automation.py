"""Automation: a new codec's partitions are requested by the sweep's conditions; analyses follow any
partition update; the nightly schedule asks for exactly the missing partitions; sensors run by default."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    evaluate_automation_conditions,
    materialize,
)
from PIL import Image

from mpq_assets.codecs import RATIOS
from mpq_assets.definitions import build_definitions
from mpq_assets.defs.assets import experiment_assets
from mpq_assets.defs.partitions import codec_partitions_name, partition_key
from mpq_assets.defs.resources import MpqResource
from mpq_assets.defs.sensors import missing_codec_partitions
from mpq_assets.experiments import Experiment

SWEEP = ("compressed", "quality")


@pytest.fixture()
def tiny(tmp_path: Path) -> Experiment:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return Experiment("auto_tiny", "image", "image_folder", {"root": str(folder)}, quality_metrics=("psnr",))


def _keys(exp: Experiment, *names: str) -> list[AssetKey]:
    return [AssetKey([exp.name, n]) for n in names]


def _location(exp: Experiment, tmp_path: Path) -> tuple[list, MpqResource, object]:
    """The experiment's assets, a resource on a temp MPQ_HOME, and a code location of both."""
    resource = MpqResource(home=str(tmp_path / "mpq"))
    return experiment_assets(exp), resource, build_definitions([exp], resource)


def _materialise(assets: list, resource: MpqResource, instance: DagsterInstance, exp: Experiment, *names: str,
                 partition: str | None = None) -> None:
    assert materialize(assets, selection=_keys(exp, *names), partition_key=partition, instance=instance,
                       resources={"mpq": resource}).success


def test_definitions_ship_running_sensors_and_nightly_schedules() -> None:
    defs = build_definitions()
    sensors = {s.name: s for s in defs.sensors}
    assert sensors["codec_registry_sensor"].default_status == DefaultSensorStatus.RUNNING
    assert sensors["mpq_automation_sensor"].default_status == DefaultSensorStatus.RUNNING
    schedules = {s.name: s for s in defs.schedules}
    assert "demo_images__nightly_fill" in schedules
    assert all(s.default_status == DefaultScheduleStatus.RUNNING and s.cron_schedule == "0 3 * * *"
               for s in schedules.values())


def test_conditions_on_each_kind_of_asset(tiny: Experiment) -> None:
    conditions = {a.key.path[-1]: a.automation_conditions_by_key.get(a.key) for a in experiment_assets(tiny)}
    labels = {name: c.get_label() for name, c in conditions.items() if c is not None}
    assert labels["compressed"] == labels["quality"] == "on_missing"
    assert "appeared_with_deps" in [c.get_label() for c in conditions["compressed"].children]
    assert labels["rate_curves"] == "after_any_partition_update"
    assert labels["report"] == "eager"
    assert "dataset" not in labels  # the root is materialised by a person or the demo


def test_new_codec_partitions_are_requested_once_dataset_exists(tiny: Experiment, tmp_path: Path) -> None:
    assets, resource, defs = _location(tiny, tmp_path)
    with DagsterInstance.ephemeral() as instance:
        _materialise(assets, resource, instance, tiny, "dataset")
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.get_requested_partitions(AssetKey([tiny.name, "compressed"])) == set()
        # the codec sensor's request for a new codec, then the next automation tick
        (req,) = [r for r in missing_codec_partitions({"image_codecs": [], "audio_codecs": ["mp3"]})
                  if r.partitions_def_name == codec_partitions_name("image")]
        assert "jpeg" in req.partition_keys
        instance.add_dynamic_partitions(codec_partitions_name("image"), ["jpeg"])
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        expected = {partition_key("jpeg", r) for r in RATIOS}
        for name in SWEEP:  # every bitrate of the new codec, for every sweep asset, in the same tick
            assert second.get_requested_partitions(AssetKey([tiny.name, name])) == expected
        # the analyses wait while nothing upstream updated
        assert second.get_num_requested(AssetKey([tiny.name, "rate_curves"])) == 0


def test_partitions_older_than_the_dataset_are_not_swept_when_it_appears(tiny: Experiment, tmp_path: Path) -> None:
    assets, resource, defs = _location(tiny, tmp_path)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        instance.add_dynamic_partitions(codec_partitions_name("image"), ["jpeg"])
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        _materialise(assets, resource, instance, tiny, "dataset")
        third = evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        for name in SWEEP:  # a sweep of existing partitions is a person's (or the nightly schedule's) decision
            assert third.get_requested_partitions(AssetKey([tiny.name, name])) == set()


def test_analyses_follow_a_partition_update(tiny: Experiment, tmp_path: Path) -> None:
    assets, resource, defs = _location(tiny, tmp_path)
    with DagsterInstance.ephemeral() as instance:
        _materialise(assets, resource, instance, tiny, "dataset")
        instance.add_dynamic_partitions(codec_partitions_name("image"), ["jpeg"])
        first = evaluate_automation_conditions(defs=defs, instance=instance)
        assert materialize(assets, selection=_keys(tiny, *SWEEP), partition_key=partition_key("jpeg", "20x"),
                           instance=instance, resources={"mpq": resource}).success
        second = evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert second.get_num_requested(AssetKey([tiny.name, "rate_curves"])) == 1


def test_nightly_schedule_requests_exactly_the_missing_partitions(tiny: Experiment, tmp_path: Path) -> None:
    defs = build_definitions([tiny], MpqResource(home=str(tmp_path / "mpq")))
    schedule = defs.get_schedule_def(f"{tiny.name}__nightly_fill")
    assets, resource, defs = _location(tiny, tmp_path)
    (tmp_path / "dagster_home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(codec_partitions_name("image"), ["jpeg", "webp"])
        when = datetime(2026, 11, 25, 3, 0)
        skipped = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=when,
                                                                 repository_def=defs.get_repository_def()))
        assert not skipped.run_requests and "dataset is not materialised" in skipped.skip_message
        _materialise(assets, resource, instance, tiny, "dataset")
        done = partition_key("jpeg", "20x")
        assert materialize(assets, selection=_keys(tiny, *SWEEP), partition_key=done, instance=instance,
                           resources={"mpq": resource}).success
        half = partition_key("webp", "50x")  # only one of the two sweep assets: still missing
        assert materialize(assets, selection=_keys(tiny, "compressed"), partition_key=half, instance=instance,
                           resources={"mpq": resource}).success
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=when,
                                                                 repository_def=defs.get_repository_def()))
        keys = [r.partition_key for r in result.run_requests]
        assert len(keys) == 2 * len(RATIOS) - 1 and done not in keys and half in keys
        assert len(set(keys)) == len(keys)
        assert all(r.run_key == f"2026-11-25:{r.partition_key}" for r in result.run_requests)


def test_sensor_leaves_out_codecs_that_cannot_run_yet() -> None:
    waiting = {"hific": "weights not cached"}
    reqs = missing_codec_partitions({"image_codecs": [], "audio_codecs": []}, waiting.get)
    image = next(r for r in reqs if r.partitions_def_name == "image_codecs")
    assert "hific" not in image.partition_keys and "jpeg" in image.partition_keys


def test_codec_sensor_logs_a_waiting_codec_once_and_sync_registers_ready_codecs(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    from dagster import build_sensor_context

    from mpq_assets.defs import sensors

    waiting = {"hific": "weights not cached: mpq models pull hific-low", "mbt2018": "weights not cached"}
    monkeypatch.setattr(sensors, "not_ready_reason", lambda name, settings=None: waiting.get(name))
    resource = MpqResource(home=str(tmp_path / "home"))
    with DagsterInstance.ephemeral() as instance:
        added, reasons = sensors.sync_codec_partitions(instance, resource.settings())
        assert "jpeg" in added["image_codecs"] and "opus" in added["audio_codecs"]
        assert set(reasons) == set(waiting) and "hific" not in instance.get_dynamic_partitions("image_codecs")
        assert sensors.sync_codec_partitions(instance, resource.settings())[0] == {}  # nothing left to add
        logged: list[str] = []
        context = build_sensor_context(instance=instance, resources={"mpq": resource})
        monkeypatch.setattr(type(context), "log", property(lambda self: _Recorder(logged)))
        first = sensors.codec_registry_sensor(context)
        assert sum("waits for" in line for line in logged) == 2 and first.cursor == '["hific", "mbt2018"]'
        logged.clear()
        again = sensors.codec_registry_sensor(build_sensor_context(instance=instance, cursor=first.cursor,
                                                                   resources={"mpq": resource}))
        assert logged == [] and again.cursor == first.cursor  # unchanged: silent
        del waiting["mbt2018"]
        later = sensors.codec_registry_sensor(build_sensor_context(instance=instance, cursor=again.cursor,
                                                                   resources={"mpq": resource}))
        assert logged[0] == "codec mbt2018 no longer waits" and later.cursor == '["hific"]'
        assert [list(r.partition_keys) for r in later.dynamic_partitions_requests] == [["mbt2018"]]


class _Recorder:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args if args else msg)
