"""Image codecs: real bitstreams through Pillow, round trips, and rate control against byte budgets."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mpq_assets.codecs import Codec, budget_bytes, codec_names, fit_ladder, get_codec
from mpq_assets.codecs.base import CodecError
from mpq_assets.media.image import decode_image_bytes

pytestmark = pytest.mark.fast  # the `make check` tier

IMAGE_CODECS = ["jpeg", "webp", "avif", "jxl"]
MAGIC = {
    "jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "avif": lambda b: b[4:12] in (b"ftypavif", b"ftypavis"),
    "jxl": lambda b: b[:2] == b"\xff\x0a" or b[4:8] == b"JXL ",
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[::2, ::2])  # 256x256 keeps the suite fast


def test_all_image_codecs_registered() -> None:
    assert set(IMAGE_CODECS) <= set(codec_names("image"))
    for name in IMAGE_CODECS:
        codec = get_codec(name)
        assert codec.modality == "image" and codec.extension.startswith(".") and codec.description


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_round_trip_and_real_file(name: str, photo: np.ndarray, tmp_path) -> None:
    codec = get_codec(name)
    ladder = codec.ladder(photo)
    hi, lo = codec.encode(photo, ladder[-5]), codec.encode(photo, ladder[0])
    assert MAGIC[name](hi), f"{name} bitstream does not start like a {codec.extension} file"
    assert len(lo) < len(hi)
    out_hi, out_lo = codec.decode(hi, like=photo), codec.decode(lo, like=photo)
    assert out_hi.shape == photo.shape and out_hi.dtype == np.uint8
    assert psnr(photo, out_hi) > 32
    assert psnr(photo, out_lo) < psnr(photo, out_hi)
    # a user can open the file with a plain image library
    path = tmp_path / f"x{codec.extension}"
    path.write_bytes(hi)
    with Image.open(path) as img:
        assert img.size == (photo.shape[1], photo.shape[0])


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_rate_control_fits_budget_and_is_monotone(name: str, photo: np.ndarray) -> None:
    codec = get_codec(name)
    ladder = [codec.label(s) for s in codec.ladder(photo)]
    chosen = []
    for ratio in (20, 50, 100, 200, 500, 1000):
        budget = budget_bytes(photo, ratio)
        enc = codec.encode_to_budget(photo, budget)
        if enc.rate_met:
            assert len(enc.data) <= budget
            idx = ladder.index(enc.setting)
            if idx + 1 < len(ladder):  # the next rung up would not have fitted (highest setting chosen)
                assert len(codec.encode(photo, codec.ladder(photo)[idx + 1])) > budget or name == "avif"
        else:
            assert enc.setting == ladder[0] and len(enc.data) > budget
        assert enc.trials <= 9  # bisection over <= 101 rungs
        chosen.append(ladder.index(enc.setting))
    assert chosen == sorted(chosen, reverse=True)  # higher ratio -> lower or equal setting
    # 1000:1 of a 256x256 photo is 196 bytes: no header-carrying JPEG fits
    if name == "jpeg":
        assert not codec.encode_to_budget(photo, budget_bytes(photo, 1000)).rate_met


class _Ladder(Codec):
    """A codec whose sizes are known exactly: rung i encodes to sizes[i] bytes."""

    name, modality, extension, description = "fake", "image", ".bin", "test ladder"

    def __init__(self, sizes: list[int]) -> None:
        self.sizes, self.calls = sizes, 0

    def ladder(self, item):  # noqa: ANN001, ANN201
        return list(range(len(self.sizes)))

    def encode(self, item, setting):  # noqa: ANN001, ANN201
        self.calls += 1
        return b"x" * self.sizes[setting]

    def decode(self, data, like):  # noqa: ANN001, ANN201
        return like


@pytest.mark.parametrize("budget,expected,met", [(5, 0, False), (10, 0, True), (55, 4, True), (1000, 99, True)])
def test_fit_ladder_bisection(budget: int, expected: int, met: bool) -> None:
    codec = _Ladder([10 + 10 * i for i in range(100)])
    enc = fit_ladder(codec, np.zeros((4, 4, 3), np.uint8), budget)
    assert (int(enc.setting), enc.rate_met) == (expected, met)
    assert codec.calls == enc.trials <= 9


def test_fit_ladder_never_returns_an_unmeasured_rung_when_sizes_are_not_monotone() -> None:
    codec = _Ladder([10, 30, 20, 40, 50])
    enc = fit_ladder(codec, np.zeros((4, 4, 3), np.uint8), 25)
    assert len(enc.data) <= 25 and enc.rate_met


class _Profiled(_Ladder):
    """_Ladder with a size profile, as the Pillow codecs have one."""

    def __init__(self, sizes: list[int], profile: list[float] | None) -> None:
        super().__init__(sizes)
        self.profile = profile

    def size_profile(self, item):  # noqa: ANN001, ANN201
        return self.profile


def _bisection(sizes: list[int], budget: int) -> int:
    lo, hi = 0, len(sizes) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sizes[mid] <= budget else (lo, mid - 1)
    return lo


def _profile_search_encodes(profile: str) -> float:
    """Encodes per item of the shared search over 40 ladders that bend each their own way, 6 budgets each;
    every answer checked against bisection."""
    from mpq_assets.codecs.rate_control import fit_ladder_many

    rng = np.random.default_rng(7)
    rungs = np.arange(101)
    shape = 0.02 * rungs + 1.5 * (rungs / 100) ** 3  # the typical log size, as a calibrated profile holds it
    encodes = 0
    for _ in range(40):
        curve = 6 + shape + rng.normal(0, 0.3) * (rungs / 100) ** 2
        sizes = np.maximum.accumulate(np.round(np.exp(curve)).astype(int) + rungs).tolist()
        guess = {"true": shape.tolist(), "flat": [0.0] * 101, "reversed": (-shape).tolist(), "none": None}[profile]
        codec = _Profiled(sizes, guess)
        budgets = sorted(int(sizes[0] * np.exp(x)) for x in rng.uniform(0.1, 3.0, 6))
        results = fit_ladder_many(codec, np.zeros((4, 4, 3), np.uint8), budgets)
        assert [int(e.setting) for e in results] == [_bisection(sizes, b) for b in budgets]
        assert all(e.rate_met for e in results)
        encodes += codec.calls
    return encodes / 40


def test_profile_guided_search_answers_as_bisection_with_fewer_encodes() -> None:
    """Whatever the profile (the typical shape, useless or misleading) each budget gets bisection's rung on a
    monotone ladder; the typical shape saves encodes, a misleading one costs a bounded number more."""
    counts = {p: _profile_search_encodes(p) for p in ("true", "none", "flat", "reversed")}
    assert counts["true"] < counts["none"] - 1.0, counts
    assert max(counts.values()) < 25, counts  # 6 bisections from scratch would be ~40


def test_profile_length_must_match_the_ladder() -> None:
    with pytest.raises(ValueError, match="size profile has 3 values for 5 rungs"):
        fit_ladder(_Profiled([1, 2, 3, 4, 5], [0.0, 0.1, 0.2]), np.zeros((4, 4, 3), np.uint8), 3)


@pytest.mark.parametrize("name", IMAGE_CODECS)
def test_builtin_image_codecs_have_a_calibrated_profile(name: str, photo: np.ndarray) -> None:
    codec = get_codec(name)
    profile = codec.size_profile(photo)
    assert profile is not None and len(profile) == len(codec.ladder(photo))
    assert profile[0] == 0.0 and profile[-1] > 2.0  # log size relative to the lowest rung, grows ~10-40x
    # nearly monotone: at most one dip (libjxl's mode switch between q=18 and q=19 shrinks files by ~15 %)
    assert sum(b < a - 0.01 for a, b in zip(profile, profile[1:], strict=False)) <= 1


def test_codec_failure_names_the_setting() -> None:
    class Broken(_Ladder):
        def encode(self, item, setting):  # noqa: ANN001, ANN201
            raise OSError("encoder exploded")

    with pytest.raises(CodecError, match="fake failed at 0: encoder exploded"):
        fit_ladder(Broken([1, 2]), np.zeros((4, 4, 3), np.uint8), 10)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(CodecError, match="cannot be decoded"):
        get_codec("jpeg").decode(b"\xff\xd8\xffnot really", like=np.zeros((4, 4, 3), np.uint8))


def test_image_modes_normalise_to_rgb8() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    sixteen = Image.frombytes("I;16", (8, 8), (rgb[..., 0].astype("<u2") * 257).tobytes())
    for mode in ("L", "RGBA", "CMYK", "P", "I;16", "LA"):
        img = Image.fromarray(rgb).convert(mode) if mode != "I;16" else sixteen
        buf = io.BytesIO()
        img.save(buf, format="TIFF" if mode in ("CMYK", "I;16", "LA") else "PNG")
        out = decode_image_bytes(buf.getvalue())
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    buf = io.BytesIO()
    sixteen.save(buf, format="PNG")
    assert np.array_equal(decode_image_bytes(buf.getvalue())[..., 0], rgb[..., 0])
