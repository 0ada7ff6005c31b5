"""The ``quality`` step: full-reference metrics between each original and its cached reconstructions.

Quality goes item by item: each original is loaded and *prepared* once per metric
(``QualityMetric.prepare``: its LPIPS features, its filtered SSIM statistics) and scored against its
reconstructions in every partition of the run; byte-identical reconstructions are scored once (``memo``).
On a CPU device the metrics run in worker processes (``workers``), one original per job; on a GPU here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mpq_assets.experiments import Experiment
from mpq_assets.media.item import Item, load_item
from mpq_assets.pipeline.memo import METRIC_VALUES, file_digest
from mpq_assets.pipeline.progress import Progress
from mpq_assets.pipeline.step import Key, StepSummary, errors_frame, failed_note, partition_rows
from mpq_assets.pipeline.workers import in_order, pool_workers
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore
from mpq_assets.weights import cached

log = logging.getLogger(__name__)


def _metric(name: str, device: str, settings: Settings) -> Any:
    """One metric object per (name, device, model folder) in a process (LPIPS loads its network once)."""
    from mpq_assets.quality.registry import make_metric

    return cached(("metric", name, device, str(settings.models_dir)), lambda: make_metric(name, device, settings))


@dataclass(frozen=True)
class _QualityJob:
    """One original and its distinct reconstructions (by digest) with the metrics each still needs."""

    device: str
    settings: Settings  # the step's: where a metric's converted weights live
    original_path: str
    modality: str
    recons: tuple[tuple[str, str, tuple[str, ...]], ...]  # (digest, path, metric names)


@dataclass
class _QualityResult:
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # digest -> metric -> value
    errors: dict[str, str] = field(default_factory=dict)               # digest -> error
    skipped: dict[str, str] = field(default_factory=dict)              # metric -> why the original cannot be scored
    failed: str | None = None                                          # the original itself failed


def _load_reconstructions(job: _QualityJob, out: _QualityResult) -> dict[str, Item]:
    """The job's reconstructions by digest; one that cannot be read becomes its error."""
    dists: dict[str, Item] = {}
    for digest, path, _ in job.recons:
        try:
            dists[digest] = load_item(path, job.modality)
        except Exception as exc:
            out.errors[digest] = f"{type(exc).__name__}: {exc}"
    return dists


def _score_metric(name: str, metric: Any, ref: Item, todo: list[str], dists: dict[str, Item],
                  out: _QualityResult) -> None:
    """One metric prepared once on the original, then scored on each reconstruction that needs it."""
    try:
        prepared = metric.prepare(ref)
        # one reconstruction per call: on CPU a batch is slower (docs/performance.md), and it isolates failures
        for d in todo:
            out.values.setdefault(d, {})[name] = float(metric.score_prepared(prepared, [dists[d]])[0])
    except Exception as exc:
        for d in todo:
            if name not in out.values.get(d, {}):
                out.errors.setdefault(d, f"{name}: {type(exc).__name__}: {exc}")


def _quality_job(job: _QualityJob) -> _QualityResult:
    out = _QualityResult()
    try:
        ref = load_item(job.original_path, job.modality)
    except Exception as exc:
        out.failed = f"{type(exc).__name__}: {exc}"
        return out
    names = list(dict.fromkeys(m for _, _, ms in job.recons for m in ms))
    metrics = {name: _metric(name, job.device, job.settings) for name in names}
    for name, metric in metrics.items():
        reason = metric.applicable(ref)
        if reason:
            out.skipped[name] = reason
    dists = _load_reconstructions(job, out)
    for name, metric in metrics.items():
        todo = [d for d, _, ms in job.recons if name in ms and d in dists]
        if name not in out.skipped and todo:
            _score_metric(name, metric, ref, todo, dists, out)
    return out


