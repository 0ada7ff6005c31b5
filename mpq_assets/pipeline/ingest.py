"""The ``dataset`` step: load every item, normalise it, cache the original, write the manifest.

A bad item (corrupt, empty, NaN audio, ...) becomes an error row naming the item
and the reason; the rest of the dataset is still ingested.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pandas as pd

from mpq_assets.artifacts import original_path
from mpq_assets.datasets.base import check_item_id
from mpq_assets.experiments import Experiment
from mpq_assets.media.audio import Audio, quantise_pcm16, validate_audio, write_audio_flac
from mpq_assets.media.image import write_image_png
from mpq_assets.media.item import raw_bytes
from mpq_assets.pipeline.progress import Progress
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestSummary:
    items: int
    errors: int
    raw_mb: float
    error_items: list[str]


def ingest(experiment: Experiment, store: ResultsStore, settings: Settings,
           logger: logging.Logger | logging.LoggerAdapter = log) -> IngestSummary:
    dataset = experiment.make_dataset(settings)
    sources = list(dataset.items())
    rows, errors = [], []
    progress = Progress(logger, f"{experiment.name}/dataset", len(sources))
    seen: set[str] = set()
    for done, src in enumerate(sources, 1):
        try:
            item_id = check_item_id(src.item_id)
            if item_id in seen:
                raise ValueError(f"duplicate item id {item_id!r} (source {src.source}); ids must be unique")
            seen.add(item_id)
            item = src.load()
            if isinstance(item, Audio):
                item = quantise_pcm16(validate_audio(item, what=item_id))
                path = original_path(settings, experiment.name, item_id, "audio")
                write_audio_flac(path, item)
                shape = dict(sample_rate=item.sample_rate, channels=item.channels, frames=item.frames,
                             duration_s=item.duration_s)
            else:
                path = original_path(settings, experiment.name, item_id, "image")
                write_image_png(path, item)
                shape = dict(width=int(item.shape[1]), height=int(item.shape[0]), channels=3)
            rows.append(dict(item_id=item_id, modality=dataset.modality, source=src.source,
                             original_path=str(path), label=src.label, fields=json.dumps(src.extra, sort_keys=True),
                             raw_bytes=raw_bytes(item), **shape))
        except Exception as exc:  # every failure becomes an error row naming the item
            logger.warning("%s: item %s skipped: %s", experiment.name, src.item_id, exc)
            errors.append(dict(item_id=src.item_id, error=f"{type(exc).__name__}: {exc}"))
        progress.step(done)
    items = pd.DataFrame(rows, columns=["item_id", "modality", "source", "original_path", "label", "fields",
                                        "width", "height", "sample_rate", "channels", "frames", "duration_s",
                                        "raw_bytes"])
    err = pd.DataFrame(errors, columns=["item_id", "error"])
    store.replace_partitions([
        ("items", {"experiment": experiment.name}, items),
        ("errors", {"experiment": experiment.name, "stage": "dataset", "codec": "", "bitrate": ""}, err),
    ])
    return IngestSummary(len(items), len(err), float(items["raw_bytes"].sum()) / 1e6 if len(items) else 0.0,
                         [e["item_id"] for e in errors])
