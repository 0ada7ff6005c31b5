"""Code location of the end-to-end UI test (``test_ui_e2e.py``): one tiny image experiment, the real wiring.

``MPQ_E2E_IMAGES`` names a folder of a few small images the test writes. The experiment has no tasks and
only PSNR, so every partition costs well under a second; everything else (sensors, automation conditions,
backfill policy, nightly schedule, resource) is what ``build_definitions`` gives every deployment.
"""

from __future__ import annotations

import os

from mpq_assets.definitions import build_definitions
from mpq_assets.experiments import Experiment

E2E_EXPERIMENT = Experiment(
    "e2e_tiny", "image", "image_folder", {"root": os.environ.get("MPQ_E2E_IMAGES", "")},
    description="a few tiny images written by the end-to-end test", quality_metrics=("psnr",),
)

defs = build_definitions([E2E_EXPERIMENT])
