"""Partitions: codec (dynamic, one dimension per modality) x bitrate (target compression ratio).

Keys print as ``"<bitrate>|<codec>"`` (dimensions sort by name); parse them with
:func:`split_key`, which asks the definition, never by hand.
"""

from __future__ import annotations

from functools import cache

from dagster import DynamicPartitionsDefinition, MultiPartitionsDefinition, StaticPartitionsDefinition

from mpq_assets.codecs import RATIOS
from mpq_assets.media.item import MODALITIES, Modality

BITRATES = StaticPartitionsDefinition(list(RATIOS))


def codec_partitions_name(modality: Modality) -> str:
    return f"{modality}_codecs"


@cache
def codec_partitions(modality: Modality) -> DynamicPartitionsDefinition:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}")
    return DynamicPartitionsDefinition(name=codec_partitions_name(modality))


@cache
def codec_bitrate_partitions(modality: Modality) -> MultiPartitionsDefinition:
    return MultiPartitionsDefinition({"codec": codec_partitions(modality), "bitrate": BITRATES})


def split_key(modality: Modality, key: str) -> tuple[str, str]:
    """``"100x|jpeg"`` -> ``("jpeg", "100x")`` through the partitions definition."""
    dims = codec_bitrate_partitions(modality).get_partition_key_from_str(key).keys_by_dimension
    return dims["codec"], dims["bitrate"]


def partition_key(codec: str, bitrate: str) -> str:
    """The multi-partition key string for one (codec, bitrate)."""
    from dagster import MultiPartitionKey

    return str(MultiPartitionKey({"codec": codec, "bitrate": bitrate}))
