"""The codec plugin interface: what a codec must say and do to join a sweep.

A codec turns an item into a bitstream and back. Rate control is shared: a codec
lists its settings as a *ladder* ordered from lowest to highest rate, and the
default :meth:`Codec.encode_to_budget` picks the highest rung whose bitstream
fits the item's byte budget (see ``rate_control``). Codecs with a closed-form
choice may override it.

Several target ratios of one item (:meth:`Codec.encode_to_budgets`) share their
encodes, and several items can go through a model together
(:meth:`Codec.encode_batch` / :meth:`Codec.decode_batch`, per item by default;
the neural codecs batch items of one padded shape on the device). Every file a
batched call writes must decode on its own; where batched arithmetic differs
from single-item arithmetic in the last bits (neural codecs), the codec says so
and keeps per-item calls as its CPU default.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from mpq_assets.codecs.bitstream import CodecError, Encoded
from mpq_assets.codecs.rate_control import fit_ladder, fit_ladder_many
from mpq_assets.media.item import MODALITIES, Item, Modality, raw_bytes
from mpq_assets.weights.source import WeightSource

__all__ = ["MODALITIES", "Codec", "CodecError", "Encoded", "Item", "Modality", "raw_bytes"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


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
    weight_sources: ClassVar[tuple[WeightSource, ...]] = ()  # its model weights, for `mpq models`
    # encoding is plain CPU work on picklable objects (no model, no device): ``compressed`` may spread items over
    # worker processes, one per core. Codecs that hold models leave this False and batch on the device instead.
    parallel_encode: ClassVar[bool] = False
    # encode_batch / decode_batch really batch (a model): ``compressed`` then hands items over in groups of
    # several ``batch_size`` batches (the neural codecs make both properties of their device and settings)
    batched: ClassVar[bool] = False
    batch_size: ClassVar[int] = 1
    # `mpq demo` runs this codec by default (fixed-setting and fixed-scale variants say no: a single point or a
    # slice of an adaptive codec adds time, not a curve); naming it with --codec still runs it
    in_demo: ClassVar[bool] = True

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

    def check(self, item: Item) -> None:
        """Raise :class:`CodecError` if this codec cannot take ``item`` at all (kind, shape, channels): a cheap
        test with no model, so that ``compressed`` can keep a bad item out of a batch of good ones."""
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

    def size_profile(self, item: Item) -> Sequence[float] | None:
        """The typical shape of log(file size) over this item's ladder (one value per rung), or None.

        Only a guess for the ladder search of where to probe (``rate_control``); the
        answer is always a measured boundary, so a poor profile costs encodes, never a
        wrong setting. None: the search interpolates from the item's own sizes alone.
        """
        return None

    def encode_to_budget(self, item: Item, budget_bytes: int) -> Encoded:
        """Pick the highest-rate setting whose bitstream fits ``budget_bytes``."""
        return fit_ladder(self, item, budget_bytes)

    def encode_to_budgets(self, item: Item, budgets: Sequence[int]) -> list[Encoded]:
        """:meth:`encode_to_budget` for several budgets of one item (e.g. every target ratio), in input order.

        With the shared ladder search the budgets reuse each other's encodes; a codec
        with its own ``encode_to_budget`` gets one call per budget unless it overrides this too.
        """
        if type(self).encode_to_budget is not Codec.encode_to_budget:
            return [self.encode_to_budget(item, b) for b in budgets]
        return fit_ladder_many(self, item, budgets)

    def encode_to_budgets_batch(self, items: Sequence[Item], budgets: Sequence[Sequence[int]]) -> list[list[Encoded]]:
        """:meth:`encode_to_budgets` for several items (``budgets[i]`` are item i's); batched codecs override it.

        Raises if any item fails; callers then retry item by item to isolate it.
        """
        return [self.encode_to_budgets(item, b) for item, b in zip(items, budgets, strict=True)]

    def encode_batch(self, items: Sequence[Item], setting: Any) -> list[bytes]:
        """Encode several items at one setting, one file each (per item here; batched codecs override it, and
        say where a batch can differ from single items in the last bits)."""
        return [self.encode(item, setting) for item in items]

    def decode_batch(self, data: Sequence[bytes], like: Sequence[Item]) -> list[Item]:
        """Decode several bitstreams (per item here; batched codecs override it)."""
        return [self.decode(d, item) for d, item in zip(data, like, strict=True)]

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

