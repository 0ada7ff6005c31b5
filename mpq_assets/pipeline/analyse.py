"""The analysis steps: correlations and rate curves of one experiment, read from DuckDB with SQL.

Both steps read every partition that exists (not only complete codecs), write one
unpartitioned table through the ResultsStore, and return the frames the assets
turn into metadata and plots. Numbers that cannot be computed are NULL with a
note saying why; nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mpq_assets.analysis import bd_rate, correlation_table, highest_ratio_kept, rank_quality_metrics
from mpq_assets.experiments import Experiment
from mpq_assets.quality.registry import METRICS
from mpq_assets.store import ResultsStore
from mpq_assets.tasks.registry import TASKS

ANCHORS = {"image": "jpeg", "audio": "mp3"}  # BD-rate anchors: the paper's traditional codec per modality
KEPT_FRACTION = 0.95
ERROR_RATES = ("wer", "cer", "wer_ref", "cer_ref")  # kept-ratio uses their accuracy 1 - rate
# label-free measures compare with the task's output on the uncompressed item: that output scores
# exactly this against itself, so it is their reference
SELF_SCORES = {"agreement": 1.0, "miou_ref": 1.0, "wer_ref": 0.0, "cer_ref": 0.0}

CORRELATION_COLUMNS = ["level", "task", "task_metric", "quality_metric", "method", "r", "ci_low", "ci_high", "n"]
RATE_CURVE_COLUMNS = ["codec", "measure", "kind", "higher_is_better", "rate_unit", "points", "anchor", "bd_rate",
                      "bd_rate_note", "reference", "kept_fraction", "kept_ratio", "kept_note"]


@dataclass
class Observations:
    """What the experiment's partitions hold, wide: one column per measure."""

    partitions: pd.DataFrame            # codec, bitrate, ratio, rate, <measure>...
    items: pd.DataFrame                 # codec, bitrate, item_id, <measure>...
    task_measures: list[str]            # 'task.metric' columns
    quality_metrics: list[str]
    rate_unit: str                      # bpp | kbps
    reference: dict[str, float] = field(default_factory=dict)  # task measure -> score on uncompressed items
    higher_is_better: dict[str, bool] = field(default_factory=dict)


def measure_direction(experiment: Experiment, measure: str) -> bool:
    """Whether a larger value is better, from the metric's or the task's declared info."""
    if measure in METRICS:
        return METRICS[measure].info.higher_is_better
    task_name, _, metric = measure.partition(".")
    for spec in experiment.tasks:
        if spec.name == task_name and spec.task in TASKS:
            return TASKS[spec.task].info.higher_is_better.get(metric, True)
    return True


