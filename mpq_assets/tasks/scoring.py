"""Plain numpy scoring functions shared by the tasks (no models, no Dagster).

Conventions, stated once:

- Class scores are arrays of shape ``(N, C)`` (one row per item) or ``(C,)``.
- Top-k ties are broken by class index (the lower index ranks first), so the
  result is deterministic.
- KL divergence is ``KL(reference || distorted)`` in nats. Both distributions are
  clipped to ``[eps, 1]`` and renormalised first, so a zero probability in the
  distorted prediction gives a large but finite value.
- Segmentation scores come from a confusion matrix (rows: truth, columns:
  prediction) with pixels whose truth is ``ignore_index`` (255) left out. A
  partition is scored by **summing the matrices of all its items** and then
  taking IoU per class = TP / (TP + FP + FN); mIoU is the mean over the classes
  whose union is non-zero, i.e. present in the truth or the prediction of the
  partition (classes nowhere in either are left out, a class predicted but never
  true counts as 0). This is the convention of mmsegmentation and HF
  ``evaluate``'s ``mean_iou``; it is not the mean of per-item mIoUs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

IGNORE_INDEX = 255
DEFAULT_EPS = 1e-8


# ----------------------------------------------------------------- classification

def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores per row, best first (ties: lower index first)."""
    scores = np.atleast_2d(np.asarray(scores))
    k = min(k, scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[:, :k]


def topk_hits(scores: np.ndarray, targets: Sequence[int | Collection[int]], k: int) -> np.ndarray:
    """Per item: is any acceptable target class among the top ``k``? (bool array of length N)."""
    top = topk_indices(scores, k)
    if len(targets) != len(top):
        raise ValueError(f"{len(top)} score rows but {len(targets)} targets")
    out = np.zeros(len(top), dtype=bool)
    for i, target in enumerate(targets):
        acceptable = {int(target)} if isinstance(target, int | np.integer) else {int(t) for t in target}
        out[i] = bool(acceptable.intersection(top[i].tolist()))
    return out


def topk_accuracy(scores: np.ndarray, targets: Sequence[int | Collection[int]], k: int = 1) -> float:
    """Fraction of items with an acceptable class in the top ``k`` (NaN for no items)."""
    hits = topk_hits(scores, targets, k)
    return float(hits.mean()) if len(hits) else float("nan")


def top1_agreement(scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    """Per item: do both score rows have the same top-1 class? (bool array)."""
    a, b = np.atleast_2d(scores_a), np.atleast_2d(scores_b)
    if a.shape != b.shape:
        raise ValueError(f"score shapes differ: {a.shape} vs {b.shape}")
    return topk_indices(a, 1)[:, 0] == topk_indices(b, 1)[:, 0]


def kl_divergence(reference: np.ndarray, distorted: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Per-row ``KL(reference || distorted)`` of categorical distributions, in nats."""
    p = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    q = np.atleast_2d(np.asarray(distorted, dtype=np.float64))
    if p.shape != q.shape:
        raise ValueError(f"distribution shapes differ: {p.shape} vs {q.shape}")
    p = np.clip(p, eps, 1.0)
    q = np.clip(q, eps, 1.0)
    p /= p.sum(axis=-1, keepdims=True)
    q /= q.sum(axis=-1, keepdims=True)
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def binary_kl_divergence(reference: np.ndarray, distorted: np.ndarray, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Per-row mean over classes of the Bernoulli ``KL(reference || distorted)`` (multi-label sigmoids)."""
    p = np.clip(np.atleast_2d(np.asarray(reference, dtype=np.float64)), eps, 1 - eps)
    q = np.clip(np.atleast_2d(np.asarray(distorted, dtype=np.float64)), eps, 1 - eps)
    if p.shape != q.shape:
        raise ValueError(f"probability shapes differ: {p.shape} vs {q.shape}")
    kl = p * (np.log(p) - np.log(q)) + (1 - p) * (np.log1p(-p) - np.log1p(-q))
    return kl.mean(axis=-1)


def mean_kl_divergence(reference: np.ndarray, distorted: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """Mean over items of ``KL(reference || distorted)``."""
    return float(kl_divergence(reference, distorted, eps).mean())


@dataclass(frozen=True)
class AurocResult:
    value: float               # mean AUROC over the classes used (NaN if none)
    classes_used: int
    classes_skipped: int       # classes whose truth had a single value (all positive or all negative)


def mean_auroc(truth: np.ndarray, scores: np.ndarray) -> AurocResult:
    """Mean one-vs-rest AUROC over classes for multi-label truth ``(N, C)`` in {0, 1}.

    ROC AUC is undefined for a class whose truth is all 0 or all 1 over the
    items; such classes are **skipped** (counted in ``classes_skipped`` and
    logged), not scored as 0.5.
    """
    from sklearn.metrics import roc_auc_score

    y = np.atleast_2d(np.asarray(truth)).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if y.shape != s.shape:
        raise ValueError(f"truth {y.shape} and scores {s.shape} differ in shape")
    values = []
    for c in range(y.shape[1]):
        column = y[:, c]
        if column.all() or not column.any():
            continue
        values.append(roc_auc_score(column, s[:, c]))
    skipped = y.shape[1] - len(values)
    if skipped:
        log.info("auroc: skipped %d of %d classes with a single label value over %d items",
                 skipped, y.shape[1], y.shape[0])
    value = float(np.mean(values)) if values else float("nan")
    return AurocResult(value=value, classes_used=len(values), classes_skipped=skipped)


# ------------------------------------------------------------------ verification

def equal_error_rate(scores: np.ndarray, targets: np.ndarray) -> float:
    """The rate where false acceptances equal false rejections over scored trials (``targets``: same-class
    trials True): read off the ROC at the threshold where |FNR - FPR| is smallest, as the mean of the two
    there. 0 when every target trial outscores every non-target; NaN without both kinds of trial."""
    from sklearn.metrics import roc_curve

    y = np.asarray(targets, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"{s.shape} scores but {y.shape} targets")
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


# ------------------------------------------------------------------ segmentation

def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = truth class, columns = predicted class; ignored pixels left out."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"label map shapes differ: truth {truth.shape} vs prediction {pred.shape}")
    t = truth.astype(np.int64).ravel()
    p = pred.astype(np.int64).ravel()
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    for what, values in (("truth", t), ("prediction", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{what} label map has class values outside 0..{num_classes - 1} "
                f"(min {values.min()}, max {values.max()}; ignore index {ignore_index})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN where the class has no union (absent everywhere)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over classes present in truth or prediction (NaN when no pixel counts)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Correct pixels / counted pixels (NaN when no pixel counts)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


class ConfusionAccumulator:
    """Sums confusion matrices over a partition and keeps each item's own scores."""

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.total = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.n = 0

    def update(self, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Add one item; returns the item's own confusion matrix."""
        cm = confusion_matrix(truth, pred, self.num_classes, self.ignore_index)
        self.total += cm
        self.n += 1
        return cm

    def mean_iou(self) -> float:
        return mean_iou(self.total)

    def pixel_accuracy(self) -> float:
        return pixel_accuracy(self.total)
