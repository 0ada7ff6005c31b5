"""Grouping items for a batched model call: only tensors of one shape can share a batch."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def shape_batches(shapes: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices of ``shapes`` grouped by equal shape (in order of first appearance), each group cut into
    chunks of at most ``batch_size``. Every index appears exactly once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[Hashable, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(i)
    return [members[k:k + batch_size] for members in groups.values() for k in range(0, len(members), batch_size)]
