"""The task table: public name -> Task class, and a cached constructor.

Adding a task is one line in ``TASKS``. ``make_task`` resolves the device
(``MPQ_DEVICE``; cuda > mps > cpu) and the device's default batch size, and
returns the same task object for the same (name, options, device, batch size)
within a process, so assets that share a task share its loaded model.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from mpq_assets.device import default_batch_size, resolve_device
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks.base import Task
from mpq_assets.tasks.classification import ImageClassification
from mpq_assets.tasks.segmentation import SemanticSegmentation
from mpq_assets.tasks.separation import SourceSeparation
from mpq_assets.tasks.speech import SpeechRecognition

TASKS: dict[str, type[Task]] = {
    "classification": ImageClassification,
    "segmentation": SemanticSegmentation,
    "asr": SpeechRecognition,
    "separation": SourceSeparation,
}

_INSTANCES: dict[tuple[Any, ...], Task] = {}
_LOCK = threading.Lock()


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
    ``device``, the ``settings``' (``MPQ_DEVICE``)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    resolved = resolve_device(str(device) if device is not None else (settings or load_settings()).device)
    size = batch_size if batch_size is not None else default_batch_size(resolved)
    key = (name, _freeze(kwargs), str(resolved), size)
    with _LOCK:
        if key not in _INSTANCES:
            _INSTANCES[key] = TASKS[name](device=resolved, batch_size=size, **kwargs)
        return _INSTANCES[key]
