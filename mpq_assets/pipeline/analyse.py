"""The analysis steps: correlations and rate curves of one experiment, read from DuckDB with SQL.

What they count is the ``operating_points`` view: a point on a curve is a **distinct operating point**
(one codec's partitions whose items carry identical bitstreams are one point, whatever their target) at
its **achieved pooled rate** (summed raw bytes over summed bytes written; never the target, never a mean
of per-item ratios). So n in a partition-level correlation is distinct points, at item level distinct
(item, point) pairs, and item-level intervals resample items. Every table says how many partitions its
points stand for, how many were merged as duplicates and how many missed their target.

Both steps read every partition that exists (not only complete codecs), write unpartitioned tables
through the ResultsStore, and return the frames the assets turn into metadata and plots. Numbers that
cannot be computed are NULL with a note saying why; nothing is estimated.
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
from mpq_assets.tasks.base import Score, Task
from mpq_assets.tasks.registry import TASKS

KEPT_FRACTION = 0.95
MIN_BD_POINTS = 4  # distinct points a curve needs for BD-rate (after the monotonic fit, see analysis.bdrate)
KEYS = ["codec", "point"]

CORRELATION_COLUMNS = ["level", "task", "task_metric", "quality_metric", "method", "r", "ci_low", "ci_high", "n",
                       "partitions", "merged", "missed", "expected_sign", "note"]
RATE_CURVE_COLUMNS = ["codec", "measure", "kind", "higher_is_better", "rate_unit", "points", "partitions", "merged",
                      "missed", "anchor", "bd_rate", "bd_rate_note", "reference", "kept_fraction", "kept_ratio",
                      "kept_note"]
BD_RATE_COLUMNS = ["measure", "kind", "anchor", "codec", "anchor_points", "points", "bd_rate", "bd_rate_note"]


@dataclass
class Observations:
    """What the experiment's operating points hold, wide: one column per measure."""

    points: pd.DataFrame                # codec, point, ratio, rate, partitions, merged, missed, <measure>...
    items: pd.DataFrame                 # codec, point, item_id, <measure>...
    task_rows: pd.DataFrame             # per-item task rows, long: codec, point, item_id, measure, value, n
    task_measures: list[str]            # 'task.metric' columns
    quality_metrics: list[str]
    rate_unit: str                      # bpp | kbps
    reference: dict[str, float] = field(default_factory=dict)  # task measure -> score on uncompressed items
    higher_is_better: dict[str, bool] = field(default_factory=dict)


def task_class(experiment: Experiment, measure: str) -> type[Task] | None:
    """The registry class of the task a 'task.metric' measure belongs to."""
    task_name = measure.partition(".")[0]
    for spec in experiment.tasks:
        if spec.name == task_name and spec.task in TASKS:
            return TASKS[spec.task]
    return None


def measure_direction(experiment: Experiment, measure: str) -> bool:
    """Whether a larger value is better, from the metric's or the task's declared info."""
    if measure in METRICS:
        return METRICS[measure].info.higher_is_better
    cls = task_class(experiment, measure)
    return cls.info.higher_is_better.get(measure.partition(".")[2], True) if cls else True


def self_score(experiment: Experiment, measure: str) -> float | None:
    """A label-free measure's score of the uncompressed item's prediction against itself: its reference."""
    cls = task_class(experiment, measure)
    return cls.info.self_scores.get(measure.partition(".")[2]) if cls else None


def is_error_rate(experiment: Experiment, measure: str) -> bool:
    """Whether the measure is a rate whose complement is an accuracy (WER -> word accuracy)."""
    cls = task_class(experiment, measure)
    return bool(cls) and measure.partition(".")[2] in cls.info.error_rates


def _wide(long: pd.DataFrame, index: list[str]) -> pd.DataFrame:
    if long.empty:
        return pd.DataFrame(columns=index)
    return long.pivot_table(index=index, columns="measure", values="value", aggfunc="mean").reset_index()


