"""Built-in audio codecs through PyAV (FFmpeg): MP3 (libmp3lame), Opus (libopus), AAC.

Every codec encodes fully in memory into a complete file a user can open
(``.mp3`` with a LAME/Xing header, Ogg ``.opus``, MP4 ``.m4a``) and decodes
back to the original's format, time-aligned with it.

Alignment (measured by cross-correlation, see the tests): FFmpeg already removes
the codec delay when it reads the files written here, so no extra shift is
applied -- the MP3 demuxer reads the encoder delay and padding from the LAME tag
in the Xing frame, the Ogg demuxer applies the Opus pre-skip and trims the end by
the last granule position, and the MP4 demuxer applies the edit list that skips
the AAC priming samples. What remains is trailing padding (MP4 keeps up to one
AAC frame), which ``decode`` trims; the residual lag is 0 samples. The
resampling around the encoder (``mpq_assets.media.audio.resample``, polyphase)
is zero-phase, so it adds no lag either.

Low rates: like LAME does by default, MP3 and AAC lower the encoder sample rate
for low bitrates (the encoder low-passes to a few kHz there anyway), which makes
very low bitrates reachable and spends the bits on the band that is coded. The
rate is never above the item's native rate.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mpq_assets.codecs.base import Codec, CodecError, Item, Modality
from mpq_assets.media.audio import Audio, decode_av_stream, remix, resample

# Channel counts -> FFmpeg layouts that both libopus (mapping family 1, Vorbis
# order) and the native AAC encoder accept; channel i of the item is channel i
# of the layout (FFmpeg order, e.g. 5.1 = FL FR FC LFE BL BR, so AAC codes the
# fourth channel of a 6-channel item as a low-passed LFE). 8 channels are left
# out: PyAV 18 cannot build or read planar frames with 8 planes.
_LAYOUTS: dict[int, str] = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1"}

_MAX_RATE = 48000  # nothing above 48 kHz is worth coding for these codecs


def as_audio(item: Item, codec: str) -> Audio:
    if not isinstance(item, Audio):
        raise CodecError(f"{codec} encodes audio, got {type(item).__name__}")
    if item.frames == 0:
        raise CodecError(f"{codec}: item has no samples")
    return item


def _rate_label(rate: int) -> str:
    return f"{rate / 1000:g}kHz"


def _family_rate(target: int, native: int, rates: Sequence[int]) -> int:
    """The highest of ``rates`` that is <= both ``target`` and the native rate.

    ``rates`` lists the candidates of the item's rate family (44.1 kHz or 48 kHz
    multiples); a native rate below all of them gets the lowest (upsampling is
    the only way to encode it).
    """
    limit = min(target, native, _MAX_RATE)
    fitting = [r for r in rates if r <= limit]
    return max(fitting) if fitting else min(rates)


_RATES_44 = (8000, 11025, 16000, 22050, 32000, 44100)
_RATES_48 = (8000, 12000, 16000, 24000, 32000, 48000)


def _family(native: int) -> str:
    return "44" if native % 11025 == 0 else "48"


def _tier_rate(native: int, tiers: Sequence[tuple[float, int, int]], key: float) -> int:
    """Pick the encoder rate: the first tier whose key bound covers ``key``."""
    fam = _family(native)
    rates = _RATES_44 if fam == "44" else _RATES_48
    for bound, r44, r48 in tiers:
        if key <= bound:
            return _family_rate(r44 if fam == "44" else r48, native, rates)
    return _family_rate(native, native, rates)


def _encoder_available(encoder: str) -> bool:
    try:
        import av
    except ImportError:
        return False
    return encoder in av.codecs_available


def _encode_file(
    codec: Codec,
    setting: Any,
    samples: np.ndarray,
    rate: int,
    *,
    container: str,
    encoder: str,
    bit_rate: int,
    sample_format: str | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> bytes:
    """Encode float32 (channels, frames) at ``rate`` into one in-memory file."""
    import av

    channels = samples.shape[0]
    layout = _LAYOUTS.get(channels)
    if layout is None:
        raise CodecError(f"{codec.name} supports 1 to {max(_LAYOUTS)} channels here, item has {channels}")
    buf = io.BytesIO()
    options = {"fflags": "+bitexact", **(container_options or {})}
    try:
        with av.open(buf, mode="w", format=container, options=options) as out:
            stream = out.add_stream(encoder, rate=rate, layout=layout)
            stream.bit_rate = int(bit_rate)
            if sample_format:
                stream.format = sample_format
            if codec_options:
                stream.codec_context.options = dict(codec_options)
            pcm = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = 0
            # PyAV re-frames to the encoder's frame size (its resampler holds a FIFO)
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except CodecError:
        raise
    except (av.FFmpegError, ValueError, TypeError, IndexError, OSError) as exc:
        raise CodecError(f"{codec.name} failed at {codec.label(setting)}: {exc}") from exc
    data = buf.getvalue()
    if not data:
        raise CodecError(f"{codec.name} failed at {codec.label(setting)}: encoder wrote no bytes")
    return data


def _read_stream(codec: Codec, container: Any) -> tuple[list[np.ndarray], int]:
    """The first audio stream of an open container as float (channels, frames) chunks, and its rate."""
    if not container.streams.audio:
        raise CodecError(f"{codec.name}: bitstream has no audio stream")
    stream = container.streams.audio[0]
    if stream.codec_context.channels > max(_LAYOUTS):
        raise CodecError(f"{codec.name}: cannot decode {stream.codec_context.channels} channels")
    return decode_av_stream(container, stream)


def _fit_like(codec: Codec, decoded: Audio, like: Audio) -> Audio:
    """``decoded`` resampled, remixed and trimmed or zero-padded to ``like``'s rate, channels and length."""
    decoded = resample(decoded, like.sample_rate)
    if decoded.channels != like.channels:
        try:
            decoded = remix(decoded, like.channels)
        except ValueError as exc:
            raise CodecError(f"{codec.name}: {exc}") from exc
    out = np.zeros((like.channels, like.frames), dtype=np.float32)
    n = min(like.frames, decoded.frames)
    out[:, :n] = decoded.samples[:, :n]
    return Audio(out, like.sample_rate)


