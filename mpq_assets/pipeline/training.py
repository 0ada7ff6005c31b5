"""The training steps: a model per training variant and seed (``trained_models``), then every trained model on
every test variant (``transfer_matrix``).

A variant's items are read as any step reads them: the uncompressed originals from the manifest, or a
partition's reconstructions from ``compressed``. The recipe's fixed features are computed once per variant and
shared by every seed (and, at test time, by every trained model). A training variant whose partition was never
materialised, or whose every item failed, is skipped with a note naming it; the others are trained. An item that
cannot be read is left out of its variant with an error row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from mpq_assets.artifacts import trained_model_path
from mpq_assets.device import resolve_device
from mpq_assets.experiments import Experiment
from mpq_assets.media.item import load_item
from mpq_assets.pipeline.progress import Progress
from mpq_assets.pipeline.step import REFERENCE, Key, StepSummary, errors_frame, manifest, partition_rows
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore
from mpq_assets.training import Recipe, TrainedModel, fit, load, make_recipe, predict, save

log = logging.getLogger(__name__)
UNCOMPRESSED: Key = (REFERENCE, REFERENCE)
RUN_COLUMNS = ["train_codec", "train_bitrate", "seed", "recipe", "config", "items", "classes", "epochs", "final_loss",
               "final_train_accuracy", "wall_s", "device", "sha256", "path"]
CURVE_COLUMNS = ["train_codec", "train_bitrate", "seed", "epoch", "loss", "train_accuracy"]
SCORE_COLUMNS = ["train_codec", "train_bitrate", "seed", "test_codec", "test_bitrate", "metric", "value", "n",
                 "model_sha256"]


def variant_name(key: Key) -> str:
    return "uncompressed" if key == UNCOMPRESSED else f"{key[0]}@{key[1]}"


@dataclass
class Variant:
    """One variant's fixed features, labels and item ids, and the items that could not be read."""

    key: Key
    features: torch.Tensor
    labels: list[str]
    item_ids: list[str]
    errors: list[dict]


def _recipe(experiment: Experiment) -> Recipe:
    spec = experiment.training
    if spec is None:
        raise ValueError(f"experiment {experiment.name} declares no training")
    return make_recipe(spec.recipe, **dict(spec.recipe_args))


def load_variant(experiment: Experiment, store: ResultsStore, key: Key, recipe: Recipe) -> Variant:
    """The variant's labelled items through the recipe's features. RuntimeError where it has no items."""
    if key == UNCOMPRESSED:
        rows = manifest(store, experiment).rename(columns={"original_path": "path"})
    else:
        rows, failed = partition_rows(store, experiment, [key])
        if key in failed:
            raise RuntimeError(f"{experiment.name}: every item of {variant_name(key)} failed in compressed")
        rows = rows.rename(columns={"decoded_path": "path"})
    rows = rows[rows["label"].notna()]
    items, labels, ids, errors = [], [], [], []
    for r in rows.itertuples(index=False):
        try:
            items.append(load_item(r.path, r.modality))
            labels.append(str(r.label))
            ids.append(r.item_id)
        except Exception as exc:  # a file gone or damaged: the item is left out, named
            errors.append(dict(item_id=r.item_id, error=f"{variant_name(key)}: {type(exc).__name__}: {exc}"))
    if not items:
        raise RuntimeError(f"{experiment.name}: {variant_name(key)} has no readable labelled items")
    return Variant(key, recipe.features(items), labels, ids, errors)


def _loaded(experiment: Experiment, store: ResultsStore, key: Key, recipe: Recipe, role: str, summary: StepSummary,
            logger: logging.Logger | logging.LoggerAdapter) -> Variant | None:
    """The variant, or None with a note naming it and why (the other variants go on)."""
    try:
        return load_variant(experiment, store, key, recipe)
    except RuntimeError as exc:
        summary.notes.append(f"{role} variant {variant_name(key)} skipped: {exc}")
        logger.warning("%s", summary.notes[-1])
        return None


