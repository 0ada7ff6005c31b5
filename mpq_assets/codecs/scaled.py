"""Image coding at reduced resolution: downsample, encode, decode, upsample back to the original size.

The image codecs' own quality ladders stop near 270:1 (JPEG) to 300:1 (AVIF)
on the demo images; below that, practitioners code a smaller picture (MPEG
VCM's reference software resamples before VVC). A scaled codec here:

1. downsamples the image by an integer divisor ``d`` (each side to
   ``ceil(side / d)``) with Pillow's Lanczos filter (antialiased: its support
   widens with the factor),
2. encodes that with the inner codec at one of its qualities,
3. decodes it and upsamples back to the original size with Lanczos, so every
   metric and task sees an image of the original's shape.

The rate is the whole written file (header included) x 8 over the
**original** pixel count, like every codec's.

File layout (``.mpqs``): ``b"MPQS" | version (1 byte: 1) | divisor (1 byte) |
original width | original height (big-endian uint32 each)``, 14 bytes, then the
inner codec's complete file (a JPEG or WebP any viewer opens). The header is
what a decoder needs to restore the original size, so it counts in the rate.

Two forms, both registered:

- **fixed scale** (``jpeg-s2``, ``jpeg-s4``, ``webp-s2``, ``webp-s4``): one
  divisor; the ladder is the inner codec's qualities and rate control is the
  usual ladder search;
- **adaptive** (``jpeg-scaled``, ``webp-scaled``): per item and budget, the
  search runs the quality ladder at each divisor of ``DIVISORS`` (1, 2, 4, 8),
  from full resolution down, and among the settings that fit it takes the one
  with the **highest PSNR against the original at the original size**. The
  divisors' ladder searches keep their encodes across the budgets of an item
  (and are guided by the inner codec's size profile), each candidate is
  decoded once, and the walk down stops at the first divisor whose best fit
  has a lower PSNR than the one before (fidelity over scale at a fixed budget
  rises, then falls) -- so a budget that full resolution meets well costs two
  ladder searches, not four.

The chosen scale and quality are the stored setting (e.g. ``s=1/4 q=37``).
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from mpq_assets.codecs.base import Codec, CodecError, Encoded, Item, Modality
from mpq_assets.codecs.image_pillow import Jpeg, PillowImageCodec, WebP
from mpq_assets.codecs.rate_control import LadderSearch

MAGIC = b"MPQS"
VERSION = 1
_HEADER = struct.Struct(">4sBBII")
HEADER_BYTES = _HEADER.size  # 14
DIVISORS: tuple[int, ...] = (1, 2, 4, 8)
FILTER = Image.Resampling.LANCZOS


def scaled_size(width: int, height: int, divisor: int) -> tuple[int, int]:
    """(width, height) of the picture that is coded at ``1 / divisor`` scale."""
    return -(-width // divisor), -(-height // divisor)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An RGB uint8 image resized with the one filter this module uses (a no-op at the same size)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image, "RGB").resize((width, height), FILTER))


def pack(divisor: int, width: int, height: int, inner: bytes) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, divisor, width, height) + inner


def unpack(data: bytes) -> tuple[int, int, int, bytes]:
    """(divisor, original width, original height, inner file) of an ``.mpqs`` file, or a CodecError."""
    if len(data) <= HEADER_BYTES or not data.startswith(MAGIC):
        raise CodecError("scaled image: not an .mpqs file (no MPQS header, or nothing after it)")
    _, version, divisor, width, height = _HEADER.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"scaled image: .mpqs version {version} is not known (this reader has {VERSION})")
    if divisor < 1 or width < 1 or height < 1:
        raise CodecError(f"scaled image: bad header (divisor {divisor}, size {width}x{height})")
    return divisor, width, height, data[HEADER_BYTES:]


def _as_image(item: Item, codec: str) -> np.ndarray:
    if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
        raise CodecError(f"{codec} encodes RGB uint8 images (H, W, 3), got {type(item).__name__}")
    return item


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (peak 255) of two uint8 images; +inf when they are equal (only used to rank candidates)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


class _ScaledBase(Codec):
    """What both forms share: the inner codec, the file layout and the decode."""

    modality: ClassVar[Modality] = "image"
    extension: ClassVar[str] = ".mpqs"
    parallel_encode: ClassVar[bool] = True
    inner: ClassVar[type[PillowImageCodec]]
    in_demo: ClassVar[bool] = False

    def __init__(self) -> None:
        self._inner = self.inner()

    def check(self, item: Item) -> None:
        _as_image(item, self.name)

    def encode_at(self, item: Item, divisor: int, quality: Any) -> bytes:
        image = _as_image(item, self.name)
        height, width = image.shape[:2]
        small = resize(image, *scaled_size(width, height, divisor))
        return pack(divisor, width, height, self._inner.encode(small, quality))

    def decode(self, data: bytes, like: Item) -> np.ndarray:
        original = _as_image(like, self.name)
        divisor, width, height, inner = unpack(data)
        if (height, width) != original.shape[:2]:
            raise CodecError(f"{self.name}: file is for a {width}x{height} image, original is "
                             f"{original.shape[1]}x{original.shape[0]}")
        small_w, small_h = scaled_size(width, height, divisor)
        small = self._inner.decode(inner, np.empty((small_h, small_w, 3), dtype=np.uint8))
        return resize(small, width, height)

    def scale_label(self, divisor: int, quality: Any) -> str:
        scale = "1" if divisor == 1 else f"1/{divisor}"
        return f"s={scale} {self._inner.label(quality)}"


class FixedScaleCodec(_ScaledBase):
    """An image codec run at one reduced scale; the ladder is the inner codec's qualities."""

    divisor: ClassVar[int]

    def ladder(self, item: Item) -> Sequence[Any]:
        return self._inner.ladder(_as_image(item, self.name))

    def size_profile(self, item: Item) -> Sequence[float] | None:
        return self._inner.size_profile(item)

    def encode(self, item: Item, setting: Any) -> bytes:
        return self.encode_at(item, self.divisor, setting)

    def label(self, setting: Any) -> str:
        return self.scale_label(self.divisor, setting)


