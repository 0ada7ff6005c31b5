"""The ``compressed`` step: one codec at one target ratio over every item of an experiment.

For each item: the ratio becomes a byte budget, rate control picks the setting,
the bitstream is written as a real file (atomically), and decoding is timed
once. Failures become error rows; the partition's other items still complete,
and a failed write leaves the previous rows in DuckDB untouched.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mpq_assets.codecs import budget_bytes, get_codec, parse_ratio, raw_bytes
from mpq_assets.codecs.base import Codec, Item
from mpq_assets.experiments import Experiment
from mpq_assets.media.audio import Audio, load_audio, write_audio_flac
from mpq_assets.media.image import load_image, write_image_png
from mpq_assets.pipeline.progress import Progress
from mpq_assets.settings import Settings
from mpq_assets.storage_paths import atomic_write_bytes, safe_join
from mpq_assets.store import ResultsStore

log = logging.getLogger(__name__)

COMPRESSED_COLUMNS = ["item_id", "target_ratio", "budget_bytes", "bytes", "bpp", "kbps", "achieved_ratio",
                      "setting", "rate_met", "trials", "encode_s", "decode_s", "path", "decoded_path"]


@dataclass(frozen=True)
class CompressSummary:
    codec: str
    bitrate: str
    items: int
    errors: int
    missed_target: int
    mean_ratio: float | None
    mean_bpp: float | None
    mean_kbps: float | None
    seconds: float


def bitstream_path(settings: Settings, experiment: str, codec: Codec, bitrate: str, item_id: str) -> Path:
    return safe_join(settings.artifacts_dir, experiment, "compressed", codec.name, bitrate,
                     f"{item_id}{codec.extension}")


def decoded_path(bitstream: Path, item: Item) -> Path:
    """Where the lossless copy of the reconstruction lives (PNG / 16-bit FLAC), beside the bitstream."""
    suffix = ".flac" if isinstance(item, Audio) else ".png"
    return bitstream.parent / "decoded" / f"{bitstream.stem}{suffix}"


def load_item(path: str | Path, modality: str) -> Item:
    """Load an original or a cached reconstruction."""
    return load_audio(path) if modality == "audio" else load_image(path)


def compress_item(codec: Codec, item: Item, ratio: float, path: Path) -> dict:
    """Rate-controlled encode of one item, written to ``path``; returns its ``compressed`` row.

    The bitstream is decoded exactly once, here; the reconstruction is cached
    losslessly so quality metrics and task predictions share that decode.
    """
    budget = budget_bytes(item, ratio)
    t0 = time.perf_counter()
    encoded = codec.encode_to_budget(item, budget)
    encode_s = time.perf_counter() - t0
    atomic_write_bytes(path, encoded.data)
    t0 = time.perf_counter()
    decoded = codec.decode(encoded.data, like=item)
    decode_s = time.perf_counter() - t0
    recon = decoded_path(path, item)
    if isinstance(decoded, Audio):
        write_audio_flac(recon, decoded)
    else:
        write_image_png(recon, decoded)
    size = len(encoded.data)
    bits = size * 8
    if isinstance(item, Audio):
        bpp, kbps = None, bits / item.duration_s / 1000.0
    else:
        bpp, kbps = bits / (item.shape[0] * item.shape[1]), None
    return dict(target_ratio=ratio, budget_bytes=budget, bytes=size, bpp=bpp, kbps=kbps,
                achieved_ratio=raw_bytes(item) / size, setting=encoded.setting, rate_met=encoded.rate_met,
                trials=encoded.trials, encode_s=encode_s, decode_s=decode_s, path=str(path),
                decoded_path=str(recon))


def compress_partition(experiment: Experiment, codec_name: str, bitrate: str, store: ResultsStore,
                       settings: Settings,
                       logger: logging.Logger | logging.LoggerAdapter = log) -> CompressSummary:
    start = time.perf_counter()
    ratio = parse_ratio(bitrate)
    codec = get_codec(codec_name)
    missing = codec.weights_missing()
    if missing:  # fail the partition with the fix, rather than one identical error row per item
        from mpq_assets.weights import ModelNotAvailableError

        raise ModelNotAvailableError(f"codec {codec_name}: {missing}")
    if codec.modality != experiment.modality:
        raise ValueError(f"codec {codec_name} is for {codec.modality}, experiment {experiment.name} is "
                         f"{experiment.modality}")
    manifest = store.query("SELECT item_id, original_path, modality FROM items WHERE experiment = ? "
                           "ORDER BY item_id", [experiment.name])
    if manifest.empty:
        raise RuntimeError(f"experiment {experiment.name} has no items in {store.path}: materialise "
                           f"{experiment.name}/dataset first")
    rows, errors = [], []
    progress = Progress(logger, f"{experiment.name}/compressed {codec_name}@{bitrate}", len(manifest))
    for done, rec in enumerate(manifest.itertuples(index=False), 1):
        try:
            item = load_item(rec.original_path, rec.modality)
            path = bitstream_path(settings, experiment.name, codec, bitrate, rec.item_id)
            rows.append(dict(item_id=rec.item_id, **compress_item(codec, item, ratio, path)))
        except Exception as exc:  # an item that fails is reported, the partition goes on
            logger.warning("%s %s@%s: item %s failed: %s", experiment.name, codec_name, bitrate, rec.item_id, exc)
            errors.append(dict(item_id=rec.item_id, error=f"{type(exc).__name__}: {exc}"))
        progress.step(done)
    frame = pd.DataFrame(rows, columns=COMPRESSED_COLUMNS)
    err = pd.DataFrame(errors, columns=["item_id", "error"])
    keys = {"experiment": experiment.name, "codec": codec_name, "bitrate": bitrate}
    store.replace_partitions([
        ("compressed", keys, frame),
        ("errors", {**keys, "stage": "compressed"}, err),
    ])

    def mean(col: str) -> float | None:
        vals = frame[col].dropna()
        return float(vals.mean()) if len(vals) else None

    return CompressSummary(codec_name, bitrate, len(frame), len(err), int((~frame["rate_met"].astype(bool)).sum()),
                           mean("achieved_ratio"), mean("bpp"), mean("kbps"), time.perf_counter() - start)
