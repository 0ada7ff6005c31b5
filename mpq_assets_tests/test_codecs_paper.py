"""The paper's fixed settings: one-rung codecs that write the inner codec's own file at that setting for every
target, and that the analyses then count as one operating point, not one per target."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpq_assets.codecs import RATIOS, budget_bytes, codec_names, get_codec
from mpq_assets.codecs.base import raw_bytes
from mpq_assets.codecs.paper import PAPER_CODECS
from mpq_assets.codecs.rate_control import parse_ratio
from mpq_assets.media.audio import load_audio, remix
from mpq_assets.store import ResultsStore

pytestmark = pytest.mark.fast  # the `make check` tier

CLIP = Path(__file__).resolve().parents[1] / "data" / "demo_speech" / "s01_kal.flac"


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {"astronaut": np.ascontiguousarray(skimage.data.astronaut()[::2, ::2]),
            "coffee": np.ascontiguousarray(skimage.data.coffee()[::2, ::2])}


def test_paper_settings_are_registered_one_rung_each_and_not_in_the_default_demo() -> None:
    names = {cls.name for cls in PAPER_CODECS}
    assert names == {"jpeg-q5", "webp-q0", "mbt2018-q1", "opus-6k", "mp3-8k", "encodec-6k"}
    assert names <= set(codec_names()) and not names & set(codec_names(demo_only=True))
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    assert get_codec("mbt2018-q1").ladder(image) == [1]
    assert get_codec("jpeg-q5").ladder(image) == [5] and get_codec("webp-q0").ladder(image) == [0]
    # what the inner codec declares (weights for `mpq models`, file type) holds for its fixed setting
    assert get_codec("encodec-6k").weight_sources == get_codec("encodec-24khz").weight_sources
    assert get_codec("mbt2018-q1").extension == get_codec("mbt2018").extension


def test_fixed_setting_writes_the_inner_file_for_every_target(photos: dict[str, np.ndarray]) -> None:
    photo = photos["astronaut"]
    fixed, jpeg = get_codec("jpeg-q5"), get_codec("jpeg")
    budgets = [budget_bytes(photo, parse_ratio(r)) for r in RATIOS]
    found = fixed.encode_to_budgets(photo, budgets)
    assert {e.data for e in found} == {jpeg.encode(photo, 5)}
    assert {e.setting for e in found} == {"q=5"}
    size = len(found[0].data)
    assert [e.rate_met for e in found] == [size <= b for b in budgets]  # says which targets it reaches
    assert fixed.decode(found[0].data, photo).shape == photo.shape


def test_audio_settings_follow_the_paper() -> None:
    clip = load_audio(CLIP)
    stereo = remix(clip, 2)
    opus = get_codec("opus-6k")
    assert opus.ladder(clip) == [6] and opus.ladder(stereo) == [12]  # 6 kbps per channel
    data = opus.encode(clip, 6)
    assert 5.0 < len(data) * 8 / clip.duration_s / 1000 < 7.5  # Ogg pages on top of 6 kbps CBR
    mp3 = get_codec("mp3-8k")
    (rung,) = mp3.ladder(clip)
    assert rung[0] == 8
    data = mp3.encode(clip, rung)
    assert 7.5 < len(data) * 8 / clip.duration_s / 1000 < 9.5  # 8 kbps frames plus LAME's headers


def test_a_fixed_setting_is_one_operating_point_in_the_analyses(photos: dict[str, np.ndarray],
                                                                 store: ResultsStore) -> None:
    codec = get_codec("jpeg-q5")
    writes = []
    for bitrate in RATIOS:
        rows = []
        for item_id, photo in photos.items():
            raw = raw_bytes(photo)
            (e,) = codec.encode_to_budgets(photo, [budget_bytes(photo, parse_ratio(bitrate))])
            pixels = photo.shape[0] * photo.shape[1]
            rows.append(dict(item_id=item_id, target_ratio=parse_ratio(bitrate), budget_bytes=raw // 20,
                             bytes=len(e.data), bpp=8 * len(e.data) / pixels, kbps=None,
                             achieved_ratio=raw / len(e.data), setting=e.setting, rate_met=e.rate_met, trials=1,
                             encode_s=0.0, decode_s=0.0, path=f"/x/{bitrate}/{item_id}",
                             sha256=hashlib.sha256(e.data).hexdigest(), raw_bytes=raw, pixels=pixels,
                             duration_s=None))
        writes.append(("compressed", dict(experiment="paper", codec="jpeg-q5", bitrate=bitrate), pd.DataFrame(rows)))
    store.replace_partitions(writes)
    points = store.query("SELECT * FROM operating_points WHERE experiment = 'paper'")
    assert len(points) == 1
    point = points.iloc[0]
    assert point["point"] == "jpeg-q5@20x" and (point["partitions"], point["merged"]) == (6, 5)
    sizes = [len(codec.encode(p, 5)) for p in photos.values()]
    pooled = sum(raw_bytes(p) for p in photos.values()) / sum(sizes)
    summary = store.query("SELECT * FROM rate_summary WHERE codec = 'jpeg-q5' ORDER BY target_ratio")
    assert summary["ratio"].tolist() == pytest.approx([pooled] * 6)  # pooled over items, the same file
    assert summary["missed_target"].tolist() == [sum(raw_bytes(p) / s < t for p, s in zip(photos.values(), sizes,
                                                                                       strict=True))
                                                 for t in (20, 50, 100, 200, 500, 1000)]


def test_mbt2018_q1_needs_only_the_quality_1_checkpoint(tmp_path) -> None:
    from mpq_assets.codecs.neural_image import Mbt2018, checkpoint_filename
    from mpq_assets.codecs.paper import Mbt2018Q1

    whole, one = Mbt2018(weights_dir=tmp_path), Mbt2018Q1(weights_dir=tmp_path)
    assert "mbt2018-1-" in one.weights_missing() and "mbt2018-2-" not in one.weights_missing()
    (tmp_path / checkpoint_filename("mbt2018", 1)).write_bytes(b"")  # present (contents are checked at load)
    assert one.weights_missing() is None
    assert "mbt2018-2-" in whole.weights_missing() and "mbt2018-1-" not in whole.weights_missing()
