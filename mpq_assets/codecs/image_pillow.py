"""Built-in image codecs through Pillow: JPEG, WebP, AVIF and (with its plugin) JPEG XL.

Each ladder is the codec's quality knob, lowest first; rate control searches it,
guided by the codec's measured size profile (``size_profiles.json``, written by
``scripts/calibrate_size_profiles.py``).
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from mpq_assets.codecs.base import Codec, CodecError, Modality
from mpq_assets.media.errors import MediaError
from mpq_assets.media.image import decode_image_bytes


@functools.cache
def _size_profiles() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("size_profiles.json")).read_text(encoding="utf-8"))["codecs"]


class PillowImageCodec(Codec):
    """Shared encode/decode for codecs Pillow writes with a ``quality`` argument."""

    modality: ClassVar[Modality] = "image"
    parallel_encode: ClassVar[bool] = True  # Pillow holds the GIL while encoding: worker processes, not threads
    pillow_format: ClassVar[str]
    qualities: ClassVar[Sequence[int]] = range(0, 101)
    options: ClassVar[dict[str, Any]] = {}
    plugin: ClassVar[str | None] = None  # module that registers the format with Pillow when imported

    def _register(self) -> None:
        """Import the format's Pillow plugin (a worker process may not have imported it yet)."""
        if self.plugin is not None:
            import importlib

            importlib.import_module(self.plugin)

    def ladder(self, item: np.ndarray) -> Sequence[int]:
        return list(self.qualities)

    def label(self, setting: Any) -> str:
        return f"q={setting}"

    def size_profile(self, item: np.ndarray) -> Sequence[float] | None:
        """The calibrated profile of this codec (by name), if its rung count still matches the ladder."""
        entry = _size_profiles().get(self.name)
        if entry is None or len(entry["log_size"]) != len(self.ladder(item)):
            return None
        return entry["log_size"]

    def encode(self, item: np.ndarray, setting: Any) -> bytes:
        self._register()
        buf = io.BytesIO()
        Image.fromarray(item, "RGB").save(buf, format=self.pillow_format, quality=int(setting), **self.options)
        return buf.getvalue()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        self._register()
        try:
            out = decode_image_bytes(data, what=f"{self.name} bitstream")
        except MediaError as exc:
            raise CodecError(str(exc)) from exc
        if out.shape != like.shape:
            raise CodecError(f"{self.name} decoded shape {out.shape} differs from original {like.shape}")
        return out


class Jpeg(PillowImageCodec):
    name = "jpeg"
    extension = ".jpg"
    description = "libjpeg via Pillow, quality 1-100, 4:2:0, optimised Huffman tables"
    pillow_format = "JPEG"
    qualities = range(1, 101)
    options = {"optimize": True}


class WebP(PillowImageCodec):
    name = "webp"
    extension = ".webp"
    description = "libwebp lossy via Pillow, quality 0-100, method 4"
    pillow_format = "WEBP"
    options = {"method": 4}


class Avif(PillowImageCodec):
    name = "avif"
    extension = ".avif"
    description = "AV1 still image (libavif/aom) via Pillow, quality 0-100, speed 8"
    pillow_format = "AVIF"
    options = {"speed": 8}

    @classmethod
    def available(cls) -> bool:
        from PIL import features

        return bool(features.check("avif"))


class JpegXl(PillowImageCodec):
    name = "jxl"
    extension = ".jxl"
    description = "JPEG XL (libjxl via pillow-jxl-plugin), quality 0-99 (lossy), effort 3"
    pillow_format = "JXL"
    qualities = range(0, 100)  # 100 asks libjxl for lossless, which this lossy ladder excludes
    options = {"effort": 3}
    plugin = "pillow_jxl"

    @classmethod
    def available(cls) -> bool:
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError:
            return False
        return True