def _decode_file(codec: Codec, data: bytes, like: Item) -> Audio:
    """Decode with FFmpeg and return audio in ``like``'s rate, channels and length."""
    import av

    if not isinstance(like, Audio):
        raise CodecError(f"{codec.name} decodes audio, got like={type(like).__name__}")
    if not data:
        raise CodecError(f"{codec.name}: cannot decode an empty bitstream")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            chunks, rate = _read_stream(codec, container)
    except CodecError:
        raise
    except (av.FFmpegError, ValueError, TypeError, OSError) as exc:
        raise CodecError(f"{codec.name}: cannot decode bitstream: {exc}") from exc
    if not chunks:
        # a valid file of a clip shorter than the codec's priming (e.g. a few ms of
        # AAC) can decode to nothing; the time-aligned output is then all padding
        return Audio(np.zeros((like.channels, like.frames), dtype=np.float32), like.sample_rate)
    return _fit_like(codec, Audio(np.concatenate(chunks, axis=1), int(rate)), like)


# --------------------------------------------------------------------------- MP3

_MPEG1 = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2 = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG25 = tuple(b for b in _MPEG2 if b <= 64)  # LAME caps MPEG-2.5 (8-12 kHz) at 64 kbps
_MP3_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)


def _mp3_legal(kbps: int, rate: int) -> bool:
    if rate >= 32000:
        return kbps in _MPEG1
    if rate >= 16000:
        return kbps in _MPEG2
    return kbps in _MPEG25


