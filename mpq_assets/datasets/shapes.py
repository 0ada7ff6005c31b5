"""``demo_shapes``: a labelled image set generated in code, with a train/test split by background style.

No labelled photo set with a train split ships offline, so the image half of the training study uses images
drawn here: one of six shapes (circle, square, triangle, cross, ring, star) at a random size, place, rotation
and colour, anti-aliased, on a smooth background (a two-colour gradient with soft blobs). Labels are exact.

Why it is a fair test of training on compressed data: the split is by **style**. Training images use four
background palettes and test images four others, so a model cannot pass by memorising backgrounds, and the
shapes' edges and colours are what JPEG and WebP damage at high ratios. What it is not: natural photographs;
the classes are easy for an ImageNet backbone on clean images, which is what makes the loss under compression
visible.

Deterministic: item ``k`` of a split is drawn from ``numpy.random.default_rng((split seed, k))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mpq_assets.datasets.base import Dataset, ItemSource
from mpq_assets.media.item import Modality

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")
SIZE = 128
# background palettes (two gradient ends and a blob colour); the split is by palette
PALETTES = {
    "train": (((200, 220, 240), (90, 120, 170), (240, 240, 255)), ((230, 210, 170), (150, 110, 60), (255, 235, 200)),
              ((190, 230, 190), (60, 120, 70), (220, 255, 220)), ((120, 120, 120), (30, 30, 30), (180, 180, 180))),
    "test": (((240, 200, 210), (150, 60, 90), (255, 220, 230)), ((210, 200, 240), (80, 60, 140), (235, 225, 255)),
             ((200, 235, 235), (40, 110, 120), (230, 255, 255)), ((245, 240, 190), (150, 140, 40), (255, 250, 215))),
}
COUNTS = {"train": 24, "test": 12}  # images per class
_SEEDS = {"train": 1, "test": 2}


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(np.cos(angle + np.pi / 4 + k * np.pi / 2), np.sin(angle + np.pi / 4 + k * np.pi / 2)) for k in range(4)]
    elif kind == "triangle":
        pts = [(np.cos(angle + k * 2 * np.pi / 3), np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
    elif kind == "star":
        pts = [((1.0 if k % 2 == 0 else 0.45) * np.cos(angle + k * np.pi / 5),
                (1.0 if k % 2 == 0 else 0.45) * np.sin(angle + k * np.pi / 5)) for k in range(10)]
    else:  # cross: a plus sign of width 0.36 r
        w = 0.36
        base = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1), (-w, -1), (-w, -w), (-1, -w), (-1, w), (-w, w),
                (-w, 1)]
        c, s = np.cos(angle), np.sin(angle)
        pts = [(x * c - y * s, x * s + y * c) for x, y in base]
    return [(cx + r * x, cy + r * y) for x, y in pts]


def draw(kind: str, rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """One image: the shape ``kind`` on a background of ``palette``, drawn at 4x and reduced (anti-aliased)."""
    scale = 4
    n = SIZE * scale
    t = np.linspace(0, 1, n)[None, :, None]
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * t + np.sin(direction) * t.transpose(1, 0, 2))
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    a, b, blob = (np.array(c, dtype=float) for c in palette)
    img = Image.fromarray(((1 - ramp) * a + ramp * b).astype(np.uint8))
    layer = ImageDraw.Draw(img)
    for _ in range(3):
        x, y, rr = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(0.1, 0.25) * n
        layer.ellipse([x - rr, y - rr, x + rr, y + rr], fill=tuple(int(v) for v in blob))
    img = img.filter(ImageFilter.GaussianBlur(radius=12 * scale))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    r = rng.uniform(0.22, 0.38) * n
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    angle = rng.uniform(0, 2 * np.pi)
    layer = ImageDraw.Draw(img)
    if kind == "circle":
        layer.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        layer.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=int(0.3 * r))
    else:
        layer.polygon(_polygon(kind, cx, cy, r, angle), fill=colour)
    return np.asarray(img.resize((SIZE, SIZE), Image.LANCZOS), dtype=np.uint8)


class DemoShapes(Dataset):
    """Generated shapes, split by background palette (``train``, ``test``); label = the shape's name.
    ``per_class`` keeps the first that many of each class."""

    modality: ClassVar[Modality] = "image"

    def __init__(self, split: str = "test", per_class: int | None = None) -> None:
        if split not in COUNTS:
            raise ValueError(f"demo_shapes: split must be one of {', '.join(COUNTS)}, not {split!r}")
        self.split = split
        self.per_class = min(per_class, COUNTS[split]) if per_class else COUNTS[split]

    def items(self) -> Iterator[ItemSource]:
        palettes = PALETTES[self.split]
        for c, kind in enumerate(SHAPES):
            for k in range(self.per_class):
                index = c * COUNTS[self.split] + k
                palette = palettes[k % len(palettes)]

                def load(kind: str = kind, index: int = index, palette: tuple = palette) -> np.ndarray:
                    return draw(kind, np.random.default_rng((_SEEDS[self.split], index)), palette)

                yield ItemSource(f"{kind}_{self.split}_{k:02d}", f"generated: {kind}, {self.split} palette "
                                 f"{k % len(palettes)}", load, label=kind,
                                 extra={"split": self.split, "palette": str(k % len(palettes))})
