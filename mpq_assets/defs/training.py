"""Assets of a train-variant x test-variant study: the training split's own dataset and compressed
partitions (group ``<name>_train``), ``trained_models`` and ``transfer_matrix`` (group ``<name>``)."""

from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from mpq_assets.analysis import matrix_heatmap, png_markdown
from mpq_assets.defs.automation import analysis_condition
from mpq_assets.defs.resources import GPU_POOL, MpqResource
from mpq_assets.experiments import Experiment
from mpq_assets.pipeline import training as training_step
from mpq_assets.store import ResultsStore


def _md(frame: Any) -> MetadataValue:
    return MetadataValue.md("(no rows)" if frame is None or frame.empty else frame.to_markdown(index=False,
                                                                                              floatfmt=".4g"))


def matrix_figure(store: ResultsStore, experiment: str) -> dict[str, bytes]:
    """The accuracy heat map of the matrix (empty when nothing was evaluated)."""
    frame = training_step.matrix_cells(store, experiment).rename(columns={"train_variant": "row",
                                                                         "test_variant": "column"})
    if frame.empty:
        return {}
    rows = frame.sort_values(["train_ratio", "row"], na_position="first")["row"].drop_duplicates().tolist()
    cols = frame.sort_values(["test_ratio", "column"], na_position="first")["column"].drop_duplicates().tolist()
    seeds = store.query("SELECT max(seeds) AS s FROM transfer_matrix WHERE experiment = ?", [experiment])["s"][0]
    return {"transfer_matrix": matrix_heatmap(frame, rows=rows, columns=cols, value_label="accuracy",
                                              title=f"{experiment}: accuracy, mean ± sd over {seeds} seeds")}


def training_assets(experiment: Experiment, split_assets: list[AssetsDefinition],
                    test_keys: dict[str, Any], op_tags: dict[str, Any]) -> list[AssetsDefinition]:
    """``trained_models`` (after the training split's partitions) and ``transfer_matrix`` (after the models
    and the experiment's own partitions)."""
    name = experiment.name
    split_keys = [a.key for a in split_assets if a.key.path[-1] in ("dataset", "compressed")]
    common = dict(group_name=name, kinds={"duckdb", "python"})
    spec = experiment.training
    assert spec is not None
    variants = ", ".join(["uncompressed", *(f"{c}@{b}" for c, b in spec.variants)])

    @asset(key=[name, "trained_models"], deps=split_keys, pool=GPU_POOL, op_tags=op_tags,
           description=f"{spec.recipe} trained on each training variant ({variants}) of "
           f"{experiment.training_split().name}, {spec.seeds} seeds each; safetensors weights with their hash.",
           **common)
    def trained_models(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store = mpq.store()
        s = training_step.train_models(experiment, store, mpq.settings(), context.log)
        runs = store.query("SELECT CASE WHEN train_codec = 'reference' THEN 'uncompressed' ELSE train_codec || '@' "
                           "|| train_bitrate END AS variant, seed, items, epochs, final_loss, final_train_accuracy, "
                           "wall_s, left(sha256, 12) AS sha256 FROM training_runs WHERE experiment = ? "
                           "ORDER BY variant, seed", [name])
        meta: dict[str, Any] = {"models": s.items, "errors": s.errors, "runs": _md(runs)}
        if s.notes:
            meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in s.notes))
        return MaterializeResult(metadata=meta)

    @asset(key=[name, "transfer_matrix"], deps=[trained_models.key, *test_keys.values()],
           automation_condition=analysis_condition(), pool=GPU_POOL, op_tags=op_tags,
           description="Every trained model on every test variant (the uncompressed test items and each "
           "compressed partition): accuracy per seed, the train x test matrix with its spread over seeds.", **common)
    def transfer_matrix(context: AssetExecutionContext, mpq: MpqResource) -> MaterializeResult:
        store = mpq.store()
        s = training_step.transfer_matrix(experiment, store, mpq.settings(), context.log)
        meta: dict[str, Any] = {"rows": s.rows, "errors": s.errors,
                                "matrix": _md(training_step.matrix_table(store, name))}
        meta.update({f"plot_{k}": MetadataValue.md(png_markdown(v, k)) for k, v in matrix_figure(store,
                                                                                                 name).items()})
        if s.notes:
            meta["notes"] = MetadataValue.md("\n".join(f"- {n}" for n in s.notes))
        return MaterializeResult(metadata=meta)

    return [trained_models, transfer_matrix]
