"""Bad input never sinks a partition: each odd item either works or becomes an error row
naming the item and the reason, and the rest of the partition completes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mpq_assets.experiments import Experiment
from mpq_assets.pipeline.compress import compress_partition
from mpq_assets.pipeline.ingest import ingest
from mpq_assets.settings import Settings
from mpq_assets.store import ResultsStore


def _jpeg(rgb: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    import skimage.data

    rgb = np.ascontiguousarray(skimage.data.chelsea()[::2, ::2])
    root = tmp_path / "images"
    root.mkdir()
    (root / "good.jpg").write_bytes(_jpeg(rgb))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    (root / "truncated.jpg").write_bytes(_jpeg(rgb)[:2000])
    (root / "empty.png").write_bytes(b"")
    Image.fromarray(np.array([[[200, 10, 10]]], np.uint8)).save(root / "one_pixel.png")
    (root / "cmyk.jpg").write_bytes(_jpeg(rgb, "CMYK"))
    Image.frombytes("I;16", (rgb.shape[1], rgb.shape[0]),
                    (rgb[..., 1].astype("<u2") * 257).tobytes()).save(root / "sixteen_bit.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(rgb).convert("L").save(root / "gray.png")
    return root


@pytest.fixture()
def audio_folder(tmp_path: Path) -> Path:
    root = tmp_path / "audio"
    root.mkdir()
    t48 = np.arange(48000 * 2) / 48000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t48) * np.sin(np.pi * t48 / 2)).astype(np.float32)
    sf.write(root / "mono_48k.wav", tone, 48000, subtype="PCM_16")
    sf.write(root / "silent.wav", np.zeros(48000, np.float32), 48000, subtype="PCM_16")
    t44 = np.arange(44100 * 2) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 330 * t44), np.sin(2 * np.pi * 440 * t44)], axis=1) * 0.25
    sf.write(root / "stereo_44k.flac", stereo, 44100, subtype="PCM_16")
    surround = np.stack([np.sin(2 * np.pi * f * t48) * 0.1 for f in (200, 300, 400, 500, 600, 60)], axis=1)
    sf.write(root / "surround_51.wav", surround, 48000, subtype="PCM_16")
    t8 = np.arange(8000 * 2) / 8000
    sf.write(root / "narrow_8k.wav", 0.3 * np.sin(2 * np.pi * 300 * t8), 8000, subtype="PCM_16")
    nan = tone.copy()
    nan[1000:1010] = np.nan
    sf.write(root / "has_nan.wav", nan, 48000, subtype="FLOAT")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3)
    (root / "empty.flac").write_bytes(b"")
    return root


def _errors(store: ResultsStore, stage: str) -> dict[str, str]:
    df = store.query("SELECT item_id, error FROM errors WHERE stage = ?", [stage])
    return dict(zip(df["item_id"], df["error"], strict=True))


def test_bad_images(image_folder: Path, store: ResultsStore, settings: Settings) -> None:
    exp = Experiment("bad_images", "image", "image_folder", {"root": str(image_folder)})
    summary = ingest(exp, store, settings)
    assert summary.items == 6 and summary.errors == 3
    errors = _errors(store, "dataset")
    assert set(errors) == {"corrupt", "truncated", "empty"}
    assert "empty" in errors["empty"] and "truncated" in errors["truncated"]
    assert "cannot be decoded" in errors["corrupt"]
    items = store.query("SELECT item_id, width, height, raw_bytes FROM items ORDER BY item_id")
    assert items["item_id"].tolist() == ["cmyk", "good", "gray", "one_pixel", "rgba", "sixteen_bit"]
    one = items.set_index("item_id").loc["one_pixel"]
    assert (one.width, one.height, one.raw_bytes) == (1, 1, 3)
    for codec in ("jpeg", "webp", "avif"):
        s = compress_partition(exp, codec, "20x", store, settings)
        assert (s.items, s.errors) == (6, 0), codec
    rows = store.query("SELECT item_id, rate_met, bytes, path FROM compressed WHERE codec = 'jpeg'")
    assert len(rows) == 6
    # a 1x1 image has a 0-byte budget at 20:1: flagged as unreachable, not a crash
    assert not rows.set_index("item_id").loc["one_pixel", "rate_met"]
    for path, size in zip(rows["path"], rows["bytes"], strict=True):
        assert Path(path).stat().st_size == size


def test_bad_audio(audio_folder: Path, store: ResultsStore, settings: Settings) -> None:
    exp = Experiment("bad_audio", "audio", "audio_folder", {"root": str(audio_folder)})
    summary = ingest(exp, store, settings)
    errors = _errors(store, "dataset")
    assert set(errors) == {"has_nan", "corrupt", "empty"}
    assert "NaN" in errors["has_nan"] and "empty" in errors["empty"]
    assert summary.items == 5
    items = store.query("SELECT item_id, sample_rate, channels, frames, raw_bytes FROM items").set_index("item_id")
    assert items.loc["surround_51", "channels"] == 6 and items.loc["narrow_8k", "sample_rate"] == 8000
    assert items.loc["stereo_44k", "raw_bytes"] == 2 * 2 * 44100 * 2
    for codec in ("mp3", "opus", "aac"):
        s = compress_partition(exp, codec, "50x", store, settings)
        assert s.items + s.errors == 5, codec
        errs = _errors(store, "compressed")
        done = set(store.query("SELECT item_id FROM compressed WHERE codec = ?", [codec])["item_id"])
        # every item is accounted for exactly once: a row or an error naming the reason
        assert done | {i for i in errs if i} >= {"mono_48k", "silent", "stereo_44k", "narrow_8k"}
        assert {"mono_48k", "silent", "stereo_44k", "narrow_8k"} <= done, codec
        if "surround_51" not in done:
            reason = store.query("SELECT error FROM errors WHERE stage='compressed' AND codec=? AND item_id="
                                 "'surround_51'", [codec])["error"][0]
            assert "channel" in reason, reason


def test_codec_without_weights_fails_the_partition_and_keeps_stored_rows(
        image_folder: Path, store: ResultsStore, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from mpq_assets.weights import ModelNotAvailableError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))  # no CompressAI checkpoints here
    monkeypatch.delenv("MPQ_COMPRESSAI_WEIGHTS", raising=False)
    exp = Experiment("bad_images", "image", "image_folder", {"root": str(image_folder)})
    ingest(exp, store, settings)
    compress_partition(exp, "jpeg", "50x", store, settings)
    with pytest.raises(ModelNotAvailableError, match="mpq models pull mbt2018"):
        compress_partition(exp, "mbt2018", "50x", store, settings)
    assert store.query("SELECT count(*) AS n FROM compressed")["n"][0] == 6  # jpeg rows untouched
    assert store.query("SELECT count(*) AS n FROM compressed WHERE codec = 'mbt2018'")["n"][0] == 0


def test_a_codec_that_fails_on_every_item_leaves_empty_partitions_downstream(
        image_folder: Path, store: ResultsStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every item failing in ``compressed`` is a result (error rows), not a missing partition: quality,
    predictions and task scores complete with zero rows and say why, and replace any stale rows."""
    from mpq_assets.codecs import registry
    from mpq_assets.codecs.base import CodecError
    from mpq_assets.codecs.image_pillow import Jpeg
    from mpq_assets.experiments import TaskSpec
    from mpq_assets.pipeline.predict import predictions_partition, reference_predictions
    from mpq_assets.pipeline.quality import quality_partition
    from mpq_assets.pipeline.scores import task_scores_partition

    class Broken(Jpeg):
        name = "broken"
        parallel_encode = False  # a local class does not pickle into worker processes

        def encode(self, item, setting):  # noqa: ANN001, ANN201
            raise CodecError("broken encoder")

    exp = Experiment("bad_images", "image", "image_folder", {"root": str(image_folder)},
                     tasks=(TaskSpec("classification", "classification", {"model": "efficientnet-lite0"}),),
                     quality_metrics=("psnr",))
    ingest(exp, store, settings)
    reference_predictions(exp, store, settings)
    monkeypatch.setitem(registry.BUILTIN_CODECS, "broken", Jpeg)  # first a codec that works: rows to go stale
    compress_partition(exp, "broken", "20x", store, settings)
    quality_partition(exp, "broken", "20x", store, settings)
    assert store.query("SELECT count(*) AS n FROM quality WHERE codec = 'broken'")["n"][0] == 6
    monkeypatch.setitem(registry.BUILTIN_CODECS, "broken", Broken)
    s = compress_partition(exp, "broken", "20x", store, settings)
    assert (s.items, s.errors) == (0, 6)
    assert set(_errors(store, "compressed").values()) == {"CodecError: broken encoder"}
    for step in (quality_partition, predictions_partition, task_scores_partition):
        summary = step(exp, "broken", "20x", store, settings)
        assert summary.items == 0 and summary.rows == 0, step.__name__
        assert any("every item failed in compressed (6 error(s)" in n for n in summary.notes), step.__name__
    for table in ("quality", "predictions", "task_scores"):
        assert store.query(f"SELECT count(*) AS n FROM {table} WHERE codec = 'broken'")["n"][0] == 0, table
    with pytest.raises(RuntimeError, match="materialise that partition first"):  # never materialised: an error
        quality_partition(exp, "jpeg", "20x", store, settings)


