"""A model trained by a training study, as a task any experiment can name.

``trained_audio`` and ``trained_image`` load a ``trained_models`` safetensors file and classify with its recipe
(the fixed features, then the trained head), so a model trained on, say, Opus 20x runs through the ordinary
``predictions`` and ``task_scores`` assets of any experiment of its modality. Name it by study, variant and seed
(``{"experiment": "demo_commands", "variant": "opus@20x", "seed": 0}``; ``"uncompressed"`` for the clean model)
or by ``path``. Scores: ``top1`` against labels (the class name), ``agreement`` and ``kl`` against the
prediction on the uncompressed item.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.artifacts import trained_model_path
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks import scoring
from mpq_assets.tasks.base import ModelNotAvailableError, Prediction, Score, Task, TaskInfo, same_length
from mpq_assets.training import Recipe, TrainedModel, load, predict
from mpq_assets.training.trainer import recipe_of

REFERENCE = "reference"


def trained_path(settings: Settings, experiment: str, variant: str, seed: int) -> Path:
    """The file ``trained_models`` wrote for a study's variant (``uncompressed`` or ``codec@bitrate``) and seed."""
    codec, _, bitrate = variant.partition("@")
    if variant == "uncompressed":
        codec, bitrate = REFERENCE, REFERENCE
    elif not bitrate:
        raise ValueError(f"variant must be 'uncompressed' or 'codec@bitrate', not {variant!r}")
    return trained_model_path(settings, experiment, codec, bitrate, seed)


class _TrainedClassifier(Task):
    """Classification by a trained model: fixed features, then the head; probabilities kept per item."""

    modality: ClassVar[str]

    def __init__(self, path: str | None = None, experiment: str | None = None, variant: str = "uncompressed",
                 seed: int = 0, device: torch.device | str = "cpu", batch_size: int = 32,
                 settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if path is None and experiment is None:
            raise ValueError(f"{self.info.name}: give the trained model's path, or its experiment (and variant, "
                             "seed)")
        self.path = Path(path) if path else trained_path(settings or load_settings(), str(experiment), variant, seed)
        self._model: TrainedModel | None = None
        self._recipe: Recipe | None = None

    @property
    def model_id(self) -> str:
        return str(self.path)

    def load(self) -> TrainedModel:
        if self._model is None:
            if not self.path.is_file():
                raise ModelNotAvailableError(f"no trained model at {self.path}: materialise the study's "
                                             "trained_models asset first")
            model = load(self.path)
            if model.config.get("recipe") is None or recipe_of(model).modality != self.modality:
                raise ValueError(f"{self.path}: a {model.config.get('recipe')} model is not a {self.modality} "
                                 "classifier")
            self._model, self._recipe = model, recipe_of(model)
        return self._model

    def predict(self, items: Sequence[Any]) -> list[Prediction]:
        model = self.load()
        recipe = self._recipe  # built once with the model: its front end (mel filterbank, backbone) is reused
        out: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            probs = predict(model, recipe.features(items[start:start + self.batch_size]), recipe).numpy()
            for p in probs.astype(np.float32):
                out.append(Prediction(summary={"top1": model.classes[int(p.argmax())],
                                               "p": round(float(p.max()), 6)}, array=p))
        return out

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        rows = [Score("top1", float(p.summary["top1"] == str(label)), i)
                for i, p, label in zip(item_ids, predictions, labels, strict=True) if label is not None]
        if rows:
            rows.append(Score("top1", float(np.mean([r.value for r in rows])), None, n=len(rows)))
        return rows

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        rows: list[Score] = []
        for item_id, p, ref in zip(item_ids, predictions, reference, strict=True):
            rows.append(Score("agreement", float(p.summary["top1"] == ref.summary["top1"]), item_id))
            if p.array is not None and ref.array is not None:
                rows.append(Score("kl", float(scoring.kl_divergence(ref.array, p.array)[0]), item_id))
        for metric in ("agreement", "kl"):
            values = [r.value for r in rows if r.metric == metric and r.item_id is not None]
            if values:
                rows.append(Score(metric, float(np.mean(values)), None, n=len(values)))
        return rows


_INFO = dict(label_metrics=("top1",), reference_metrics=("agreement", "kl"),
             higher_is_better={"top1": True, "agreement": True, "kl": False},
             self_scores={"agreement": 1.0, "kl": 0.0})


class TrainedAudioClassifier(_TrainedClassifier):
    modality = "audio"
    info = TaskInfo(name="trained_audio", modality="audio", **_INFO)  # type: ignore[arg-type]


class TrainedImageClassifier(_TrainedClassifier):
    modality = "image"
    info = TaskInfo(name="trained_image", modality="image", **_INFO)  # type: ignore[arg-type]
