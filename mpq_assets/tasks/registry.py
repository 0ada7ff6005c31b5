"""The task table: public name -> Task class, and a cached constructor.

Adding a task is one line in ``TASKS``. ``make_task`` resolves the device
(``MPQ_DEVICE``; cuda > mps > cpu) and the device's default batch size, and
returns the same task object for the same (name, options, device, batch size,
settings) within a process (in :data:`~mpq_assets.weights.MODEL_CACHE`, under
``"task"``), so assets that share a task share its loaded model.
"""

from __future__ import annotations

from typing import Any

import torch

from mpq_assets.device import default_batch_size, resolve_device
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks.base import Task
from mpq_assets.tasks.classification import ImageClassification
from mpq_assets.tasks.ocr import TextRecognition
from mpq_assets.tasks.segmentation import SemanticSegmentation
from mpq_assets.tasks.separation import SourceSeparation
from mpq_assets.tasks.speaker import SpeakerVerification
from mpq_assets.tasks.speech import SpeechRecognition
from mpq_assets.tasks.trained import TrainedAudioClassifier, TrainedImageClassifier
from mpq_assets.tasks.transcription import MusicTranscription
from mpq_assets.weights import cached

TASKS: dict[str, type[Task]] = {
    "classification": ImageClassification,
    "segmentation": SemanticSegmentation,
    "asr": SpeechRecognition,
    "separation": SourceSeparation,
    "transcription": MusicTranscription,   # Basic Pitch notes (ONNX, from the basic-pitch wheel)
    "speaker": SpeakerVerification,        # Resemblyzer embeddings
    "ocr": TextRecognition,                # Tesseract 5
    "trained_audio": TrainedAudioClassifier,  # a model from a training study's trained_models
    "trained_image": TrainedImageClassifier,
}

def _freeze(value: Any) -> Any:
    """A hashable stand-in for option values (lists, dicts, paths)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def make_task(name: str, device: torch.device | str | None = None, batch_size: int | None = None,
              settings: Settings | None = None, **kwargs: Any) -> Task:
    """The task ``name`` built with ``kwargs`` (e.g. ``model=...``), cached per process. Without a
    ``device``, the ``settings``' (``MPQ_DEVICE``). The task loads its weights from the caches the
    ``settings`` name (the environment's, read at load time, when None)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    resolved = resolve_device(str(device) if device is not None else (settings or load_settings()).device)
    size = batch_size if batch_size is not None else default_batch_size(resolved)
    return cached(("task", name, _freeze(kwargs), str(resolved), size, settings),
                  lambda: TASKS[name](device=resolved, batch_size=size, settings=settings, **kwargs))
