"""Codecs: the plugin interface, the registry and shared rate control."""

from mpq_assets.codecs.base import Codec, CodecError, Encoded, Modality, raw_bytes
from mpq_assets.codecs.rate_control import RATIOS, budget_bytes, fit_ladder, parse_ratio
from mpq_assets.codecs.registry import ENTRY_POINT_GROUP, codec_classes, codec_names, get_codec

__all__ = [
    "ENTRY_POINT_GROUP",
    "RATIOS",
    "Codec",
    "CodecError",
    "Encoded",
    "Modality",
    "budget_bytes",
    "codec_classes",
    "codec_names",
    "fit_ladder",
    "get_codec",
    "parse_ratio",
    "raw_bytes",
]
