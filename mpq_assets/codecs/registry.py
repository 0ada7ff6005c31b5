"""The codec registry: one table from public names to codec classes, plus plugins.

Third-party packages add codecs through the ``mpq.codecs`` entry-point group::

    [project.entry-points."mpq.codecs"]
    mycodec = "my_package.codecs:MyCodec"

Adding a built-in is one line in ``BUILTIN_CODECS``; nothing else changes.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from mpq_assets.codecs.audio_av import Aac, Mp3, Opus
from mpq_assets.codecs.base import Codec, Modality
from mpq_assets.codecs.codec2 import Codec2
from mpq_assets.codecs.hific import HiFiC, HiFiCLo
from mpq_assets.codecs.image_pillow import Avif, Jpeg, JpegXl, WebP
from mpq_assets.codecs.neural_audio import Encodec24, Encodec24Lm, Encodec48, Encodec48Lm
from mpq_assets.codecs.neural_image import Cheng2020Anchor, Mbt2018
from mpq_assets.codecs.paper import Encodec6k, JpegQ5, Mbt2018Q1, Mp38k, Opus6k, WebPQ0
from mpq_assets.codecs.scaled import (
    JpegAdaptiveScale,
    JpegScaled2,
    JpegScaled4,
    WebPAdaptiveScale,
    WebPScaled2,
    WebPScaled4,
)
from mpq_assets.construct import build
from mpq_assets.settings import Settings

ENTRY_POINT_GROUP = "mpq.codecs"
log = logging.getLogger(__name__)

BUILTIN_CODECS: dict[str, type[Codec]] = {
    "jpeg": Jpeg,
    "webp": WebP,
    "avif": Avif,
    "jxl": JpegXl,
    "mbt2018": Mbt2018,
    "cheng2020-anchor": Cheng2020Anchor,
    "hific": HiFiC,
    "hific-lo": HiFiCLo,  # the paper's fixed HiFiC-low setting
    "mp3": Mp3,
    "opus": Opus,
    "aac": Aac,
    "encodec-24khz": Encodec24,
    "encodec-48khz": Encodec48,
    "encodec-24khz-lm": Encodec24Lm,  # with the package's entropy-coding LM (needs its checkpoint too)
    "encodec-48khz-lm": Encodec48Lm,
    "codec2": Codec2,  # Debian's c2enc/c2dec: speech down to 600 bit/s
    # reduced resolution (codecs/scaled.py): (scale, quality) per item, and fixed scales
    "jpeg-scaled": JpegAdaptiveScale,
    "webp-scaled": WebPAdaptiveScale,
    "jpeg-s2": JpegScaled2,
    "jpeg-s4": JpegScaled4,
    "webp-s2": WebPScaled2,
    "webp-s4": WebPScaled4,
    # the paper's fixed settings (codecs/paper.py): one rung each
    "jpeg-q5": JpegQ5,
    "webp-q0": WebPQ0,
    "mbt2018-q1": Mbt2018Q1,
    "opus-6k": Opus6k,
    "mp3-8k": Mp38k,
    "encodec-6k": Encodec6k,
}


def _plugin_codecs() -> dict[str, type[Codec]]:
    found: dict[str, type[Codec]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, Codec)):
                raise TypeError(f"{ep.value} is not a subclass of mpq_assets.codecs.Codec")
            cls.validate()
        except Exception as exc:  # one broken plugin must not hide the others
            log.warning("skipping codec plugin %r from entry point %s: %s", ep.name, ep.value, exc)
            continue
        if cls.name in BUILTIN_CODECS or cls.name in found:
            log.warning("skipping codec plugin %r: the name %r is already registered", ep.value, cls.name)
            continue
        found[cls.name] = cls
    return found


def codec_classes(modality: Modality | None = None) -> dict[str, type[Codec]]:
    """Every usable codec (built-ins whose libraries are installed, then plugins), by name."""
    table = {**BUILTIN_CODECS, **_plugin_codecs()}
    return {
        name: cls
        for name, cls in sorted(table.items())
        if (modality is None or cls.modality == modality) and cls.available()
    }


def codec_names(modality: Modality | None = None, demo_only: bool = False) -> list[str]:
    """Usable codec names; ``demo_only`` keeps those ``mpq demo`` runs by default (``Codec.in_demo``)."""
    return [name for name, cls in codec_classes(modality).items() if cls.in_demo or not demo_only]


def get_codec(name: str, device: str | None = None, batch_size: int | None = None,
              settings: Settings | None = None) -> Codec:
    """Instantiate a codec by name, with an error listing the known names.

    ``device``, ``batch_size`` and ``settings`` (a deployment's ``MpqResource``, handed in by the step) go to
    the codecs whose constructor takes them (the neural codecs: where their weights are, which device and
    batch size by default); None leaves those to the environment.
    """
    table = codec_classes()
    if name not in table:
        raise KeyError(f"unknown codec {name!r}; known codecs: {', '.join(table) or 'none'}")
    return build(table[name], device=device, batch_size=batch_size, settings=settings)
