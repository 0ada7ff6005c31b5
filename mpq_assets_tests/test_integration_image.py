"""Integration: the whole image experiment on a real Dagster instance with the offline
EfficientNet-Lite0 and real metrics, two partitions, every table checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from mpq_assets.assets import experiment_assets
from mpq_assets.demo import ensure_codec_partitions, scores_table
from mpq_assets.experiments import EXPERIMENTS
from mpq_assets.partitions import partition_key
from mpq_assets.resources import MpqResource
from mpq_assets.store import ResultsStore

EXP = EXPERIMENTS["demo_images"]
PARTS = [("jpeg", "20x"), ("jpeg", "200x")]
METRICS = set(EXP.quality_metrics)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("mpq_home")
    resource = MpqResource(home=str(home))
    assets = experiment_assets(EXP)
    keys = {a.key.path[-1]: a.key for a in assets}
    assert set(keys) == {"dataset", "compressed", "quality", "reference_predictions", "predictions", "task_scores"}
    with DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster_home"))) as instance:
        r = materialize(assets, selection=[keys["dataset"], keys["reference_predictions"]], instance=instance,
                        resources={"mpq": resource})
        assert r.success
        ensure_codec_partitions(instance, EXP, ["jpeg"])
        results = {}
        for codec, bitrate in PARTS:
            results[(codec, bitrate)] = materialize(
                assets, selection=[keys[k] for k in ("compressed", "quality", "predictions", "task_scores")],
                partition_key=partition_key(codec, bitrate), instance=instance, resources={"mpq": resource})
            assert results[(codec, bitrate)].success
        yield ResultsStore(resource.settings().db_path), results


def test_reference_predictions_are_real(run) -> None:
    store, _ = run
    refs = store.query("SELECT item_id, prediction, model FROM predictions WHERE codec = 'reference'")
    assert len(refs) == 11 and set(refs["model"]) == {"efficientnet-lite0"}
    top1 = {r.item_id: json.loads(r.prediction)["top1"] for r in refs.itertuples()}
    assert top1["coffee"] == "espresso"
    acc = store.query("SELECT metric, value, n FROM task_scores WHERE codec = 'reference' AND item_id IS NULL")
    by = {r.metric: (r.value, r.n) for r in acc.itertuples()}
    assert by["top1"][1] == 5 and by["top1"][0] >= 0.6  # 5 hand-labelled photos
    assert by["top5"][0] >= by["top1"][0]


def test_every_table_has_the_partitions_rows(run) -> None:
    store, _ = run
    for codec, bitrate in PARTS:
        args = ["demo_images", codec, bitrate]
        comp = store.query("SELECT item_id, decoded_path FROM compressed WHERE experiment=? AND codec=? AND "
                           "bitrate=?", args)
        assert len(comp) == 11 and all(Path(p).is_file() for p in comp["decoded_path"])
        q = store.query("SELECT metric, count(*) AS n, count(DISTINCT item_id) AS d FROM quality "
                        "WHERE experiment=? AND codec=? AND bitrate=? GROUP BY metric", args)
        assert set(q["metric"]) == METRICS and (q["n"] == 11).all() and (q["d"] == 11).all()
        p = store.query("SELECT count(*) AS n FROM predictions WHERE experiment=? AND codec=? AND bitrate=?", args)
        assert p["n"][0] == 11
        s = store.query("SELECT metric, value, n FROM task_scores WHERE experiment=? AND codec=? AND bitrate=? "
                        "AND item_id IS NULL", args)
        agg = {r.metric: (r.value, r.n) for r in s.itertuples()}
        assert set(agg) == {"top1", "top5", "agreement", "kl"}
        assert agg["agreement"][1] == 11 and agg["top1"][1] == 5
        per_item = store.query("SELECT count(*) AS n FROM task_scores WHERE experiment=? AND codec=? AND "
                               "bitrate=? AND metric='agreement' AND item_id IS NOT NULL", args)
        assert per_item["n"][0] == 11
    assert store.query("SELECT count(*) AS n FROM errors")["n"][0] == 0


def test_more_compression_hurts_quality_and_the_model(run) -> None:
    store, _ = run
    table = scores_table(store, "demo_images").set_index("bitrate")
    lo, hi = table.loc["20x"], table.loc["200x"]
    assert lo["psnr"] > hi["psnr"] + 3
    assert lo["lpips_alex"] < hi["lpips_alex"]
    assert lo["ms_ssim"] > hi["ms_ssim"]
    assert lo["classification.kl"] < hi["classification.kl"]
    assert lo["classification.agreement"] >= hi["classification.agreement"]


def test_metadata_reports_means(run) -> None:
    _, results = run
    r = results[("jpeg", "20x")]
    meta = r.asset_materializations_for_node("demo_images__quality")[0].metadata
    assert meta["items"].value == 11 and meta["psnr"].value > 25
    meta = r.asset_materializations_for_node("demo_images__task_scores")[0].metadata
    assert 0 <= meta["classification.agreement"].value <= 1
