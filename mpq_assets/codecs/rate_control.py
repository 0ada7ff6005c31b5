"""Per-item rate control: a target compression ratio becomes a byte budget, and
the codec's ladder is searched for the highest setting that fits it.

Sizes are always the bytes actually written (never a model's estimate).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mpq_assets.codecs.base import CodecError, Encoded, Item, raw_bytes

if TYPE_CHECKING:
    from mpq_assets.codecs.base import Codec

RATIOS: tuple[str, ...] = ("20x", "50x", "100x", "200x", "500x", "1000x")


def parse_ratio(bitrate: str) -> float:
    """``"100x"`` -> 100.0, with a clear error for anything else."""
    text = bitrate.strip().lower()
    if not text.endswith("x"):
        raise ValueError(f"bitrate partition {bitrate!r} is not a ratio like '100x'")
    try:
        value = float(text[:-1])
    except ValueError as exc:
        raise ValueError(f"bitrate partition {bitrate!r} is not a ratio like '100x'") from exc
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"bitrate partition {bitrate!r}: ratio must be >= 1")
    return value


def budget_bytes(item: Item, ratio: float) -> int:
    """The largest bitstream (bytes) that still achieves ``ratio`` for this item."""
    return max(1, math.floor(raw_bytes(item) / ratio))


def fit_ladder(codec: Codec, item: Item, budget: int) -> Encoded:
    """Bisection over the ladder for the highest rung whose bitstream fits ``budget``.

    Only rungs that were encoded and measured are accepted, so the result fits
    even where size is not perfectly monotone in the setting. When the lowest
    rung is already too large the target is unreachable: that bitstream is
    returned with ``rate_met=False`` rather than raising.
    """
    ladder = list(codec.ladder(item))
    if not ladder:
        raise CodecError(f"{codec.name}: no settings for this item")
    sizes: dict[int, bytes] = {}

    def enc(i: int) -> bytes:
        if i not in sizes:
            try:
                sizes[i] = codec.encode(item, ladder[i])
            except CodecError:
                raise
            except Exception as exc:  # a library failure on one setting names the setting
                raise CodecError(f"{codec.name} failed at {codec.label(ladder[i])}: {exc}") from exc
        return sizes[i]

    if len(enc(0)) > budget:
        return Encoded(enc(0), codec.label(ladder[0]), False, len(sizes))
    lo, hi = 0, len(ladder) - 1  # invariant: rung lo fits
    if len(enc(hi)) <= budget:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(enc(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return Encoded(enc(lo), codec.label(ladder[lo]), True, len(sizes))
