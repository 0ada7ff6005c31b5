"""The analysis assets on the session's demo run: tables in DuckDB, plots in the materialisation
metadata, the static HTML report, and 'n/a with a reason' where the data cannot support a number."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from mpq_assets.experiments import EXPERIMENTS
from mpq_assets.pipeline import analyse
from mpq_assets_tests.conftest import DEMO_ITEMS, DEMO_PLAN

_PNG = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _metadata(results, experiment: str, asset: str) -> dict:
    run = results[(experiment, "analyses", "all")]
    (mat,) = run.asset_materializations_for_node(f"{experiment}__{asset}")
    return mat.metadata


def test_rate_curves_rows_and_reasons(demo_run) -> None:
    _, store, _, _ = demo_run
    rc = store.query("SELECT * FROM rate_curves WHERE experiment = 'demo_images' AND codec = 'jpeg'")
    exp = EXPERIMENTS["demo_images"]
    measures = set(rc["measure"])
    assert set(exp.quality_metrics) <= measures and "classification.top1" in measures
    assert (rc["points"] == len(DEMO_PLAN["demo_images"])).all()
    # jpeg is the image anchor: BD-rate 0 by definition
    assert (rc["bd_rate"] == 0).all() and (rc["bd_rate_note"] == "anchor codec").all()
    speech = store.query("SELECT * FROM rate_curves WHERE experiment = 'demo_speech'")
    opus = speech[(speech.codec == "opus") & (speech.measure == "asr.wer")].iloc[0]
    # one opus point against one mp3 point: never a number, always the reason
    assert np.isnan(opus["bd_rate"]) and "need 4" in opus["bd_rate_note"]
    assert opus["higher_is_better"] == False  # noqa: E712 (numpy bool)
    # 95%-kept ratio: top1 on 2 jpeg points, checked by hand from the stored partition scores
    top1 = rc[rc.measure == "classification.top1"].iloc[0]
    ref = store.query("SELECT value FROM task_scores WHERE experiment='demo_images' AND codec='reference' "
                      "AND task='classification' AND metric='top1' AND item_id IS NULL")["value"][0]
    pts = store.query("SELECT r.mean_ratio, t.value FROM rate_summary r JOIN task_scores t USING "
                      "(experiment, codec, bitrate) WHERE r.experiment='demo_images' AND r.codec='jpeg' AND "
                      "t.task='classification' AND t.metric='top1' AND t.item_id IS NULL")
    kept = pts[pts["value"] >= 0.95 * ref]["mean_ratio"]
    if len(kept):
        assert top1["kept_ratio"] == kept.max() and top1["reference"] == ref
    else:
        assert np.isnan(top1["kept_ratio"]) and "no ratio keeps" in top1["kept_note"]


def test_correlations_levels_methods_and_n(demo_run) -> None:
    _, store, _, _ = demo_run
    corr = store.query("SELECT * FROM correlations WHERE experiment = 'demo_images'")
    exp = EXPERIMENTS["demo_images"]
    assert set(corr["method"]) == {"pearson", "spearman", "kendall"}
    assert set(corr["level"]) == {"partition", "item"}
    assert set(corr["quality_metric"]) == set(exp.quality_metrics)
    part = corr[corr.level == "partition"]
    assert (part["n"] == 2).all() and part["r"].isna().all()  # two partitions: too few for a correlation
    item = corr[(corr.level == "item") & (corr.task_metric == "agreement")]
    assert (item["n"] == DEMO_ITEMS["demo_images"] * 2).all() and item["r"].notna().all()
    assert ((item["ci_low"] <= item["r"] + 1e-9) & (item["r"] <= item["ci_high"] + 1e-9)).all()
    # the ranking view: one rank-1 metric per (level, task metric, method) that has a real r; none where all are NULL
    ranked = store.query("SELECT * FROM correlation_ranking WHERE experiment = 'demo_images' AND rank = 1")
    finite = corr.dropna(subset=["r"])
    assert len(ranked) == len(finite.groupby(["level", "task", "task_metric", "method"])) > 0
    assert set(ranked["level"]) == {"item"} and ranked["r"].notna().all()


def test_plots_are_in_the_materialisation_metadata(demo_run) -> None:
    _, _, _, results = demo_run
    meta = _metadata(results, "demo_images", "rate_curves")
    plots = [v.value for k, v in meta.items() if k.startswith("plot_rate_")]
    assert plots and "bd_rates" in meta
    for md in plots:
        png = base64.b64decode(_PNG.search(md).group(1))
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.size[0] >= 300 and len(png) < 80_000
    corr_meta = _metadata(results, "demo_images", "correlations")
    assert "best_predictors" in corr_meta and any(k.startswith("plot_correlation") for k in corr_meta)


def test_html_report_holds_tables_and_plots(demo_run) -> None:
    settings, store, _, results = demo_run
    path = Path(_metadata(results, "demo_images", "report")["path"].value)
    assert path == settings.reports_dir / "demo_images.html" and path.is_file()
    text = path.read_text(encoding="utf-8")
    for heading in ("Rate curves", "Best quality predictor", "All correlations", "Failures"):
        assert heading in text
    assert len(_PNG.findall(text)) >= 2 and "<script" not in text
    index = (settings.reports_dir / "index.html").read_text(encoding="utf-8")
    for name in DEMO_PLAN:
        assert f"href='{name}.html'" in index


def test_analyses_of_an_empty_experiment_write_nothing_and_do_not_fail(store) -> None:
    exp = EXPERIMENTS["demo_images"]
    table, ranking = analyse.correlations(exp, store)
    assert table.empty and ranking.empty
    assert analyse.rate_curves(exp, store).empty
    assert analyse.figures(exp, store) == {}
    assert store.query("SELECT count(*) AS n FROM rate_curves")["n"][0] == 0
