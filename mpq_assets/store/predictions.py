"""Prediction arrays (class probabilities, label maps, separated stems): one ``.npz`` per partition beside
the rows in DuckDB, written member by member and read one item at a time."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpq_assets.artifacts import predictions_path
from mpq_assets.settings import Settings
from mpq_assets.store.results_store import ResultsStore


class ArraysWriter:
    """An ``.npz`` written array by array (a zip of ``.npy`` members, what ``np.savez_compressed`` writes),
    published atomically on ``close``: no partition's arrays are ever all in memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED)

    def add(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(f"{name}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)

    def close(self) -> None:
        self.zip.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.zip.close()
        self.tmp.unlink(missing_ok=True)


def load_predictions(store: ResultsStore, settings: Settings, experiment: str, task: str, codec: str,
                     bitrate: str, model: str | None = None) -> dict[str, StoredPrediction]:
    """Predictions of one partition (summary from DuckDB, arrays from the artifact), by item id.

    With ``model``, predictions made by another model are refused: scores must never mix models.
    """
    df = store.query("SELECT item_id, prediction, model FROM predictions WHERE experiment = ? AND task = ? AND "
                     "codec = ? AND bitrate = ?", [experiment, task, codec, bitrate])
    return predictions_from(df, settings, experiment, task, codec, bitrate, model)


def predictions_from(df: pd.DataFrame, settings: Settings, experiment: str, task: str, codec: str, bitrate: str,
                      model: str | None) -> dict[str, StoredPrediction]:
    if model is not None and len(df) and set(df["model"]) != {model}:
        raise RuntimeError(f"{experiment} {task} predictions for {codec}@{bitrate} were made by "
                           f"{sorted(set(df['model']))}, not {model}: re-materialise them before scoring")
    path = predictions_path(settings, experiment, task, codec, bitrate)
    arrays = PartitionArrays(path) if path.exists() and len(df) else None
    return {r.item_id: StoredPrediction(json.loads(r.prediction), arrays, r.item_id) for r in df.itertuples()}


class PartitionArrays:
    """A partition's ``.npz`` of prediction arrays, opened once; each member is read when asked for, and the
    last one read is kept (scorers look at an item's array several times before the next item's)."""

    def __init__(self, path: Path) -> None:
        self.npz = np.load(path)
        self.names = set(self.npz.files)
        self._last: tuple[str, np.ndarray] | None = None

    def get(self, name: str) -> np.ndarray | None:
        if name not in self.names:
            return None
        if self._last is None or self._last[0] != name:
            self._last = (name, self.npz[name])
        return self._last[1]


class StoredPrediction:
    """A stored prediction (``summary`` and ``array``, as a task's ``Prediction``) whose array stays in its
    partition's ``.npz`` until used: scoring a partition then holds one item's array at a time, not all of
    them (segmentation maps)."""

    def __init__(self, summary: dict[str, Any], arrays: PartitionArrays | None, item_id: str) -> None:
        self.summary = summary
        self._arrays, self._item_id = arrays, item_id

    @property
    def array(self) -> np.ndarray | None:
        return None if self._arrays is None else self._arrays.get(self._item_id)


def with_arrays(settings: Settings, experiment: str, task: str, key: tuple[str, str],
                 preds: dict[str, Any]) -> dict[str, Any]:
    """The summaries of ``preds`` with their arrays read back from the partition's ``.npz``."""
    path = predictions_path(settings, experiment, task, *key)
    if not path.exists():
        return preds
    arrays = PartitionArrays(path)
    return {i: StoredPrediction(p.summary, arrays, i) for i, p in preds.items()}
