"""Real encodes and decodes through PyAV/FFmpeg for the built-in audio codecs (no mocks)."""

from __future__ import annotations

import io
import re

import av
import numpy as np
import pytest
from scipy.signal import correlate

from mpq_assets.codecs.audio_av import Aac, Mp3, Opus
from mpq_assets.codecs.base import Codec, CodecError
from mpq_assets.codecs.rate_control import budget_bytes
from mpq_assets.media.audio import Audio, load_audio

pytestmark = pytest.mark.fast  # the `make check` tier

CODECS = [Mp3, Opus, Aac]
IDS = [c.name for c in CODECS]


def speech(sr: int, seconds: float = 3.0, channels: int = 1) -> Audio:
    """Speech-like: a vibrato harmonic series under a syllable-rate envelope, per channel distinct."""
    t = np.arange(int(round(seconds * sr))) / sr
    out = []
    for ch in range(channels):
        f0 = (120.0 + 40.0 * ch) * (1.0 + 0.08 * np.sin(2 * np.pi * (0.6 + 0.2 * ch) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        top = 0.45 * sr / (1.1 * (120.0 + 40.0 * ch))
        harmonics = sum(np.sin(k * phase + 0.3 * k) / k for k in range(1, 16) if k < top)
        env = (0.5 + 0.5 * np.sin(2 * np.pi * (3.0 + 0.7 * ch) * t - np.pi / 2)) ** 2
        out.append(0.25 * harmonics * env)
    return Audio(np.asarray(out, dtype=np.float32), sr)


def lag_of(ref: np.ndarray, out: np.ndarray, max_lag: int = 2000) -> int:
    """Delay of ``out`` relative to ``ref`` (samples) at the cross-correlation peak."""
    c = correlate(out, ref, mode="full", method="fft")
    lags = np.arange(-len(ref) + 1, len(out))
    window = np.abs(lags) <= max_lag
    return int(lags[window][np.argmax(c[window])])


def gain_snr(ref: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Least-squares gain of ``out`` vs ``ref`` and the SNR (dB) after removing that gain.

    The gain is reported separately: LAME scales its output by 0.95 at <= 160 kbps
    (its CBR presets), which would otherwise cap a plain SNR at 26 dB.
    """
    gain = float(np.dot(ref, out) / np.dot(ref, ref))
    err = out - gain * ref
    return gain, float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-20)))


def kbps_of(label: str) -> int:
    m = re.match(r"^(\d+)kbps", label)
    assert m, label
    return int(m.group(1))


# ------------------------------------------------------------------ round trips

# (sample rate, channels) and the gain-free SNR (dB) each codec must reach at its
# top rung. Measured (48k mono / 44.1k stereo worst channel / 16k / 8k): mp3
# 78.7/77.2/76.2/72.6, opus 33.5/33.5/33.3/33.3, aac 41.4/37.3/49.9/29.9; the
# thresholds leave >= 5 dB margin. PyAV 18.1.1's bundled LAME gives mp3 at 8 kHz
# (64 kbps, MPEG-2.5) 54.9 dB, so that one threshold is 50.
CASES = [(48000, 1), (44100, 2), (16000, 1), (8000, 1)]
MIN_SNR = {
    "mp3": {48000: 70.0, 44100: 70.0, 16000: 68.0, 8000: 50.0},
    "opus": {48000: 28.0, 44100: 28.0, 16000: 28.0, 8000: 28.0},
    "aac": {48000: 35.0, 44100: 32.0, 16000: 44.0, 8000: 24.0},
}


@pytest.mark.parametrize("sr,channels", CASES, ids=[f"{sr}Hz-{ch}ch" for sr, ch in CASES])
@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_round_trip_shape_alignment_and_quality(cls: type[Codec], sr: int, channels: int) -> None:
    codec = cls()
    item = speech(sr, 3.0, channels)
    top = codec.ladder(item)[-1]
    data = codec.encode(item, top)
    out = codec.decode(data, item)
    assert isinstance(out, Audio)
    assert out.sample_rate == sr
    assert out.samples.shape == item.samples.shape
    assert out.samples.dtype == np.float32
    for ch in range(channels):
        ref, dec = item.samples[ch], out.samples[ch]
        assert abs(lag_of(ref, dec)) <= 1, f"{codec.label(top)} channel {ch} is not time-aligned"
        gain, snr = gain_snr(ref, dec)
        assert 0.93 <= gain <= 1.03, f"{codec.label(top)} gain {gain:.3f}"
        assert snr >= MIN_SNR[codec.name][sr], f"{codec.label(top)} channel {ch}: SNR {snr:.1f} dB"


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_mid_rung_is_aligned(cls: type[Codec]) -> None:
    """Alignment also holds where the encoder runs at a lower rate than the item."""
    codec = cls()
    item = speech(44100, 2.0)
    rung = {"mp3": (64, 22050), "opus": 64, "aac": (32, 22050)}[codec.name]
    assert rung in codec.ladder(item)
    out = codec.decode(codec.encode(item, rung), item)
    assert out.samples.shape == item.samples.shape
    assert abs(lag_of(item.samples[0], out.samples[0])) <= 1
    assert gain_snr(item.samples[0], out.samples[0])[1] > 9.0  # aac 12.4, opus 28, mp3 29 dB measured


# ------------------------------------------------------------------ real files

MAGIC = {
    "mp3": lambda b: b[:3] == b"ID3" or (b[0] == 0xFF and (b[1] & 0xE0) == 0xE0),
    "opus": lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:128],
    "aac": lambda b: b[4:8] == b"ftyp",
}


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_bytes_are_a_real_file(cls: type[Codec], tmp_path) -> None:
    codec = cls()
    item = speech(48000, 1.0)
    data = codec.encode(item, codec.ladder(item)[8])
    assert MAGIC[codec.name](data), data[:16]
    path = tmp_path / f"x{codec.extension}"
    path.write_bytes(data)
    loaded = load_audio(path)
    assert loaded.channels == 1
    assert abs(loaded.duration_s - 1.0) < 0.1
    with av.open(io.BytesIO(data)) as container:
        fmt = container.format.name
        decoder_name = container.streams.audio[0].codec_context.name
    assert {"mp3": "mp3", "opus": "ogg", "aac": "mov,mp4,m4a,3gp,3g2,mj2"}[codec.name] == fmt
    decoders = {"mp3": ("mp3", "mp3float"), "opus": ("opus", "libopus"), "aac": ("aac",)}
    assert decoder_name in decoders[codec.name]


def test_codec_classes_declare_what_the_registry_needs() -> None:
    for cls in CODECS:
        cls.validate()
        assert cls.available()  # PyAV's bundled FFmpeg has libmp3lame, libopus and aac
        assert cls.modality == "audio"
        assert cls.description and "\n" not in cls.description
    assert (Mp3.extension, Opus.extension, Aac.extension) == (".mp3", ".opus", ".m4a")


def test_labels() -> None:
    assert Mp3().label((32, 24000)) == "32kbps@24kHz"
    assert Mp3().label((16, 11025)) == "16kbps@11.025kHz"
    assert Aac().label((128, 44100)) == "128kbps@44.1kHz"
    assert Opus().label(6) == "6kbps"


# ------------------------------------------------------------------ rate control

RATIOS = [20, 50, 100, 200, 500, 1000]


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_rate_control_over_ratios(cls: type[Codec]) -> None:
    codec = cls()
    item = speech(48000, 4.0)
    chosen = []
    met = {}
    for ratio in sorted(RATIOS, reverse=True):  # budgets grow
        budget = budget_bytes(item, ratio)
        enc = codec.encode_to_budget(item, budget)
        assert enc.data
        met[ratio] = enc.rate_met
        if enc.rate_met:
            assert len(enc.data) <= budget, (ratio, enc.setting, len(enc.data), budget)
        chosen.append(kbps_of(enc.setting))
    assert chosen == sorted(chosen), chosen
    assert budget_bytes(item, 1000) == 384  # 0.77 kbps: below every ladder
    assert met[1000] is False and met[500] is False
    assert met[20] is True and met[50] is True
    out = codec.decode(codec.encode_to_budget(item, budget_bytes(item, 1000)).data, item)
    assert out.samples.shape == item.samples.shape


def test_opus_reaches_100x_and_cbr_size_is_content_independent() -> None:
    codec = Opus()
    item = speech(48000, 4.0)
    assert codec.encode_to_budget(item, budget_bytes(item, 100)).rate_met
    noise = Audio(np.random.default_rng(0).uniform(-0.5, 0.5, item.samples.shape).astype(np.float32), 48000)
    a, b = len(codec.encode(item, 24)), len(codec.encode(noise, 24))
    assert abs(a - b) <= 0.02 * a


# ------------------------------------------------------------------ ladders

RATES = [8000, 16000, 22050, 44100, 48000]


@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_ladder_rungs_increase_and_all_encode(cls: type[Codec], sr: int) -> None:
    codec = cls()
    item = speech(sr, 0.3)
    ladder = list(codec.ladder(item))
    kbps = [kbps_of(codec.label(s)) for s in ladder]
    assert len(ladder) >= 8
    assert all(a < b for a, b in zip(kbps, kbps[1:], strict=False)), kbps
    for setting in ladder:
        data = codec.encode(item, setting)
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            bit_rate = stream.codec_context.bit_rate
        if isinstance(setting, tuple):
            want_kbps, want_rate = setting
            assert want_rate <= max(sr, 8000)
            assert rate == want_rate, (codec.label(setting), rate)
            if codec.name == "mp3":  # LAME silently clamps an illegal bitrate; the header tells
                assert bit_rate == want_kbps * 1000, (codec.label(setting), bit_rate)
        out = codec.decode(data, item)
        assert out.samples.shape == item.samples.shape and out.sample_rate == sr


def test_mp3_low_rates_use_lower_mpeg_versions() -> None:
    ladder = dict(Mp3().ladder(speech(48000, 0.1)))
    assert ladder[8] == 8000 and ladder[16] == 12000  # MPEG-2.5
    assert ladder[32] == 24000 and ladder[64] == 24000  # MPEG-2
    assert ladder[128] == 48000 and ladder[320] == 48000  # MPEG-1
    ladder44 = dict(Mp3().ladder(speech(44100, 0.1)))
    assert ladder44[16] == 11025 and ladder44[48] == 22050 and ladder44[192] == 44100
    # an 8 kHz item stays at 8 kHz, where LAME allows at most 64 kbps
    assert {r for _, r in Mp3().ladder(speech(8000, 0.1))} == {8000}
    assert max(k for k, _ in Mp3().ladder(speech(8000, 0.1))) == 64


def test_mp3_rejects_an_illegal_setting() -> None:
    with pytest.raises(CodecError, match=r"mp3 failed at 320kbps@8kHz: 320 kbps is not legal at 8000 Hz"):
        Mp3().encode(speech(8000, 0.1), (320, 8000))


# ------------------------------------------------------------------ channels


def surround() -> Audio:
    """6 channels, each its own tone; channel 3 (LFE in 5.1) holds a 60 Hz tone."""
    sr = 48000
    t = np.arange(sr) / sr
    freqs = [220.0, 330.0, 440.0, 60.0, 550.0, 660.0]
    rows = [
        0.2 * np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(2 * np.pi * (1 + i) * t))
        for i, f in enumerate(freqs)
    ]
    return Audio(np.asarray(rows, dtype=np.float32), sr)


def test_mp3_rejects_more_than_two_channels() -> None:
    item = surround()
    with pytest.raises(CodecError, match=r"mp3 carries at most 2 channels, item has 6"):
        Mp3().ladder(item)
    with pytest.raises(CodecError, match=r"at most 2 channels"):
        Mp3().encode(item, (128, 48000))


@pytest.mark.parametrize("cls", [Opus, Aac], ids=["opus", "aac"])
def test_surround_round_trips_channel_by_channel(cls: type[Codec]) -> None:
    codec = cls()
    item = surround()
    setting = codec.ladder(item)[-4]
    out = codec.decode(codec.encode(item, setting), item)
    assert out.samples.shape == (6, item.frames)
    for ch in range(6):
        corr = np.corrcoef(item.samples[ch], out.samples[ch])[0, 1]
        assert corr > 0.95, f"{codec.label(setting)} channel {ch}: correlation {corr:.3f}"


def test_unsupported_channel_counts_raise_clear_errors() -> None:
    five = Audio(np.zeros((5, 4800), np.float32), 48000)
    with pytest.raises(CodecError, match=r"opus here carries 1-4 or 6 channels, item has 5"):
        Opus().ladder(five)
    eight = Audio(np.zeros((8, 4800), np.float32), 48000)
    with pytest.raises(CodecError, match=r"aac supports 1 to 7 channels here, item has 8"):
        Aac().encode(eight, (64, 48000))


# ------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_silence_round_trips_to_silence(cls: type[Codec]) -> None:
    codec = cls()
    item = Audio(np.zeros((1, 16000), np.float32), 16000)
    for setting in (codec.ladder(item)[0], codec.ladder(item)[-1]):
        out = codec.decode(codec.encode(item, setting), item)
        assert out.samples.shape == (1, 16000)
        assert np.abs(out.samples).max() < 1e-3


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_very_short_clip_keeps_its_length(cls: type[Codec]) -> None:
    codec = cls()
    item = Audio(speech(48000, 1.0).samples[:, :100], 48000)
    for setting in (codec.ladder(item)[0], codec.ladder(item)[-1]):
        assert codec.decode(codec.encode(item, setting), item).samples.shape == (1, 100)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_decode_like_another_format(cls: type[Codec]) -> None:
    """``like`` decides rate, channels and length, e.g. a mono 16 kHz reference."""
    codec = cls()
    item = speech(48000, 1.0)
    data = codec.encode(item, codec.ladder(item)[-1])
    like = speech(16000, 0.5, channels=2)
    out = codec.decode(data, like)
    assert out.sample_rate == 16000 and out.samples.shape == (2, 8000)


@pytest.mark.parametrize("cls", CODECS, ids=IDS)
def test_garbage_and_wrong_input_raise_codec_error(cls: type[Codec]) -> None:
    codec = cls()
    item = speech(16000, 0.2)
    with pytest.raises(CodecError, match=codec.name):
        codec.decode(b"definitely not audio" * 10, item)
    with pytest.raises(CodecError, match=codec.name):
        codec.decode(b"", item)
    with pytest.raises(CodecError, match="encodes audio"):
        codec.ladder(np.zeros((8, 8, 3), np.uint8))


def test_encoding_is_deterministic() -> None:
    item = speech(16000, 0.5)
    for codec in (Mp3(), Opus(), Aac()):
        setting = codec.ladder(item)[3]
        assert codec.encode(item, setting) == codec.encode(item, setting), codec.name
