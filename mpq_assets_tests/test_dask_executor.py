"""Partitions on a real Dask cluster (2 worker processes): every DuckDB row arrives exactly once, written
directly (shared disk, ResultsStore locking) or spooled and merged (no lockable shared disk), same rows."""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, execute_job
from dagster._config import validate_config
from dagster._core.definitions.reconstruct import build_reconstructable_job
from PIL import Image

from mpq_assets.defs.demo import ensure_codec_partitions
from mpq_assets.defs.partitions import codec_bitrate_partitions, partition_key
from mpq_assets.deploy.dask import (
    RunScopedDaskExecutor,
    dask_config_from_env,
    dask_executor,
    existing_cluster_config,
    local_cluster_config,
    pbs_cluster_config,
    slurm_cluster_config,
)
from mpq_assets.store import ResultsStore
from mpq_assets.store.spool import merge_spool, pending_units
from mpq_assets_tests.dask_location import EXPERIMENT, tiny_experiment

PARTITIONS = [("jpeg", "20x"), ("jpeg", "100x"), ("webp", "20x"), ("webp", "100x")]
N_ITEMS = 3
DOCS = Path(__file__).resolve().parent.parent / "docs" / "scale_out.md"


@pytest.fixture(scope="module")
def cluster():
    import dask
    from distributed import LocalCluster

    from mpq_assets.deploy.dask import WORKER_CONFIG

    saved = {var: os.environ.pop(var) for var in ("MPQ_SPOOL_DIR", "MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS")
             if var in os.environ}  # worker processes inherit this environment
    try:
        with dask.config.set(WORKER_CONFIG), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                          dashboard_address=":0") as c:
            yield c
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dask_images")
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:48, 0:48]
    for i in range(N_ITEMS):
        base = np.stack([(x * (3 + i)) % 256, (y * (2 + i)) % 256, ((x + y) * 2) % 256], axis=-1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{i}.png")
    return folder


def _materialise(address: str, home: Path, images: Path, spool: Path | None, dagster_home: Path) -> list[int]:
    """The dataset, then the four partitions as four concurrent runs on the cluster; returns the step pids."""
    kwargs = dict(address=address, home=str(home), images=str(images), spool_dir=str(spool) if spool else "")

    def recon(part: str):
        return build_reconstructable_job("mpq_assets_tests.dask_location", "tiny_job",
                                         reconstructable_kwargs={**kwargs, "part": part})

    parts = codec_bitrate_partitions("image")
    dagster_home.mkdir(parents=True)
    with DagsterInstance.local_temp(str(dagster_home)) as instance:
        with execute_job(recon("dataset"), instance) as result:
            assert result.success
        ensure_codec_partitions(instance, tiny_experiment(str(images)), [c for c, _ in PARTITIONS])
        ref = instance.get_ref()

        def run(codec: str, bitrate: str) -> tuple[bool, str]:
            with DagsterInstance.from_ref(ref) as inst:
                tags = parts.get_tags_for_partition_key(partition_key(codec, bitrate))
                with execute_job(recon("partitions"), inst, tags=tags) as result:
                    return result.success, result.run_id

        with ThreadPoolExecutor(len(PARTITIONS)) as pool:
            outcomes = list(pool.map(lambda p: run(*p), PARTITIONS))
        assert all(ok for ok, _ in outcomes), outcomes
        pids = []
        for _, run_id in outcomes:
            for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS):
                pids.append(entry.dagster_event.pid)
        return pids


def _check_exactly_once(store: ResultsStore) -> None:
    counts = store.query("SELECT codec, bitrate, item_id, count(*) AS n FROM compressed WHERE experiment = ? "
                         "GROUP BY ALL", [EXPERIMENT])
    assert len(counts) == len(PARTITIONS) * N_ITEMS and (counts["n"] == 1).all()
    assert set(zip(counts["codec"], counts["bitrate"], strict=True)) == set(PARTITIONS)
    quality = store.query("SELECT codec, bitrate, item_id, metric, count(*) AS n FROM quality WHERE experiment = ? "
                          "GROUP BY ALL", [EXPERIMENT])
    assert len(quality) == len(PARTITIONS) * N_ITEMS and (quality["n"] == 1).all()
    assert set(quality["metric"]) == {"psnr"}
    assert store.query("SELECT count(*) AS n FROM items WHERE experiment = ?", [EXPERIMENT])["n"][0] == N_ITEMS
    assert store.query("SELECT count(*) AS n FROM errors")["n"][0] == 0


def _contents(store: ResultsStore, home: Path) -> dict[str, pd.DataFrame]:
    """Every table, without what legitimately differs between two runs (timings, the home folder)."""
    out = {}
    for table in ("items", "compressed", "quality", "errors"):
        df = store.query(f"SELECT * FROM {table}").drop(columns=["created_at", "encode_s", "decode_s"],
                                                        errors="ignore")
        for col in ("original_path", "path", "decoded_path"):
            if col in df:
                df[col] = df[col].str.replace(str(home), "<home>", regex=False)
        out[table] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


