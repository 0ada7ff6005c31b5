"""Images are normalised to 8-bit RGB (H, W, 3) uint8: the raw format the ratios refer to."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mpq_assets.artifacts import atomic_write_bytes
from mpq_assets.media.errors import MediaError


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to RGB uint8.

    16-bit and float images are scaled to 8 bits by their nominal range, alpha is
    composited on white (what a viewer shows), palettes are expanded.
    """
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise MediaError("float image contains NaN or infinity")
        top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_image_bytes(data: bytes, what: str = "image") -> np.ndarray:
    """Decode an encoded image (any Pillow format) to RGB uint8, or raise MediaError."""
    if not data:
        raise MediaError(f"{what} is empty (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            arr = to_rgb8(img)
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{what} cannot be decoded: {exc}") from exc
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise MediaError(f"{what} has an unusable shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file from disk as RGB uint8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MediaError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    return decode_image_bytes(data, what=path.name)


def write_image_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write RGB uint8 losslessly (PNG) and atomically."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=6)
    atomic_write_bytes(path, buf.getvalue())