def test_in_process_predictions_read_ahead_and_name_each_unreadable_file(image_folder: Path, tmp_path: Path) -> None:
    """The in-process prediction path (a GPU's, or MPQ_WORKERS=1) reads files in threads ahead of the model:
    every file still gets its own prediction or its own error, in order, one result per chunk."""
    from mpq_assets.experiments import TaskSpec
    from mpq_assets.media.image import write_image_png
    from mpq_assets.pipeline.predict import predict_files
    from mpq_assets.tasks.base import Prediction
    from mpq_assets.tasks.registry import make_task

    good = []
    for k in range(5):
        path = tmp_path / f"ok{k}.png"
        write_image_png(path, np.full((40, 50, 3), 40 * k, np.uint8))
        good.append((f"d{k}", str(path), "image"))
    bad = [("corrupt", str(image_folder / "corrupt.jpg"), "image"), ("gone", str(tmp_path / "missing.png"), "image")]
    entries = [good[0], bad[0], *good[1:3], bad[1], *good[3:]]
    spec = TaskSpec("classification", "classification", {"model": "efficientnet-lite0"})
    task = make_task("classification", device="cpu", model="efficientnet-lite0")
    chunks = list(predict_files(task, spec, entries, workers=1))
    assert [list(c) for c in chunks] == [[d] for d, _, _ in entries]  # CPU: one file per chunk, in order
    results = {d: r for c in chunks for d, r in c.items()}
    assert all(isinstance(results[d], Prediction) and results[d].summary["top1"] for d, _, _ in good)
    assert results["corrupt"].startswith("MediaError: corrupt.jpg cannot be decoded")
    assert results["gone"] == "MediaError: cannot read missing.png: No such file or directory"
