"""Datasets: sources of items (images or audio clips) with optional labels.

A dataset yields :class:`ItemSource` records whose ``load`` is called lazily, so a
corrupt item fails alone (as an error row) instead of failing the whole dataset.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mpq_assets.media.audio import Audio
from mpq_assets.media.item import Modality

ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_item_id(item_id: str) -> str:
    """Item ids become file names and SQL values: keep them to a safe alphabet."""
    if not ITEM_ID.match(item_id) or ".." in item_id:
        raise ValueError(f"item id {item_id!r} must match {ITEM_ID.pattern} (it becomes a file name)")
    return item_id


def item_id_from_name(name: str) -> str:
    """Derive a safe item id from a file name (``"My photo (1).jpg"`` -> ``"My_photo_1"``)."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")
    return check_item_id(cleaned or "item")


@dataclass(frozen=True)
class ItemSource:
    """One item before loading: its id, where it comes from, and how to load it."""

    item_id: str
    source: str
    load: Callable[[], np.ndarray | Audio]
    label: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Dataset(ABC):
    """A named source of items of one modality."""

    modality: ClassVar[Modality]

    @abstractmethod
    def items(self) -> Iterator[ItemSource]:
        """Yield the items in a stable order with stable ids."""

    def describe(self) -> str:
        return type(self).__name__
