"""The ``.mpqc`` container: the one file format of every neural image codec (CompressAI's and HiFiC).

A learned codec's entropy coder gives strings and latent shapes, not a file, so
we wrap them. One reader and one format for all of them: a file names the codec
that wrote it (the codec field, not the magic, tells them apart), and
truncation, trailing bytes and bad fields are caught in one place, with a
:class:`~mpq_assets.codecs.bitstream.CodecError` that says what is wrong. What
the fields must mean for a given codec (a known quality, shapes that fit the
image) is that codec's check.

Layout (version 2, written by :func:`pack`)::

    b"MPQC" | version (one byte: 2) | codec | setting | device type | H | W
    | n shapes | (ndim, dim ...) each | n strings | (length, bytes) each

Integers are unsigned LEB128 varints (7 bits a byte, low bits first, the high
bit set while more follow; minimal, at most 10 bytes, below 2**64). Texts are
a varint byte count, then UTF-8. ``setting`` is the rate setting as text
(CompressAI's quality ``"3"``, HiFiC's regime ``"low"``), ``device type`` the
device that ran the entropy path (``"cpu"``), H x W the original image before
padding (both at least 1). The shapes and strings are the codec's, in its
order (CompressAI: the hyper-latent H, W, then the y and z strings; HiFiC: z
and y as (C, h, w), then their strings).

Header size
    The header counts toward the rate (the rate is the whole file), so it is
    kept small: ``10 + len(codec) + len(setting) + len(device type)`` bytes
    (names under 128 bytes), plus one varint per H, W, shape entry (ndim and
    each dim) and string length, 1 byte below 128, 2 below 16384, 3 below
    2**21. For ``mbt2018`` at quality 3 on cpu, a 512x768 image (latent shape
    (8, 12)) and both strings of 128 to 16383 bytes: 32 bytes (the fixed-width
    version 1 took 44). HiFiC-low on cpu, same image, shapes (320, 8, 12) and
    (220, 32, 48): 39 bytes.

Old files (read only, so files written before still decode)
    MPQC version 1 (the CompressAI codecs' first layout, big-endian ``struct``)::

        4s magic b"MPQC" | B version 1 | B n, n ASCII model name | B quality
        | B n, n ASCII device type | I height | I width | B k, k x I latent shape
        | B s, s x (I length, bytes)

    read as codec = model, setting = ``str(quality)``, shapes = (latent shape,).
    MPQH version 1 (HiFiC's first layout): magic b"MPQH", version byte 1, then
    version 2's fields without the device type (read as ``"cpu"``, where HiFiC's
    entropy path always ran).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from mpq_assets.codecs.bitstream import CodecError

MAGIC = b"MPQC"
VERSION = 2
LEGACY_HIFIC_MAGIC = b"MPQH"  # HiFiC's version-1 files
MAX_VARINT_BYTES = 10  # enough for any value below 2**64


@dataclass(frozen=True)
class Container:
    """One parsed ``.mpqc`` file: which codec wrote it, at what setting, and its entropy-coded payload."""

    codec: str
    setting: str
    height: int
    width: int
    shapes: tuple[tuple[int, ...], ...]
    strings: tuple[bytes, ...]
    device_type: str = "cpu"


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"a .mpqc varint must be >= 0, got {value}")
    if value >= 1 << 64:
        raise ValueError(f"a .mpqc varint must be below 2**64, got {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _varint(len(raw)) + raw


def pack(container: Container) -> bytes:
    """The version-2 file for ``container`` (layout in the module docstring); :func:`unpack` checks validity."""
    out = bytearray(MAGIC)
    out.append(VERSION)
    for text in (container.codec, container.setting, container.device_type):
        out += _text(text)
    out += _varint(container.height) + _varint(container.width)
    out += _varint(len(container.shapes))
    for shape in container.shapes:
        out += _varint(len(shape)) + b"".join(_varint(d) for d in shape)
    out += _varint(len(container.strings))
    for string in container.strings:
        out += _varint(len(string)) + string
    return bytes(out)


class _Reader:
    """Reads fields front to back; every failure names the field and the offset."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise CodecError(f"truncated .mpqc container: {what} needs {n} bytes at offset {self.pos}, "
                             f"file has {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def varint(self, what: str) -> int:
        start, value = self.pos, 0
        for i in range(MAX_VARINT_BYTES):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and not byte:
                    raise CodecError(f"corrupt .mpqc container: {what} at offset {start} is an over-long varint "
                                     "(a redundant zero byte)")
                if value >= 1 << 64:
                    raise CodecError(f"corrupt .mpqc container: {what} at offset {start} is an over-long varint "
                                     "(2**64 or more)")
                return value
        raise CodecError(f"corrupt .mpqc container: {what} at offset {start} is an over-long varint "
                         f"(more than {MAX_VARINT_BYTES} bytes)")

    def decode(self, raw: bytes, encoding: str, what: str) -> str:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            label = "UTF-8" if encoding == "utf-8" else encoding.upper()
            raise CodecError(f"corrupt .mpqc container: {what} is not valid {label} ({raw!r})") from exc

    def text(self, what: str) -> str:
        return self.decode(self.take(self.varint(f"{what} length"), what), "utf-8", what)

    def size(self, height: int, width: int) -> tuple[int, int]:
        if height < 1 or width < 1:
            raise CodecError(f"corrupt .mpqc container: image size {height}x{width} (both sides must be >= 1)")
        return height, width

    def end(self) -> None:
        if self.pos != len(self.data):
            raise CodecError(f"corrupt .mpqc container: {len(self.data) - self.pos} unexpected bytes after the "
                             "last string")