def load_observations(experiment: Experiment, store: ResultsStore) -> Observations:
    """Every quality and task measure per distinct operating point and per (item, point), with pooled rates.

    Merged partitions carry the same bitstreams, so their scores agree; a point takes the value of its
    lowest-target partition that has one (a mean of equal floats could break ties by rounding)."""
    name = experiment.name
    rate_unit = "bpp" if experiment.modality == "image" else "kbps"
    points = store.query(f"SELECT codec, point, ratio, {rate_unit} AS rate, partitions, merged, "
                         "missed_partitions AS missed, missed_items FROM operating_points WHERE experiment = ?",
                         [name])
    scores = store.query(
        "SELECT p.codec, p.point, s.kind, s.measure, arg_min(s.value, p.target_ratio) AS value "
        "FROM partition_scores s JOIN partition_points p USING (experiment, codec, bitrate) WHERE s.experiment = ? "
        "AND s.value IS NOT NULL AND isfinite(s.value) GROUP BY ALL", [name])
    item_long = store.query(
        "SELECT p.codec, p.point, q.item_id, 'quality' AS kind, q.metric AS measure, "
        "arg_min(q.value, p.target_ratio) AS value, 1 AS n FROM quality q "
        "JOIN partition_points p USING (experiment, codec, bitrate) "
        "WHERE q.experiment = ? AND q.value IS NOT NULL AND isfinite(q.value) GROUP BY ALL "
        "UNION ALL SELECT p.codec, p.point, t.item_id, 'task' AS kind, t.task || '.' || t.metric AS measure, "
        "arg_min(t.value, p.target_ratio) AS value, arg_min(coalesce(t.n, 1), p.target_ratio) AS n "
        "FROM task_scores t "
        "JOIN partition_points p USING (experiment, codec, bitrate) WHERE t.experiment = ? "
        "AND t.item_id IS NOT NULL AND t.value IS NOT NULL AND isfinite(t.value) GROUP BY ALL", [name, name])
    reference = store.query("SELECT task || '.' || metric AS measure, value FROM task_scores WHERE experiment = ? "
                            "AND codec = 'reference' AND item_id IS NULL", [name])
    kinds = dict(zip(scores["measure"], scores["kind"], strict=False))
    task_measures = sorted(m for m, k in kinds.items() if k == "task")
    quality = [m for m in experiment.quality_metrics if kinds.get(m) == "quality"]
    return Observations(
        points=points.merge(_wide(scores, KEYS), on=KEYS, how="inner").sort_values(["codec", "ratio"],
                                                                                   ignore_index=True),
        items=_wide(item_long, [*KEYS, "item_id"]),
        task_rows=item_long[item_long["kind"] == "task"].drop(columns="kind").reset_index(drop=True),
        task_measures=task_measures,
        quality_metrics=quality,
        rate_unit=rate_unit,
        reference={**{m: s for m in task_measures if (s := self_score(experiment, m)) is not None},
                   **{r.measure: float(r.value) for r in reference.itertuples() if r.value is not None}},
        higher_is_better={m: measure_direction(experiment, m) for m in task_measures + quality},
    )


