"""The analysis assets on the session's demo run: tables in DuckDB, plots in the materialisation
metadata, the static HTML report, and 'n/a with a reason' where the data cannot support a number."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
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
    points = store.query("SELECT count(*) AS n FROM operating_points WHERE experiment = 'demo_images' AND "
                         "codec = 'jpeg'")["n"][0]
    assert (rc["points"] == points).all() and (rc["partitions"] == len(DEMO_PLAN["demo_images"])).all()
    assert (rc["merged"] == rc["partitions"] - rc["points"]).all()
    # jpeg is the image anchor: BD-rate 0 by definition
    assert (rc["bd_rate"] == 0).all() and (rc["bd_rate_note"] == "anchor codec").all()
    speech = store.query("SELECT * FROM rate_curves WHERE experiment = 'demo_speech'")
    mp3 = speech[(speech.codec == "mp3") & (speech.measure == "asr.wer")].iloc[0]
    # opus is the audio anchor; one mp3 point against one opus point: never a number, always the reason
    assert mp3["anchor"] == "opus" and np.isnan(mp3["bd_rate"]) and "need 4" in mp3["bd_rate_note"]
    assert mp3["higher_is_better"] == False  # noqa: E712 (numpy bool)
    # no curve here has 4 distinct points: no anchor qualifies for bd_rates
    assert store.query("SELECT count(*) AS n FROM bd_rates")["n"][0] == 0
    # the 95%-kept ratio is an achieved pooled ratio of one of jpeg's points, or NULL with the reason
    top1 = rc[rc.measure == "classification.top1"].iloc[0]
    ratios = store.query("SELECT ratio FROM operating_points WHERE experiment = 'demo_images' AND codec = 'jpeg'")
    if np.isfinite(top1["kept_ratio"]):
        assert top1["kept_ratio"] in ratios["ratio"].tolist()
    else:
        assert "keeps less than 95%" in top1["kept_note"]


def test_correlations_levels_methods_and_n(demo_run) -> None:
    _, store, _, _ = demo_run
    corr = store.query("SELECT * FROM correlations WHERE experiment = 'demo_images'")
    exp = EXPERIMENTS["demo_images"]
    assert set(corr["method"]) == {"pearson", "spearman", "kendall"}
    assert set(corr["level"]) == {"partition", "item"}
    assert set(corr["quality_metric"]) == set(exp.quality_metrics)
    part = corr[corr.level == "partition"]
    assert (part["n"] == 2).all() and part["r"].isna().all()  # two partitions: too few for a correlation
    # no row claims more points than there are distinct ones, nor more (item, point) pairs
    points = store.query("SELECT count(*) AS n, sum(items) AS pairs FROM operating_points "
                         "WHERE experiment = 'demo_images'").iloc[0]
    assert (part["n"] <= points["n"]).all() and (corr[corr.level == "item"]["n"] <= points["pairs"]).all()
    item = corr[(corr.level == "item") & (corr.task_metric == "agreement")]
    assert (item["n"] == DEMO_ITEMS["demo_images"] * 2).all() and item["r"].notna().all()
    assert ((item["ci_low"] <= item["r"] + 1e-9) & (item["r"] <= item["ci_high"] + 1e-9)).all()
    # the ranking view: one rank-1 metric per (level, task metric, method) that has a real r of the expected sign
    ranked = store.query("SELECT * FROM correlation_ranking WHERE experiment = 'demo_images' AND rank = 1")
    right = corr[corr["r"] * corr["expected_sign"] > 0]
    assert len(ranked) == len(right.groupby(["level", "task", "task_metric", "method"])) > 0
    assert set(ranked["level"]) == {"item"} and (ranked["r"] * ranked["expected_sign"] > 0).all()
    # item level: every item at each of the two points, and a note that intervals resample items
    assert (item["note"] == f"{DEMO_ITEMS['demo_images']} items; intervals resample items").all()


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
    for heading in ("Operating points per codec", "Rate curves", "BD-rate against every anchor",
                    "Best quality predictor", "All correlations", "Where compression helped",
                    "Paired differences to the uncompressed items", "Failures"):
        assert heading in text
    # plots first, interactive, with everything inline (no CDN, no other file): BokehJS and the figures' data
    assert text.index("<h2>Plots</h2>") < text.index("Operating points per codec")
    assert "Bokeh" in text and not re.search(r"<script[^>]+src=", text)
    assert text.count("class='plot'") >= 4 and "classification.agreement vs compression ratio" in text
    assert "<ol class='foot'>" in text  # the n/a reasons: footnotes, not long cells
    index = (settings.reports_dir / "index.html").read_text(encoding="utf-8")
    for name in DEMO_PLAN:
        assert f"href='{name}.html'" in index
    # headless Chromium draws them: each plot a Bokeh canvas in the rendered DOM
    from mpq_assets_tests.test_ui_e2e import browse, chromium

    chromium()
    shown = browse(path.as_uri(), settings.home / "chromium", "--dump-dom", budget_ms=10_000)
    assert shown.returncode == 0 and shown.stdout.count("bk-Figure") >= 4, shown.stderr[-2000:]


@pytest.mark.fast
def test_report_footnotes_replace_long_notes() -> None:
    from mpq_assets.analysis.report import footnoted

    frame = pd.DataFrame({"codec": ["a", "b", "c"], "kept_note": ["too few points", None, "too few points"],
                          "bd_rate_note": ["", "anchor codec", "x"]})
    out, texts = footnoted(frame)
    assert texts == ["too few points", "anchor codec", "x"]
    assert out["kept_note"].tolist() == ["[1]", "", "[1]"] and out["bd_rate_note"].tolist() == ["", "[2]", "[3]"]


def test_analyses_of_an_empty_experiment_write_nothing_and_do_not_fail(store) -> None:
    exp = EXPERIMENTS["demo_images"]
    table, ranking = analyse.correlations(exp, store)
    assert table.empty and ranking.empty
    assert analyse.rate_curves(exp, store).empty
    assert analyse.figures(exp, store) == {}
    assert store.query("SELECT count(*) AS n FROM rate_curves")["n"][0] == 0


def test_compression_gains_on_the_demo_run(demo_run) -> None:
    _, store, _, results = demo_run
    for name in DEMO_PLAN:
        paired = store.query("SELECT * FROM paired_differences WHERE experiment = ?", [name])
        points = store.query("SELECT count(*) AS n FROM operating_points WHERE experiment = ?", [name])["n"][0]
        meta = _metadata(results, name, "compression_gains")
        assert meta["rows"].value == len(paired) and "compression_helped" in meta
        labelled = store.query("SELECT count(*) AS n FROM task_scores WHERE experiment = ? AND codec = 'reference' "
                               "AND item_id IS NOT NULL", [name])["n"][0]
        if not labelled:  # demo_music's separator has no offline weights here: no task rows, an empty table
            assert paired.empty
            continue
        assert len(paired) and (paired.groupby(["task", "metric"]).size() == points).all(), name
        # with every item scored on both sides, each side is the stored partition score
        stored = store.query("SELECT point, task, metric, value, reference_value FROM rate_task WHERE "
                             "experiment = ?", [name])
        both = paired.merge(stored, on=["point", "task", "metric"])
        full = both[both["note"].isna()]
        assert len(full) and np.allclose(full["compressed"], full["value"]), name
        assert np.allclose(full["reference"], full["reference_value"]), name
        assert (full["ci_low"] <= full["difference"] + 1e-12).all() and (full["difference"] <= full["ci_high"]
                                                                        + 1e-12).all()
        assert not (paired["helped"] & paired["hurt"]).any()
    top1 = store.query("SELECT * FROM paired_differences WHERE experiment = 'demo_images' AND metric = 'top1'")
    assert (top1["items"] == 5).all()  # the five labelled photos


def test_which_model_breaks_first(demo_run) -> None:
    settings, store, _, _ = demo_run
    view = store.query("SELECT * FROM model_degradation WHERE experiment = 'demo_images' AND metric = 'agreement'")
    curves = store.query("SELECT codec, split_part(measure, '.', 1) AS task, kept_ratio FROM rate_curves WHERE "
                         "experiment = 'demo_images' AND measure LIKE '%.agreement'")
    assert len(view) == len(curves) and (view["models"] == 3).all()
    assert set(view["model"]) == {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"}
    for codec, group in view.groupby("codec"):
        kept = group["kept_ratio"].fillna(0)
        # rank 1 is the model with the lowest kept ratio: the one that breaks first
        assert set(group.loc[group["breaks_first"] == 1, "kept_ratio"].fillna(0)) == {kept.min()}, codec
    assert "kl" not in set(store.query("SELECT DISTINCT metric FROM model_degradation")["metric"])
    report = (settings.reports_dir / "demo_images.html").read_text(encoding="utf-8")
    assert "Which model breaks first" in report
