"""Shared fixtures: every test gets its own MPQ_HOME (DuckDB file, artifacts) in a temp dir."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from mpq_assets.settings import Settings, load_settings
from mpq_assets.store import ResultsStore

# two partitions of every demo experiment, materialised once per test session
DEMO_PLAN = {
    "demo_images": [("jpeg", "20x"), ("jpeg", "200x")],
    "demo_speech": [("opus", "100x"), ("mp3", "20x")],
    "demo_music": [("aac", "20x"), ("opus", "1000x")],
    "demo_documents": [("jpeg", "100x")],
}
DEMO_ITEMS = {"demo_images": 11, "demo_speech": 24, "demo_music": 3, "demo_documents": 18}
# CDPAM (~2 s per clip on 2 CPU cores) and DNSMOS (~0.5 s) are covered by their unit tests; the
# integration run keeps the cheap metrics so the suite stays fast. Everything else is the demo as declared.
DEMO_METRICS = {"demo_speech": ("snr", "si_sdr", "stoi", "pesq"), "demo_music": ("snr", "si_sdr", "log_mel_distance"),
                "demo_documents": ("psnr",)}
# Whisper base (~1.5 s a clip) is covered by its own test; the integration run keeps the demo's other tasks
DEMO_SKIP_TASKS = {"demo_speech": ("asr_base",)}


_OUR_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _strays(baseline: set[int]) -> list:
    """Processes of this test process's group (its children and the orphans they left, reparented to init)
    that were not there when the session began, other than this process and its ancestors."""
    import psutil

    me = psutil.Process()
    group = os.getpgid(0)
    ancestors = {p.pid for p in me.parents()} | {me.pid}
    out = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if (proc.pid in ancestors or proc.pid in baseline or os.getpgid(proc.pid) != group
                    or proc.status() == psutil.STATUS_ZOMBIE):  # a zombie has exited; its parent reaps it
                continue
            command = " ".join(proc.info["cmdline"] or [])
            if proc.info["ppid"] == me.pid and any(helper in command for helper in _OUR_HELPERS):
                continue  # Python's own helpers of this process: they exit when it does
            out.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return out


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """The suite ends every process it started: after the last test, a process of our group still alive
    (given 10 s to exit) fails the session, named by its command line, and is then killed."""
    import time

    import psutil

    from mpq_assets.pipeline.workers import shutdown_workers

    baseline = {p.pid for p in _strays(set())}
    yield
    shutdown_workers()  # the package's shared encode/metric pool: what atexit would do, done here so it is checked
    deadline = time.monotonic() + 10
    while (left := _strays(baseline)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if left:
        names = sorted({" ".join(p.info["cmdline"] or [p.name()])[:160] for p in left})
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        pytest.fail(f"{len(left)} process(es) the tests started outlived the session:\n" + "\n".join(names),
                    pytrace=False)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of small models: they gain little from two and lose a lot
    on a busy machine (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def mpq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "mpq_home"
    monkeypatch.setenv("MPQ_HOME", str(home))
    for var in ("MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture()
def settings(mpq_home: Path) -> Settings:
    s = load_settings(dict(os.environ))
    s.ensure_dirs()
    return s


@pytest.fixture()
def store(settings: Settings) -> ResultsStore:
    return ResultsStore(settings.db_path, lock_timeout_s=30)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """Every asset of each demo experiment for the DEMO_PLAN partitions, on a real Dagster instance.

    Yields (settings, store, instance, results) with results keyed by (experiment, codec, bitrate).
    """
    import dataclasses

    from dagster import DagsterInstance, materialize

    from mpq_assets.defs.assets import ANALYSES, experiment_assets
    from mpq_assets.defs.demo import ensure_codec_partitions
    from mpq_assets.defs.partitions import partition_key
    from mpq_assets.defs.resources import MpqResource
    from mpq_assets.experiments import EXPERIMENTS

    home = tmp_path_factory.mktemp("mpq_home")
    resource = MpqResource(home=str(home))
    settings = resource.settings()
    with DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        results = {}
        for name, parts in DEMO_PLAN.items():
            exp = EXPERIMENTS[name]
            if name in DEMO_METRICS:
                exp = dataclasses.replace(exp, quality_metrics=DEMO_METRICS[name])
            if name in DEMO_SKIP_TASKS:
                exp = dataclasses.replace(exp, tasks=tuple(t for t in exp.tasks if t.name not in DEMO_SKIP_TASKS[name]))
            assets = experiment_assets(exp)
            whole = [a.key for a in assets if a.partitions_def is None and a.key.path[-1] not in ANALYSES]
            partitioned = [a.key for a in assets if a.partitions_def is not None]
            analyses = [a.key for a in assets if a.key.path[-1] in ANALYSES]
            assert materialize(assets, selection=whole, instance=instance, resources={"mpq": resource}).success
            ensure_codec_partitions(instance, exp, [c for c, _ in parts])
            for codec, bitrate in parts:
                r = materialize(assets, selection=partitioned, instance=instance,
                                partition_key=partition_key(codec, bitrate), resources={"mpq": resource})
                assert r.success
                results[(name, codec, bitrate)] = r
            r = materialize(assets, selection=analyses, instance=instance, resources={"mpq": resource})
            assert r.success
            results[(name, "analyses", "all")] = r  # the unpartitioned analyses, after the partitions
        yield settings, ResultsStore(settings.db_path), instance, results
