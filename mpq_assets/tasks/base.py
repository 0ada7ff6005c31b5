"""Tasks: a machine-perception model plus its scoring.

A task loads its model once per process (``load`` is cached by the registry),
predicts in batches on the device, and scores predictions two ways:

- against ground truth (``score_labels``) when the dataset has labels;
- label-free against the *reference* prediction on the uncompressed item
  (``score_reference``).

Predictions carry a JSON-able ``summary`` (stored in DuckDB's ``predictions``
table) and an optional ``array`` (class probabilities, a label map, ...) kept in
artifacts for scores that need more than the summary (KL divergence, mIoU).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.media.item import Item, Modality
from mpq_assets.weights import ModelNotAvailableError
from mpq_assets.weights.source import WeightSource

__all__ = ["ModelNotAvailableError", "Prediction", "Score", "Task", "TaskInfo", "mean_rows", "missing_label",
           "same_length", "weighted_mean"]


@dataclass
class Prediction:
    summary: dict[str, Any]
    array: np.ndarray | None = None


@dataclass(frozen=True)
class Score:
    """One score row: per item (``item_id`` set) or for the whole partition (``item_id=None``)."""

    metric: str
    value: float
    item_id: str | None = None
    n: int = 1


@dataclass(frozen=True)
class TaskInfo:
    name: str                          # registry name, e.g. "classification"
    modality: Modality
    label_metrics: tuple[str, ...]     # metrics from score_labels, e.g. ("top1", "top5")
    reference_metrics: tuple[str, ...]  # metrics from score_reference, e.g. ("agreement", "kl")
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    # what the prediction on an uncompressed item scores against itself (label-free measures: their reference)
    self_scores: dict[str, float] = field(default_factory=dict)
    # lower-is-better rates in [0, 1] whose complement 1 - rate is an accuracy (word accuracy from WER)
    error_rates: tuple[str, ...] = ()


class Task(ABC):
    """Model loader + batched predict + scoring."""

    info: ClassVar[TaskInfo]
    weight_sources: ClassVar[tuple[WeightSource, ...]] = ()  # the models it can run, for `mpq models`

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 8) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """Identifies the weights (checkpoint name or path) in stored rows."""
        return type(self).__name__

    @abstractmethod
    def predict(self, items: Sequence[Item]) -> list[Prediction]:
        """Predict a batch; implementations split into ``batch_size`` chunks themselves."""

    @abstractmethod
    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        """Per-item and aggregate scores against ground truth (items with no label are skipped)."""

    @abstractmethod
    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        """Label-free scores against the prediction on the uncompressed item."""

    @classmethod
    def aggregate(cls, metric: str, rows: Sequence[Score]) -> float | None:
        """The partition-level ``metric`` over the per-item ``rows`` given: what the scorer's own aggregate row
        would be for just those items, so an analysis can compare a task score and a quality metric over the
        items both have. By default the mean weighted by each row's ``n``; None where per-item rows cannot
        rebuild the aggregate (a pooled confusion matrix, a multi-label AUROC) or no row has the metric."""
        return weighted_mean([r for r in rows if r.metric == metric])


def missing_label(label: Any) -> bool:
    """No ground truth for this item: None, or NaN (pandas' empty cell)."""
    return label is None or (isinstance(label, float) and math.isnan(label))


def mean_rows(rows: Sequence[Score]) -> list[Score]:
    """The partition rows of per-item ``rows``: per metric, the mean over its items (``n`` = how many)."""
    out = []
    for metric in dict.fromkeys(r.metric for r in rows):
        values = [r.value for r in rows if r.metric == metric]
        out.append(Score(metric, float(np.mean(values)), None, n=len(values)))
    return out


def weighted_mean(rows: Sequence[Score]) -> float | None:
    """Mean of the rows' values weighted by their ``n`` (None without rows or weight)."""
    weight = sum(r.n for r in rows)
    return sum(r.value * r.n for r in rows) / weight if rows and weight else None


def same_length(item_ids: Sequence[Any], predictions: Sequence[Any], other: Sequence[Any]) -> None:
    if not len(item_ids) == len(predictions) == len(other):
        raise ValueError(f"lengths differ: {len(item_ids)} item ids, {len(predictions)} predictions, {len(other)} "
                         "labels/references")
