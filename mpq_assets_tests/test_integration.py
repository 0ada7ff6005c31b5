"""Integration: real Dagster instance, real codecs, real DuckDB file.

Uses the session's ``demo_run`` (conftest): ``dataset`` and two partitions of
each demo experiment on a real Dagster instance; checks rows, files and
materialisation metadata; also loads the code location the way ``dagster dev``
does and runs the Dagster CLI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from mpq_assets.defs.assets import experiment_assets
from mpq_assets.defs.partitions import partition_key
from mpq_assets.defs.resources import MpqResource
from mpq_assets.experiments import EXPERIMENTS
from mpq_assets.settings import REPO_ROOT, Settings
from mpq_assets.store import ResultsStore
from mpq_assets_tests.conftest import DEMO_ITEMS as EXPECTED_ITEMS
from mpq_assets_tests.conftest import DEMO_PLAN as PLAN


@pytest.fixture(scope="module")
def materialised(demo_run):
    return demo_run


def test_dataset_rows_and_cached_originals(materialised) -> None:
    settings, store, _, _ = materialised
    items = store.query("SELECT experiment, count(*) AS n, count(DISTINCT item_id) AS d, "
                        "count(label) AS labelled FROM items GROUP BY experiment")
    got = {r.experiment: (r.n, r.d) for r in items.itertuples()}
    assert got == {k: (v, v) for k, v in EXPECTED_ITEMS.items()}
    labelled = dict(zip(items["experiment"], items["labelled"], strict=True))
    assert labelled["demo_images"] == 5 and labelled["demo_speech"] == 24
    paths = store.query("SELECT original_path FROM items")["original_path"]
    assert all(Path(p).is_file() and Path(p).is_relative_to(settings.artifacts_dir) for p in paths)
    speech = store.query("SELECT DISTINCT sample_rate, channels FROM items WHERE experiment='demo_speech'")
    assert speech.values.tolist() == [[48000, 1]]


def test_compressed_rows_files_and_rates(materialised) -> None:
    settings, store, _, _ = materialised
    df = store.query("SELECT * FROM compressed")
    for (name, codec, bitrate) in [(n, c, b) for n, parts in PLAN.items() for c, b in parts]:
        part = df[(df.experiment == name) & (df.codec == codec) & (df.bitrate == bitrate)]
        assert len(part) == EXPECTED_ITEMS[name], (name, codec, bitrate)
        assert part["item_id"].is_unique
        for row in part.itertuples():
            path = Path(row.path)
            assert path.is_file() and path.stat().st_size == row.bytes
            assert path.suffix == {"jpeg": ".jpg", "webp": ".webp", "opus": ".opus", "mp3": ".mp3",
                                   "aac": ".m4a"}[codec] or path.suffix == ".aac"
            assert row.achieved_ratio == pytest.approx(
                store.query("SELECT raw_bytes FROM items WHERE experiment=? AND item_id=?",
                            [name, row.item_id])["raw_bytes"][0] / row.bytes)
            if row.rate_met:
                assert row.bytes <= row.budget_bytes
            # bits per pixel / kbps: bytes x 8 over the item's pixels / seconds (never bytes per pixel)
            item = store.query("SELECT width * height AS pixels, duration_s FROM items WHERE experiment=? AND "
                               "item_id=?", [name, row.item_id]).iloc[0]
            if EXPERIMENTS[name].modality == "image":
                assert row.bpp == pytest.approx(8 * path.stat().st_size / item["pixels"], rel=1e-12)
                assert row.pixels == item["pixels"] and row.raw_bytes == 3 * item["pixels"]
            else:
                assert row.kbps == pytest.approx(8 * path.stat().st_size / item["duration_s"] / 1000, rel=1e-12)
            assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    speech_opus = df[(df.experiment == "demo_speech") & (df.codec == "opus")]
    assert speech_opus["rate_met"].all()  # 7.7 kbps is above Opus's 6 kbps floor
    assert speech_opus["kbps"].between(5, 7.7).all()
    assert df[(df.experiment == "demo_images")]["bpp"].notna().all()
    music_opus = df[(df.experiment == "demo_music") & (df.codec == "opus")]
    assert not music_opus["rate_met"].any()  # 1.4 kbps is below any Opus rate: flagged
    assert (store.query("SELECT count(*) AS n FROM errors")["n"][0]) == 0


def test_materialisation_metadata_and_rematerialise_is_idempotent(materialised) -> None:
    settings, store, instance, results = materialised
    r = results[("demo_speech", "opus", "100x")]
    meta = r.asset_materializations_for_node("demo_speech__compressed")[0].metadata
    assert meta["items"].value == 24 and meta["errors"].value == 0 and meta["missed_target"].value == 0
    pooled = store.query("SELECT ratio FROM rate_summary WHERE experiment='demo_speech' AND codec='opus' AND "
                         "bitrate='100x'")["ratio"][0]
    assert 90 < meta["ratio"].value < 140 and meta["ratio"].value == pytest.approx(pooled, abs=0.01)
    exp = EXPERIMENTS["demo_speech"]
    again = materialize(experiment_assets(exp), selection=[AssetKey(["demo_speech", "compressed"])],
                        instance=instance, partition_key=partition_key("opus", "100x"),
                        resources={"mpq": MpqResource(home=str(settings.home))})
    assert again.success
    n = store.query("SELECT count(*) AS n FROM compressed WHERE experiment='demo_speech' AND codec='opus'")
    assert n["n"][0] == 24


def _env(home: Path, dagster_home: Path) -> dict[str, str]:
    env = dict(os.environ, MPQ_HOME=str(home), DAGSTER_HOME=str(dagster_home))
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def test_code_location_loads_and_cli_materialises(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    home, dh = tmp_path / "home", tmp_path / "dh"
    dh.mkdir()
    env = _env(home, dh)
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([str(dagster), "asset", "materialize", "-m", "mpq_assets.definitions",
                          "--select", "demo_images/dataset"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ResultsStore(home / "mpq.duckdb").query("SELECT count(*) AS n FROM items")["n"][0] == 11
    # a codec partition on a fresh instance with no daemon: refused until `mpq partitions sync` registers it
    part = [str(dagster), "asset", "materialize", "-m", "mpq_assets.definitions", "--select",
            "demo_images/compressed", "--partition", "20x|jpeg"]
    out = subprocess.run(part, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Could not find a partition" in out.stdout + out.stderr
    sync = subprocess.run([str(Path(sys.executable).with_name("mpq")), "partitions", "sync"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert sync.returncode == 0 and "image_codecs: added" in sync.stdout and "jpeg" in sync.stdout
    out = subprocess.run(part, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ResultsStore(home / "mpq.duckdb").query("SELECT count(*) AS n FROM compressed WHERE codec = 'jpeg' "
                                                   "AND bitrate = '20x'")["n"][0] == 11


def test_settings_resource_points_everything_at_home(materialised) -> None:
    settings, _, _, _ = materialised
    assert isinstance(settings, Settings)
    assert settings.db_path.parent == settings.home and settings.db_path.is_file()


def readme_sql() -> list[str]:
    """The SQL cookbook of docs/results.md, block by block."""
    text = (REPO_ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```sql\n")[1:]]


def test_readme_cookbook_queries_run_on_demo_output(materialised) -> None:
    settings, store, _, _ = materialised
    queries = readme_sql()
    assert len(queries) >= 3
    cli = Path(sys.executable).with_name("duckdb")
    for sql in queries:
        df = store.query(sql)
        # no failures here, and two partitions per codec are too few points for any BD-rate anchor
        if "failures" not in sql and "bd_rates" not in sql:
            assert len(df) > 0, sql
        # the DuckDB shell (duckdb-cli 1.5) reads the file and runs the same query to the same row count
        run = subprocess.run([str(cli), "-readonly", "-csv", "-noheader", str(settings.db_path), "-c", sql],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, (sql, run.stderr)
        assert len(run.stdout.splitlines()) >= len(df), sql


def test_mpq_query_cli_is_read_only_and_exports(materialised, capsys: pytest.CaptureFixture[str]) -> None:
    from mpq_assets.cli import main

    settings, _, _, _ = materialised
    db = str(settings.db_path)
    assert main(["query", "SELECT codec, items FROM rate_summary WHERE experiment='demo_speech' ORDER BY codec",
                 "--db", db, "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["codec,items", "mp3,24", "opus,24"]
    assert main(["query", "DELETE FROM items", "--db", db]) == 1
    assert "read-only" in capsys.readouterr().err


def test_a_deployment_home_holds_every_result_artifact_and_model(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``MpqResource(home=X)`` while the environment names another home: the database, the originals,
    bitstreams, reconstructions, prediction arrays, the converted LPIPS backbone and the report all land
    under X, including what the worker processes write; nothing lands under the environment's home."""
    from mpq_assets.defs.demo import ensure_codec_partitions
    from mpq_assets.experiments import Experiment, TaskSpec
    from mpq_assets.media.image import write_image_png

    elsewhere, home, folder = tmp_path / "env_home", tmp_path / "deployment", tmp_path / "photos"
    monkeypatch.setenv("MPQ_HOME", str(elsewhere))
    for var in ("MPQ_DB", "MPQ_ARTIFACTS", "MPQ_MODELS"):
        monkeypatch.delenv(var, raising=False)
    rng = np.random.default_rng(5)
    for k in range(3):
        write_image_png(folder / f"p{k}.png", rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    exp = Experiment("home_check", "image", "image_folder", {"root": str(folder)},
                     tasks=(TaskSpec("classification", "classification", {"model": "efficientnet-lite0"}),),
                     quality_metrics=("psnr", "lpips_alex"))
    assets = experiment_assets(exp)
    resources = {"mpq": MpqResource(home=str(home))}
    with DagsterInstance.ephemeral() as instance:
        assert materialize(assets, selection=[a.key for a in assets if a.partitions_def is None
                                              and a.key.path[-1] in ("dataset", "reference_predictions")],
                           instance=instance, resources=resources).success
        ensure_codec_partitions(instance, exp, ["jpeg"])
        assert materialize(assets, selection=[a.key for a in assets if a.partitions_def is not None],
                           partition_key=partition_key("jpeg", "20x"), instance=instance, resources=resources).success
        assert materialize(assets, selection=[a.key for a in assets if a.key.path[-1] == "report"],
                           instance=instance, resources=resources).success
    assert not elsewhere.exists(), sorted(str(p) for p in elsewhere.rglob("*"))
    expected = ["mpq.duckdb", "artifacts/home_check/originals/p0.png",
                "artifacts/home_check/compressed/jpeg/20x/p0.jpg",
                "artifacts/home_check/compressed/jpeg/20x/decoded/p0.png",
                "artifacts/home_check/predictions/classification/jpeg__20x.npz", "models/lpips/alex.safetensors",
                "reports/home_check.html"]
    assert [p for p in expected if not (home / p).is_file()] == []
    rows = ResultsStore(home / "mpq.duckdb").query("SELECT metric, count(*) AS n FROM quality GROUP BY metric "
                                                   "ORDER BY metric")
    assert rows.values.tolist() == [["lpips_alex", 3], ["psnr", 3]]
