"""What the evaluation steps share: their summary, the rows they read from the store, their row frames."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mpq_assets.experiments import Experiment, TaskSpec
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore
from mpq_assets.tasks.base import Task

REFERENCE = "reference"  # codec and bitrate value of predictions on the uncompressed items

Key = tuple[str, str]  # (codec, bitrate)


@dataclass
class StepSummary:
    items: int = 0
    errors: int = 0
    rows: int = 0
    notes: list[str] = field(default_factory=list)
    means: dict[str, float] = field(default_factory=dict)


def manifest(store: ResultsStore, experiment: Experiment) -> pd.DataFrame:
    items = store.query("SELECT item_id, original_path, label, fields, modality FROM items WHERE experiment = ? "
                        "ORDER BY item_id", [experiment.name])
    if items.empty:
        raise RuntimeError(f"experiment {experiment.name} has no items: materialise {experiment.name}/dataset first")
    return items


def item_labels(items: pd.DataFrame, spec: TaskSpec) -> dict[str, Any]:
    """item id -> the ground truth ``spec`` is scored against: the item's label, or the named field of its
    ``fields`` (``TaskSpec.label``; None where an item lacks it)."""
    if spec.label == "label":
        return dict(zip(items["item_id"], items["label"], strict=True))
    out: dict[str, Any] = {}
    for item_id, raw in zip(items["item_id"], items["fields"], strict=True):
        fields = json.loads(raw) if isinstance(raw, str) and raw else {}
        out[item_id] = fields.get(spec.label)
    return out


def failed_compressions(store: ResultsStore, experiment: Experiment, partitions: Sequence[Key]) -> dict[Key, int]:
    """Partitions whose ``compressed`` step ran but failed on every item: their error count (no rows)."""
    counts = store.query("SELECT codec, bitrate, count(*) AS n FROM errors WHERE experiment = ? AND stage = "
                         "'compressed' GROUP BY codec, bitrate", [experiment.name])
    failed = {(r.codec, r.bitrate): int(r.n) for r in counts.itertuples(index=False)}
    present = store.query("SELECT DISTINCT codec, bitrate FROM compressed WHERE experiment = ?", [experiment.name])
    with_rows = set(zip(present["codec"], present["bitrate"], strict=True))
    return {k: failed[k] for k in dict.fromkeys(partitions) if k in failed and k not in with_rows}


def failed_note(key: Key, errors: int) -> str:
    return (f"{key[0]}@{key[1]}: every item failed in compressed ({errors} error(s); see the errors table): "
            "nothing to measure")


def partition_rows(store: ResultsStore, experiment: Experiment, partitions: Sequence[Key]
                ) -> tuple[pd.DataFrame, dict[Key, int]]:
    """The compressed rows of every partition given (in item order), and the partitions whose every item
    failed in ``compressed`` (no rows, their error count); any other partition without rows is an error."""
    parts = list(dict.fromkeys(partitions))
    if not parts:
        raise ValueError("no partitions given")
    rows = store.query(
        "SELECT c.codec, c.bitrate, c.item_id, c.decoded_path, i.original_path, i.label, i.modality FROM compressed c "
        "JOIN items i USING (experiment, item_id) WHERE c.experiment = ? ORDER BY c.item_id, c.codec, c.bitrate",
        [experiment.name])
    wanted = pd.DataFrame(parts, columns=["codec", "bitrate"])
    rows = rows.merge(wanted, on=["codec", "bitrate"], how="inner")
    present = set(zip(rows["codec"], rows["bitrate"], strict=True))
    failed = failed_compressions(store, experiment, [k for k in parts if k not in present])
    for codec, bitrate in parts:
        if (codec, bitrate) not in present and (codec, bitrate) not in failed:
            raise RuntimeError(f"{experiment.name}/compressed has no rows for {codec}@{bitrate}: materialise that "
                               "partition first")
    return rows.sort_values(["item_id", "codec", "bitrate"], kind="stable").reset_index(drop=True), failed


def make_task(spec: TaskSpec, settings: Settings) -> Task:
    from mpq_assets.tasks.registry import make_task as build

    return build(spec.task, device=settings.device, settings=settings, **dict(spec.args))


def skip_note(experiment: Experiment, spec: TaskSpec, exc: Exception) -> str:
    return f"{experiment.name}: task {spec.name} skipped, its model is not available. {exc}"


def score_frame(scores: Sequence, model: str) -> pd.DataFrame:
    return pd.DataFrame([dict(item_id=s.item_id, metric=s.metric, value=float(s.value), n=int(s.n), model=model)
                         for s in scores], columns=["item_id", "metric", "value", "n", "model"])


def errors_frame(errors: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(errors, columns=["item_id", "error"])
