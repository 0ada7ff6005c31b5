"""Quality metrics: small objects with metadata and one interface (torchmetrics-style verbs).

Each metric declares a :class:`MetricInfo` record (VERSA-style): modality, whether
it needs a reference, higher-is-better, GPU capability, sample rate, minimum size.
The pipeline reads these records instead of special-casing metrics by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.media.item import Item, Modality
from mpq_assets.weights.source import WeightSource


@dataclass(frozen=True)
class MetricInfo:
    name: str                      # column value in the quality table, e.g. "psnr", "lpips_alex"
    modality: Modality
    higher_is_better: bool
    requires_reference: bool = True
    requires_text: bool = False
    gpu_capable: bool = False
    sample_rate: int | None = None  # audio metrics: the rate items are resampled to first
    channels: str = ""              # audio metrics: what happens to channels ("mono mix-down by averaging", ...)
    min_duration_s: float | None = None  # audio metrics: shortest clip the metric takes
    min_size: int | None = None     # images: smallest side the metric is defined for
    unit: str = ""
    citation: str = ""


class QualityMetric(ABC):
    """Full-reference metric over batches of (reference, distorted) items.

    ``update`` scores a batch and accumulates per-item values, ``compute`` returns
    them in input order, ``reset`` clears them. ``applicable`` says why an item
    cannot be scored (or ``None``), so callers skip it and report the reason.

    Several reconstructions of one original (every codec x ratio of an item) go
    through ``prepare`` (what the metric needs of the reference, computed once:
    features, filtered statistics) and ``score_prepared``; the values are those
    ``update`` gives pair by pair, up to float rounding.
    """

    info: ClassVar[MetricInfo]
    weight_sources: ClassVar[tuple[WeightSource, ...]] = ()  # its model weights, for `mpq models`

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._values: list[float] = []

    def reset(self) -> None:
        self._values = []

    def update(self, reference: Sequence[Item], distorted: Sequence[Item]) -> None:
        if len(reference) != len(distorted):
            raise ValueError(f"{self.info.name}: {len(reference)} references but {len(distorted)} distorted items")
        self._values.extend(float(v) for v in self.score_batch(reference, distorted))

    def compute(self) -> np.ndarray:
        return np.asarray(self._values, dtype=np.float64)

    def applicable(self, item: Item) -> str | None:
        """Reason this item cannot be scored, or None."""
        if self.info.min_size and isinstance(item, np.ndarray) and min(item.shape[:2]) < self.info.min_size:
            return f"{self.info.name} needs images of at least {self.info.min_size} px, item is {item.shape[:2]}"
        return None

    def prepare(self, reference: Item) -> Any:
        """What :meth:`score_prepared` needs of one reference item; by default the item itself."""
        return reference

    def score_prepared(self, prepared: Any, distorted: Sequence[Item]) -> list[float]:
        """Values of several distorted versions of the one reference ``prepare`` was given."""
        return [float(v) for v in self.score_batch([prepared] * len(distorted), distorted)]

    @abstractmethod
    def score_batch(self, reference: Sequence[Item], distorted: Sequence[Item]) -> Sequence[float]:
        """Per-item values for one batch (items may differ in size)."""
