"""Integration: the whole image experiment on a real Dagster instance with the offline
EfficientNet-Lite0 and real metrics, two partitions (the session's ``demo_run``), every table checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpq_assets.experiments import EXPERIMENTS
from mpq_assets.pipeline.analyse import scores_table

EXP = EXPERIMENTS["demo_images"]
PARTS = [("jpeg", "20x"), ("jpeg", "200x")]
METRICS = set(EXP.quality_metrics)


@pytest.fixture(scope="module")
def run(demo_run):
    _, store, _, results = demo_run
    return store, {(c, b): r for (e, c, b), r in results.items() if e == "demo_images"}


def test_reference_predictions_are_real(run) -> None:
    store, _ = run
    every = store.query("SELECT task, count(*) AS n, any_value(model) AS model FROM predictions WHERE codec = "
                        "'reference' AND experiment = 'demo_images' GROUP BY task ORDER BY task")
    assert every.values.tolist() == [["classification", 11, "efficientnet-lite0"], ["lite1", 11, "efficientnet-lite1"],
                                     ["lite2", 11, "efficientnet-lite2"]]
    refs = store.query("SELECT item_id, prediction, model FROM predictions WHERE codec = 'reference' AND "
                       "experiment = 'demo_images' AND task = 'classification'")
    assert len(refs) == 11 and set(refs["model"]) == {"efficientnet-lite0"}
    top1 = {r.item_id: json.loads(r.prediction)["top1"] for r in refs.itertuples()}
    assert top1["coffee"] == "espresso"
    acc = store.query("SELECT metric, value, n FROM task_scores WHERE codec = 'reference' AND item_id IS NULL "
                      "AND experiment = 'demo_images' AND task = 'classification'")
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
        p = store.query("SELECT task, count(*) AS n FROM predictions WHERE experiment=? AND codec=? AND bitrate=? "
                        "GROUP BY task ORDER BY task", args)
        assert p.values.tolist() == [["classification", 11], ["lite1", 11], ["lite2", 11]]  # three classifiers
        for task in p["task"]:
            s = store.query("SELECT metric, value, n FROM task_scores WHERE experiment=? AND codec=? AND bitrate=? "
                            "AND task=? AND item_id IS NULL", [*args, task])
            agg = {r.metric: (r.value, r.n) for r in s.itertuples()}
            assert set(agg) == {"top1", "top5", "agreement", "kl"}
            assert agg["agreement"][1] == 11 and agg["top1"][1] == 5
            per_item = store.query("SELECT count(*) AS n FROM task_scores WHERE experiment=? AND codec=? AND "
                                   "bitrate=? AND task=? AND metric='agreement' AND item_id IS NOT NULL", [*args, task])
            assert per_item["n"][0] == 11
    assert store.query("SELECT count(*) AS n FROM errors WHERE experiment = 'demo_images'")["n"][0] == 0


def test_more_compression_hurts_quality_and_the_model(run) -> None:
    store, _ = run
    table = scores_table(store, "demo_images").set_index("point")
    lo, hi = table.loc["jpeg@20x"], table.loc["jpeg@200x"]
    assert lo["targets"] == "20x" and hi["targets"] == "200x" and lo["ratio"] < hi["ratio"]
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


def test_scores_refuse_predictions_of_another_model(demo_run) -> None:
    from mpq_assets.store.predictions import load_predictions

    settings, store, _, _ = demo_run
    got = load_predictions(store, settings, "demo_images", "classification", "jpeg", "20x", "efficientnet-lite0")
    assert len(got) == 11 and all(p.array is not None and p.array.shape == (1000,) for p in got.values())
    # the arrays stay in the partition's .npz until used: loading a partition holds none of them
    assert not any(isinstance(v, np.ndarray) for p in got.values() for v in vars(p).values())
    stored = np.load(settings.artifacts_dir / "demo_images" / "predictions" / "classification" / "jpeg__20x.npz")
    assert all(np.array_equal(p.array, stored[item_id]) for item_id, p in got.items())
    with pytest.raises(RuntimeError, match="were made by .*efficientnet-lite0.*re-materialise"):
        load_predictions(store, settings, "demo_images", "classification", "jpeg", "20x", "google/vit-base-patch16-224")


def test_ocr_on_the_rendered_documents(demo_run) -> None:
    _, store, _, _ = demo_run
    agg = store.query("SELECT codec, metric, value, n FROM task_scores WHERE experiment = 'demo_documents' AND "
                      "task = 'ocr' AND item_id IS NULL")
    got = {(r.codec, r.metric): (r.value, r.n) for r in agg.itertuples()}
    assert got[("reference", "cer")][1] == 18 and got[("reference", "cer")][0] < 0.03
    assert got[("jpeg", "cer")][0] > got[("reference", "cer")][0]  # 100:1 JPEG smears the letters
    assert 0 < got[("jpeg", "cer_ref")][0] < 0.5
    rows = store.query("SELECT count(*) AS n FROM task_scores WHERE experiment = 'demo_documents' AND codec = 'jpeg' "
                       "AND metric = 'cer' AND item_id IS NOT NULL")["n"][0]
    assert rows == 18
