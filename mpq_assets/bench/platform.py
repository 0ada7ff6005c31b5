"""Path (b): the platform's own steps, the functions the Dagster assets call, over every partition.

The sweep runs as a backfill of all its partitions in one run would: ``dataset``
(ingest, setup: not timed), then ``compressed``, ``quality``,
``reference_predictions`` + ``predictions`` + ``task_scores`` for all (codec,
ratio) partitions, writing to a real DuckDB ``ResultsStore`` in a temporary
``MPQ_HOME``. Time inside the store's calls counts as the ``store`` stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mpq_assets.bench.measure import Clock, TimedStore
from mpq_assets.bench.spec import BenchSpec


def run_platform(spec: BenchSpec, data_dir: Path, out_dir: Path, clock: Clock) -> dict[str, Any]:
    from mpq_assets.pipeline import predict, quality, scores
    from mpq_assets.pipeline.compress import compress_partitions
    from mpq_assets.pipeline.ingest import ingest
    from mpq_assets.pipeline.workers import shutdown_workers
    from mpq_assets.settings import load_settings
    from mpq_assets.store import ResultsStore

    settings = load_settings()  # MPQ_HOME: the harness points it at a fresh folder
    settings.ensure_dirs()
    raw = ResultsStore(settings.db_path, lock_timeout_s=settings.lock_timeout_s)
    store = TimedStore(raw, clock)
    experiment = spec.experiment(data_dir)
    parts = spec.partitions
    with clock("setup"):
        ingest(experiment, raw, settings)
    with clock("compress"):
        compress_partitions(experiment, parts, store, settings, workers=spec.workers)
    with clock("quality"):
        quality.quality_partitions(experiment, parts, store, settings)
    with clock("predict"):
        predict.reference_predictions(experiment, store, settings)
        predict.predictions_partitions(experiment, parts, store, settings)
        scores.task_scores_partitions(experiment, parts, store, settings)
    shutdown_workers()
    export_results(raw, settings, experiment.name, spec, out_dir)
    cpu = raw.query("SELECT sum(trials) AS encodes, sum(encode_s) AS encode_s, sum(decode_s) AS decode_s "
                    "FROM compressed WHERE experiment = ?", [experiment.name]).iloc[0]
    return {"encodes": int(cpu.encodes), "encode_cpu_s": float(cpu.encode_s), "decode_cpu_s": float(cpu.decode_s)}


def export_results(store: Any, settings: Any, experiment: str, spec: BenchSpec, out_dir: Path) -> None:
    """The platform's rows in the baseline's file format (CSV + npz), for the comparison."""
    from mpq_assets.pipeline.step import REFERENCE
    from mpq_assets.store.predictions import load_predictions

    out_dir.mkdir(parents=True, exist_ok=True)
    store.query("SELECT codec, bitrate, item_id, bytes, setting, rate_met FROM compressed WHERE experiment = ? "
                "ORDER BY ALL", [experiment]).to_csv(out_dir / "compressed.csv", index=False)
    store.query("SELECT codec, bitrate, item_id, metric, value FROM quality WHERE experiment = ? ORDER BY ALL",
                [experiment]).to_csv(out_dir / "quality.csv", index=False)
    store.query("SELECT codec, bitrate, item_id, metric, value FROM task_scores WHERE experiment = ? AND codec <> ? "
                "ORDER BY ALL", [experiment, REFERENCE]).to_csv(out_dir / "scores.csv", index=False)
    rows, arrays = [], {}
    for codec, bitrate in [*spec.partitions, (REFERENCE, REFERENCE)]:
        for item_id, p in load_predictions(store, settings, experiment, spec.task, codec, bitrate).items():
            rows.append(dict(codec=codec, bitrate=bitrate, item_id=item_id, prediction=json.dumps(p.summary)))
            if p.array is not None:
                arrays[f"{codec}|{bitrate}|{item_id}"] = p.array
    pd.DataFrame(rows).to_csv(out_dir / "predictions.csv", index=False)
    np.savez(out_dir / "arrays.npz", **arrays)