def train_models(experiment: Experiment, store: ResultsStore, settings: Settings,
                 logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Every training variant x seed, saved as safetensors; rows in ``training_runs`` and ``training_curves``."""
    spec, recipe = experiment.training, _recipe(experiment)
    assert spec is not None
    split = experiment.training_split()
    classes = sorted({str(v) for v in manifest(store, split)["label"].dropna()})
    device = resolve_device(settings.device)
    summary = StepSummary()
    runs, curves, errors = [], [], []
    points = store.query("SELECT codec, bitrate, point FROM partition_points WHERE experiment = ?", [split.name])
    point_of = {(c, b): p for c, b, p in points.itertuples(index=False, name=None)}
    trained: dict[str, Key] = {}
    progress = Progress(logger, f"{experiment.name}/trained_models (models)", (1 + len(spec.variants)) * spec.seeds)
    fitted = 0
    for key in [UNCOMPRESSED, *spec.variants]:
        point = point_of.get(key, variant_name(key))
        if point in trained:  # the same bitstreams as a variant already trained: the same models
            summary.notes.append(f"training variant {variant_name(key)} is the operating point of "
                                 f"{variant_name(trained[point])} (identical bitstreams): trained once")
            continue
        trained[point] = key
        variant = _loaded(split, store, key, recipe, "training", summary, logger)
        if variant is None:
            continue
        errors += variant.errors
        for seed in range(spec.seeds):
            model = fit(recipe, variant.features, variant.labels, classes, seed=seed, device=device)
            path = save(model, trained_model_path(settings, experiment.name, *key, seed))
            last = model.curve[-1] if model.curve else {}
            runs.append(dict(train_codec=key[0], train_bitrate=key[1], seed=seed, recipe=recipe.name,
                             config=json.dumps(model.config, sort_keys=True), items=len(variant.labels),
                             classes=len(classes), epochs=len(model.curve), final_loss=last.get("loss"),
                             final_train_accuracy=last.get("train_accuracy"), wall_s=model.wall_s,
                             device=str(device), sha256=model.sha256, path=str(path)))
            curves += [dict(train_codec=key[0], train_bitrate=key[1], seed=seed, **row) for row in model.curve]
            logger.info("%s: trained on %s, seed %d: %d items, %.1f s, final loss %.3f, sha256 %s",
                        experiment.name, variant_name(key), seed, len(variant.labels), model.wall_s,
                        last.get("loss", float("nan")), model.sha256[:12])
            fitted += 1
            progress.step(fitted)
    if not runs:
        raise RuntimeError(f"{experiment.name}: no training variant could be trained: " + "; ".join(summary.notes))
    keys = {"experiment": experiment.name}
    store.replace_partitions([
        ("training_runs", keys, pd.DataFrame(runs, columns=RUN_COLUMNS)),
        ("training_curves", keys, pd.DataFrame(curves, columns=CURVE_COLUMNS)),
        ("errors", {**keys, "stage": "trained_models", "codec": "", "bitrate": ""}, errors_frame(errors)),
    ])
    summary.items, summary.errors, summary.rows = len(runs), len(errors), len(runs)
    return summary


def evaluation_variants(experiment: Experiment, store: ResultsStore) -> list[Key]:
    """The uncompressed items and every compressed partition of the experiment that has rows."""
    parts = store.query("SELECT DISTINCT codec, bitrate, target_ratio FROM compressed WHERE experiment = ? "
                        "ORDER BY codec, target_ratio", [experiment.name])
    return [UNCOMPRESSED, *zip(parts["codec"], parts["bitrate"], strict=True)]


def _scores(models: Sequence[tuple[dict, TrainedModel]], variant: Variant, recipe: Recipe) -> list[dict]:
    rows = []
    for run, model in models:
        index = {c: i for i, c in enumerate(model.classes)}
        truth = torch.tensor([index.get(lab, -1) for lab in variant.labels])
        guess = predict(model, variant.features, recipe).argmax(dim=1)
        rows.append(dict(train_codec=run["train_codec"], train_bitrate=run["train_bitrate"], seed=int(run["seed"]),
                         test_codec=variant.key[0], test_bitrate=variant.key[1], metric="accuracy",
                         value=float((guess == truth).float().mean()), n=len(variant.labels),
                         model_sha256=model.sha256))
    return rows


def transfer_matrix(experiment: Experiment, store: ResultsStore, settings: Settings,
                    logger: logging.Logger | logging.LoggerAdapter = log) -> StepSummary:
    """Every trained model on every test variant: one ``transfer_scores`` row per (train variant, seed, test
    variant, metric)."""
    recipe = _recipe(experiment)
    runs = store.query("SELECT * FROM training_runs WHERE experiment = ? ORDER BY train_codec, train_bitrate, seed",
                       [experiment.name])
    if runs.empty:
        raise RuntimeError(f"{experiment.name} has no trained models: materialise {experiment.name}/trained_models "
                           "first")
    models = []
    for run in runs.to_dict("records"):
        model = load(trained_model_path(settings, experiment.name, run["train_codec"], run["train_bitrate"],
                                        int(run["seed"])))
        if model.sha256 != run["sha256"]:
            raise RuntimeError(f"{run['path']}: weights differ from the ones trained (sha256 {model.sha256[:12]} "
                               f"vs {run['sha256'][:12]}); rematerialise {experiment.name}/trained_models")
        models.append((run, model))
    summary = StepSummary()
    rows, errors = [], []
    for key in evaluation_variants(experiment, store):
        variant = _loaded(experiment, store, key, recipe, "test", summary, logger)
        if variant is None:
            continue
        errors += variant.errors
        rows += _scores(models, variant, recipe)
        logger.info("%s: %d trained models on %s (%d items)", experiment.name, len(models), variant_name(key),
                    len(variant.labels))
    keys = {"experiment": experiment.name}
    store.replace_partitions([
        ("transfer_scores", keys, pd.DataFrame(rows, columns=SCORE_COLUMNS)),
        ("errors", {**keys, "stage": "transfer_matrix", "codec": "", "bitrate": ""}, errors_frame(errors)),
    ])
    summary.items, summary.errors, summary.rows = len(rows), len(errors), len(rows)
    return summary


def matrix_table(store: ResultsStore, experiment: str) -> pd.DataFrame:
    """The matrix as a table: train variants (rows) x test variants (columns), 'mean ± sd' over seeds."""
    frame = matrix_cells(store, experiment)
    if frame.empty:
        return frame
    rows, cols = _by_ratio(frame, "train_variant", "train_ratio"), _by_ratio(frame, "test_variant", "test_ratio")
    cell = frame.assign(cell=[f"{m:.3f} ± {0.0 if pd.isna(s) else s:.3f}"
                              for m, s in zip(frame["mean"], frame["sd"], strict=True)])
    table = cell.pivot(index="train_variant", columns="test_variant", values="cell").reindex(index=rows, columns=cols)
    return table.reset_index().rename(columns={"train_variant": "trained on \\ tested on"})


def _labelled(variant: str, ratio: float | None) -> str:
    return variant if ratio is None or pd.isna(ratio) else f"{variant} ({ratio:.0f}:1)"


def matrix_cells(store: ResultsStore, experiment: str, metric: str = "accuracy") -> pd.DataFrame:
    """The matrix's cells, long, with each variant labelled by its achieved pooled ratio (``opus@50x (33:1)``:
    a target the codec could not reach shows what it did reach)."""
    frame = store.query("SELECT train_variant, test_variant, train_ratio, test_ratio, mean, sd, seeds FROM "
                        "transfer_matrix WHERE experiment = ? AND metric = ?", [experiment, metric])
    return frame.assign(
        train_variant=[_labelled(v, r) for v, r in zip(frame["train_variant"], frame["train_ratio"], strict=True)],
        test_variant=[_labelled(v, r) for v, r in zip(frame["test_variant"], frame["test_ratio"], strict=True)])


def _by_ratio(frame: pd.DataFrame, variant: str, ratio: str) -> list[str]:
    """Variants in order of their pooled ratio, uncompressed first."""
    return frame.sort_values([ratio, variant], na_position="first")[variant].drop_duplicates().tolist()
