"""Codec 2 through Debian's c2enc/c2dec: real .c2 files, rates counted against native PCM, the low end of the
speech ladder (500x and 1000x on 48 kHz speech), alignment of the parametric decode, and bad files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from mpq_assets.codecs import budget_bytes, get_codec
from mpq_assets.codecs.base import CodecError, raw_bytes
from mpq_assets.codecs.codec2 import DELAY_8K, HEADER, HEADER_BYTES, MODE_IDS, MODES, decode_pcm, mode_of
from mpq_assets.media.audio import Audio, load_audio, remix, resample

pytestmark = pytest.mark.fast  # the `make check` tier: subprocesses, no models

CLIP = Path(__file__).resolve().parents[1] / "data" / "demo_speech" / "s01_kal.flac"
FRAME_BYTES = {"450": 3, "700C": 4, "1200": 6, "1300": 7, "1400": 7, "1600": 8, "2400": 6, "3200": 8}
FRAME_SAMPLES = {"450": 320, "700C": 320, "1200": 320, "1300": 320, "1400": 320, "1600": 320, "2400": 160,
                 "3200": 160}


@pytest.fixture(scope="module")
def clip() -> Audio:
    audio = load_audio(CLIP)
    assert audio.sample_rate == 48000 and audio.channels == 1
    return audio


@pytest.fixture(scope="module")
def codec():
    return get_codec("codec2")


def test_every_mode_writes_a_c2_file_c2dec_reads_and_the_rate_counts_the_header(clip: Audio, codec) -> None:
    frames_8k = resample(clip, 8000).frames
    assert codec.ladder(clip) == list(MODES)
    for mode in MODES:
        data = codec.encode(clip, mode)
        assert data[:3] == HEADER and data[5] == MODE_IDS[mode] and mode_of(data) == mode
        # c2enc writes whole frames of whole bytes after its 7-byte header
        assert len(data) == HEADER_BYTES + (frames_8k // FRAME_SAMPLES[mode]) * FRAME_BYTES[mode]
    smallest = codec.encode(clip, "450")
    ratio = raw_bytes(clip) / len(smallest)  # native 48 kHz 16-bit PCM over every written byte
    assert raw_bytes(clip) == clip.frames * 2
    assert 1000 < ratio < 1300
    assert 590 < len(smallest) * 8 / clip.duration_s < 620  # 450 writes 3 bytes per 40 ms: 600 bit/s


def test_rate_control_reaches_500x_and_1000x_and_sizes_rise_along_the_ladder(clip: Audio, codec) -> None:
    sizes = [len(codec.encode(clip, m)) for m in MODES]
    assert sizes == sorted(sizes)
    budgets = [budget_bytes(clip, r) for r in (200.0, 500.0, 1000.0)]
    found = codec.encode_to_budgets(clip, budgets)
    assert [e.rate_met for e in found] == [True, True, True]
    assert [e.setting for e in found] == ["mode=3200", "mode=1400", "mode=450"]
    assert all(len(e.data) <= b for e, b in zip(found, budgets, strict=True))


def _envelope(x: np.ndarray) -> np.ndarray:
    window = 80  # 10 ms at 8 kHz
    return np.log(np.convolve(x.astype(np.float64) ** 2, np.ones(window) / window, mode="same") + 1e-8)


def test_decode_is_the_original_format_aligned_and_equal_to_c2dec_on_disk(clip: Audio, codec,
                                                                            tmp_path: Path) -> None:
    data = codec.encode(clip, "1400")
    path = tmp_path / "clip.c2"
    path.write_bytes(data)
    out = tmp_path / "clip.raw"
    subprocess.run(["c2dec", "1400", str(path), str(out)], check=True, capture_output=True)
    cli = np.fromfile(out, dtype="<i2")
    assert np.array_equal(cli, decode_pcm(path.read_bytes()))  # the CLI's samples are the decoder's
    decoded = codec.decode(data, clip)
    assert (decoded.sample_rate, decoded.channels, decoded.frames) == (48000, 1, clip.frames)
    # what decode does to c2dec's samples: drop the mode's delay, back to 48 kHz
    delay = DELAY_8K["1400"]
    shifted = np.zeros(len(cli), dtype=np.float32)
    shifted[: len(cli) - delay] = cli[delay:] / 32768.0
    expected = resample(Audio(shifted[None, :], 8000), 48000).samples[0]
    n = min(len(expected), clip.frames)
    assert np.allclose(decoded.samples[0, :n], np.clip(expected[:n], -1, 1), atol=1e-6)
    # the residual lag of the decode's energy envelope against the input's is within the measured scatter
    a, b = _envelope(resample(clip, 8000).samples[0]), _envelope(resample(decoded, 8000).samples[0])
    a, b = a - a.mean(), b - b.mean()
    lags = range(-200, 201)
    score = [float(np.dot(a[max(0, -k): len(a) - max(0, k)], b[max(0, k): len(b) - max(0, -k)])) for k in lags]
    assert abs(lags[int(np.argmax(score))]) <= 40


def test_stereo_is_down_mixed_and_comes_back_with_its_channels(clip: Audio, codec) -> None:
    stereo = remix(Audio(clip.samples[:, :48000], 48000), 2)
    decoded = codec.decode(codec.encode(stereo, "3200"), stereo)
    assert (decoded.channels, decoded.frames) == (2, 48000)
    assert np.array_equal(decoded.samples[0], decoded.samples[1])


def test_bad_files_and_settings_name_the_reason(clip: Audio, codec) -> None:
    with pytest.raises(CodecError, match="not a .c2 file"):
        codec.decode(b"RIFF....WAVE", clip)
    with pytest.raises(CodecError, match="mode id 7"):
        codec.decode(HEADER + b"\x01\x00\x07\x00" + b"\x00" * 30, clip)
    with pytest.raises(CodecError, match="no mode '900'"):
        codec.encode(clip, "900")
    with pytest.raises(CodecError, match="audio"):
        codec.encode(np.zeros((8, 8, 3), dtype=np.uint8), "3200")
