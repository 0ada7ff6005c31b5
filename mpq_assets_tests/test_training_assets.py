"""A train-variant x test-variant study through a real Dagster instance on the command-word corpus (a few clips
per word): the training split's own compressed partitions, models per variant and seed in safetensors, the
matrix in DuckDB with its spread over seeds, a declared variant that was never compressed skipped with a note,
and a damaged test file named in the errors while the rest is scored."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from mpq_assets.defs.assets import ANALYSES, experiment_assets
from mpq_assets.defs.demo import ensure_codec_partitions
from mpq_assets.defs.partitions import partition_key
from mpq_assets.defs.resources import MpqResource
from mpq_assets.experiments import Experiment, TaskSpec, TrainingSpec
from mpq_assets.media.item import load_item
from mpq_assets.training import MelCNN, load, predict

pytestmark = [pytest.mark.usefixtures("one_torch_thread")]

EXP = Experiment("kws_tiny", "audio", "demo_commands", {"split": "test", "per_word": 2},
                 training=TrainingSpec("mel_cnn", {"split": "train", "per_word": 4},
                                       variants=(("mp3", "20x"), ("mp3", "50x"), ("codec2", "100x")), seeds=2,
                                       recipe_args={"epochs": 3, "batch_size": 16}))


def _meta(result, asset: str) -> dict:
    (mat,) = result.asset_materializations_for_node(f"{EXP.name}__{asset}")
    return mat.metadata


def test_train_by_test_matrix_through_dagster(tmp_path: Path) -> None:
    resource = MpqResource(home=str(tmp_path / "home"))
    store, settings = resource.store(), resource.settings()
    assets = experiment_assets(EXP)
    keys = {a.key.to_user_string() for a in assets}
    assert {"kws_tiny_train/dataset", "kws_tiny_train/compressed", "kws_tiny/trained_models",
            "kws_tiny/transfer_matrix", "kws_tiny/report"} <= keys
    whole = [a.key for a in assets if a.partitions_def is None and a.key.path[-1] not in ANALYSES]
    partitioned = [a.key for a in assets if a.partitions_def is not None]
    studied = [a.key for a in assets if a.key.path[-1] in ("trained_models", "transfer_matrix", "report")]
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        run = dict(instance=instance, resources={"mpq": resource})
        assert materialize(assets, selection=whole, **run).success
        ensure_codec_partitions(instance, EXP, ["mp3"])
        for bitrate in ("20x", "50x"):  # 1 s at 16 kHz: MP3's lowest setting is 23:1, so 50x is 20x's point
            assert materialize(assets, selection=partitioned, partition_key=partition_key("mp3", bitrate),
                               **run).success
        first = materialize(assets, selection=studied, **run)
        assert first.success

        runs = store.query("SELECT * FROM training_runs WHERE experiment = 'kws_tiny' ORDER BY train_codec, seed")
        # uncompressed and mp3@20x, two seeds each; mp3@50x carries mp3@20x's bitstreams: trained once;
        # codec2@100x was never compressed: skipped, said so
        points = store.query("SELECT DISTINCT point FROM partition_points WHERE experiment = 'kws_tiny_train'")
        assert points["point"].tolist() == ["mp3@20x"]
        assert runs[["train_codec", "train_bitrate", "seed"]].values.tolist() == [
            ["mp3", "20x", 0], ["mp3", "20x", 1], ["reference", "reference", 0], ["reference", "reference", 1]]
        assert (runs["items"] == 40).all() and (runs["epochs"] == 3).all() and (runs["classes"] == 10).all()
        notes = _meta(first, "trained_models")["notes"].value
        assert "codec2@100x skipped" in notes and "mp3@50x is the operating point of mp3@20x" in notes
        for r in runs.itertuples():
            assert Path(r.path).is_file() and load(Path(r.path)).sha256 == r.sha256
        assert runs["sha256"].nunique() == 4  # another seed or another variant: other weights
        curves = store.query("SELECT count(*) AS n FROM training_curves WHERE experiment = 'kws_tiny'")
        assert curves["n"][0] == 4 * 3

        scores = store.query("SELECT * FROM transfer_scores WHERE experiment = 'kws_tiny'")  # before the damage
        assert len(scores) == 4 * 3 and (scores["n"] == 20).all()  # 4 models x (uncompressed, mp3 20x, 50x)
        assert set(scores["model_sha256"]) == set(runs["sha256"])
        # one cell by hand: the uncompressed model of seed 1 on the uncompressed test items
        run1 = runs[(runs.train_codec == "reference") & (runs.seed == 1)].iloc[0]
        model = load(Path(run1["path"]))
        items = store.query("SELECT original_path, label FROM items WHERE experiment = 'kws_tiny' ORDER BY item_id")
        feats = MelCNN().features([load_item(p, "audio") for p in items["original_path"]])
        guess = [model.classes[i] for i in predict(model, feats).argmax(dim=1).tolist()]
        by_hand = sum(g == t for g, t in zip(guess, items["label"], strict=True)) / len(guess)
        stored = scores[(scores.model_sha256 == run1["sha256"]) & (scores.test_codec == "reference")]["value"]
        assert stored.tolist() == [pytest.approx(by_hand)]
        matrix = store.query("SELECT * FROM transfer_matrix WHERE experiment = 'kws_tiny' ORDER BY train_variant, "
                             "test_variant")
        # distinct points on both sides: the mp3@50x test partition is mp3@20x's point, one column
        assert matrix[["train_variant", "test_variant"]].values.tolist() == [
            ["mp3@20x", "mp3@20x"], ["mp3@20x", "uncompressed"], ["uncompressed", "mp3@20x"],
            ["uncompressed", "uncompressed"]]
        assert (matrix["seeds"] == 2).all() and matrix["sd"].notna().all()
        assert matrix.loc[matrix.test_variant == "mp3@20x", "test_partitions"].tolist() == ["mp3@20x,mp3@50x"] * 2
        assert matrix["test_ratio"].isna().tolist() == [False, True, False, True]  # mp3's pooled ratio
        assert matrix.loc[matrix.train_variant == "mp3@20x", "train_ratio"].gt(20).all()
        meta = _meta(first, "transfer_matrix")
        assert "uncompressed" in meta["matrix"].value and "plot_transfer_matrix" in meta
        report = (settings.reports_dir / "kws_tiny.html").read_text(encoding="utf-8")
        assert "Trained on x tested on" in report and "data:image/png;base64" in report

        # again from the same seeds: the same weights; a damaged test file is named and the rest scored
        damaged = store.query("SELECT item_id, original_path FROM items WHERE experiment = 'kws_tiny'").iloc[0]
        Path(damaged["original_path"]).write_bytes(b"not audio")
        again = materialize(assets, selection=studied, **run)
        assert again.success
        rerun = store.query("SELECT sha256 FROM training_runs WHERE experiment = 'kws_tiny' ORDER BY train_codec, seed")
        assert rerun["sha256"].tolist() == runs["sha256"].tolist()
        n = store.query("SELECT DISTINCT test_codec, n FROM transfer_scores WHERE experiment = 'kws_tiny' "
                        "ORDER BY test_codec")
        assert n.values.tolist() == [["mp3", 20], ["reference", 19]]
        errors = store.query("SELECT item_id, error FROM errors WHERE experiment = 'kws_tiny' AND "
                             "stage = 'transfer_matrix'")
        assert errors["item_id"].tolist() == [damaged["item_id"]] and "uncompressed" in errors["error"][0]

        # a trained model is a task: the mp3-trained model through the ordinary prediction assets of another
        # experiment on the same clips scores what the matrix says
        evaluation = Experiment("kws_eval", "audio", "demo_commands", {"split": "test", "per_word": 2},
                                tasks=(TaskSpec("kws", "trained_audio", {"experiment": "kws_tiny",
                                                                        "variant": "mp3@20x", "seed": 0}),))
        eval_assets = experiment_assets(evaluation)
        whole = [a.key for a in eval_assets if a.partitions_def is None and a.key.path[-1] not in ANALYSES]
        assert materialize(eval_assets, selection=whole, **run).success
        assert materialize(eval_assets, selection=[a.key for a in eval_assets if a.partitions_def is not None],
                           partition_key=partition_key("mp3", "20x"), **run).success
        top1 = store.query("SELECT codec, value, model FROM task_scores WHERE experiment = 'kws_eval' AND "
                           "metric = 'top1' AND item_id IS NULL ORDER BY codec")
        mp3_model = runs[(runs.train_codec == "mp3") & (runs.seed == 0)].iloc[0]
        expected = scores[scores.model_sha256 == mp3_model["sha256"]].set_index("test_codec")["value"]
        assert top1["codec"].tolist() == ["mp3", "reference"]
        assert top1["value"].tolist() == [pytest.approx(expected["mp3"]), pytest.approx(expected["reference"])]
        assert (top1["model"] == mp3_model["path"]).all()
