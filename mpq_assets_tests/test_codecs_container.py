"""The ``.mpqc`` container: version 2 round trips, files of the two older layouts still decode, and every
malformed file is a CodecError that says what is wrong.

The old layouts are written here by hand (``struct`` and literal varint bytes), never by the module under
test, so a reader that drifted from what the old writers produced would fail.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from mpq_assets.codecs import container
from mpq_assets.codecs.bitstream import CodecError
from mpq_assets.codecs.container import Container, pack, unpack

pytestmark = pytest.mark.fast  # the `make check` tier


def leb128(value: int) -> bytes:
    """Unsigned LEB128, written out here independently of the module."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def text(value: bytes) -> bytes:
    return leb128(len(value)) + value


def mpqc_v1(model: bytes, quality: int, device: bytes, height: int, width: int, shape: tuple[int, ...],
            strings: tuple[bytes, ...]) -> bytes:
    """The CompressAI codecs' version-1 file, as their writer made it (big-endian struct)."""
    out = b"MPQC" + struct.pack(">BB", 1, len(model)) + model + struct.pack(">BB", quality, len(device)) + device
    out += struct.pack(">IIB", height, width, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    out += struct.pack(">B", len(strings))
    for s in strings:
        out += struct.pack(">I", len(s)) + s
    return out


def varint_fields(height: int, width: int, shapes: tuple[tuple[int, ...], ...], strings: tuple[bytes, ...]) -> bytes:
    out = leb128(height) + leb128(width) + leb128(len(shapes))
    for shape in shapes:
        out += leb128(len(shape)) + b"".join(leb128(d) for d in shape)
    out += leb128(len(strings))
    return out + b"".join(leb128(len(s)) + s for s in strings)


def mpqh_v1(codec: bytes, setting: bytes, height: int, width: int, shapes: tuple[tuple[int, ...], ...],
            strings: tuple[bytes, ...]) -> bytes:
    """HiFiC's version-1 file, as its writer made it (varints, no device type)."""
    return b"MPQH\x01" + text(codec) + text(setting) + varint_fields(height, width, shapes, strings)


def v2(codec: bytes = b"mbt2018", setting: bytes = b"3", device: bytes = b"cpu", height: int = 64,
       width: int = 96, shapes: tuple[tuple[int, ...], ...] = ((1, 2),),
       strings: tuple[bytes, ...] = (b"yy", b"z")) -> bytes:
    """A version-2 file built field by field (for the malformed cases)."""
    return b"MPQC\x02" + text(codec) + text(setting) + text(device) + varint_fields(height, width, shapes, strings)


# --- version 2 ---------------------------------------------------------------------------------------------------


def test_version_2_layout_is_the_documented_bytes() -> None:
    c = Container("mbt2018", "3", 300, 2, ((5, 6),), (b"ab",), "cpu")
    expected = (b"MPQC\x02" b"\x07mbt2018" b"\x013" b"\x03cpu" b"\xac\x02" b"\x02" b"\x01" b"\x02\x05\x06"
                b"\x01" b"\x02ab")
    assert pack(c) == expected == v2(height=300, width=2, shapes=((5, 6),), strings=(b"ab",))
    assert unpack(expected) == c
    assert Container("hific", "low", 1, 1, (), ()).device_type == "cpu"


@pytest.mark.parametrize("c", [
    Container("mbt2018", "3", 64, 96, ((1, 2),), (b"y" * 300, b"z" * 20), "cpu"),
    Container("hific", "low", 1, 1, ((320, 2, 2), (220, 8, 8)), (b"", b"\x00" * 200_000), "cpu"),
    Container("cheng2020-anchor", "6", 2**64 - 1, 16_383, ((2**63, 0, 128),), (), "cuda"),
    Container("ünïcode-кодек", "élevé", 7, 3, (), (b"\xff" * 3,), "mps"),
    Container("", "", 1, 1, ((),), (b"",), ""),
])
def test_version_2_round_trips(c: Container) -> None:
    data = pack(c)
    assert data[:5] == b"MPQC\x02"
    assert unpack(data) == c
    assert unpack(bytearray(data)) == c and unpack(memoryview(data)) == c
    assert pack(unpack(data)) == data


def test_pack_refuses_what_no_varint_holds() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        pack(Container("mbt2018", "3", -1, 1, (), ()))
    with pytest.raises(ValueError, match="2\\*\\*64"):
        pack(Container("mbt2018", "3", 1, 1, ((2**64,),), ()))


def test_documented_header_sizes() -> None:
    """The sizes in the module docstring: everything in the file but the strings."""
    mbt = Container("mbt2018", "3", 512, 768, ((8, 12),), (b"y" * 5000, b"z" * 200), "cpu")
    hific = Container("hific", "low", 512, 768, ((320, 8, 12), (220, 32, 48)), (b"z" * 300, b"y" * 7000), "cpu")
    assert len(pack(mbt)) - sum(len(s) for s in mbt.strings) == 32
    assert len(pack(hific)) - sum(len(s) for s in hific.strings) == 39
    old = mpqc_v1(b"mbt2018", 3, b"cpu", 512, 768, (8, 12), mbt.strings)
    assert len(old) - sum(len(s) for s in mbt.strings) == 44  # the version-1 figure the docstring compares with
    doc = container.__doc__ or ""
    assert "10 + len(codec) + len(setting) + len(device type)" in doc
    assert "32 bytes" in doc and "took 44" in doc and "39 bytes" in doc
    assert len(pack(mbt)) - 5200 == 10 + len("mbt2018") + len("3") + len("cpu") + 2 + 2 + 3 + 2 + 2


# --- files written before ----------------------------------------------------------------------------------------


def test_mpqc_version_1_still_decodes() -> None:
    data = (b"MPQC\x01" b"\x07mbt2018" b"\x05" b"\x03cpu" b"\x00\x00\x00\x25" b"\x00\x00\x00\x35"
            b"\x02" b"\x00\x00\x00\x01" b"\x00\x00\x00\x01" b"\x02" b"\x00\x00\x00\x03yyy" b"\x00\x00\x00\x01z")
    assert data == mpqc_v1(b"mbt2018", 5, b"cpu", 37, 53, (1, 1), (b"yyy", b"z"))
    assert unpack(data) == Container("mbt2018", "5", 37, 53, ((1, 1),), (b"yyy", b"z"), "cpu")
    cuda = mpqc_v1(b"cheng2020-anchor", 255, b"cuda", 1, 2**32 - 1, (), ())
    assert unpack(cuda) == Container("cheng2020-anchor", "255", 1, 2**32 - 1, ((),), (), "cuda")


def test_mpqh_version_1_still_decodes() -> None:
    # 320 = 0xc0 0x02 and 220 = 0xdc 0x01 in LEB128
    data = (b"MPQH\x01" b"\x05hific" b"\x03low" b"\x14" b"\x1e" b"\x02" b"\x03\xc0\x02\x02\x02" b"\x03\xdc\x01\x08\x08"
            b"\x02" b"\x02zz" b"\x03yyy")
    assert data == mpqh_v1(b"hific", b"low", 20, 30, ((320, 2, 2), (220, 8, 8)), (b"zz", b"yyy"))
    expected = Container("hific", "low", 20, 30, ((320, 2, 2), (220, 8, 8)), (b"zz", b"yyy"), "cpu")
    assert unpack(data) == expected
    assert unpack(pack(expected)) == expected and pack(expected) != data  # re-written as version 2


@pytest.mark.usefixtures("one_torch_thread")
def test_an_old_compressai_file_decodes_through_the_codec_like_its_version_2_twin() -> None:
    from compressai.zoo import mbt2018

    from mpq_assets.codecs.neural_image import Mbt2018

    torch.manual_seed(0)
    model = mbt2018(quality=1, pretrained=False).eval()
    model.update(force=True)
    codec = Mbt2018.from_model(model, quality=1, device="cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    new = codec.encode(image, 1)
    c = unpack(new)
    assert (c.codec, c.setting, c.device_type, c.height, c.width, c.shapes) == ("mbt2018", "1", "cpu", 16, 24,
                                                                                ((1, 1),))
    old = mpqc_v1(b"mbt2018", 1, b"cpu", 16, 24, c.shapes[0], c.strings)
    assert len(old) - len(new) == 44 - (len(new) - sum(len(s) for s in c.strings)) > 0  # version 2 is smaller
    decoded = codec.decode(new, like=image)
    assert decoded.shape == image.shape
    np.testing.assert_array_equal(codec.decode(old, like=image), decoded)
    with pytest.raises(CodecError, match="entropy-coded on 'cuda'"):  # the old file's device type still counts
        codec.decode(mpqc_v1(b"mbt2018", 1, b"cuda", 16, 24, c.shapes[0], c.strings), like=image)


def test_an_old_hific_file_decodes_through_the_codec_like_its_version_2_twin() -> None:
    from mpq_assets.codecs.hific import HiFiC
    from mpq_assets.codecs.hific_model import HiFiCConfig, HiFiCModel

    torch.manual_seed(0)
    model = HiFiCModel(HiFiCConfig(latent_channels=8, hyper_channels=6, n_residual_blocks=2, base_filters=4)).eval()
    codec = HiFiC.from_models({"low": model})
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    new = codec.encode(image, "low")
    box = unpack(new)
    old = mpqh_v1(b"hific", b"low", 20, 30, box.shapes, box.strings)
    assert unpack(old) == box
    np.testing.assert_array_equal(codec.decode(old, image), codec.decode(new, image))


# --- malformed files ---------------------------------------------------------------------------------------------

OLD_C = mpqc_v1(b"mbt2018", 1, b"cpu", 64, 96, (1, 2), (b"yy", b"z"))
OLD_H = mpqh_v1(b"hific", b"low", 20, 30, ((8, 1, 1), (8, 2, 2)), (b"zz", b"yyy"))
TEN_CONTINUATIONS = b"\x80" * 10 + b"\x01"


@pytest.mark.parametrize(("data", "why"), [
    (b"", r"truncated \.mpqc container: magic needs 4 bytes at offset 0, file has 0"),
    (b"JUNK" + v2()[4:], r"not an \.mpqc container: magic b'JUNK', expected b'MPQC'"),
    (b"\x89PNG\r\n\x1a\n", r"not an \.mpqc container: magic b'\\x89PNG'"),
    (b"MPQC", r"truncated .*version needs 1 bytes at offset 4"),
    (b"MPQC\x03" + v2()[5:], r"unsupported \.mpqc container version 3 of magic b'MPQC'"),
    (b"MPQC\x00" + v2()[5:], r"unsupported \.mpqc container version 0"),
    (b"MPQH\x02" + OLD_H[5:], r"unsupported \.mpqc container version 2 of magic b'MPQH'"),
    (v2() + b"\x00", r"1 unexpected bytes after the last string"),
    (OLD_C + b"xyz", r"3 unexpected bytes after the last string"),
    (OLD_H + b"\x00", r"1 unexpected bytes after the last string"),
    (v2(codec=b"mbt\xff"), r"codec name is not valid UTF-8"),
    (v2(setting=b"\xc3"), r"setting is not valid UTF-8"),
    (v2(device=b"\xed\xa0\x80"), r"device type is not valid UTF-8"),  # a UTF-16 surrogate
    (mpqh_v1(b"hific", b"l\x80w", 20, 30, (), ()), r"setting is not valid UTF-8"),
    (mpqc_v1(b"mbt\xc3\xa9", 1, b"cpu", 64, 96, (1, 2), ()), r"model name is not valid ASCII"),
    (mpqc_v1(b"mbt2018", 1, b"c\xffu", 64, 96, (1, 2), ()), r"device type is not valid ASCII"),
    (v2(height=0), r"image size 0x96 \(both sides must be >= 1\)"),
    (v2(width=0), r"image size 64x0"),
    (mpqc_v1(b"mbt2018", 1, b"cpu", 0, 96, (1, 2), ()), r"image size 0x96"),
    (mpqh_v1(b"hific", b"low", 20, 0, (), ()), r"image size 20x0"),
    (b"MPQC\x02" + TEN_CONTINUATIONS, r"codec name length at offset 5 is an over-long varint \(more than 10"),
    (b"MPQC\x02\x01a\x01b\x01c" + TEN_CONTINUATIONS, r"height at offset 11 is an over-long varint"),
    (b"MPQC\x02\x01a\x01b\x01c\x01" + b"\x80" * 9 + b"\x02", r"width at offset 12 .*over-long varint \(2\*\*64"),
    (b"MPQC\x02\x01a\x01b\x01c\x85\x00", r"height at offset 11 is an over-long varint \(a redundant zero"),
    (b"MPQH\x01\x01a\x01b\x01\x01\x00\x01\x80\x00", r"length of string 0 at offset 13 .*redundant zero"),
    (v2(strings=())[:-1] + b"\x01\xff\xff\xff\x7fy", r"string 0 needs 268435455 bytes at offset"),
])
def test_malformed_files_say_what_is_wrong(data: bytes, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        unpack(data)


@pytest.mark.parametrize("data", [v2(), OLD_C, OLD_H], ids=["version 2", "MPQC version 1", "MPQH version 1"])
def test_a_file_cut_anywhere_is_truncated(data: bytes) -> None:
    unpack(data)
    for end in range(len(data)):
        with pytest.raises(CodecError, match=r"truncated \.mpqc container: .* needs \d+ bytes at offset"):
            unpack(data[:end])