class _AtScale(FixedScaleCodec):
    """One divisor of an adaptive codec, as a fixed-scale codec its ladder searches run on."""

    def __init__(self, parent: AdaptiveScaleCodec, divisor: int) -> None:
        self.name, self.divisor, self._inner = parent.name, divisor, parent._inner  # type: ignore[misc]


class AdaptiveScaleCodec(_ScaledBase):
    """An image codec whose rate control picks (scale, quality) per item: the best PSNR that fits."""

    divisors: ClassVar[tuple[int, ...]] = DIVISORS

    def ladder(self, item: Item) -> Sequence[tuple[int, Any]]:
        """Every (divisor, quality), finest scale first; rate control does not walk it (see the module)."""
        image = _as_image(item, self.name)
        return [(d, q) for d in self.divisors for q in self._inner.ladder(image)]

    def encode(self, item: Item, setting: Any) -> bytes:
        divisor, quality = setting
        return self.encode_at(item, int(divisor), quality)

    def label(self, setting: Any) -> str:
        divisor, quality = setting
        return self.scale_label(int(divisor), quality)

    def encode_to_budget(self, item: Item, budget_bytes: int) -> Encoded:
        return self.encode_to_budgets(item, [budget_bytes])[0]

    def encode_to_budgets(self, item: Item, budgets: Sequence[int]) -> list[Encoded]:
        """Per budget, the fitting (scale, quality) with the highest PSNR at full size (module docstring)."""
        image = _as_image(item, self.name)
        searches = {d: LadderSearch(_AtScale(self, d), image) for d in self.divisors}
        fidelity: dict[str, float] = {}  # label -> PSNR of its decode, each candidate decoded once
        out: dict[int, Encoded] = {}
        for k in sorted(range(len(budgets)), key=lambda k: budgets[k]):
            encodes_before = sum(s.encodes for s in searches.values())
            t0 = time.perf_counter()
            out[k] = self._best_fit(image, budgets[k], searches, fidelity)
            trials = sum(s.encodes for s in searches.values()) - encodes_before
            out[k] = Encoded(out[k].data, out[k].setting, out[k].rate_met, trials, time.perf_counter() - t0)
        return [out[k] for k in range(len(budgets))]

    def _best_fit(self, image: np.ndarray, budget: int, searches: dict[int, LadderSearch],
                  fidelity: dict[str, float]) -> Encoded:
        best: tuple[float, Encoded] | None = None
        smallest: Encoded | None = None
        previous = -math.inf
        for divisor in self.divisors:
            found = searches[divisor].fit(budget)
            if not found.rate_met:  # even the lowest quality is too large at this scale: try a coarser one
                if smallest is None or len(found.data) < len(smallest.data):
                    smallest = found
                continue
            if found.setting not in fidelity:
                fidelity[found.setting] = psnr(image, self.decode(found.data, image))
            score = fidelity[found.setting]
            if best is None or score > best[0]:
                best = (score, found)
            if score < previous:  # past the best scale
                break
            previous = score
        if best is not None:
            return best[1]
        assert smallest is not None
        return smallest


class JpegScaled2(FixedScaleCodec):
    name = "jpeg-s2"
    description = "JPEG at 1/2 scale (Lanczos down and up), quality 1-100; .mpqs = 14-byte header + JPEG"
    inner = Jpeg
    divisor = 2


class JpegScaled4(FixedScaleCodec):
    name = "jpeg-s4"
    description = "JPEG at 1/4 scale (Lanczos down and up), quality 1-100; .mpqs = 14-byte header + JPEG"
    inner = Jpeg
    divisor = 4


class WebPScaled2(FixedScaleCodec):
    name = "webp-s2"
    description = "WebP at 1/2 scale (Lanczos down and up), quality 0-100; .mpqs = 14-byte header + WebP"
    inner = WebP
    divisor = 2


class WebPScaled4(FixedScaleCodec):
    name = "webp-s4"
    description = "WebP at 1/4 scale (Lanczos down and up), quality 0-100; .mpqs = 14-byte header + WebP"
    inner = WebP
    divisor = 4


class JpegAdaptiveScale(AdaptiveScaleCodec):
    name = "jpeg-scaled"
    description = "JPEG at scale 1, 1/2, 1/4 or 1/8 and quality chosen per item: best PSNR within the budget"
    inner = Jpeg
    in_demo = True


class WebPAdaptiveScale(AdaptiveScaleCodec):
    name = "webp-scaled"
    description = "WebP at scale 1, 1/2, 1/4 or 1/8 and quality chosen per item: best PSNR within the budget"
    inner = WebP
    in_demo = True
