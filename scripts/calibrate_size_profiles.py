"""Measure the size profiles of the built-in Pillow image codecs: ``mpq_assets/codecs/size_profiles.json``.

A codec's size profile is the mean, over calibration images, of log(file size)
at each rung of its ladder minus log(size) at the lowest rung. The ladder
search (``mpq_assets.codecs.rate_control``) uses it only to choose where to
probe: the shape of the curve, shifted through the rungs already measured for
the item. Every answer is still a measured boundary, so a profile that fits an
item badly costs encodes, never correctness.

The calibration images are skimage photos and scans that none of the demo or
benchmark datasets use, so ``mpq bench`` measures the search on images it was
not fitted to. Rerun this when a codec's options, its ladder or its library
change (the file records the versions):

    .venv/bin/python scripts/calibrate_size_profiles.py
"""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np

IMAGES = ("brick", "cell", "grass", "gravel", "hubble_deep_field", "logo", "moon", "page", "retina", "text",
          "microaneurysms")
CODECS = ("avif", "jpeg", "jxl", "webp")
TARGET = Path(__file__).resolve().parents[1] / "mpq_assets" / "codecs" / "size_profiles.json"


def calibration_image(name: str) -> np.ndarray:
    """An skimage image as RGB uint8 (grey replicated, alpha dropped, the large retina halved)."""
    import skimage.data

    a = getattr(skimage.data, name)()
    if name == "retina":
        a = a[::2, ::2]
    if a.ndim == 2:
        a = np.stack([a] * 3, -1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def ladder_sizes(job: tuple[str, str]) -> list[int]:
    from mpq_assets.codecs import get_codec

    codec_name, image = job
    codec, item = get_codec(codec_name), calibration_image(image)
    return [len(codec.encode(item, s)) for s in codec.ladder(item)]


def main() -> int:
    from mpq_assets.codecs import get_codec
    from mpq_assets.datasets.demo import DEMO_IMAGES

    used = {name for name in IMAGES if f"skimage.data.{name}" in {s for s, _, _ in DEMO_IMAGES.values()}}
    if used:
        raise SystemExit(f"calibration images {sorted(used)} are in the demo set: pick others")
    jobs = [(c, i) for c in CODECS for i in IMAGES]
    with ProcessPoolExecutor() as pool:
        sizes = dict(zip(jobs, pool.map(ladder_sizes, jobs), strict=True))
    profiles = {}
    for c in CODECS:
        curves = np.log(np.array([sizes[(c, i)] for i in IMAGES], dtype=float))
        profile = (curves - curves[:, :1]).mean(axis=0)
        codec = get_codec(c)
        profiles[c] = {"description": codec.description, "rungs": len(profile),
                       "log_size": [round(float(v), 4) for v in profile]}
        print(f"{c}: {len(profile)} rungs, log size {profile[0]:.2f} .. {profile[-1]:.2f}")
    out = {"what": "mean log(file size) per ladder rung minus log(size) at the lowest rung (scripts/"
                   "calibrate_size_profiles.py); the ladder search's guess of where to probe",
           "images": [f"skimage.data.{i}" for i in IMAGES], "measured": date.today().isoformat(),
           "versions": {p: version(p) for p in ("pillow", "pillow-jxl-plugin")}, "codecs": profiles}
    text = json.dumps(out, indent=1)
    text = re.sub(r"\[\s*(-?[\d.]+(?:,\s*-?[\d.]+)*)\s*\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)
    TARGET.write_text(text + "\n")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