class Mp3(Codec):
    """MP3 through libmp3lame, CBR; the setting is ``(kbps, encoder sample rate)``.

    The encoder rate follows LAME's own low-rate choice: MPEG-2.5 (8/11.025/12
    kHz) up to 16 kbps, MPEG-2 (16/22.05/24 kHz) up to 64 kbps, MPEG-1 (32 kHz
    up to 96 kbps, then 44.1/48 kHz) above -- per mono-equivalent rate, stereo
    counting as 1.5 channels -- never above the item's native rate. Rungs whose
    bitrate is illegal for the chosen rate's MPEG version are left out (LAME
    would silently clamp them).

    Note LAME's CBR presets scale the signal by 0.95 up to 160 kbps (0.97 at 192,
    0.98 at 224, 1.0 from 256) to leave decoder headroom; that is what any FFmpeg
    or LAME user gets, so it is kept (a plain SNR is capped near 26 dB by it).
    """

    name: ClassVar[str] = "mp3"
    modality: ClassVar[Modality] = "audio"
    parallel_encode: ClassVar[bool] = True
    extension: ClassVar[str] = ".mp3"
    description: ClassVar[str] = "CBR kbps ladder 8-320, libmp3lame; resamples to 8-48 kHz at low rates"

    KBPS: ClassVar[tuple[int, ...]] = _MP3_KBPS
    # (upper bound of the mono-equivalent kbps, rate in the 44.1k family, rate in the 48k family)
    TIERS: ClassVar[tuple[tuple[float, int, int], ...]] = (
        (8, 8000, 8000),
        (16, 11025, 12000),
        (24, 16000, 16000),
        (64, 22050, 24000),
        (96, 32000, 32000),
    )

    @classmethod
    def available(cls) -> bool:
        return _encoder_available("libmp3lame")

    def _check_channels(self, item: Audio) -> None:
        if item.channels > 2:
            raise CodecError(f"mp3 carries at most 2 channels, item has {item.channels}")

    def ladder(self, item: Item) -> list[tuple[int, int]]:
        audio = as_audio(item, self.name)
        self._check_channels(audio)
        weight = 1.0 if audio.channels == 1 else 1.5
        rungs = []
        for kbps in self.KBPS:
            rate = _tier_rate(audio.sample_rate, self.TIERS, kbps / weight)
            if _mp3_legal(kbps, rate):
                rungs.append((kbps, rate))
        return rungs

    def encode(self, item: Item, setting: Any) -> bytes:
        audio = as_audio(item, self.name)
        self._check_channels(audio)
        kbps, rate = (int(v) for v in setting)
        if not _mp3_legal(kbps, rate):
            raise CodecError(f"mp3 failed at {self.label(setting)}: {kbps} kbps is not legal at {rate} Hz")
        pcm = resample(audio, rate).samples
        return _encode_file(
            self,
            setting,
            pcm,
            rate,
            container="mp3",
            encoder="libmp3lame",
            bit_rate=kbps * 1000,
            sample_format="fltp",
            # no ID3v2 tag (bytes count against the budget); the Xing/LAME frame
            # stays: it carries the encoder delay and padding for gapless decoding
            container_options={"id3v2_version": "0", "write_xing": "1"},
        )

    def decode(self, data: bytes, like: Item) -> Audio:
        return _decode_file(self, data, like)

    def label(self, setting: Any) -> str:
        kbps, rate = setting
        return f"{int(kbps)}kbps@{_rate_label(int(rate))}"


# -------------------------------------------------------------------------- Opus

_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# mapping family 1 round-trips channel i -> channel i for these counts only (measured:
# FFmpeg's libopus encoder and opus decoder disagree on the 5.0 and 6.1 orders)
_OPUS_CHANNELS = (1, 2, 3, 4, 6)
_OPUS_KBPS = (6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)  # per channel


def _opus_rate(native: int) -> int:
    """libopus takes 8/12/16/24/48 kHz: the smallest of these >= native (48 kHz above)."""
    for r in _OPUS_RATES:
        if r >= native:
            return r
    return 48000