def _fields(r: _Reader, device_type: str | None) -> Container:
    """The varint layout after the version byte (version 2; MPQH version 1 without the device type)."""
    codec, setting = r.text("codec name"), r.text("setting")
    if device_type is None:
        device_type = r.text("device type")
    height, width = r.size(r.varint("height"), r.varint("width"))
    shapes = tuple(tuple(r.varint(f"dim {j} of shape {i}") for j in range(r.varint(f"ndim of shape {i}")))
                   for i in range(r.varint("shape count")))
    strings = tuple(r.take(r.varint(f"length of string {i}"), f"string {i}") for i in range(r.varint("string count")))
    r.end()
    return Container(codec, setting, height, width, shapes, strings, device_type)


def _mpqc_v1(r: _Reader) -> Container:
    """The CompressAI codecs' fixed-width version 1 (module docstring)."""
    (n,) = r.unpack(">B", "model name length")
    model = r.decode(r.take(n, "model name"), "ascii", "model name")
    (quality, n) = r.unpack(">BB", "quality and device type length")
    device_type = r.decode(r.take(n, "device type"), "ascii", "device type")
    height, width = r.size(*r.unpack(">II", "image size"))
    (ndim,) = r.unpack(">B", "latent shape length")
    shape = r.unpack(f">{ndim}I", "latent shape")
    (count,) = r.unpack(">B", "string count")
    strings = []
    for i in range(count):
        (n,) = r.unpack(">I", f"length of string {i}")
        strings.append(r.take(n, f"string {i}"))
    r.end()
    return Container(model, str(quality), height, width, (tuple(shape),), tuple(strings), device_type)


def unpack(data: bytes) -> Container:
    """Parse a ``.mpqc`` file of any version; anything malformed raises :class:`CodecError` saying what."""
    r = _Reader(bytes(data))
    magic = r.take(4, "magic")
    if magic not in (MAGIC, LEGACY_HIFIC_MAGIC):
        raise CodecError(f"not an .mpqc container: magic {magic!r}, expected {MAGIC!r}")
    (version,) = r.unpack(">B", "version")
    if magic == MAGIC and version == VERSION:
        return _fields(r, device_type=None)
    if magic == MAGIC and version == 1:
        return _mpqc_v1(r)
    if magic == LEGACY_HIFIC_MAGIC and version == 1:
        return _fields(r, device_type="cpu")
    raise CodecError(f"unsupported .mpqc container version {version} of magic {magic!r} (this reader knows "
                     f"{MAGIC!r} versions 1-{VERSION} and {LEGACY_HIFIC_MAGIC!r} version 1)")
