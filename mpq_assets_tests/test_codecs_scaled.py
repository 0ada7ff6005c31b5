"""Reduced-resolution image coding: the .mpqs layout, decodes at the original size, rates over the original
pixels, fixed-scale rate control, and the adaptive (scale, quality) search against a brute-force answer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mpq_assets.codecs import RATIOS, budget_bytes, get_codec
from mpq_assets.codecs.base import CodecError, raw_bytes
from mpq_assets.codecs.rate_control import parse_ratio
from mpq_assets.codecs.scaled import DIVISORS, HEADER_BYTES, pack, psnr, scaled_size, unpack

pytestmark = pytest.mark.fast  # the `make check` tier


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[::2, ::2][:201, :255])  # odd sides: ceil division


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())  # 512x512: 1000x is 786 bytes, room for a header


def test_fixed_scale_file_is_a_header_and_a_smaller_jpeg_and_decodes_at_full_size(photo: np.ndarray) -> None:
    codec = get_codec("jpeg-s4")
    data = codec.encode(photo, 30)
    divisor, width, height, inner = unpack(data)
    assert (divisor, width, height) == (4, 255, 201) and data[:4] == b"MPQS"
    small = Image.open(io.BytesIO(inner))
    assert small.format == "JPEG" and small.size == scaled_size(255, 201, 4) == (64, 51)
    decoded = codec.decode(data, photo)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert 18 < psnr(photo, decoded) < 35
    assert codec.label(30) == "s=1/4 q=30"
    # the rate counts every written byte (header included) against the original's pixels
    assert len(data) == HEADER_BYTES + len(inner)
    assert raw_bytes(photo) == 255 * 201 * 3


def test_fixed_scale_rate_control_meets_budgets_full_scale_cannot(big: np.ndarray) -> None:
    full, quarter = get_codec("webp"), get_codec("webp-s4")
    budgets = [budget_bytes(big, r) for r in (500.0, 1000.0)]
    assert not any(e.rate_met for e in full.encode_to_budgets(big, budgets))
    found = quarter.encode_to_budgets(big, budgets)
    assert all(e.rate_met and len(e.data) <= b for e, b in zip(found, budgets, strict=True))
    assert all(e.setting.startswith("s=1/4 q=") for e in found)


def test_adaptive_search_takes_the_best_psnr_that_fits(big: np.ndarray) -> None:
    photo = big
    codec = get_codec("jpeg-scaled")
    qualities = get_codec("jpeg").ladder(photo)
    # brute force: every (scale, quality) of the joint ladder, its size and PSNR at full size
    table = []
    for d in DIVISORS:
        for q in qualities:
            data = codec.encode(photo, (d, q))
            table.append((len(data), psnr(photo, codec.decode(data, photo)), d))
    for ratio in (20.0, 100.0, 300.0, 1000.0):
        budget = budget_bytes(photo, ratio)
        best = max(p for size, p, _ in table if size <= budget)
        found = codec.encode_to_budget(photo, budget)
        assert found.rate_met and len(found.data) <= budget
        got = psnr(photo, codec.decode(found.data, photo))
        assert got == pytest.approx(best, abs=1e-9), (ratio, found.setting)
        assert found.setting.startswith("s=") and " q=" in found.setting
    # the chosen scale coarsens as the budget shrinks; full scale at a mild ratio
    settings = [e.setting for e in codec.encode_to_budgets(photo, [budget_bytes(photo, parse_ratio(r))
                                                                    for r in RATIOS])]
    assert settings[0].startswith("s=1 ") and settings[-1].startswith(("s=1/4 ", "s=1/8 "))


def test_unmet_budget_returns_the_smallest_file_flagged(photo: np.ndarray) -> None:
    found = get_codec("webp-scaled").encode_to_budget(photo, 10)
    assert not found.rate_met and found.setting.startswith("s=1/8 ")


def test_bad_scaled_files_name_the_reason(photo: np.ndarray) -> None:
    codec = get_codec("webp-scaled")
    with pytest.raises(CodecError, match="not an .mpqs file"):
        codec.decode(b"\xff\xd8\xff" + b"\x00" * 40, photo)
    with pytest.raises(CodecError, match="version 9"):
        codec.decode(b"MPQS\x09" + b"\x01" * 20, photo)
    with pytest.raises(CodecError, match="file is for a 10x10 image"):
        codec.decode(pack(2, 10, 10, b"RIFF"), photo)
    with pytest.raises(CodecError, match="RGB uint8"):
        codec.encode(photo[..., 0], (2, 50))
