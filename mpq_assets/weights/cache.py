"""The per-process model cache: every loaded model (codec network, metric, task backend) lives here once,
with the few costly constants built beside one (a metric's filterbank).

Loading is slow (seconds to minutes) and models are large, so each key is loaded
once per process and shared by every thread. Loads of different keys run at the
same time (one lock per key); a load that fails leaves no entry, so the next call
tries again. Keys are tuples that start with the component's name, e.g.
``("lpips", "alex", "cpu", models_dir)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ModelCache:
    """Loaded models by key, each loaded at most once (per-key locks)."""

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model under ``key``, calling ``load()`` the first time (others asking for it wait)."""
        with self._guard:
            if key in self._models:
                return self._models[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._models:
                    return self._models[key]
            model = load()
            with self._guard:
                self._models[key] = model
            return model

    def __contains__(self, key: Hashable) -> bool:
        with self._guard:
            return key in self._models

    def __len__(self) -> int:
        with self._guard:
            return len(self._models)

    def _matching(self, component: str | None) -> list[Hashable]:
        return [k for k in self._models if component is None or (isinstance(k, tuple) and k[:1] == (component,))]

    def keys(self, component: str | None = None) -> list[Hashable]:
        """The cached keys (of one component: keys whose first element is ``component``)."""
        with self._guard:
            return self._matching(component)

    def clear(self, component: str | None = None) -> None:
        """Forget the cached models (of one component); tests use it to start from an empty process."""
        with self._guard:
            for key in self._matching(component):
                del self._models[key]
                self._locks.pop(key, None)


MODEL_CACHE = ModelCache()  # the process's


def cached(key: Hashable, load: Callable[[], T]) -> T:
    """``MODEL_CACHE.get(key, load)``: the process's cached model under ``key``."""
    return MODEL_CACHE.get(key, load)
