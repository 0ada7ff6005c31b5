"""An MPQ codec plugin: JPEG after 2x downscaling, upscaled again on decode.

Downscaling first is how practitioners reach ratios plain JPEG cannot (its
headers alone exceed a 1000:1 budget for small images). The shared rate control
bisects the quality ladder exactly as for the built-in JPEG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from mpq_assets.codecs import Codec, CodecError
from mpq_assets.media.image import decode_image_bytes


class HalfResJpeg(Codec):
    name = "jpeg-half"
    modality = "image"
    extension = ".jpg"
    description = "JPEG at half resolution (Lanczos down, bicubic up), quality 1-100"

    def ladder(self, item: np.ndarray) -> Sequence[int]:
        return list(range(1, 101))

    def label(self, setting: Any) -> str:
        return f"q={setting}@1/2"

    def encode(self, item: np.ndarray, setting: Any) -> bytes:
        h, w = item.shape[:2]
        small = Image.fromarray(item).resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, format="JPEG", quality=int(setting), optimize=True)
        return buf.getvalue()

    def decode(self, data: bytes, like: np.ndarray) -> np.ndarray:
        small = decode_image_bytes(data, what="jpeg-half bitstream")
        h, w = like.shape[:2]
        out = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.uint8)
        if out.shape != like.shape:
            raise CodecError(f"jpeg-half decoded {out.shape}, expected {like.shape}")
        return out
