"""The quality-metric table: public name -> metric class (one line per metric, CompressAI-zoo style).

Image and audio metrics live in one table. The pipeline picks metrics by name or by
modality and reads each class's :class:`~mpq_assets.quality.base.MetricInfo`.
"""

from __future__ import annotations

import torch

from mpq_assets.construct import build
from mpq_assets.media.item import Modality
from mpq_assets.quality.audio import CDPAM, DNSMOS, PESQ, SISDR, SNR, STOI, LogMelDistance
from mpq_assets.quality.base import QualityMetric
from mpq_assets.quality.image import LPIPSVGG, MSSSIM, PSNR, SSIM, LPIPSAlex
from mpq_assets.settings import Settings

IMAGE_METRICS: dict[str, type[QualityMetric]] = {
    "psnr": PSNR,
    "ssim": SSIM,
    "ms_ssim": MSSSIM,
    "lpips_alex": LPIPSAlex,
    "lpips_vgg": LPIPSVGG,
}

AUDIO_METRICS: dict[str, type[QualityMetric]] = {
    "snr": SNR,
    "si_sdr": SISDR,
    "log_mel_distance": LogMelDistance,
    "stoi": STOI,
    "pesq": PESQ,
    "cdpam": CDPAM,
    "dnsmos": DNSMOS,  # no reference: scores the reconstruction alone
}

METRICS: dict[str, type[QualityMetric]] = {**IMAGE_METRICS, **AUDIO_METRICS}


def metrics_for(modality: Modality) -> dict[str, type[QualityMetric]]:
    """The registered metrics whose ``info.modality`` is ``modality``, by name."""
    return {name: cls for name, cls in METRICS.items() if cls.info.modality == modality}


def make_metric(name: str, device: torch.device | str = "cpu", settings: Settings | None = None) -> QualityMetric:
    """A fresh instance of the metric registered as ``name`` on ``device``; metrics with weights get the
    deployment's ``settings`` (their model folder)."""
    try:
        cls = METRICS[name]
    except KeyError:
        raise KeyError(f"unknown quality metric {name!r}; known: {sorted(METRICS)}") from None
    return build(cls, device, settings=settings)
