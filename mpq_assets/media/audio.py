"""Audio is normalised to float32 (channels, frames) in [-1, 1] at its native rate.

The raw size that ratios refer to is 16-bit PCM at the native rate and channel
count, so originals are cached as 16-bit FLAC.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from mpq_assets.artifacts import atomic_write_bytes
from mpq_assets.media.errors import MediaError


@dataclass(frozen=True)
class Audio:
    """A clip: ``samples`` is float32 of shape (channels, frames)."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise MediaError(f"audio must be (channels, frames), got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise MediaError(f"invalid sample rate {self.sample_rate}")

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    @property
    def raw_bytes(self) -> int:
        """Size as 16-bit PCM: the denominator of every audio compression ratio."""
        return 2 * self.channels * self.frames


def validate_audio(audio: Audio, what: str = "audio") -> Audio:
    """Reject clips no codec can take: empty, non-finite; clip to [-1, 1]."""
    if audio.frames == 0:
        raise MediaError(f"{what} has no samples")
    if audio.channels == 0:
        raise MediaError(f"{what} has no channels")
    if not np.isfinite(audio.samples).all():
        raise MediaError(f"{what} contains NaN or infinite samples")
    samples = np.clip(audio.samples, -1.0, 1.0).astype(np.float32, copy=False)
    return Audio(np.ascontiguousarray(samples), int(audio.sample_rate))


PCM16_SCALE = 32768.0  # libsndfile's (and FFmpeg's) int16 <-> float scale: k / 32768, x * 32768 clipped


def quantise_pcm16(audio: Audio) -> Audio:
    """Round to the 16-bit grid libsndfile reads and writes (k / 32768), so the cached original is exactly
    what raw size counts and a 16-bit source round-trips sample for sample."""
    q = np.clip(np.round(audio.samples.astype(np.float64) * PCM16_SCALE), -PCM16_SCALE, PCM16_SCALE - 1)
    return Audio((q / PCM16_SCALE).astype(np.float32), audio.sample_rate)


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM (FFmpeg's s16, s32, u8 ...) as float32 on the k / 2**(bits-1) grid libsndfile uses;
    float input passes through."""
    if samples.dtype.kind not in "iu":
        return samples.astype(np.float32, copy=False)
    half = float(2 ** (8 * samples.dtype.itemsize - 1))
    shifted = samples.astype(np.float64) - (half if samples.dtype.kind == "u" else 0.0)
    return (shifted / half).astype(np.float32)


def decode_audio_bytes(data: bytes, what: str = "audio") -> Audio:
    """Decode WAV/FLAC/OGG (libsndfile) or anything FFmpeg reads (PyAV fallback)."""
    if not data:
        raise MediaError(f"{what} is empty (0 bytes)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        audio = Audio(np.ascontiguousarray(samples.T), int(rate))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio = _decode_with_av(data, what)
    return validate_audio(audio, what)


def decode_av_stream(container: Any, stream: Any) -> tuple[list[np.ndarray], int]:
    """Every frame of one open PyAV audio stream as float32 ``(channels, frames)`` chunks, and its rate."""
    chunks: list[np.ndarray] = []
    rate = int(stream.codec_context.sample_rate or 0)
    for frame in container.decode(stream):
        arr = frame.to_ndarray()
        if not frame.format.is_planar:
            arr = arr.reshape(-1, frame.layout.nb_channels).T
        chunks.append(pcm_to_float(arr))
        rate = frame.sample_rate
    return chunks, rate


def _decode_with_av(data: bytes, what: str) -> Audio:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise MediaError(f"{what} has no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context.channels > 7:  # PyAV 18 crashes on 8-channel planar frames
                raise MediaError(f"{what} has {stream.codec_context.channels} channels; at most 7 are supported")
            chunks, rate = decode_av_stream(container, stream)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"{what} cannot be decoded: {exc}") from exc
    if not chunks:
        raise MediaError(f"{what} decoded to no samples")
    return Audio(np.concatenate(chunks, axis=1), int(rate))


def load_audio(path: str | os.PathLike[str]) -> Audio:
    """Read an audio file from disk."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    return decode_audio_bytes(data, what=path.name)


def write_audio_flac(path: str | os.PathLike[str], audio: Audio) -> None:
    """Write 16-bit FLAC atomically (lossless for the 16-bit original)."""
    buf = io.BytesIO()
    sf.write(buf, audio.samples.T, audio.sample_rate, format="FLAC", subtype="PCM_16")
    atomic_write_bytes(path, buf.getvalue())


def resample(audio: Audio, rate: int) -> Audio:
    """Polyphase resampling (scipy), the one resampler used everywhere for consistency."""
    if rate == audio.sample_rate:
        return audio
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, audio.sample_rate)
    out = resample_poly(audio.samples, rate // g, audio.sample_rate // g, axis=1)
    return Audio(out.astype(np.float32), rate)


def remix(audio: Audio, channels: int) -> Audio:
    """Map channel counts: down-mix by averaging, up-mix mono by duplication."""
    if channels == audio.channels:
        return audio
    if channels == 1:
        return Audio(audio.samples.mean(axis=0, keepdims=True), audio.sample_rate)
    if audio.channels == 1:
        return Audio(np.repeat(audio.samples, channels, axis=0), audio.sample_rate)
    if channels < audio.channels:
        # e.g. 5.1 -> stereo: keep the first `channels`, fold the rest in equally
        out = audio.samples[:channels].copy()
        rest = audio.samples[channels:].mean(axis=0, keepdims=True)
        out = out * 0.7071 + rest * 0.7071
        return Audio(out.astype(np.float32), audio.sample_rate)
    raise MediaError(f"cannot up-mix {audio.channels} channels to {channels}")
