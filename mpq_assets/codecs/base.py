"""The codec plugin interface: what a codec must say and do to join a sweep.

A codec turns an item into a bitstream and back. Rate control is shared: a codec
lists its settings as a *ladder* ordered from lowest to highest rate, and the
default :meth:`Codec.encode_to_budget` picks the highest rung whose bitstream
fits the item's byte budget (bisection; see ``rate_control``). Codecs with a
closed-form choice may override it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from mpq_assets.media.audio import Audio

Modality = Literal["image", "audio"]
MODALITIES: tuple[Modality, ...] = ("image", "audio")
Item = np.ndarray | Audio
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class CodecError(RuntimeError):
    """A codec failed on one item; the message says which setting and why."""


@dataclass(frozen=True)
class Encoded:
    """One item's bitstream at the setting rate control chose."""

    data: bytes
    setting: str
    rate_met: bool
    trials: int


class Codec(ABC):
    """Base class for every codec, built-in or plugin.

    Subclasses set the class attributes and implement ``ladder``, ``encode`` and
    ``decode``. Items are RGB uint8 arrays (H, W, 3) for images and
    :class:`~mpq_assets.media.audio.Audio` for audio; ``decode`` returns the same
    kind, in the item's own format (size, sample rate, channels).
    """

    name: ClassVar[str]
    modality: ClassVar[Modality]
    extension: ClassVar[str]
    description: ClassVar[str]

    requires: ClassVar[tuple[str, ...]] = ()  # importable modules this codec needs

    @classmethod
    def available(cls) -> bool:
        """Whether the libraries this codec needs are installed (``requires``; optional codecs say no)."""
        from importlib.util import find_spec

        return all(find_spec(module) is not None for module in cls.requires)

    def weights_missing(self) -> str | None:
        """Why this codec cannot run here (e.g. its weights are not cached) and how to fix it; None if ready.

        Neural codecs override this; the demo skips a codec that is not ready with
        this one line, and ``compressed`` fails with it instead of writing error rows.
        """
        return None

    @abstractmethod
    def ladder(self, item: Item) -> Sequence[Any]:
        """Settings for this item, ordered from lowest to highest rate."""

    @abstractmethod
    def encode(self, item: Item, setting: Any) -> bytes:
        """Encode at one setting; the bytes are the complete file a user can open."""

    @abstractmethod
    def decode(self, data: bytes, like: Item) -> Item:
        """Decode a bitstream back to the original's format (``like`` gives shape/rate)."""

    def label(self, setting: Any) -> str:
        """Human-readable setting, stored per item (e.g. ``q=37`` or ``24kbps``)."""
        return str(setting)

    def encode_to_budget(self, item: Item, budget_bytes: int) -> Encoded:
        """Pick the highest-rate setting whose bitstream fits ``budget_bytes``."""
        from mpq_assets.codecs.rate_control import fit_ladder

        return fit_ladder(self, item, budget_bytes)

    @classmethod
    def validate(cls) -> None:
        """Check the class declares what the registry and partitions need."""
        for attr in ("name", "modality", "extension", "description"):
            if not getattr(cls, attr, None):
                raise TypeError(f"codec {cls.__name__} does not set {attr!r}")
        if not _NAME.match(cls.name):
            raise TypeError(f"codec name {cls.name!r} must match {_NAME.pattern} (it becomes a partition key)")
        if cls.modality not in MODALITIES:
            raise TypeError(f"codec {cls.name}: modality must be one of {MODALITIES}, got {cls.modality!r}")
        if not cls.extension.startswith("."):
            raise TypeError(f"codec {cls.name}: extension must start with '.', got {cls.extension!r}")


def raw_bytes(item: Item) -> int:
    """Uncompressed size: 8-bit RGB for images, 16-bit PCM for audio (DESIGN.md)."""
    if isinstance(item, Audio):
        return item.raw_bytes
    h, w = item.shape[:2]
    return int(h * w * 3)