@pytest.mark.slow
def test_partitions_on_dask_direct_and_spooled(cluster, images: Path, tmp_path: Path) -> None:
    address = cluster.scheduler_address
    # 1. workers share this disk: each writes DuckDB itself, the ResultsStore's lock serialises them
    direct_home = tmp_path / "direct"
    pids = _materialise(address, direct_home, images, None, tmp_path / "dagster_direct")
    assert len(set(pids)) == 2 and os.getpid() not in pids, pids  # both workers ran steps, none ran here
    direct = ResultsStore(direct_home / "mpq.duckdb")
    _check_exactly_once(direct)

    # 2. spool mode: no worker opens DuckDB; units (one per write call) are merged by one writer afterwards
    spool_home, spool = tmp_path / "spooled", tmp_path / "spooled" / "spool"
    _materialise(address, spool_home, images, spool, tmp_path / "dagster_spool")
    db = spool_home / "mpq.duckdb"
    assert not db.exists()
    units = pending_units(spool)
    assert len(units) == 1 + 2 * len(PARTITIONS)  # dataset, then compressed and quality per partition
    assert any(re.search(r"compressed~dask_tiny~webp~100x\+1\.parquet$", u.name) for u in units)
    _check_exactly_once(ResultsStore(db, spool_dir=spool))  # the workers' view: pending units over nothing

    summary = merge_spool(ResultsStore(db), spool)
    assert len(summary.merged) == len(units) and not summary.failed and not pending_units(spool)
    merged = ResultsStore(db)
    _check_exactly_once(merged)
    assert merge_spool(ResultsStore(db), spool).merged == []  # nothing left, nothing applied twice
    want, got = _contents(direct, direct_home), _contents(merged, spool_home)
    for table in want:
        pd.testing.assert_frame_equal(got[table], want[table], check_dtype=False, obj=table)


# -- the documented cluster configs -----------------------------------------------------------------------------
HPC = dict(queue="gpu", account="mpq-project", mpq_home="/scratch/mpq", venv="/scratch/mpq/.venv", jobs=4,
           gpus_per_job=1, memory="32GB", walltime="08:00:00", spool_dir="/scratch/mpq/spool")


def _documented(name: str) -> dict:
    """The YAML block after ``<!-- tested: NAME -->`` in docs/scale_out.md (run config for the executor)."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- tested: {re.escape(name)} -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, f"docs/scale_out.md has no tested block {name!r}"
    return yaml.safe_load(match.group(1))["execution"]["config"]


@pytest.mark.parametrize("name, config", [
    ("dask-local", local_cluster_config(n_workers=4)),
    ("dask-existing", existing_cluster_config("tcp://head-node:8786")),
    ("dask-slurm", slurm_cluster_config(**HPC, job_cpu=8)),
    ("dask-pbs", pbs_cluster_config(**HPC, ncpus=8)),
])
def test_documented_dask_configs_validate(name: str, config: dict) -> None:
    assert _documented(name) == config
    result = validate_config(dask_executor.config_schema.config_type, config)
    assert result.success, result.errors


def test_dask_code_location_reads_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    assert dask_config_from_env({}) == local_cluster_config(n_workers=2)
    assert dask_config_from_env({"MPQ_DASK_WORKERS": "6"}) == local_cluster_config(n_workers=6)
    monkeypatch.setenv("MPQ_DASK_SCHEDULER", "tcp://head-node:8786")
    monkeypatch.setenv("MPQ_DASK_GPUS", "1")
    import mpq_assets.deploy.dask_location as location

    job = importlib.reload(location).defs.resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "dask"
    assert job.executor_def.executor_creation_fn is dask_executor.executor_creation_fn
    tags = job.graph.node_named("demo_images__quality").tags
    assert json.loads(tags["dagster-dask/resource_requirements"]) == {"GPU": 1}
    assert "dagster-dask/resource_requirements" not in job.graph.node_named("demo_images__dataset").tags


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_jobqueue_configs_build_job_scripts(kind: str) -> None:
    """dask-jobqueue accepts the builder's arguments and renders the batch script (nothing is submitted)."""
    import dask_jobqueue

    config = slurm_cluster_config(**HPC, job_cpu=8) if kind == "slurm" else pbs_cluster_config(**HPC, ncpus=8)
    kwargs = RunScopedDaskExecutor(kind, config["cluster"][kind]).build_dict("mpq_job")
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    with cls(**{**kwargs, "n_workers": 0}) as cluster:
        script = cluster.job_script()
    assert "export DASK_DISTRIBUTED__WORKER__DAEMON=False" in script
    assert "export MPQ_HOME=/scratch/mpq" in script and "export MPQ_SPOOL_DIR=/scratch/mpq/spool" in script
    assert "source /scratch/mpq/.venv/bin/activate" in script
    assert "--nthreads 1" in script and "--resources GPU=1" in script
    if kind == "slurm":
        assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --cpus-per-task=8" in script
        assert "#SBATCH -A mpq-project" in script and "#SBATCH -p gpu" in script
    else:
        assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=32GB" in script and "#PBS -q gpu" in script
