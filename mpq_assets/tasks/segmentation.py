"""Semantic segmentation with any HuggingFace semantic-segmentation checkpoint (SegFormer by default).

The paper's model is ``nvidia/segformer-b0-finetuned-ade-512-512``; any other
checkpoint that ``AutoModelForSemanticSegmentation`` loads works too, by hub
name or local folder (same offline rule and error as classification).

Prediction: the logits are upsampled (bilinear) to the item's own size and the
argmax is the label map (``array``: uint8 for up to 255 classes, else int32).
``summary`` lists the five classes covering most pixels with their fractions.

Ground truth: a label map per item (a path to a single-channel PNG of class
indices, relative to ``label_root`` if given, or a numpy array), with 255 =
ignore. Scores accumulate a confusion matrix over the partition (see
:mod:`mpq_assets.tasks.scoring` for the mIoU convention).

ADE20k convention (``reduce_labels``): HF's ADE checkpoints predict 150 classes
0..149, while ADE20k's ground-truth PNGs use 0 = "other" (not scored) and 1..150
for the classes. ``reduce_labels=True`` maps the ground truth as HF's
``do_reduce_labels`` does: 0 -> 255 (ignore), k -> k - 1, 255 stays 255. The
default ``None`` follows the checkpoint's image processor (``do_reduce_labels``
is true for the nvidia ADE checkpoints); pass ``False`` for label maps already
in the model's 0-based classes. The reference metric ``miou_ref`` compares two
predictions and is unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mpq_assets.settings import Settings
from mpq_assets.tasks import scoring
from mpq_assets.tasks.base import Prediction, Score, Task, TaskInfo, same_length
from mpq_assets.tasks.hf import (
    HFImageModel,
    check_image,
    checkpoint_id,
    class_names_from_config,
    hub_source,
    load_hf,
    run_grouped,
)
from mpq_assets.weights import WeightSource, cached

log = logging.getLogger(__name__)

DEFAULT_MODEL = "nvidia/segformer-b0-finetuned-ade-512-512"
SUMMARY_CLASSES = 5
# Upsampled logits are processed in class chunks of at most this many elements, so a large photo
# with 150 classes does not need C x H x W floats at once.
_MAX_UPSAMPLE_ELEMENTS = 1 << 26


def _load_model(model: str, device: torch.device, settings: Settings | None = None) -> HFImageModel:
    """The model on ``device``, loaded once per process per (checkpoint, device)."""
    model_id = checkpoint_id(model)

    def load() -> HFImageModel:
        log.info("loading segmenter %s on %s", model_id, device)
        from transformers import AutoModelForSemanticSegmentation

        return HFImageModel(AutoModelForSemanticSegmentation, model, device, "semantic-segmentation model", settings)

    return cached(("segmenter", model_id, str(device)), load)


def _load_meta(model: str, settings: Settings | None = None) -> tuple[list[str], bool]:
    """(class names, processor's do_reduce_labels) without loading the weights, once per process per checkpoint."""

    def load() -> tuple[list[str], bool]:
        from transformers import AutoConfig, AutoImageProcessor

        labels = class_names_from_config(load_hf(AutoConfig, model, "model config", settings))
        processor = load_hf(AutoImageProcessor, model, "image processor", settings)
        return labels, bool(getattr(processor, "do_reduce_labels", getattr(processor, "reduce_labels", False)))

    return cached(("segmenter-meta", checkpoint_id(model)), load)


def upsample_argmax(logits: torch.Tensor, size: tuple[int, int],
                     max_elements: int = _MAX_UPSAMPLE_ELEMENTS) -> torch.Tensor:
    """Argmax over classes of bilinearly upsampled logits ``(C, h, w)`` -> ``(H, W)`` int64.

    Works through the classes in chunks with a running maximum (ties keep the
    lower class index, as a plain argmax does).
    """
    classes = logits.shape[0]
    chunk = max(1, max_elements // max(1, size[0] * size[1]))
    best_value: torch.Tensor | None = None
    best_index: torch.Tensor | None = None
    for start in range(0, classes, chunk):
        up = F.interpolate(logits[None, start:start + chunk].float(), size=size, mode="bilinear",
                           align_corners=False)[0]
        value, index = up.max(dim=0)
        index = index + start
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index, best_index)
    assert best_index is not None
    return best_index


def load_label_map(label: Any, root: str | Path | None = None) -> np.ndarray:
    """A label map from a numpy array or a single-channel PNG path (relative to ``root``)."""
    if isinstance(label, np.ndarray):
        array = label
    else:
        from PIL import Image

        path = Path(label)
        if root is not None and not path.is_absolute():
            path = Path(root) / path
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise ValueError(f"{path}: label maps must be single-channel class indices, got mode {img.mode}")
            array = np.asarray(img)
    if array.ndim != 2:
        raise ValueError(f"label maps must be 2-D (H, W), got shape {array.shape}")
    return array


def reduce_ade_labels(label: np.ndarray) -> np.ndarray:
    """ADE20k -> 0-based classes: 0 ("other") -> 255 (ignore), k -> k - 1, 255 stays 255."""
    label = label.astype(np.int64)
    out = label - 1
    out[(label == 0) | (label == scoring.IGNORE_INDEX)] = scoring.IGNORE_INDEX
    return out


class SemanticSegmentation(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="segmentation",
        modality="image",
        label_metrics=("miou", "pixel_accuracy"),
        reference_metrics=("miou_ref",),
        higher_is_better={"miou": True, "pixel_accuracy": True, "miou_ref": True},
        self_scores={"miou_ref": 1.0},
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        hub_source(DEFAULT_MODEL, "ADE20k segmentation (SegFormer-B0)"),
    )

    def __init__(self, model: str = DEFAULT_MODEL, reduce_labels: bool | None = None,
                 label_root: str | Path | None = None, device: torch.device | str = "cpu",
                 batch_size: int = 8, settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.model = model
        self._reduce_labels = reduce_labels
        self.label_root = label_root
        self.settings = settings  # None: the environment's, read when a model loads

    @property
    def model_id(self) -> str:
        return checkpoint_id(self.model)

    def load(self) -> HFImageModel:
        """Load (or fetch from the process cache) the model; raises ModelNotAvailableError if missing."""
        return _load_model(self.model, self.device, self.settings)

    @property
    def class_names(self) -> list[str]:
        return _load_meta(self.model, self.settings)[0]

    @property
    def reduce_labels(self) -> bool:
        return _load_meta(self.model, self.settings)[1] if self._reduce_labels is None else self._reduce_labels

    # -- predict

    def predict(self, items: Sequence[np.ndarray]) -> list[Prediction]:
        backend = self.load()
        num_classes = len(backend.labels)
        dtype = np.uint8 if num_classes <= 255 else np.int32
        out: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = [check_image(item) for item in items[start:start + self.batch_size]]
            tensors = [backend.preprocess(item) for item in chunk]
            logits = run_grouped(tensors, backend.forward, self.device)
            for item, item_logits in zip(chunk, logits, strict=True):
                with torch.inference_mode():
                    label_map = upsample_argmax(item_logits, item.shape[:2]).cpu().numpy().astype(dtype)
                counts = np.bincount(label_map.ravel(), minlength=num_classes)
                top = [int(i) for i in np.argsort(-counts, kind="stable")[:SUMMARY_CLASSES] if counts[i] > 0]
                out.append(Prediction(
                    summary={"classes": {backend.labels[i]: round(float(counts[i] / label_map.size), 6)
                                         for i in top}},
                    array=label_map,
                ))
        return out

    # -- score

    def _truth(self, label: Any) -> np.ndarray:
        truth = load_label_map(label, self.label_root)
        return reduce_ade_labels(truth) if self.reduce_labels else truth

    @staticmethod
    def _label_map(prediction: Prediction) -> np.ndarray:
        if prediction.array is None:
            raise ValueError("segmentation scores need the predicted label map (Prediction.array), which is missing")
        return np.asarray(prediction.array)

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        acc = scoring.ConfusionAccumulator(len(self.class_names))
        rows: list[Score] = []
        for item_id, prediction, label in zip(item_ids, predictions, labels, strict=True):
            if label is None or (isinstance(label, str) and not label.strip()):
                continue
            try:
                cm = acc.update(self._truth(label), self._label_map(prediction))
            except ValueError as exc:
                hint = "" if self.reduce_labels else " (ADE20k-style masks with 0 = other need reduce_labels=True)"
                raise ValueError(f"item {item_id}: {exc}{hint}") from exc
            # n: the item's counted pixels, so pixel accuracy over any set of items is their weighted mean
            pixels = int(cm.sum())
            for metric, value, n in (("miou", scoring.mean_iou(cm), 1),
                                     ("pixel_accuracy", scoring.pixel_accuracy(cm), pixels)):
                if np.isfinite(value):
                    rows.append(Score(metric, value, item_id, n=n))
        if acc.n:
            rows.append(Score("miou", acc.mean_iou(), None, n=acc.n))
            rows.append(Score("pixel_accuracy", acc.pixel_accuracy(), None, n=acc.n))
        return rows

    @classmethod
    def aggregate(cls, metric: str, rows: Sequence[Score]) -> float | None:
        """mIoU pools the items' confusion matrices, which per-item rows do not keep: None for it."""
        return None if metric in ("miou", "miou_ref") else super().aggregate(metric, rows)

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        acc = scoring.ConfusionAccumulator(len(self.class_names), ignore_index=None)
        rows: list[Score] = []
        for item_id, prediction, ref in zip(item_ids, predictions, reference, strict=True):
            cm = acc.update(self._label_map(ref), self._label_map(prediction))
            rows.append(Score("miou_ref", scoring.mean_iou(cm), item_id))
        if acc.n:
            rows.append(Score("miou_ref", acc.mean_iou(), None, n=acc.n))
        return rows