def _span(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _restricted_task_value(cls: type[Task] | None, measure: str, rows: pd.DataFrame) -> float | None:
    """The task's own aggregate of ``measure`` over the per-item ``rows`` of one point (all its metrics)."""
    if cls is None:
        return None
    task = measure.partition(".")[0]
    scores = [Score(m.partition(".")[2], float(v), str(i), n=int(round(n)))
              for m, v, i, n in rows[["measure", "value", "item_id", "n"]].itertuples(index=False, name=None)
              if m.partition(".")[0] == task]
    return cls.aggregate(measure.partition(".")[2], scores)


def partition_pair(obs: Observations, experiment: Experiment, task_measure: str,
                   quality_metric: str) -> tuple[pd.DataFrame, str | None]:
    """Per point, the task measure and the quality metric over the items both sides have, and a note.

    A quality mean over every item would otherwise be set against a task score over some of them (the five
    labelled photos of eleven, MS-SSIM skipping small images, an item that failed one side). The quality
    side is its mean over the shared items; the task side is its stored aggregate where its items all have
    the metric, else the task's own aggregate recomputed over the shared items (``Task.aggregate``). Where
    a task cannot recompute it (mIoU pools confusion matrices) both sides stay over their own items and the
    note says so."""
    t, q = task_measure, quality_metric
    base = obs.points[[*KEYS, "partitions", "missed", t, q]].copy()
    items = obs.items
    if t not in items.columns or q not in items.columns or items[t].notna().sum() == 0:
        return base, f"{t} has no per-item scores: {q} is its mean over every item with a value"
    grouped = items.assign(has_t=items[t].notna(), has_q=items[q].notna())
    grouped["both"] = grouped["has_t"] & grouped["has_q"]
    stats = grouped.groupby(KEYS).agg(t_items=("has_t", "sum"), q_items=("has_q", "sum"),
                                      both=("both", "sum")).reset_index()
    q_shared = grouped[grouped["both"]].groupby(KEYS)[q].mean().rename("q_shared").reset_index()
    frame = base.merge(stats, on=KEYS, how="left").merge(q_shared, on=KEYS, how="left")
    with_items = frame["t_items"].fillna(0) > 0
    frame.loc[with_items, q] = frame.loc[with_items, "q_shared"]
    cls = task_class(experiment, t)
    kept_apart = 0
    for i in frame.index[with_items & (frame["both"] < frame["t_items"])]:
        key = (frame.at[i, "codec"], frame.at[i, "point"])
        shared = grouped[(grouped["codec"] == key[0]) & (grouped["point"] == key[1]) & grouped["both"]]["item_id"]
        rows = obs.task_rows[(obs.task_rows["codec"] == key[0]) & (obs.task_rows["point"] == key[1])
                             & obs.task_rows["item_id"].isin(set(shared))]
        value = _restricted_task_value(cls, t, rows)
        if value is None:  # the sides stay over their own items
            kept_apart += 1
            frame.loc[i, q] = obs.points.loc[(obs.points["codec"] == key[0]) & (obs.points["point"] == key[1]),
                                             q].iloc[0]
        else:
            frame.loc[i, t] = value
    differ = with_items & ((frame["both"] < frame["t_items"]) | (frame["both"] < frame["q_items"]))
    note = None
    if kept_apart:
        note = (f"{t} cannot be recomputed on the items {q} has (the task pools them); the sides cover different "
                f"items at {kept_apart} of {len(frame)} points")
    elif differ.any():
        note = (f"{t} and {q} over the items both have: {_span(frame.loc[with_items, 'both'])} per point "
                f"(of {_span(frame.loc[with_items, 'q_items'])} with {q}, {_span(frame.loc[with_items, 't_items'])} "
                f"with {t})")
    return frame[[*KEYS, "partitions", "missed", t, q]], note


def _counted(points: pd.DataFrame) -> dict[str, int]:
    """What a set of distinct points stands for: partitions, duplicates merged, partitions that missed."""
    partitions = int(points["partitions"].sum())
    return dict(partitions=partitions, merged=partitions - len(points), missed=int(points["missed"].sum()))


def expected_sign(obs: Observations, task_measure: str, quality_metric: str) -> int:
    """+1 where better quality should go with a better task score as the directions are declared, else -1."""
    same = obs.higher_is_better.get(task_measure, True) == obs.higher_is_better.get(quality_metric, True)
    return 1 if same else -1


def correlations(experiment: Experiment, store: ResultsStore, *, n_boot: int = 1000,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task x quality correlations at partition and item level, written to ``correlations``.

    Returns (correlations, ranking). Partition level correlates distinct operating points (as the paper
    correlates codec x ratio means), over the items both measures have; item level correlates each item's
    quality with its own task score at each point, with intervals that resample items."""
    obs = load_observations(experiment, store)
    frames = []
    for t in obs.task_measures:
        for q in obs.quality_metrics:
            if t not in obs.points.columns or q not in obs.points.columns:
                continue
            sign = expected_sign(obs, t, q)
            pair, note = partition_pair(obs, experiment, t, q)
            used = pair.dropna(subset=[t, q])
            part = correlation_table(pair, [t], [q], level="partition", n_boot=n_boot, seed=seed)
            frames.append(part.assign(**_counted(used), expected_sign=sign, note=note))
            if t in obs.items.columns and q in obs.items.columns:
                cells = obs.items[[*KEYS, "item_id", t, q]].dropna(subset=[t, q])
                if len(cells):
                    item = correlation_table(cells, [t], [q], level="item", group_by="item_id", n_boot=n_boot,
                                             seed=seed)
                    seen = obs.points.merge(cells[KEYS].drop_duplicates(), on=KEYS)
                    frames.append(item.assign(**_counted(seen), expected_sign=sign,
                                              note=f"{cells['item_id'].nunique()} items; intervals resample items"))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CORRELATION_COLUMNS)
    table = table[CORRELATION_COLUMNS]
    store.replace_partition("correlations", {"experiment": experiment.name}, table)
    ranking = rank_quality_metrics(table) if len(table) else pd.DataFrame()
    return table, ranking


def _kept(measure: str, higher: bool, error_rate: bool, ratios: np.ndarray, values: np.ndarray,
          reference: float | None) -> tuple[float | None, str | None]:
    metric = measure.partition(".")[2]
    if not higher and not error_rate:
        return None, f"{metric} is lower-is-better without a bounded complement: no 'share of reference kept'"
    if reference is None or not np.isfinite(reference):
        return None, "no score on the uncompressed items (reference_predictions / task_scores 'reference')"
    if not higher:
        values, reference = 1.0 - values, 1.0 - reference  # word/character accuracy
    if reference <= 0:
        return None, f"reference score is {reference:g}: a share of it is meaningless"
    kept = highest_ratio_kept(ratios, values, reference, fraction=KEPT_FRACTION)
    if kept is None:
        return None, f"the lowest achieved ratio already keeps less than {KEPT_FRACTION:.0%} of the reference score"
    return kept, None


def _bd(base: pd.DataFrame, curve: pd.DataFrame, measure: str, higher: bool) -> tuple[float | None, str | None]:
    res = bd_rate(base["rate"].to_numpy(float), base[measure].to_numpy(float), curve["rate"].to_numpy(float),
                  curve[measure].to_numpy(float), higher_is_better=higher, min_points=MIN_BD_POINTS)
    return res.value, res.reason


def rate_curves(experiment: Experiment, store: ResultsStore) -> pd.DataFrame:
    """Each codec's curve of every measure over its distinct points: BD-rate against the experiment's anchor
    and the highest achieved ratio keeping 95% of the reference score, written to ``rate_curves``; BD-rate
    against every codec with at least ``MIN_BD_POINTS`` distinct points, written to ``bd_rates``.

    Task curves are fitted monotonically before BD-rate (see ``analysis.bdrate``); too few points or no
    overlap give NULL with the reason in ``bd_rate_note``."""
    obs = load_observations(experiment, store)
    anchor = experiment.bd_anchor
    rows, bd_rows = [], []
    for measure in obs.task_measures + obs.quality_metrics:
        if measure not in obs.points.columns:
            continue
        higher = obs.higher_is_better.get(measure, True)
        kind = "task" if measure in obs.task_measures else "quality"
        curves = {c: g.dropna(subset=[measure, "rate"]) for c, g in obs.points.groupby("codec")}
        curves = {c: g for c, g in sorted(curves.items()) if len(g)}
        ref = obs.reference.get(measure) if kind == "task" else None
        for codec, g in curves.items():
            if codec == anchor:
                bd, note = 0.0, "anchor codec"
            elif anchor not in curves:
                bd, note = None, f"anchor codec {anchor} has no points with {measure}"
            else:
                bd, note = _bd(curves[anchor], g, measure, higher)
            kept, kept_note = (_kept(measure, higher, is_error_rate(experiment, measure), g["ratio"].to_numpy(float),
                                     g[measure].to_numpy(float), ref)
                               if kind == "task" else (None, "quality measures have no reference score"))
            rows.append(dict(codec=codec, measure=measure, kind=kind, higher_is_better=higher,
                             rate_unit=obs.rate_unit, points=len(g), **_counted(g), anchor=anchor, bd_rate=bd,
                             bd_rate_note=note, reference=ref, kept_fraction=KEPT_FRACTION if kind == "task" else None,
                             kept_ratio=kept, kept_note=kept_note))
        for a, base in curves.items():
            if len(base) < MIN_BD_POINTS:
                continue
            for codec, g in curves.items():
                if codec != a:
                    bd, note = _bd(base, g, measure, higher)
                    bd_rows.append(dict(measure=measure, kind=kind, anchor=a, codec=codec, anchor_points=len(base),
                                        points=len(g), bd_rate=bd, bd_rate_note=note))
    table = pd.DataFrame(rows, columns=RATE_CURVE_COLUMNS)
    keys = {"experiment": experiment.name}
    store.replace_partitions([("rate_curves", keys, table),
                              ("bd_rates", keys, pd.DataFrame(bd_rows, columns=BD_RATE_COLUMNS))])
    return table


def point_summary(store: ResultsStore, experiment: str) -> pd.DataFrame:
    """Per codec: partitions, the distinct operating points they are, duplicates merged, and misses."""
    return store.query(
        "SELECT codec, sum(partitions)::BIGINT AS partitions, count(*) AS points, sum(merged)::BIGINT AS merged, "
        "sum(missed_partitions)::BIGINT AS missed_partitions, "
        "count(*) FILTER (WHERE missed_items > 0) AS missed_points "
        "FROM operating_points WHERE experiment = ? GROUP BY codec ORDER BY codec", [experiment])


def scores_table(store: ResultsStore, experiment: str, measures: Sequence[str] = ()) -> pd.DataFrame:
    """One row per distinct operating point: the targets merged into it, achieved pooled rate, items that
    missed its lowest target, mean quality metrics and task scores (``measures``: a subset)."""
    points = store.query("SELECT codec, point, bitrates AS targets, lowest_target, ratio, bpp, kbps, "
                         "missed_items AS missed FROM operating_points WHERE experiment = ?", [experiment])
    scores = store.query("SELECT p.codec, p.point, s.measure, arg_min(s.value, p.target_ratio) AS value "
                         "FROM partition_scores s "
                         "JOIN partition_points p USING (experiment, codec, bitrate) WHERE s.experiment = ? "
                         "GROUP BY ALL", [experiment])
    if points.empty or scores.empty:
        return pd.DataFrame()
    if measures:
        scores = scores[scores["measure"].isin(measures)]
    wide = _wide(scores, KEYS)
    wide = wide[[*KEYS, *[m for m in measures if m in wide.columns]]] if measures else wide
    table = points.merge(wide, on=KEYS, how="left").sort_values(["codec", "lowest_target"])
    return table.drop(columns=["lowest_target"]).dropna(axis=1, how="all").reset_index(drop=True)


def reference_scores(store: ResultsStore, experiment: str) -> pd.DataFrame:
    return store.query("SELECT task, metric, value, n, model FROM task_scores WHERE experiment = ? AND "
                       "codec = 'reference' AND item_id IS NULL ORDER BY task, metric", [experiment])


def _label(measure: str, higher: bool) -> str:
    return f"{measure} ({'higher' if higher else 'lower'} is better)"


def figures(experiment: Experiment, store: ResultsStore, *, max_curves: int = 4,
            kinds: tuple[str, ...] = ("rate", "correlation")) -> dict[str, bytes]:
    """PNG plots from what is stored: rate-task curves over distinct points (kind "rate", headline task
    measures first), the partition-level correlation heat map (Spearman) and the scatter of the best
    predictor of the first task measure (kind "correlation"). Each asset asks only for its own kind, so no
    plot is drawn twice."""
    from mpq_assets.analysis import correlation_heatmap, rate_curve_plot, scatter_plot

    obs = load_observations(experiment, store)
    points = obs.points
    out: dict[str, bytes] = {}
    if points.empty:
        return out
    headline = [m for m in experiment.headline if m in obs.task_measures]
    task_measures = (headline + [m for m in obs.task_measures if m not in headline])[:max_curves]
    rate_label = f"achieved rate ({obs.rate_unit}, pooled)"
    for measure in task_measures + obs.quality_metrics[:1] if "rate" in kinds else []:
        curves = points[["codec", "rate", "ratio", "missed", measure]].dropna().rename(columns={measure: "value"})
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
            corr, title=f"{experiment.name}: Spearman r over distinct operating points")
        top = task_measures[0] if task_measures else None
        best = store.query("SELECT quality_metric FROM correlation_ranking WHERE experiment = ? AND level = "
                           "'partition' AND method = 'spearman' AND rank = 1 AND task || '.' || task_metric = ?",
                           [experiment.name, top])
        if top and len(best):
            q = str(best["quality_metric"].iloc[0])
            pair, _ = partition_pair(obs, experiment, top, q)
            pts = pair[["codec", q, top]].dropna().rename(columns={q: "x", top: "y"})
            out[f"scatter_{q}_{top}"] = scatter_plot(
                pts, x_label=_label(q, obs.higher_is_better.get(q, True)),
                y_label=_label(top, obs.higher_is_better.get(top, True)),
                title=f"{experiment.name}: best predictor of {top}")
    return out


def _point_details(store: ResultsStore, name: str) -> pd.DataFrame:
    """Per distinct point: the targets it stands for, its items and the settings rate control chose."""
    return store.query(
        "SELECT o.codec, o.point, replace(o.bitrates, ',', ', ') AS targets, o.items, "
        "(SELECT string_agg(DISTINCT c.setting, ', ' ORDER BY c.setting) FROM compressed c JOIN partition_points pp "
        " USING (experiment, codec, bitrate) WHERE pp.experiment = o.experiment AND pp.point = o.point "
        " AND pp.codec = o.codec) AS setting FROM operating_points o WHERE o.experiment = ?", [name])


def interactive_figures(experiment: Experiment, store: ResultsStore, *, max_curves: int = 6) -> dict[str, object]:
    """The report's interactive plots (Bokeh): each headline task measure and quality metric against the
    achieved ratio, then the scatter of each plotted task measure's best predictor with its r and interval."""
    from mpq_assets.analysis.interactive import rate_figure, scatter_figure

    obs = load_observations(experiment, store)
    if obs.points.empty:
        return {}
    points = obs.points.merge(_point_details(store, experiment.name), on=KEYS, how="left")
    points["setting"] = points["setting"].fillna("").str.slice(0, 80)
    headline = [m for m in experiment.headline if m in obs.task_measures or m in obs.quality_metrics]
    tasks = [m for m in headline if m in obs.task_measures] or obs.task_measures
    measures = list(dict.fromkeys(tasks[:max_curves] + [m for m in headline if m in obs.quality_metrics]
                                  + obs.quality_metrics[:1]))
    out: dict[str, object] = {}
    for measure in measures:
        frame = points[["codec", "point", "targets", "ratio", "rate", "missed", "items", "setting", measure]]
        frame = frame.rename(columns={measure: "value"}).dropna(subset=["value"])
        if len(frame):
            out[f"rate_{measure}"] = rate_figure(
                frame, measure=measure, label=_label(measure, obs.higher_is_better.get(measure, True)),
                rate_unit=obs.rate_unit, reference=obs.reference.get(measure),
                title=f"{measure} vs compression ratio")
    best = store.query("SELECT task || '.' || task_metric AS measure, quality_metric, r, ci_low, ci_high, n "
                       "FROM correlation_ranking WHERE experiment = ? AND level = 'partition' AND method = "
                       "'spearman' AND rank = 1", [experiment.name])
    for row in best[best["measure"].isin(tasks[:max_curves])].itertuples():
        pair, _ = partition_pair(obs, experiment, row.measure, row.quality_metric)
        pts = pair[["codec", "point", row.quality_metric, row.measure]].merge(
            obs.points[["codec", "point", "ratio"]], on=KEYS).rename(columns={row.quality_metric: "x",
                                                                             row.measure: "y"}).dropna()
        if len(pts) >= 3:
            interval = "" if pd.isna(row.ci_low) else f" [{row.ci_low:.2f}, {row.ci_high:.2f}]"
            out[f"scatter_{row.measure}"] = scatter_figure(
                pts, x_label=row.quality_metric, y_label=row.measure,
                title=f"{row.measure} vs its best predictor, {row.quality_metric}",
                subtitle=f"Spearman r = {row.r:.2f}{interval} (95% bootstrap) over {row.n} distinct points")
    return out


def write_report(experiment: Experiment, store: ResultsStore, reports_dir: Path,
                 figs: dict[str, bytes] | None = None) -> Path:
    """The experiment's static HTML report (same tables and plots as the assets) under ``reports_dir``."""
    from mpq_assets.analysis.report import experiment_page, write_experiment_report

    name = experiment.name
    curves = store.query("SELECT * EXCLUDE (experiment, created_at) FROM rate_curves WHERE experiment = ? "
                         "ORDER BY kind DESC, measure, codec", [name])
    bd = store.query("SELECT * EXCLUDE (experiment, created_at) FROM bd_rates WHERE experiment = ? "
                     "ORDER BY kind DESC, measure, anchor, codec", [name])
    ranking = store.query("SELECT level, task, task_metric, method, quality_metric, r, ci_low, ci_high, n, "
                          "partitions, merged, missed, note FROM correlation_ranking WHERE experiment = ? AND "
                          "rank = 1 ORDER BY level DESC, task, task_metric, method", [name])
    wrong = store.query("SELECT level, task, task_metric, method, quality_metric, r, n FROM correlation_ranking "
                        "WHERE experiment = ? AND wrong_sign ORDER BY level DESC, task, task_metric, method, "
                        "quality_metric", [name])
    corr = store.query("SELECT * EXCLUDE (experiment, created_at) FROM correlations WHERE experiment = ? "
                       "ORDER BY level DESC, task, task_metric, method, quality_metric", [name])
    failures = store.query("SELECT stage, codec, bitrate, item_id, error FROM failures WHERE experiment = ?", [name])
    gains = store.query("SELECT * EXCLUDE (experiment) FROM compression_gains WHERE experiment = ?", [name])
    paired = store.query("SELECT task, metric, point, ratio, items, reference, compressed, difference, ci_low, "
                         "ci_high, p_value, q_value, helped, hurt, note FROM paired_differences WHERE experiment = ? "
                         "ORDER BY task, metric, codec, ratio", [name])
    models = store.query("SELECT metric, codec, breaks_first, task, model, reference, kept_ratio, points FROM "
                         "model_degradation WHERE experiment = ? AND models > 1 ORDER BY metric, codec, breaks_first, "
                         "task", [name])
    tasks = store.query("SELECT codec, breaks_first, task, model, first_measure, kept_ratio, measures FROM "
                        "task_degradation WHERE experiment = ? AND tasks > 1 ORDER BY codec, breaks_first, task",
                        [name])
    gains_title = "Where compression helped: better than on the uncompressed items, paired 95% interval above 0"
    curve_title = "Rate curves: BD-rate and the highest ratio keeping 95% of the reference"
    tables = {
        "Operating points per codec": point_summary(store, name),
        "Task scores on the uncompressed items": reference_scores(store, name),
        "Rate, quality and task scores per distinct operating point": scores_table(store, name),
        curve_title: curves,
        "BD-rate against every anchor with enough distinct points": bd,
        "Best quality predictor of each task metric": ranking,
        "Correlations with the wrong sign (never ranked)": wrong,
        "All correlations": corr,
        "Which model breaks first: the highest ratio each keeps 95% of its own uncompressed score": models,
        "Which task breaks first: the highest ratio each task keeps 95% of its uncompressed score on all its "
        "measures": tasks,
        gains_title: gains,
        "Paired differences to the uncompressed items": paired,
        "Failures": failures,
    }
    notes = {
        "Operating points per codec":
            "partitions of one codec whose items carry identical bitstreams are one point (merged); every "
            "analysis counts points, at their achieved pooled rate. missed_partitions: partitions with items "
            "that missed their target; missed_points: points whose items missed even their lowest target.",
        curve_title:
            f"BD-rate against {experiment.bd_anchor} in percent (negative: fewer bits for the same score), on "
            "monotonic fits of each curve over distinct points; kept_ratio: the highest achieved ratio up to "
            "which every point keeps 95%; n/a rows say why in bd_rate_note / kept_note.",
        "Best quality predictor of each task metric":
            "rank 1 by |r| among correlations with the sign the metrics' directions imply; n: distinct points "
            "(partition) or (item, point) pairs (item); ci_low/ci_high: bootstrap 95% interval (item level "
            "resamples items).",
    }
    if experiment.training is not None:
        from mpq_assets.pipeline.training import matrix_table

        matrix_title = "Trained on x tested on: accuracy, mean ± sd over seeds"
        tables = {matrix_title: matrix_table(store, name), **tables}
        notes[matrix_title] = (
            f"{experiment.training.recipe} trained on each variant of the training split (rows) and tested on "
            "each variant of the test items (columns); training and test voices or images are disjoint.")
    notes[gains_title] = (
        "difference = compressed - reference over the same items (the task's own aggregate on both sides); "
        "ci_low/ci_high resample items, the same draw on both sides; q_value: Benjamini-Hochberg over every "
        "task measure and point of the experiment, the expected share of chance findings among those flagged.")
    page = experiment_page(f"MPQ report: {name}", experiment.description, tables,
                           figs if figs is not None else figures(experiment, store), notes,
                           interactive=interactive_figures(experiment, store))
    return write_experiment_report(reports_dir, name, page)
