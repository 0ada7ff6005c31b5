"""What every codec, metric, task and dataset handles: an item of one modality, and its raw size.

An image is RGB uint8 ``(H, W, 3)``; an audio clip is :class:`~mpq_assets.media.audio.Audio`. The raw
size is the denominator of every compression ratio: 8-bit RGB for images, 16-bit PCM at the clip's own
rate and channel count for audio.
"""

from __future__ import annotations

import io
import os
from typing import Literal

import numpy as np

from mpq_assets.media.audio import Audio, load_audio
from mpq_assets.media.image import load_image

Modality = Literal["image", "audio"]
MODALITIES: tuple[Modality, ...] = ("image", "audio")
Item = np.ndarray | Audio


def raw_bytes(item: Item) -> int:
    """Uncompressed size: 8-bit RGB for images, 16-bit PCM for audio."""
    if isinstance(item, Audio):
        return item.raw_bytes
    h, w = item.shape[:2]
    return int(h * w * 3)


def load_item(path: str | os.PathLike[str], modality: str) -> Item:
    """Load an original or a cached reconstruction."""
    return load_audio(path) if modality == "audio" else load_image(path)


PNG_LEVEL = 1  # reconstructions: lossless either way; level 1 writes ~3x faster than 6 for ~10 % more bytes


def lossless_bytes(item: Item) -> bytes:
    """The lossless file of a reconstruction: 16-bit FLAC for audio, PNG for images."""
    buf = io.BytesIO()
    if isinstance(item, Audio):
        import soundfile as sf

        sf.write(buf, item.samples.T, item.sample_rate, format="FLAC", subtype="PCM_16")
    else:
        from PIL import Image

        Image.fromarray(item, "RGB").save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()
