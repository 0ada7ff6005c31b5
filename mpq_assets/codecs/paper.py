"""The study's fixed codec settings as codecs of their own, to reproduce its exact operating points.

arXiv 2401.07957 compares codecs at one setting each rather than at matched
ratios. Each codec here is an existing codec with a one-rung ladder:

=============  ==========================  =====================================================
name           setting                     why this one
=============  ==========================  =====================================================
``jpeg-q5``    JPEG quality 5              the paper's JPEG setting
``webp-q0``    WebP quality 0              the paper's WebP setting
``mbt2018-q1`` MBT2018 quality 1           the paper's MBT2018 setting (CompressAI weights)
``opus-6k``    Opus 6 kbps per channel     the paper's Opus setting (libopus' lowest rate)
``mp3-8k``     MP3 8 kbps CBR              the paper encoded MP3 through sox with ``-C 8``, whose
                                           integer part is the CBR bitrate in kbps: 8 kbps
                                           (LAME then codes at 8 kHz, as our ladder does)
``encodec-6k`` EnCodec 24 kHz at 6 kbps    the paper's EnCodec setting
=============  ==========================  =====================================================

HiFiC-low is ``hific-lo`` (``codecs/hific.py``), the same idea.

How they sit in a sweep: a one-rung codec writes the same file for every
target ratio of an item, so its partitions all hold one bitstream per item;
``rate_met`` says which targets it actually reaches. The analyses count
distinct operating points by content hash (``partition_points``,
``operating_points``), so the six partitions are one point, named after the
lowest target (e.g. ``jpeg-q5@20x``), placed at its pooled achieved rate --
one point, not six. They are left out of ``mpq demo`` by default
(``in_demo``): a single point adds nothing to a curve or a BD-rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from mpq_assets.codecs.audio_av import Mp3, Opus, as_audio
from mpq_assets.codecs.base import Codec, CodecError, Item
from mpq_assets.codecs.image_pillow import Jpeg, WebP
from mpq_assets.codecs.neural_audio import Encodec24
from mpq_assets.codecs.neural_image import Mbt2018
from mpq_assets.construct import build


class FixedSetting(Codec):
    """An inner codec held at one setting; everything else (files, decode, weights, batching) is the inner's."""

    inner: ClassVar[type[Codec]]
    setting: ClassVar[Any]
    in_demo: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        """``options`` (device, batch size, settings) go to the inner codec, as the registry passes them."""
        self._inner = build(self.inner, **options)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inner = cls.__dict__.get("inner")
        if inner is not None:  # what the inner codec declares about itself holds for the fixed setting too
            cls.modality, cls.extension = inner.modality, inner.extension
            cls.requires, cls.weight_sources = inner.requires, inner.weight_sources
            cls.parallel_encode = inner.parallel_encode

    @classmethod
    def available(cls) -> bool:
        return cls.inner.available()

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return bool(self._inner.batched)

    @property
    def batch_size(self) -> int:  # type: ignore[override]
        return int(self._inner.batch_size)

    def pick(self, item: Item) -> Any:
        """The one rung for this item (a subclass maps the paper's setting onto the inner ladder)."""
        return self.setting

    def ladder(self, item: Item) -> Sequence[Any]:
        rung = self.pick(item)
        if rung not in list(self._inner.ladder(item)):
            raise CodecError(f"{self.name}: {self._inner.label(rung)} is not a setting {self._inner.name} has "
                             "for this item")
        return [rung]

    def weights_missing(self) -> str | None:
        return self._inner.weights_missing()

    def check(self, item: Item) -> None:
        self._inner.check(item)

    def encode(self, item: Item, setting: Any) -> bytes:
        return self._inner.encode(item, setting)

    def encode_batch(self, items: Sequence[Item], setting: Any) -> list[bytes]:
        return self._inner.encode_batch(items, setting)

    def decode(self, data: bytes, like: Item) -> Item:
        return self._inner.decode(data, like)

    def decode_batch(self, data: Sequence[bytes], like: Sequence[Item]) -> list[Item]:
        return self._inner.decode_batch(data, like)

    def label(self, setting: Any) -> str:
        return self._inner.label(setting)


class JpegQ5(FixedSetting):
    name = "jpeg-q5"
    description = "JPEG quality 5 only (the paper's setting)"
    inner = Jpeg
    setting = 5


class WebPQ0(FixedSetting):
    name = "webp-q0"
    description = "WebP quality 0 only (the paper's setting)"
    inner = WebP
    setting = 0


class Mbt2018Q1(FixedSetting):
    name = "mbt2018-q1"
    description = "MBT2018 quality 1 only (the paper's setting; CompressAI weights)"
    inner = Mbt2018
    setting = 1

    def weights_missing(self) -> str | None:
        return self._inner.weights_missing(qualities=(self.setting,))  # one checkpoint, not the whole ladder


class Opus6k(FixedSetting):
    name = "opus-6k"
    description = "Opus 6 kbps per channel only (the paper's setting), hard CBR"
    inner = Opus
    setting = 6

    def pick(self, item: Item) -> Any:
        return self.setting * as_audio(item, self.name).channels  # Opus' ladder counts total kbps


class Mp38k(FixedSetting):
    name = "mp3-8k"
    description = "MP3 8 kbps CBR only (the paper's sox -C 8), LAME at 8 kHz"
    inner = Mp3
    setting = 8

    def pick(self, item: Item) -> Any:
        rungs = [r for r in self._inner.ladder(item) if r[0] == self.setting]
        if not rungs:
            raise CodecError(f"{self.name}: mp3 has no {self.setting} kbps rung for this item")
        return rungs[0]


class Encodec6k(FixedSetting):
    name = "encodec-6k"
    description = "EnCodec 24 kHz at 6 kbps only (the paper's setting), ECDC container"
    inner = Encodec24
    setting = 6.0


PAPER_CODECS: tuple[type[FixedSetting], ...] = (JpegQ5, WebPQ0, Mbt2018Q1, Opus6k, Mp38k, Encodec6k)
