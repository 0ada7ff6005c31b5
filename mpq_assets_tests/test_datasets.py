"""Dataset sources: image folders with labels and masks, HuggingFace datasets (offline), path safety."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mpq_assets.artifacts import safe_join
from mpq_assets.datasets import make_dataset
from mpq_assets.datasets.huggingface import DatasetUnavailable, HuggingFaceImages

pytestmark = pytest.mark.fast  # the `make check` tier


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
    (link_item,) = list(make_dataset("image_folder", root=str(root)).items())
    with pytest.raises(ValueError, match="escapes"):  # fails that item alone, when it loads
        link_item.load()
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


def _wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1, freq: float = 220.0) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sig = 0.2 * np.sin(2 * np.pi * freq * t)
    sf.write(path, np.repeat(sig[:, None], channels, axis=1), rate, subtype="PCM_16")


def test_audio_folder_with_transcripts(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    _wav(tmp_path / "b.flac")
    with (tmp_path / "transcripts.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["file", "text"], ["a.wav", "hello world"], ["b.flac", "good morning"]])
    ds = make_dataset("audio_folder", root=str(tmp_path))
    assert {s.item_id: s.label for s in ds.items()} == {"a": "hello world", "b": "good morning"}
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        make_dataset("audio_folder", root=str(tmp_path), labels_csv="nope.csv")


def test_stems_folder_musdb_layout(tmp_path: Path) -> None:
    import json

    for track in ("Artist - Song", "Other - Track"):
        d = tmp_path / "test" / track
        d.mkdir(parents=True)
        for i, stem in enumerate(("mixture", "vocals", "drums", "bass", "other")):
            _wav(d / f"{stem}.wav", rate=44100, channels=2, freq=110.0 * (i + 1))
    (tmp_path / "test" / "no_mixture").mkdir()
    ds = make_dataset("stems_folder", root=str(tmp_path / "test"))
    items = list(ds.items())
    assert [s.item_id for s in items] == ["Artist_-_Song", "Other_-_Track"]
    stems = json.loads(items[0].label)
    assert set(stems) == {"vocals", "drums", "bass", "other"}
    assert Path(stems["bass"]).name == "bass.wav"
    audio = items[0].load()
    assert audio.channels == 2 and audio.sample_rate == 44100


def test_huggingface_audio_saved_to_disk(tmp_path: Path) -> None:
    import io

    import datasets
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, 0.1 * np.ones(8000, np.float32), 16000, format="FLAC", subtype="PCM_16")
    # stored as the Audio feature's storage struct: encoding through datasets.Audio would need torchcodec
    feats = datasets.Features({"audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                               "sentence": datasets.Value("string")})
    datasets.Dataset.from_dict({"audio": [{"bytes": buf.getvalue(), "path": None}], "sentence": ["hi there"]},
                               features=feats).save_to_disk(str(tmp_path / "cv"))
    ds = make_dataset("hf_audio", name=str(tmp_path / "cv"), split="test", text_column="sentence")
    (item,) = list(ds.items())
    assert item.label == "hi there"
    audio = item.load()
    assert audio.sample_rate == 16000 and audio.frames == 8000


def test_paper_experiments_build_their_datasets() -> None:
    from mpq_assets.experiments import EXPERIMENTS

    for name in ("paper_imagenet", "paper_beans", "paper_ade20k"):
        ds = EXPERIMENTS[name].make_dataset()  # constructing needs no network; loading items does
        assert isinstance(ds, HuggingFaceImages)
    assert EXPERIMENTS["paper_imagenet"].make_dataset().name == "ILSVRC/imagenet-1k"


def test_cached_originals_of_the_committed_demo_flacs_are_their_samples(store, settings) -> None:
    """16-bit PCM round-trips bit for bit: libsndfile reads k / 32768, and the cache writes on that grid."""
    import soundfile as sf

    from mpq_assets.experiments import EXPERIMENTS
    from mpq_assets.pipeline.ingest import ingest

    for name in ("demo_speech", "demo_music"):
        assert ingest(EXPERIMENTS[name], store, settings).errors == 0
    items = store.query("SELECT experiment, item_id, original_path FROM items ORDER BY item_id")
    assert len(items) == 24 + 3
    for row in items.itertuples():
        name = f"{row.item_id}.flac" if row.experiment == "demo_speech" else f"{row.item_id}/mixture.flac"
        source, _ = sf.read(settings.demo_data_dir / row.experiment / name, dtype="int16", always_2d=True)
        cached, _ = sf.read(row.original_path, dtype="int16", always_2d=True)
        assert np.array_equal(source, cached), row.item_id


def test_integer_pcm_decodes_on_the_libsndfile_grid() -> None:
    import io

    import soundfile as sf

    from mpq_assets.media.audio import Audio, _decode_with_av, pcm_to_float, quantise_pcm16

    k = np.array([-32768, -32767, -1, 0, 1, 16383, 32767], dtype=np.int16)
    assert pcm_to_float(k).tolist() == (k / 32768.0).tolist()
    assert pcm_to_float(np.array([0, 128, 255], dtype=np.uint8)).tolist() == [-1.0, 0.0, 127 / 128]
    assert pcm_to_float(np.array([-2**31], dtype=np.int32)).tolist() == [-1.0]
    # a float clip on the grid stays put; values beyond it clip to the int16 range
    grid = Audio((k / 32768.0).astype(np.float32)[None, :], 8000)
    assert np.array_equal(quantise_pcm16(grid).samples, grid.samples)
    assert quantise_pcm16(Audio(np.array([[1.0, -1.5]], np.float32), 8000)).samples.tolist() == [[32767 / 32768,
                                                                                                   -1.0]]
    # FFmpeg's s16 decode of a WAV gives exactly what libsndfile gives
    buf = io.BytesIO()
    sf.write(buf, np.tile(k, 50), 8000, format="WAV", subtype="PCM_16")
    via_av = _decode_with_av(buf.getvalue(), "clip.wav")
    via_sf, _ = sf.read(io.BytesIO(buf.getvalue()), dtype="float32", always_2d=True)
    assert np.array_equal(via_av.samples, via_sf.T)
