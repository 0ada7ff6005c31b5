"""Codec 2 (David Rowe's low-rate speech codec) through Debian's ``c2enc`` / ``c2dec``, 450-3200 bit/s.

Codec 2 codes 8 kHz mono speech parametrically (sinusoidal model, no waveform
match), so it reaches rates no waveform codec does: on 48 kHz mono speech,
1000:1 is 768 bit/s, and mode 450 writes 600 bit/s. The clip is down-mixed to
mono, resampled to 8 kHz (``mpq_assets.media.audio.resample``, zero-phase),
quantised to 16-bit PCM, encoded by ``c2enc`` into a ``.c2`` file (the 7-byte
header ``c2enc`` writes for that extension names the mode, and it counts in
the rate), decoded by ``c2dec`` (which reads the mode from the header) and
resampled, remixed and aligned back to the original.

Settings (lowest rate first) are the modes the Debian library (1.0.x) has:
``450, 700C, 1200, 1300, 1400, 1600, 2400, 3200``. Frames are whole bytes, so
the written rate is above the nominal one for modes whose frame is not a
multiple of 8 bits: 450 writes 3 bytes per 40 ms (600 bit/s), 700C 4 bytes
(800 bit/s), 1300 the same 7 bytes as 1400. 450PWB is left out: its header is
the same as 450's, so a file could not say which decoder it needs.

Alignment: the synthesis lags the input by a fixed, mode-dependent delay (the analysis window and the
frame interpolation). ``DELAY_8K`` holds it per mode in 8 kHz samples: the
median over the 17 demo speech clips of the lag that maximises the
cross-correlation of the log energy envelopes (10 ms moving window) of the
input and the decode -- a parametric codec keeps no waveform phase, so the
envelope is what can be aligned; per clip the lag scatters by about +-40
samples (5 ms) around the median. ``decode`` shifts by it and the tests check
the residual lag. ``c2dec`` also writes whole frames only (the tail of a clip
shorter than a frame is dropped); ``decode`` pads it with silence.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mpq_assets.codecs.audio_av import as_audio
from mpq_assets.codecs.base import Codec, CodecError, Item, Modality
from mpq_assets.media.audio import PCM16_SCALE, Audio, quantise_pcm16, remix, resample

RATE = 8000  # Codec 2's only sample rate
MODES: tuple[str, ...] = ("450", "700C", "1200", "1300", "1400", "1600", "2400", "3200")
HEADER = b"\xc0\xde\xc2"  # the magic c2enc writes at the start of a .c2 file (then version 1.0, mode, flags)
HEADER_BYTES = 7
# the header's mode byte per mode (codec2.h: CODEC2_MODE_3200 = 0 ... CODEC2_MODE_700C = 8, CODEC2_MODE_450 = 10)
MODE_IDS: dict[str, int] = {"3200": 0, "2400": 1, "1600": 2, "1400": 3, "1300": 4, "1200": 5, "700C": 8, "450": 10}
# synthesis lag behind the input, in 8 kHz samples, per mode (module docstring, "Alignment")
DELAY_8K: dict[str, int] = {"3200": 130, "2400": 107, "1600": 93, "1400": 101, "1300": 95, "1200": 119, "700C": 202,
                            "450": 175}
_TIMEOUT_S = 600


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CodecError(f"codec2: {name} not found; install Debian's codec2 package (make install does)")
    return path


def _run(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(args, capture_output=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CodecError(f"codec2: {what} failed: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CodecError(f"codec2: {what} exited with {done.returncode}: {message[-1] if message else ''}")


def mode_of(data: bytes) -> str:
    """The mode a ``.c2`` file's header names, with an error for anything that is not one."""
    if len(data) < HEADER_BYTES or not data.startswith(HEADER):
        raise CodecError("codec2: not a .c2 file (no c2enc header)")
    for mode, ident in MODE_IDS.items():
        if data[5] == ident:
            return mode
    raise CodecError(f"codec2: the header names mode id {data[5]}, which this decoder does not know")


def encode_pcm(pcm: np.ndarray, mode: str) -> bytes:
    """8 kHz int16 mono samples -> the ``.c2`` file ``c2enc`` writes."""
    with tempfile.TemporaryDirectory(prefix="mpq-c2-") as tmp:
        raw, out = Path(tmp, "in.raw"), Path(tmp, "out.c2")
        pcm.astype("<i2").tofile(raw)
        _run([_tool("c2enc"), mode, str(raw), str(out)], f"c2enc {mode}")
        return out.read_bytes()


def decode_pcm(data: bytes) -> np.ndarray:
    """A ``.c2`` file -> the 8 kHz int16 samples ``c2dec`` writes (the mode comes from the header)."""
    mode = mode_of(data)
    with tempfile.TemporaryDirectory(prefix="mpq-c2-") as tmp:
        src, raw = Path(tmp, "in.c2"), Path(tmp, "out.raw")
        src.write_bytes(data)
        _run([_tool("c2dec"), mode, str(src), str(raw)], f"c2dec {mode}")
        return np.fromfile(raw, dtype="<i2")


class Codec2(Codec):
    """Codec 2 at 8 kHz mono; the setting is the mode (bit/s, or ``700C``)."""

    name: ClassVar[str] = "codec2"
    modality: ClassVar[Modality] = "audio"
    extension: ClassVar[str] = ".c2"
    description: ClassVar[str] = "Codec 2 speech codec (Debian c2enc/c2dec 1.0), modes 450-3200 bit/s at 8 kHz mono"
    parallel_encode: ClassVar[bool] = True  # a subprocess per encode: plain CPU work

    @classmethod
    def available(cls) -> bool:
        return shutil.which("c2enc") is not None and shutil.which("c2dec") is not None

    def ladder(self, item: Item) -> list[str]:
        as_audio(item, self.name)
        return list(MODES)

    def label(self, setting: Any) -> str:
        return f"mode={setting}"

    def encode(self, item: Item, setting: Any) -> bytes:
        audio = as_audio(item, self.name)
        mode = str(setting)
        if mode not in MODES:
            raise CodecError(f"codec2 has no mode {mode!r}; modes: {', '.join(MODES)}")
        narrow = quantise_pcm16(resample(remix(audio, 1), RATE))
        pcm = np.round(narrow.samples[0] * PCM16_SCALE).astype(np.int16)
        return encode_pcm(pcm, mode)

    def decode(self, data: bytes, like: Item) -> Audio:
        if not isinstance(like, Audio):
            raise CodecError(f"codec2 decodes audio, got like={type(like).__name__}")
        mode = mode_of(data)
        pcm = decode_pcm(data).astype(np.float32) / PCM16_SCALE
        delay = DELAY_8K[mode]
        aligned = np.zeros_like(pcm)
        aligned[: max(0, len(pcm) - delay)] = pcm[delay:]
        wide = remix(resample(Audio(aligned[None, :], RATE), like.sample_rate), like.channels)
        out = np.zeros((like.channels, like.frames), dtype=np.float32)
        n = min(like.frames, wide.frames)
        out[:, :n] = np.clip(wide.samples[:, :n], -1.0, 1.0)
        return Audio(out, like.sample_rate)