def _wide(long: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    if long.empty:
        return pd.DataFrame(columns=index)
    return long.pivot_table(index=index, columns="measure", values="value", aggfunc="mean").reset_index()


def load_observations(experiment: Experiment, store: ResultsStore) -> Observations:
    """Partition means and per-item values of every quality and task measure, with achieved rates."""
    name = experiment.name
    rate_unit = "bpp" if experiment.modality == "image" else "kbps"
    rates = store.query(f"SELECT codec, bitrate, mean_ratio AS ratio, mean_{rate_unit} AS rate FROM rate_summary "
                        "WHERE experiment = ?", [name])
    scores = store.query("SELECT codec, bitrate, kind, measure, value FROM partition_scores WHERE experiment = ? "
                         "AND codec <> 'reference' AND value IS NOT NULL AND isfinite(value)", [name])
    item_long = store.query(
        "SELECT codec, bitrate, item_id, metric AS measure, value FROM quality WHERE experiment = ? "
        "AND value IS NOT NULL AND isfinite(value) "
        "UNION ALL SELECT codec, bitrate, item_id, task || '.' || metric AS measure, value FROM task_scores "
        "WHERE experiment = ? AND codec <> 'reference' AND item_id IS NOT NULL AND value IS NOT NULL "
        "AND isfinite(value)", [name, name])
    reference = store.query("SELECT task || '.' || metric AS measure, value FROM task_scores WHERE experiment = ? "
                            "AND codec = 'reference' AND item_id IS NULL", [name])
    partitions = rates.merge(_wide(scores, ["codec", "bitrate"]), on=["codec", "bitrate"], how="inner")
    kinds = dict(zip(scores["measure"], scores["kind"], strict=False))
    task_measures = sorted(m for m, k in kinds.items() if k == "task")
    quality = [m for m in experiment.quality_metrics if kinds.get(m) == "quality"]
    measures = task_measures + quality
    return Observations(
        partitions=partitions,
        items=_wide(item_long, ["codec", "bitrate", "item_id"]),
        task_measures=task_measures,
        quality_metrics=quality,
        rate_unit=rate_unit,
        reference={**{m: SELF_SCORES[m.partition(".")[2]] for m in task_measures if m.partition(".")[2] in SELF_SCORES},
                   **{r.measure: float(r.value) for r in reference.itertuples() if r.value is not None}},
        higher_is_better={m: measure_direction(experiment, m) for m in measures},
    )


def correlations(experiment: Experiment, store: ResultsStore, *, n_boot: int = 1000,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task x quality correlations at partition and item level, written to ``correlations``.

    Returns (correlations, ranking). Partition level correlates codec x ratio means (as the
    paper); item level correlates each item's quality with its own task score.
    """
    obs = load_observations(experiment, store)
    frames = []
    if obs.task_measures and obs.quality_metrics:
        for level, frame in (("partition", obs.partitions), ("item", obs.items)):
            task_cols = [m for m in obs.task_measures if m in frame.columns]
            quality_cols = [m for m in obs.quality_metrics if m in frame.columns]
            if len(frame) and task_cols and quality_cols:
                frames.append(correlation_table(frame, task_cols, quality_cols, level=level, n_boot=n_boot,
                                                seed=seed))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CORRELATION_COLUMNS)
    table = table[CORRELATION_COLUMNS]
    store.replace_partition("correlations", {"experiment": experiment.name}, table)
    ranking = rank_quality_metrics(table) if len(table) else pd.DataFrame()
    return table, ranking


def _kept(measure: str, higher: bool, ratios: np.ndarray, values: np.ndarray,
          reference: float | None) -> tuple[float | None, str | None]:
    metric = measure.partition(".")[2]
    if not higher and metric not in ERROR_RATES:
        return None, f"{metric} is lower-is-better without a bounded complement: no 'share of reference kept'"
    if reference is None or not np.isfinite(reference):
        return None, "no score on the uncompressed items (reference_predictions / task_scores 'reference')"
    if not higher:
        values, reference = 1.0 - values, 1.0 - reference  # word/character accuracy
    if reference <= 0:
        return None, f"reference score is {reference:g}: a share of it is meaningless"
    kept = highest_ratio_kept(ratios, values, reference, fraction=KEPT_FRACTION)
    if kept is None:
        return None, f"no ratio keeps {KEPT_FRACTION:.0%} of the reference score"
    return kept, None


def rate_curves(experiment: Experiment, store: ResultsStore) -> pd.DataFrame:
    """BD-rate of each codec against the anchor and the highest ratio keeping 95% of the reference score.

    Task curves are fitted monotonically before BD-rate (see ``analysis.bdrate``); too few
    points or no overlap give NULL with the reason in ``bd_rate_note``.
    """
    obs = load_observations(experiment, store)
    anchor = ANCHORS[experiment.modality]
    parts = obs.partitions
    rows = []
    for measure in obs.task_measures + obs.quality_metrics:
        if measure not in parts.columns:
            continue
        higher = obs.higher_is_better.get(measure, True)
        kind = "task" if measure in obs.task_measures else "quality"
        curves = {c: g.dropna(subset=[measure, "rate"]) for c, g in parts.groupby("codec")}
        base = curves.get(anchor)
        for codec, g in sorted(curves.items()):
            if g.empty:
                continue
            if codec == anchor:
                bd, note = 0.0, "anchor codec"
            elif base is None or base.empty:
                bd, note = None, f"anchor codec {anchor} has no partitions with {measure}"
            else:
                res = bd_rate(base["rate"].to_numpy(float), base[measure].to_numpy(float), g["rate"].to_numpy(float),
                              g[measure].to_numpy(float), higher_is_better=higher)
                bd, note = res.value, res.reason
            ref = obs.reference.get(measure) if kind == "task" else None
            kept, kept_note = (_kept(measure, higher, g["ratio"].to_numpy(float), g[measure].to_numpy(float), ref)
                               if kind == "task" else (None, "quality measures have no reference score"))
            rows.append(dict(codec=codec, measure=measure, kind=kind, higher_is_better=higher,
                             rate_unit=obs.rate_unit, points=len(g), anchor=anchor, bd_rate=bd, bd_rate_note=note,
                             reference=ref, kept_fraction=KEPT_FRACTION if kind == "task" else None,
                             kept_ratio=kept, kept_note=kept_note))
    table = pd.DataFrame(rows, columns=RATE_CURVE_COLUMNS)
    store.replace_partition("rate_curves", {"experiment": experiment.name}, table)
    return table


def scores_table(store: ResultsStore, experiment: str, measures: Sequence[str] = ()) -> pd.DataFrame:
    """codec x ratio -> achieved rate, mean quality metrics and partition task scores (``measures``: a subset)."""
    rate = store.query("SELECT codec, bitrate, target_ratio, mean_ratio, mean_bpp, mean_kbps, missed_target "
                       "FROM rate_summary WHERE experiment = ?", [experiment])
    scores = store.query("SELECT codec, bitrate, measure, value FROM partition_scores WHERE experiment = ?",
                         [experiment])
    if rate.empty or scores.empty:
        return pd.DataFrame()
    if measures:
        scores = scores[scores["measure"].isin(measures)]
    wide = scores.pivot_table(index=["codec", "bitrate"], columns="measure", values="value").reset_index()
    wide = wide[["codec", "bitrate", *[m for m in measures if m in wide.columns]]] if measures else wide
    table = rate.merge(wide, on=["codec", "bitrate"], how="left").sort_values(["codec", "target_ratio"])
    table = table.drop(columns=["target_ratio"]).dropna(axis=1, how="all")
    return table.rename(columns={"mean_ratio": "ratio", "mean_bpp": "bpp", "mean_kbps": "kbps",
                                 "missed_target": "missed"})


def reference_scores(store: ResultsStore, experiment: str) -> pd.DataFrame:
    return store.query("SELECT task, metric, value, n, model FROM task_scores WHERE experiment = ? AND "
                       "codec = 'reference' AND item_id IS NULL ORDER BY task, metric", [experiment])


def _label(measure: str, higher: bool) -> str:
    return f"{measure} ({'higher' if higher else 'lower'} is better)"


def figures(experiment: Experiment, store: ResultsStore, *, max_curves: int = 4,
            kinds: tuple[str, ...] = ("rate", "correlation")) -> dict[str, bytes]:
    """PNG plots from what is stored: rate-task curves (kind "rate", headline task measures first), the
    partition-level correlation heat map (Spearman) and quality-vs-task scatter of the best predictor
    (kind "correlation"). Each asset asks only for its own kind, so no plot is drawn twice."""
    from mpq_assets.analysis import correlation_heatmap, rate_curve_plot, scatter_plot

    obs = load_observations(experiment, store)
    parts = obs.partitions
    out: dict[str, bytes] = {}
    if parts.empty:
        return out
    headline = [m for m in experiment.headline if m in obs.task_measures]
    task_measures = (headline + [m for m in obs.task_measures if m not in headline])[:max_curves]
    rate_label = f"achieved rate ({obs.rate_unit})"
    for measure in task_measures + obs.quality_metrics[:1] if "rate" in kinds else []:
        curves = parts[["codec", "rate", measure]].dropna().rename(columns={measure: "value"})
        if len(curves):
            out[f"rate_{measure}"] = rate_curve_plot(
                curves, rate_label=rate_label, value_label=_label(measure, obs.higher_is_better.get(measure, True)),
                title=f"{experiment.name}: {measure} vs rate", reference=obs.reference.get(measure))
    if "correlation" not in kinds:
        return out
    corr = store.query("SELECT task || '.' || task_metric AS task_measure, quality_metric, r FROM correlations "
                       "WHERE experiment = ? AND level = 'partition' AND method = 'spearman'", [experiment.name])
    if len(corr):
        out["correlation_heatmap"] = correlation_heatmap(
            corr, title=f"{experiment.name}: Spearman r, codec x ratio means")
        top = task_measures[0] if task_measures else None
        best = corr[corr["task_measure"] == top].assign(a=lambda d: d["r"].abs()).sort_values("a", ascending=False)
        if top and len(best) and np.isfinite(best["a"].iloc[0]):
            q = str(best["quality_metric"].iloc[0])
            pts = parts[["codec", q, top]].dropna().rename(columns={q: "x", top: "y"})
            out[f"scatter_{q}_{top}"] = scatter_plot(
                pts, x_label=_label(q, obs.higher_is_better.get(q, True)),
                y_label=_label(top, obs.higher_is_better.get(top, True)),
                title=f"{experiment.name}: best predictor of {top}")
    return out


def write_report(experiment: Experiment, store: ResultsStore, reports_dir: Path,
                 figs: dict[str, bytes] | None = None) -> Path:
    """The experiment's static HTML report (same tables and plots as the assets) under ``reports_dir``."""
    from mpq_assets.analysis.report import experiment_page, write_experiment_report

    name = experiment.name
    curves = store.query("SELECT * EXCLUDE (experiment, created_at) FROM rate_curves WHERE experiment = ? "
                         "ORDER BY kind DESC, measure, codec", [name])
    ranking = store.query("SELECT level, task, task_metric, method, quality_metric, r, ci_low, ci_high, n "
                          "FROM correlation_ranking WHERE experiment = ? AND rank = 1 ORDER BY level DESC, task, "
                          "task_metric, method", [name])
    corr = store.query("SELECT * EXCLUDE (experiment, created_at) FROM correlations WHERE experiment = ? "
                       "ORDER BY level DESC, task, task_metric, method, quality_metric", [name])
    failures = store.query("SELECT stage, codec, bitrate, item_id, error FROM failures WHERE experiment = ?", [name])
    tables = {
        "Task scores on the uncompressed items": reference_scores(store, name),
        "Rate, quality and task scores per codec x target ratio": scores_table(store, name),
        "Rate curves: BD-rate and the highest ratio keeping 95% of the reference": curves,
        "Best quality predictor of each task metric": ranking,
        "All correlations": corr,
        "Failures": failures,
    }
    notes = {
        "Rate curves: BD-rate and the highest ratio keeping 95% of the reference":
            f"BD-rate against {ANCHORS[experiment.modality]} in percent (negative: fewer bits for the same score), "
            "on monotonic fits of each curve; n/a rows say why in bd_rate_note / kept_note.",
        "Best quality predictor of each task metric":
            "rank 1 by |r| per level, task metric and method; ci_low/ci_high: bootstrap 95% interval.",
    }
    page = experiment_page(f"MPQ report: {name}", experiment.description, tables,
                           figs if figs is not None else figures(experiment, store), notes)
    return write_experiment_report(reports_dir, name, page)