def _quality_jobs(frame: pd.DataFrame, metric_names: Sequence[str], device: str, settings: Settings,
                  errors: dict[Key, list[dict]]) -> Iterable[tuple[str, list, str, _QualityJob]]:
    """Per item: (item_id, its partition rows with digests, original digest, the job for what the memo lacks)."""
    for item_id, recs in frame.groupby("item_id", sort=False):
        recs = list(recs.itertuples(index=False))
        try:
            ref_digest = file_digest(recs[0].original_path)
        except Exception as exc:
            for rec in recs:
                errors[(rec.codec, rec.bitrate)].append(dict(item_id=item_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        located = []
        needed: dict[str, tuple[str, set[str]]] = {}  # digest -> (path, metrics)
        for rec in recs:
            key = (rec.codec, rec.bitrate)
            try:
                digest = file_digest(rec.decoded_path)
            except Exception as exc:
                errors[key].append(dict(item_id=item_id, error=f"{type(exc).__name__}: {exc}"))
                continue
            located.append((key, digest))
            for name in metric_names:
                if METRIC_VALUES.get((name, ref_digest, digest)) is None:
                    needed.setdefault(digest, (rec.decoded_path, set()))[1].add(name)
        # the original is always checked (applicable) by the job, even when the memo has every value
        job = _QualityJob(device, settings, recs[0].original_path, recs[0].modality,
                          tuple((d, p, tuple(sorted(ms))) for d, (p, ms) in needed.items()))
        yield item_id, located, ref_digest, job


def _collect(item_id: str, located: list[tuple[Key, str]], ref_digest: str, result: _QualityResult,
             names: Sequence[str], rows: dict[Key, list[dict]], errors: dict[Key, list[dict]],
             skipped: dict[Key, dict[str, list[str]]]) -> None:
    """One original's job result into its partitions' rows, errors and skip notes (values via the memo)."""
    if result.failed:
        for key, _ in located:
            errors[key].append(dict(item_id=item_id, error=result.failed))
        return
    for digest, values in result.values.items():
        for name, value in values.items():
            METRIC_VALUES.put((name, ref_digest, digest), value)
    for key, digest in located:
        if digest in result.errors:
            errors[key].append(dict(item_id=item_id, error=result.errors[digest]))
        for name in names:
            if name in result.skipped:
                skipped[key].setdefault(name, []).append(f"{item_id} ({result.skipped[name]})")
                continue
            value = METRIC_VALUES.get((name, ref_digest, digest))
            if value is not None:
                rows[key].append(dict(item_id=item_id, metric=name, value=value))


def quality_partitions(experiment: Experiment, partitions: Sequence[Key], store: ResultsStore,
                       settings: Settings, logger: logging.Logger | logging.LoggerAdapter = log
                       ) -> dict[Key, StepSummary]:
    """Full-reference quality of every (codec, bitrate) partition given, item by item; one store write.

    Each original is loaded once and prepared once per metric, then scored against its
    reconstructions in every partition; byte-identical reconstructions are scored once.
    """
    from mpq_assets.device import resolve_device

    parts = list(dict.fromkeys(partitions))
    frame, failed = partition_rows(store, experiment, parts)
    device = str(resolve_device(settings.device))
    names = list(experiment.quality_metrics)
    rows: dict[Key, list[dict]] = {p: [] for p in parts}
    errors: dict[Key, list[dict]] = {p: [] for p in parts}
    skipped: dict[Key, dict[str, list[str]]] = {p: {} for p in parts}
    planned = list(_quality_jobs(frame, names, device, settings, errors))
    workers = pool_workers(settings)
    progress = Progress(logger, f"{experiment.name}/quality {len(parts)} partition(s)", len(planned))
    results = in_order([job for *_, job in planned], _quality_job, workers)
    for done, ((item_id, located, ref_digest, _), result) in enumerate(zip(planned, results, strict=True), 1):
        _collect(item_id, located, ref_digest, result, names, rows, errors, skipped)
        progress.step(done)
    writes = []
    summaries: dict[Key, StepSummary] = {}
    counts = frame.groupby(["codec", "bitrate"]).size()
    for key in parts:
        df = pd.DataFrame(rows[key], columns=["item_id", "metric", "value"])
        keys = {"experiment": experiment.name, "codec": key[0], "bitrate": key[1]}
        writes += [("quality", keys, df), ("errors", {**keys, "stage": "quality"}, errors_frame(errors[key]))]
        summary = StepSummary(items=int(counts.get(key, 0)), errors=len(errors[key]), rows=len(df))
        if key in failed:
            summary.notes.append(failed_note(key, failed[key]))
        for name, ids_ in skipped[key].items():
            note = f"{name} skipped for {len(ids_)} item(s): {'; '.join(ids_)}"
            logger.info(note)
            summary.notes.append(note)
        if len(df):
            summary.means = {k: round(float(v), 4) for k, v in df.groupby("metric")["value"].mean().items()}
        summaries[key] = summary
    store.replace_partitions(writes)
    return summaries


def quality_partition(experiment: Experiment, codec: str, bitrate: str, store: ResultsStore, settings: Settings,
                      logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Full-reference quality metrics between each original and its cached reconstruction."""
    return quality_partitions(experiment, [(codec, bitrate)], store, settings, logger)[(codec, bitrate)]