class Opus(Codec):
    """Ogg Opus through libopus, hard CBR; the setting is the total kbps.

    The ladder is 6-256 kbps per channel (so mono and stereo items reach the same
    compression ratios). Hard CBR rather than constrained VBR: every packet has
    the same size, so the file size is a fixed function of duration and rung,
    independent of content -- rate control never meets a rung that fits one clip
    and overshoots on the next, and silence costs the same as speech.
    Inputs at rates libopus does not take are resampled (44.1 kHz -> 48 kHz);
    FFmpeg decodes Opus at 48 kHz and ``decode`` resamples back.
    """

    name: ClassVar[str] = "opus"
    modality: ClassVar[Modality] = "audio"
    parallel_encode: ClassVar[bool] = True
    extension: ClassVar[str] = ".opus"
    description: ClassVar[str] = "hard-CBR kbps ladder 6-256 per channel, libopus in Ogg; 8-48 kHz input"

    KBPS_PER_CHANNEL: ClassVar[tuple[int, ...]] = _OPUS_KBPS

    @classmethod
    def available(cls) -> bool:
        return _encoder_available("libopus")

    def _check_channels(self, item: Audio) -> None:
        if item.channels not in _OPUS_CHANNELS:
            raise CodecError(
                f"opus here carries 1-4 or 6 channels, item has {item.channels} "
                "(FFmpeg's libopus channel mapping scrambles 5 and 7 channels; PyAV cannot pass 8)"
            )

    def ladder(self, item: Item) -> list[int]:
        audio = as_audio(item, self.name)
        self._check_channels(audio)
        return [k * audio.channels for k in self.KBPS_PER_CHANNEL]

    def encode(self, item: Item, setting: Any) -> bytes:
        audio = as_audio(item, self.name)
        self._check_channels(audio)
        kbps = int(setting)
        rate = _opus_rate(audio.sample_rate)
        pcm = resample(audio, rate).samples
        return _encode_file(
            self,
            setting,
            pcm,
            rate,
            container="ogg",
            encoder="libopus",
            bit_rate=kbps * 1000,
            sample_format="flt",
            codec_options={"vbr": "off"},
        )

    def decode(self, data: bytes, like: Item) -> Audio:
        return _decode_file(self, data, like)

    def label(self, setting: Any) -> str:
        return f"{int(setting)}kbps"


# --------------------------------------------------------------------------- AAC

_AAC_KBPS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 256)  # per channel


class Aac(Codec):
    """AAC-LC through FFmpeg's native encoder in MP4 (.m4a); setting ``(kbps, rate)``.

    MP4 rather than ADTS: the MP4 edit list tells the decoder to drop the 1024
    priming samples, so the output is aligned (ADTS decodes 1024 samples late).
    The ladder is 8-256 kbps per channel; the encoder rate follows the band FFmpeg's
    encoder keeps at that rate (about 1.6-4 kHz up to 20 kbps/channel -> 8 kHz,
    5.75 kHz at 24 -> 11.025/12 kHz, 9.5 kHz at 32 -> 22.05/24 kHz, 13-15 kHz up
    to 48 -> 32 kHz, native 44.1/48 kHz above), never above the native rate.
    Rungs above AAC's 6144 bits per channel per frame at that rate are left out.
    """

    name: ClassVar[str] = "aac"
    modality: ClassVar[Modality] = "audio"
    parallel_encode: ClassVar[bool] = True
    extension: ClassVar[str] = ".m4a"
    description: ClassVar[str] = "ABR kbps ladder 8-256 per channel, FFmpeg aac in MP4; resamples to 8-48 kHz"

    KBPS_PER_CHANNEL: ClassVar[tuple[int, ...]] = _AAC_KBPS
    TIERS: ClassVar[tuple[tuple[float, int, int], ...]] = (
        (20, 8000, 8000),
        (24, 11025, 12000),
        (32, 22050, 24000),
        (48, 32000, 32000),
    )

    @classmethod
    def available(cls) -> bool:
        return _encoder_available("aac")

    def ladder(self, item: Item) -> list[tuple[int, int]]:
        audio = as_audio(item, self.name)
        if audio.channels not in _LAYOUTS:
            raise CodecError(f"aac supports 1 to {max(_LAYOUTS)} channels here, item has {audio.channels}")
        rungs = []
        for per_channel in self.KBPS_PER_CHANNEL:
            rate = _tier_rate(audio.sample_rate, self.TIERS, per_channel)
            if per_channel * 1000 <= 6 * rate:  # 6144 bits per 1024-sample frame per channel
                rungs.append((per_channel * audio.channels, rate))
        return rungs

    def encode(self, item: Item, setting: Any) -> bytes:
        audio = as_audio(item, self.name)
        kbps, rate = (int(v) for v in setting)
        pcm = resample(audio, rate).samples
        return _encode_file(
            self,
            setting,
            pcm,
            rate,
            container="ipod",
            encoder="aac",
            bit_rate=kbps * 1000,
            sample_format="fltp",
        )

    def decode(self, data: bytes, like: Item) -> Audio:
        return _decode_file(self, data, like)

    def label(self, setting: Any) -> str:
        kbps, rate = setting
        return f"{int(kbps)}kbps@{_rate_label(int(rate))}"


AUDIO_CODECS: tuple[type[Codec], ...] = (Mp3, Opus, Aac)
