"""Dataset sources: image folders with labels and masks, HuggingFace datasets (offline), path safety."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpq_assets.datasets import make_dataset
from mpq_assets.datasets.huggingface import DatasetUnavailable, HuggingFaceImages
from mpq_assets.storage_paths import safe_join


def _img(path: Path, value: int, size: tuple[int, int] = (24, 32)) -> None:
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def test_image_folder_labels_and_masks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _img(tmp_path / "a.png", 10)
    _img(tmp_path / "sub" / "b.jpg", 200)
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.ones((24, 32), np.uint8)).save(tmp_path / "masks" / "a.png")
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["file", "label"], ["a.png", "tabby"], ["sub/b.jpg", "espresso"]])
    ds = make_dataset("image_folder", root=str(tmp_path))
    got = {s.item_id: s.label for s in ds.items()}
    assert got == {"a": "tabby", "masks__a": None, "sub__b": "espresso"}
    seg = make_dataset("image_folder", root=str(tmp_path), masks_dir="masks")
    items = {s.item_id: s for s in seg.items()}
    assert set(items) == {"a", "sub__b"}  # the masks folder is not a source of items
    assert items["a"].label == str(tmp_path / "masks" / "a.png") and items["sub__b"].label is None
    assert items["sub__b"].load().shape == (24, 32, 3)


def test_paths_cannot_escape_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        safe_join(tmp_path, "../etc/passwd")
    outside = tmp_path.parent / "outside.png"
    _img(outside, 5)
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.png").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes"):
        list(make_dataset("image_folder", root=str(root)).items())
    with pytest.raises(ValueError, match="escapes"):
        make_dataset("image_folder", root=str(root), masks_dir="../")


def test_huggingface_dataset_saved_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("MPQ_HOME", str(tmp_path / "home"))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    images = [Image.fromarray(np.full((16, 20, 3), v, np.uint8)) for v in (0, 100, 200)]
    datasets.Dataset.from_dict({"image": images, "label": [2, 0, 1]}, features=feats).save_to_disk(
        str(tmp_path / "saved"))
    ds = HuggingFaceImages(str(tmp_path / "saved"), split="train", limit=2)
    items = list(ds.items())
    assert [(s.item_id, s.label) for s in items] == [("train_000000", "2"), ("train_000001", "0")]
    assert items[1].load().shape == (16, 20, 3) and items[1].load()[0, 0, 0] == 100


def test_huggingface_segmentation_masks_become_label_maps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("MPQ_HOME", str(tmp_path / "home"))
    mask = np.zeros((16, 20), np.uint8)
    mask[4:8] = 3
    feats = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    datasets.Dataset.from_dict({"image": [Image.fromarray(np.zeros((16, 20, 3), np.uint8))],
                                "annotation": [Image.fromarray(mask)]}, features=feats).save_to_disk(
        str(tmp_path / "seg"))
    ds = HuggingFaceImages(str(tmp_path / "seg"), split="validation", label_column=None, mask_column="annotation")
    (item,) = list(ds.items())
    saved = np.asarray(Image.open(item.label))
    assert np.array_equal(saved, mask)
    assert Path(item.label).is_relative_to(tmp_path / "home" / "artifacts")


def test_missing_hub_dataset_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # the flags the source sets for offline mode are restored after the test
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", huggingface_hub.constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    with pytest.raises(DatasetUnavailable, match="not in the local cache.*offline mode.*huggingface-cli login"):
        list(HuggingFaceImages("imagenet-1k").items())


def test_huggingface_multi_label_lists_become_class_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    monkeypatch.setenv("MPQ_HOME", str(tmp_path / "home"))
    names = ["Atelectasis", "Effusion", "No Finding"]
    feats = datasets.Features({"image": datasets.Image(),
                               "labels": datasets.Sequence(datasets.ClassLabel(names=names))})
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    datasets.Dataset.from_dict({"image": [img, img], "labels": [[0, 1], [2]]}, features=feats).save_to_disk(
        str(tmp_path / "cxr"))
    ds = HuggingFaceImages(str(tmp_path / "cxr"), split="test", label_column="labels")
    assert [s.label for s in ds.items()] == ["Atelectasis|Effusion", "No Finding"]
