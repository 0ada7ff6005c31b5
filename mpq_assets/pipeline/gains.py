"""The compression-gains step: every task measure at every distinct operating point against the same items
uncompressed, as a paired difference with an item-resampling interval, written to ``paired_differences``.

The measures are those scored against labels on the uncompressed items too (``task_scores`` rows with codec
'reference' per item). A label-free measure (agreement with the uncompressed prediction) is the reference by
definition and cannot improve on it, so it has no rows here. Each side is the task's own aggregate
(``Task.aggregate``) over the items both sides have; where the task cannot rebuild its aggregate from per-item
rows (mIoU pools confusion matrices) the row gives the stored partition scores and no interval, and says why.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mpq_assets.analysis.gains import Statistic, paired_difference, q_values, weighted_mean
from mpq_assets.experiments import Experiment
from mpq_assets.pipeline.analyse import load_observations, measure_direction, task_class
from mpq_assets.pipeline.step import REFERENCE
from mpq_assets.store import ResultsStore
from mpq_assets.tasks.base import Score, Task

COLUMNS = ["task", "metric", "codec", "point", "bitrates", "ratio", "higher_is_better", "items", "reference",
           "compressed", "difference", "ci_low", "ci_high", "p_value", "q_value", "helped", "hurt", "note"]


def _uses_weighted_mean(cls: type[Task] | None) -> bool:
    return cls is None or cls.aggregate.__func__ is Task.aggregate.__func__  # type: ignore[attr-defined]


def _task_statistic(cls: type[Task], metric: str, rows_by_item: Sequence[Sequence[Score]]) -> Statistic:
    """The task's own aggregate of ``metric`` over each resample (items repeated by their counts)."""

    def statistic(counts: np.ndarray) -> np.ndarray:
        out = np.full(counts.shape[0], np.nan)
        for r, c in enumerate(counts.astype(int)):
            rows = [s for i in np.flatnonzero(c) for s in rows_by_item[i] * c[i]]
            value = cls.aggregate(metric, rows)
            out[r] = np.nan if value is None else value
        return out

    return statistic


def _side(cls: type[Task] | None, measure: str, rows: pd.DataFrame, items: list[str]) -> Statistic:
    """One side's statistic over ``items`` (in that order) from its per-item rows of the whole task."""
    metric = measure.partition(".")[2]
    own = rows[rows["measure"] == measure].set_index("item_id").loc[items]
    if _uses_weighted_mean(cls):
        return weighted_mean(own["value"].to_numpy(float), own["n"].to_numpy(float))
    task = measure.partition(".")[0]
    by_item: dict[str, list[Score]] = {i: [] for i in items}
    for m, i, v, n in rows[["measure", "item_id", "value", "n"]].itertuples(index=False, name=None):
        if i in by_item and m.partition(".")[0] == task:
            by_item[i].append(Score(m.partition(".")[2], float(v), str(i), n=int(round(n))))
    return _task_statistic(cls, metric, [by_item[i] for i in items])  # type: ignore[arg-type]


def _stored(store: ResultsStore, experiment: str) -> pd.DataFrame:
    """Partition-level task scores per point (the lowest-target partition's) and on the reference."""
    return store.query(
        "SELECT p.codec, p.point, t.task || '.' || t.metric AS measure, arg_min(t.value, p.target_ratio) AS value "
        "FROM task_scores t JOIN partition_points p USING (experiment, codec, bitrate) WHERE t.experiment = ? "
        "AND t.item_id IS NULL GROUP BY ALL UNION ALL SELECT 'reference', 'reference', t.task || '.' || t.metric, "
        "t.value FROM task_scores t WHERE t.experiment = ? AND t.codec = ? AND t.item_id IS NULL",
        [experiment, experiment, REFERENCE])


def compression_gains(experiment: Experiment, store: ResultsStore, *, n_boot: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Paired differences of every labelled task measure at every distinct point, written to
    ``paired_differences``; the ``compression_gains`` view lists those where compression helped."""
    name = experiment.name
    obs = load_observations(experiment, store)
    reference = store.query(
        "SELECT task || '.' || metric AS measure, item_id, value, coalesce(n, 1) AS n FROM task_scores "
        "WHERE experiment = ? AND codec = ? AND item_id IS NOT NULL AND value IS NOT NULL AND isfinite(value)",
        [name, REFERENCE])
    points = store.query("SELECT codec, point, bitrates, ratio FROM operating_points WHERE experiment = ?", [name])
    stored = None
    rows = []
    measures = sorted(set(reference["measure"]) & set(obs.task_rows["measure"]))
    for measure in measures:
        cls = task_class(experiment, measure)
        higher = measure_direction(experiment, measure)
        ref_items = set(reference.loc[reference["measure"] == measure, "item_id"])
        task, _, metric = measure.partition(".")
        ref_rows = reference[reference["measure"].str.partition(".")[0] == task]
        for (codec, point), comp_rows in obs.task_rows.groupby(["codec", "point"]):
            comp_items = set(comp_rows.loc[comp_rows["measure"] == measure, "item_id"])
            items = sorted(ref_items & comp_items)
            if not items:
                continue
            left_out = len(ref_items | comp_items) - len(items)
            note = (f"{left_out} items scored on one side only are left out" if left_out else None)
            ref_stat, comp_stat = _side(cls, measure, ref_rows, items), _side(cls, measure, comp_rows, items)
            if np.isnan(ref_stat(np.ones((1, len(items))))[0]):
                stored = _stored(store, name) if stored is None else stored
                ref_v = stored[(stored["codec"] == REFERENCE) & (stored["measure"] == measure)]["value"]
                comp_v = stored[(stored["codec"] == codec) & (stored["point"] == point)
                                & (stored["measure"] == measure)]["value"]
                r = float(ref_v.iloc[0]) if len(ref_v) else np.nan
                c = float(comp_v.iloc[0]) if len(comp_v) else np.nan
                rows.append(dict(task=task, metric=metric, codec=codec, point=point, higher_is_better=higher,
                                 items=len(items), reference=r, compressed=c, difference=c - r, helped=False,
                                 hurt=False, note=f"{metric} pools its items (not an aggregate of per-item "
                                 "scores): stored partition scores, no item-resampled interval"))
                continue
            res = paired_difference(ref_stat, comp_stat, len(items), higher_is_better=higher, n_boot=n_boot,
                                    seed=seed)
            if len(items) < 2:
                note = "; ".join(filter(None, [note, "one item: no interval"]))
            rows.append(dict(task=task, metric=metric, codec=codec, point=point, higher_is_better=higher,
                             items=res.n, reference=res.reference, compressed=res.compressed,
                             difference=res.difference, ci_low=res.ci_low, ci_high=res.ci_high,
                             p_value=res.p_value, helped=res.helped, hurt=res.hurt, note=note))
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("bitrates", "ratio")])
    table = table.merge(points, on=["codec", "point"], how="left")
    table["q_value"] = q_values(table["p_value"].to_numpy(float)) if len(table) else []
    table = table.astype({"helped": bool, "hurt": bool, "higher_is_better": bool})
    table = table[COLUMNS].sort_values(["task", "metric", "codec", "ratio"], ignore_index=True)
    store.replace_partition("paired_differences", {"experiment": name}, table)
    return table
