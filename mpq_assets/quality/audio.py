"""Audio quality metrics: SNR, SI-SDR, log-mel distance, STOI, PESQ, CDPAM (full reference) and DNSMOS (no reference).

Items are :class:`~mpq_assets.media.audio.Audio` clips (float32, (channels, frames)).
The reference is the original, the distorted item its reconstruction: same sample
rate, channel count and length, or :class:`ValueError` names the item and what
differs. Pairs in one batch may differ in length; every metric here is defined per
clip, so each pair is scored on its own (torch metrics on the metric's device).

Each metric's :class:`MetricInfo` says the rate it works at (``sample_rate``;
``None`` = the item's own rate) and how it treats channels (``channels``). Items
are brought there with the project's one resampler and down-mixer
(:func:`~mpq_assets.media.audio.resample`, :func:`~mpq_assets.media.audio.remix`),
so every metric sees the same signal whichever codec produced it.

CDPAM weights, and why there is a conversion step
-------------------------------------------------
The ``cdpam`` wheel ships its model as ``CDPAM_trained/scratchJNDdefault_best_model.pth``,
a legacy (pre-zip) ``torch.save`` pickle holding the state dict plus Adam's state.
``torch.load(..., weights_only=True)`` rejects it (it uses the ``INT`` opcode), and
importing the ``cdpam`` package needs ``resampy``/``librosa``. :func:`convert_cdpam`
reads that file once with :mod:`mpq_assets.weights.legacy_torch`, whose unpickler only
knows ``OrderedDict``, tensor rebuilding and float/long storages (mapped to inert
records, so no torch code runs from the pickle), copies the raw storages with numpy,
and writes the state dict to ``$MPQ_MODELS/cdpam/cdpam.safetensors``. Every later load reads only that file; the
network definition comes from the wheel's ``cdpam/models.py``, loaded by file path.

DNSMOS
------
``speechmos.dnsmos`` imports librosa only for the P.808 head. The P.835 OVRL score
comes from its ``dnsmos_models/sig_bak_ovr.onnx`` alone, so :class:`DNSMOS` runs that
ONNX model with onnxruntime and repeats speechmos' segmentation and polynomial
mapping (see :func:`dnsmos_ovrl`).
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import importlib.metadata
import importlib.util
import math
import threading
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mpq_assets.media.audio import Audio, remix, resample
from mpq_assets.media.item import Item
from mpq_assets.quality.base import MetricInfo, QualityMetric
from mpq_assets.settings import Settings, load_settings
from mpq_assets.weights import WeightSource, cached, legacy_torch
from mpq_assets.weights.files import sha256_file
from mpq_assets.weights.safe_load import read_safetensors, write_safetensors

SNR_CAP_DB = 100.0
"""SNR / SI-SDR reported for identical clips (+inf in the math); values are clamped to +-100 dB."""

PESQ_WB_RANGE = (1.04, 4.64)
"""Wideband PESQ (P.862.2) MOS-LQO range quoted for the metric: raw PESQ -0.5 ... 4.5 through the P.862.2 mapping.

Identical clips give 4.644. The mapping 0.999 + 4 / (1 + exp(-1.3669 x + 3.8224)) only
approaches :data:`PESQ_WB_FLOOR` as x falls, so very degraded clips (noise, another
utterance) score 1.02 ... 1.04, slightly below the quoted floor.
"""
PESQ_WB_FLOOR = 0.999
"""Lower asymptote of the P.862.2 mapping; reported for a reconstruction that is digital silence."""


def _check_pair(index: int, reference: Item, distorted: Item) -> tuple[Audio, Audio]:
    for role, item in (("reference", reference), ("distorted", distorted)):
        if not isinstance(item, Audio):
            raise ValueError(f"item {index}: {role} must be an Audio clip, got {type(item).__name__}")
    assert isinstance(reference, Audio) and isinstance(distorted, Audio)
    if reference.sample_rate != distorted.sample_rate:
        raise ValueError(
            f"item {index}: reference is {reference.sample_rate} Hz but distorted is {distorted.sample_rate} Hz; "
            "decode the reconstruction at the original's rate"
        )
    if reference.channels != distorted.channels:
        raise ValueError(
            f"item {index}: reference has {reference.channels} channel(s) but distorted has {distorted.channels}"
        )
    if reference.frames != distorted.frames:
        raise ValueError(
            f"item {index}: reference has {reference.frames} frames ({reference.duration_s:.3f} s) but distorted "
            f"has {distorted.frames} ({distorted.duration_s:.3f} s); trim or pad the reconstruction to the original"
        )
    return reference, distorted


def _prepare(audio: Audio, rate: int | None, mono: bool) -> np.ndarray:
    """(channels, frames) float32 at ``rate`` (None: native), mixed down to one channel if ``mono``."""
    if mono:
        audio = remix(audio, 1)
    if rate is not None:
        audio = resample(audio, rate)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # mps has no float64


def _clamp_db(value: float) -> float:
    return float(min(max(value, -SNR_CAP_DB), SNR_CAP_DB))


class _AudioMetric(QualityMetric):
    """Shared checks: pairs must match; ``applicable`` screens the reference; each pair is scored on its own."""

    info: ClassVar[MetricInfo]
    needs_signal: ClassVar[bool] = True  # a reference that is digital silence cannot be scored

    def applicable(self, item: Item) -> str | None:
        name = self.info.name
        if not isinstance(item, Audio):
            return f"{name} scores Audio clips, got {type(item).__name__}"
        if item.frames == 0:
            return f"{name} cannot score an empty clip"
        min_s = self.info.min_duration_s
        if min_s and item.duration_s < min_s:
            return f"{name} needs clips of at least {min_s:g} s, item is {item.duration_s:.3f} s"
        if self.needs_signal and not np.any(item.samples):
            return f"{name} is undefined for a silent reference (every sample is zero)"
        return self._reference_problem(item)

    def _reference_problem(self, item: Audio) -> str | None:
        """Metric-specific reason the reference cannot be scored (after the shared checks), or None."""
        return None

    def score_batch(self, reference: Sequence[Item], distorted: Sequence[Item]) -> list[float]:
        if len(reference) != len(distorted):
            raise ValueError(f"{self.info.name}: {len(reference)} references but {len(distorted)} distorted items")
        pairs = [_check_pair(i, r, d) for i, (r, d) in enumerate(zip(reference, distorted, strict=True))]
        for i, (ref, _) in enumerate(pairs):
            reason = self.applicable(ref)
            if reason:
                raise ValueError(f"item {i}: {reason}")
        with torch.inference_mode():
            return [float(self._score(ref, dist)) for ref, dist in pairs]

    @abstractmethod
    def _score(self, reference: Audio, distorted: Audio) -> float:
        """The value for one matching (reference, distorted) pair."""


# ---------------------------------------------------------------------------------------------------------------------
# signal metrics


class SNR(_AudioMetric):
    """Signal-to-noise ratio 10 log10(sum(ref^2) / sum((ref - dist)^2)) over all samples and channels, native rate.

    No alignment, scaling or mean removal: a gain change or delay counts as noise.
    Clamped to +-:data:`SNR_CAP_DB`: identical clips report 100 dB.
    """

    info = MetricInfo(
        name="snr",
        modality="audio",
        higher_is_better=True,
        gpu_capable=True,
        sample_rate=None,
        channels="all channels pooled (one energy ratio over every sample)",
        unit=f"dB (clamped to +-{SNR_CAP_DB:g}; identical clips give {SNR_CAP_DB:g})",
        citation="Signal-to-noise ratio of the reconstruction error",
    )

    def _score(self, reference: Audio, distorted: Audio) -> float:
        dtype = _float_dtype(self.device)
        ref = torch.from_numpy(reference.samples).to(self.device, dtype)
        dist = torch.from_numpy(distorted.samples).to(self.device, dtype)
        signal, noise = ref.square().sum().item(), (ref - dist).square().sum().item()
        if noise == 0.0:
            return SNR_CAP_DB
        return _clamp_db(10.0 * math.log10(signal / noise))


class SISDR(_AudioMetric):
    """Scale-invariant SDR (Le Roux et al. 2019) per channel, averaged over channels, native rate.

    Each channel of both clips is made zero-mean; with the optimal scale
    a = <dist, ref> / <ref, ref>, SI-SDR = 10 log10(|a ref|^2 / |a ref - dist|^2). Multiplying
    the reconstruction by any non-zero gain leaves it unchanged. Clamped to +-100 dB:
    an exact (scaled) copy gives 100, a silent reconstruction -100. Reference channels that
    are constant (silent after removing the mean) are left out of the average.
    """

    info = MetricInfo(
        name="si_sdr",
        modality="audio",
        higher_is_better=True,
        gpu_capable=True,
        sample_rate=None,
        channels="per channel (zero-mean), mean over channels whose reference is not constant",
        unit=f"dB (clamped to +-{SNR_CAP_DB:g}; identical clips give {SNR_CAP_DB:g})",
        citation="Le Roux, Wisdom, Erdogan & Hershey, SDR - half-baked or well done?, ICASSP 2019",
    )

    def _reference_problem(self, item: Audio) -> str | None:
        if not np.any(item.samples != item.samples[:, :1]):
            return "si_sdr is undefined for a reference whose every channel is constant (silent after mean removal)"
        return None

    def _score(self, reference: Audio, distorted: Audio) -> float:
        dtype = _float_dtype(self.device)
        ref = torch.from_numpy(reference.samples).to(self.device, dtype)
        dist = torch.from_numpy(distorted.samples).to(self.device, dtype)
        ref = ref - ref.mean(dim=1, keepdim=True)
        dist = dist - dist.mean(dim=1, keepdim=True)
        ref_energy = ref.square().sum(dim=1)
        values = []
        for c in torch.nonzero(ref_energy > 0).flatten().tolist():
            alpha = (dist[c] * ref[c]).sum() / ref_energy[c]
            target = alpha * ref[c]
            target_energy, noise_energy = target.square().sum().item(), (dist[c] - target).square().sum().item()
            if noise_energy == 0.0:
                values.append(SNR_CAP_DB if target_energy > 0 else -SNR_CAP_DB)
            elif target_energy == 0.0:
                values.append(-SNR_CAP_DB)
            else:
                values.append(_clamp_db(10.0 * math.log10(target_energy / noise_energy)))
        return float(np.mean(values))


# ---------------------------------------------------------------------------------------------------------------------
# log-mel distance

MEL_RATE = 16_000
MEL_N_FFT = 400          # 25 ms Hann window at 16 kHz
MEL_HOP = 160            # 10 ms
MEL_BANDS = 80           # Slaney mel scale, 0 - 8 kHz, Slaney area normalisation (librosa's / Whisper's filterbank)
MEL_DYNAMIC_RANGE_DB = 80.0


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(
    sample_rate: int = MEL_RATE, n_fft: int = MEL_N_FFT, n_mels: int = MEL_BANDS, f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1): Slaney mel scale and area normalisation.

    The same construction as ``librosa.filters.mel(sr, n_fft, n_mels)`` (``htk=False,
    norm="slaney"``), which is what Whisper's ``mel_filters.npz`` holds for 16 kHz / 400 / 80.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(f_min), _hz_to_mel_slaney(f_max), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights


def _mel_tools(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel filterbank (n_mels, n_freqs), Hann window) on ``device``, built once per process."""

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        fb = torch.from_numpy(mel_filterbank()).to(device=device, dtype=dtype)
        return fb, torch.hann_window(MEL_N_FFT, periodic=True, dtype=dtype).to(device)

    return cached(("mel", str(device), dtype), build)


def log_mel_spectrogram(samples: torch.Tensor) -> torch.Tensor:
    """10 log10 of the mel power spectrogram of 16 kHz (channels, frames) audio: (channels, 80, time) in dB.

    Hann window of 400 samples, hop 160, centred frames with zero padding, power
    spectrum through :func:`mel_filterbank`; no floor (callers choose one).
    """
    fb, window = _mel_tools(samples.device, samples.dtype)
    spec = torch.stft(samples, MEL_N_FFT, MEL_HOP, window=window, center=True, pad_mode="constant",
                      return_complex=True)
    power = spec.real.square() + spec.imag.square()
    mel = torch.einsum("mf,cft->cmt", fb, power)
    return 10.0 * torch.log10(mel.clamp(min=1e-20))


class LogMelDistance(_AudioMetric):
    """Mean absolute difference of log-mel spectrograms in dB, per channel, averaged over channels; lower is better.

    Both clips are resampled to 16 kHz; then Whisper's front-end parameters: 25 ms Hann
    window (400 samples), 10 ms hop (160), 80 Slaney mel bands over 0 - 8 kHz (so content
    above 8 kHz does not count), power spectrum, 10 log10. Both spectrograms are floored at
    80 dB below the reference's loudest mel bin (Whisper applies the same 80 dB range), so
    digital silence in the reference against faint codec noise does not dominate.
    Identical clips give 0.
    """

    info = MetricInfo(
        name="log_mel_distance",
        modality="audio",
        higher_is_better=False,
        gpu_capable=True,
        sample_rate=MEL_RATE,
        channels="per channel, mean over channels",
        unit="dB, mean |log-mel difference| (0 = identical)",
        citation="Log-mel spectral distance; front end as Radford et al., Whisper, ICML 2023 (80 mels, 25/10 ms)",
    )
    needs_signal = False

    def _score(self, reference: Audio, distorted: Audio) -> float:
        dtype = _float_dtype(self.device)
        ref = torch.from_numpy(_prepare(reference, MEL_RATE, mono=False)).to(self.device, dtype)
        dist = torch.from_numpy(_prepare(distorted, MEL_RATE, mono=False)).to(self.device, dtype)
        ref_db, dist_db = log_mel_spectrogram(ref), log_mel_spectrogram(dist)
        floor = ref_db.max() - MEL_DYNAMIC_RANGE_DB
        diff = (ref_db.clamp(min=floor) - dist_db.clamp(min=floor)).abs()
        return float(diff.mean(dim=(1, 2)).mean().item())


# ---------------------------------------------------------------------------------------------------------------------
# STOI and PESQ (reference packages: pystoi, pesq)

INTELLIGIBILITY_RATE = 16_000


class STOI(_AudioMetric):
    """Short-time objective intelligibility (Taal et al. 2011) via ``pystoi``; 0 ... 1, higher is better.

    Mono mix-down by averaging, resampled to 16 kHz with the project's resampler, then
    ``pystoi.stoi(ref, dist, 16000)`` (which itself resamples to its internal 10 kHz).
    ``applicable`` repeats pystoi's silent-frame removal on the reference: a clip with
    fewer than 30 STFT frames of speech left (pystoi would warn and return 1e-5) is skipped.
    """

    info = MetricInfo(
        name="stoi",
        modality="audio",
        higher_is_better=True,
        sample_rate=INTELLIGIBILITY_RATE,
        channels="mono mix-down by averaging",
        unit="unitless, 0 ... 1 (1 = identical)",
        citation="Taal, Hendriks, Heusdens & Jensen, IEEE Trans. Audio, Speech, Lang. Process. 19(7), 2011 (pystoi)",
    )

    def _reference_problem(self, item: Audio) -> str | None:
        pystoi_module = importlib.import_module("pystoi.stoi")  # the module (attribute pystoi.stoi is the function)
        utils = importlib.import_module("pystoi.utils")

        x = utils.resample_oct(_prepare(item, INTELLIGIBILITY_RATE, mono=True)[0].astype(np.float64),
                               pystoi_module.FS, INTELLIGIBILITY_RATE)
        frame, hop = pystoi_module.N_FRAME, pystoi_module.N_FRAME // 2
        if len(x) <= frame:
            frames = 0
        else:
            kept, _ = utils.remove_silent_frames(x, x, pystoi_module.DYN_RANGE, frame, hop)
            frames = len(range(0, len(kept) - frame, hop))
        if frames < pystoi_module.N:
            return (f"stoi needs {pystoi_module.N} STFT frames of speech after silence removal "
                    f"(about {pystoi_module.N * hop / pystoi_module.FS:.2f} s), the reference has {frames}")
        return None

    def _score(self, reference: Audio, distorted: Audio) -> float:
        from pystoi import stoi

        ref = _prepare(reference, INTELLIGIBILITY_RATE, mono=True)[0]
        dist = _prepare(distorted, INTELLIGIBILITY_RATE, mono=True)[0]
        return float(stoi(ref, dist, INTELLIGIBILITY_RATE, extended=False))


class PESQ(_AudioMetric):
    """Wideband PESQ (ITU-T P.862.2) MOS-LQO at 16 kHz via the ``pesq`` package; 1.04 ... 4.64, higher is better.

    Mono mix-down by averaging, resampled to 16 kHz, ``pesq.pesq(16000, ref, dist, "wb")``.
    The scale (:data:`PESQ_WB_RANGE`) runs from 1.04 (raw PESQ -0.5) to 4.64 (raw 4.5;
    identical clips give 4.644); very degraded clips can land a little below 1.04 (see
    :data:`PESQ_WB_FLOOR`). Clips shorter than 0.25 s (PESQ's minimum) or with a silent
    reference are skipped through ``applicable``. A reconstruction that is digital silence
    makes PESQ's level alignment divide by zero (NaN); it is reported as the mapping's lower
    asymptote 0.999, below any value PESQ itself returns.
    """

    info = MetricInfo(
        name="pesq",
        modality="audio",
        higher_is_better=True,
        sample_rate=INTELLIGIBILITY_RATE,
        min_duration_s=0.25,
        channels="mono mix-down by averaging",
        unit="MOS-LQO, 1.04 ... 4.64 (identical clips give 4.64; silent reconstruction 0.999)",
        citation="ITU-T P.862.2 (2007) wideband PESQ; Rix, Beerends, Hollier & Hekstra, ICASSP 2001 (pesq package)",
    )

    def _score(self, reference: Audio, distorted: Audio) -> float:
        from pesq import PesqError, pesq

        ref = _prepare(reference, INTELLIGIBILITY_RATE, mono=True)[0]
        dist = _prepare(distorted, INTELLIGIBILITY_RATE, mono=True)[0]
        if not np.any(dist):
            return PESQ_WB_FLOOR
        try:
            value = float(pesq(INTELLIGIBILITY_RATE, ref, dist, "wb"))
        except PesqError as exc:
            raise ValueError(f"pesq cannot score this clip ({reference.duration_s:.3f} s): {exc}") from exc
        if not math.isfinite(value):
            raise ValueError(f"pesq returned {value} for a {reference.duration_s:.3f} s clip")
        return value


# ---------------------------------------------------------------------------------------------------------------------
# CDPAM: one-time weight conversion, safe loading, per-process model cache

CDPAM_RATE = 22_050
_CDPAM_WEIGHTS = "CDPAM_trained/scratchJNDdefault_best_model.pth"  # inside the installed cdpam package
_CDPAM_ARCH: dict[str, Any] = {  # cdpam.CDPAM.__init__'s FINnet arguments
    "encoder_layers": 16, "encoder_filters": 64, "ndim": [16, 6], "classif_dp": 0.05, "classif_BN": 0,
    "classif_act": "no", "input_size": 512,
}
_CDPAM_INSTALL = "pip install cdpam==0.0.6"


def _cdpam_package_dir() -> Path:
    """The installed ``cdpam`` package folder, found without importing it (its ``__init__`` needs resampy/librosa)."""
    spec = importlib.util.find_spec("cdpam")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"CDPAM needs the cdpam package (model code and weights), which is not installed: "
                           f"{_CDPAM_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations)))


def cdpam_weights_path(models_dir: Path | None = None) -> Path:
    """Where the converted CDPAM state dict lives: ``<models>/cdpam/cdpam.safetensors``, in the settings' model
    folder (``MPQ_MODELS``) the metric was given."""
    return (models_dir if models_dir is not None else load_settings().models_dir) / "cdpam" / "cdpam.safetensors"


def convert_cdpam(models_dir: Path | None = None) -> Path:
    """Convert the cdpam wheel's pickled model to safetensors, once; return the safetensors path.

    Run once per model cache (the first CDPAM use does it); if
    ``$MPQ_MODELS/cdpam/cdpam.safetensors`` exists it is returned untouched. Why: the
    wheel's ``scratchJNDdefault_best_model.pth`` is a legacy torch pickle that
    ``torch.load`` only opens with ``weights_only=False`` on torch >= 2.6, i.e. by running
    whatever the pickle names. Here it is read once with
    :func:`~mpq_assets.weights.legacy_torch.read_state_dict` (only ``OrderedDict`` and
    tensor/storage records resolve; the optimiser state is dropped)
    and its ``state`` dict is written atomically as safetensors, with the source's SHA-256
    in the metadata. Later loads read only the safetensors file.
    """
    target = cdpam_weights_path(models_dir)
    if target.exists():
        return target
    source = _cdpam_package_dir() / _CDPAM_WEIGHTS
    if not source.is_file():
        raise RuntimeError(f"cdpam is installed but {source} is missing; reinstall it: {_CDPAM_INSTALL}")
    digest = sha256_file(source)
    with source.open("rb") as fh:
        state, extras = legacy_torch.read_state_dict(fh)
    tensors = {name: torch.from_numpy(array) for name, array in state.items()}
    metadata = {
        "source": f"cdpam {importlib.metadata.version('cdpam')} {_CDPAM_WEIGHTS}",
        "source_sha256": digest,
        "epochs": str(extras.get("epochs", "")),
        "layout": "cdpam.models.FINnet state dict (base_encoder, model_dist, model_classif)",
    }
    return write_safetensors(target, tensors, metadata)


def _cdpam_models_module() -> ModuleType:
    """The wheel's ``cdpam/models.py`` (torch and numpy only), loaded by path without running ``cdpam/__init__``."""
    path = _cdpam_package_dir() / "models.py"
    spec = importlib.util.spec_from_file_location("mpq_assets.quality._cdpam_models", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the CDPAM model definition from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_cdpam(device: torch.device, models_dir: Path | None) -> torch.nn.Module:
    model = _cdpam_models_module().FINnet(**_CDPAM_ARCH)
    state, _ = read_safetensors(convert_cdpam(models_dir))
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)


_CDPAM_EMBEDDINGS: collections.OrderedDict[tuple[str, str], torch.Tensor] = collections.OrderedDict()
_CDPAM_EMBEDDINGS_MAX = 4096  # 512 floats each: a few MB; references are scored against many reconstructions
_CDPAM_EMBEDDINGS_LOCK = threading.Lock()


def cdpam_model(device: torch.device | str = "cpu", models_dir: Path | None = None) -> torch.nn.Module:
    """CDPAM's ``FINnet`` on ``device``, built once per process and model folder (converting the weights into it
    first if needed)."""
    device = torch.device(device)
    return cached(("cdpam", str(device), str(models_dir)), lambda: _build_cdpam(device, models_dir))


def _cdpam_locate(settings: Settings) -> tuple[bool, str]:
    """Whether the converted weights are in the settings' model folder (``mpq models``), without loading them."""
    path = cdpam_weights_path(settings.models_dir)
    return path.exists(), str(path)


class CDPAM(_AudioMetric):
    """Contrastive learning-based deep perceptual audio metric (Manocha et al. 2021); 0 = identical, lower is better.

    Mono mix-down by averaging, resampled to 22.05 kHz, scaled by 32768 and rounded as
    ``cdpam.load_audio`` does (16-bit integer range). Then ``cdpam.CDPAM.forward``: the
    encoder's normalised acoustic embedding of each clip (the whole clip, averaged over
    time) and the learned distance between them. Reference embeddings are cached per
    process, so a reference scored against many reconstructions is encoded once.
    The encoder is a 16-layer 1-D CNN: ~0.3 TMAC per 3 s clip, so a GPU helps.
    """

    info = MetricInfo(
        name="cdpam",
        modality="audio",
        higher_is_better=False,
        gpu_capable=True,
        sample_rate=CDPAM_RATE,
        channels="mono mix-down by averaging",
        unit="learned distance, >= 0 (0 = identical)",
        citation="Manocha, Jin, Zhang & Finkelstein, CDPAM: Contrastive learning for perceptual audio similarity, "
        "ICASSP 2021 (cdpam 0.0.6 model)",
    )
    needs_signal = False
    weight_sources = (WeightSource("cdpam", "conversion", "CDPAM audio metric (FINnet)", "cdpam (PyPI wheel)",
                                   locate=_cdpam_locate,
                                   fetch=lambda settings: str(convert_cdpam(settings.models_dir))),)

    def __init__(self, device: torch.device | str = "cpu", settings: Settings | None = None) -> None:
        """``settings``: the deployment's (the step's), whose model folder holds the converted weights."""
        super().__init__(device)
        self._models_dir = (settings or load_settings()).models_dir

    def _waveform(self, audio: Audio) -> torch.Tensor:
        samples = np.round(_prepare(audio, CDPAM_RATE, mono=True) * 32768.0)
        return torch.from_numpy(samples).to(self.device, torch.float32)  # (1, frames)

    def _embed(self, wave: torch.Tensor) -> torch.Tensor:
        _, acoustics, _ = cdpam_model(self.device, self._models_dir).base_encoder(wave.unsqueeze(1))
        return F.normalize(acoustics, dim=1)

    def _reference_embedding(self, wave: torch.Tensor) -> torch.Tensor:
        key = (str(self.device), hashlib.sha1(wave.cpu().numpy().tobytes()).hexdigest())
        with _CDPAM_EMBEDDINGS_LOCK:
            if key in _CDPAM_EMBEDDINGS:
                _CDPAM_EMBEDDINGS.move_to_end(key)
                return _CDPAM_EMBEDDINGS[key]
        embedding = self._embed(wave)
        with _CDPAM_EMBEDDINGS_LOCK:
            _CDPAM_EMBEDDINGS[key] = embedding
            while len(_CDPAM_EMBEDDINGS) > _CDPAM_EMBEDDINGS_MAX:
                _CDPAM_EMBEDDINGS.popitem(last=False)
        return embedding

    def _score(self, reference: Audio, distorted: Audio) -> float:
        ref_wave, dist_wave = self._waveform(reference), self._waveform(distorted)
        ref_emb = self._reference_embedding(ref_wave)
        dist_emb = ref_emb if torch.equal(ref_wave, dist_wave) else self._embed(dist_wave)
        return float(cdpam_model(self.device, self._models_dir).model_dist(ref_emb, dist_emb).item())


# ---------------------------------------------------------------------------------------------------------------------
# DNSMOS (no reference)

DNSMOS_RATE = 16_000
_DNSMOS_MODEL = "dnsmos_models/sig_bak_ovr.onnx"  # inside the installed speechmos package
_DNSMOS_INPUT_S = 9.01                            # speechmos' INPUT_LENGTH: one model input window
_DNSMOS_OVRL_POLY = (-0.06766283, 1.11546468, 0.04602535)  # speechmos' non-personalised OVRL mapping
_DNSMOS_INSTALL = "pip install speechmos==0.0.1.1"


def _dnsmos_model_path() -> Path | None:
    """The P.835 ONNX file inside the installed speechmos package (found without importing it), or None."""
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / _DNSMOS_MODEL


def _dnsmos_locate(settings: Settings) -> tuple[bool, str]:
    """The ONNX file ships in the speechmos package: present when the package is installed intact."""
    path = _dnsmos_model_path()
    return (False, "speechmos") if path is None else (path.is_file(), str(path))


def _load_dnsmos_session() -> Any:
    import onnxruntime as ort

    path = _dnsmos_model_path()
    if path is None:
        raise RuntimeError(f"DNSMOS needs the speechmos package (ONNX models): {_DNSMOS_INSTALL}")
    if not path.is_file():
        raise RuntimeError(f"speechmos is installed but {path} is missing; reinstall it")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _dnsmos_session() -> Any:
    """The P.835 ONNX session (CPU), created once per process."""
    return cached(("dnsmos",), _load_dnsmos_session)


def dnsmos_ovrl(samples: np.ndarray, sample_rate: int = DNSMOS_RATE) -> float:
    """DNSMOS P.835 OVRL of one 16 kHz mono waveform, as ``speechmos.dnsmos.run(x, 16000)["ovrl_mos"]``.

    speechmos' procedure: a clip shorter than 9.01 s is repeated until it is at least
    that long; 9.01 s windows hop by 1 s; each window's raw OVRL goes through the
    polynomial mapping; the mean over windows is returned.
    """
    if sample_rate != DNSMOS_RATE:
        raise ValueError(f"DNSMOS runs at {DNSMOS_RATE} Hz, got {sample_rate}")
    audio = np.asarray(samples, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise ValueError("DNSMOS cannot score an empty clip")
    fs, window = DNSMOS_RATE, int(_DNSMOS_INPUT_S * DNSMOS_RATE)
    while len(audio) < window:
        audio = np.append(audio, audio)
    hops = int(np.floor(len(audio) / fs) - _DNSMOS_INPUT_S) + 1
    session = _dnsmos_session()
    raw = []
    for idx in range(hops):
        segment = audio[int(idx * fs) : int((idx + _DNSMOS_INPUT_S) * fs)]
        if len(segment) < window:
            continue
        _sig, _bak, ovrl = session.run(None, {"input_1": segment[np.newaxis, :].astype(np.float32)})[0][0]
        raw.append(float(ovrl))
    return float(np.mean(np.poly1d(_DNSMOS_OVRL_POLY)(np.asarray(raw))))


class DNSMOS(_AudioMetric):
    """DNSMOS P.835 overall quality (OVRL) of the reconstruction alone (Reddy et al. 2022); ~1 ... 5, higher is better.

    No reference: only the distorted item is scored (the reference of a pair is not
    read). Mono mix-down by averaging, resampled to 16 kHz and clipped to [-1, 1] (as
    speechmos requires), then :func:`dnsmos_ovrl`. Trained on speech: values on music
    are not meaningful. Runs on CPU (onnxruntime).
    """

    info = MetricInfo(
        name="dnsmos",
        modality="audio",
        higher_is_better=True,
        requires_reference=False,
        sample_rate=DNSMOS_RATE,
        channels="mono mix-down by averaging",
        unit="MOS (P.835 OVRL), about 1 ... 5",
        citation="Reddy, Gopal & Cutler, DNSMOS P.835, ICASSP 2022 (speechmos ONNX model)",
    )
    needs_signal = False
    weight_sources = (WeightSource("dnsmos", "package", "DNSMOS P.835 ONNX model", "speechmos (PyPI)",
                                   locate=_dnsmos_locate),)

    def score_batch(self, reference: Sequence[Item], distorted: Sequence[Item]) -> list[float]:
        if len(reference) != len(distorted):
            raise ValueError(f"{self.info.name}: {len(reference)} references but {len(distorted)} distorted items")
        values = []
        for i, item in enumerate(distorted):
            if not isinstance(item, Audio):
                raise ValueError(f"item {i}: distorted must be an Audio clip, got {type(item).__name__}")
            if item.frames == 0:
                raise ValueError(f"item {i}: dnsmos cannot score an empty clip")
            values.append(self._score(item, item))
        return values

    def _score(self, reference: Audio, distorted: Audio) -> float:
        samples = np.clip(_prepare(distorted, DNSMOS_RATE, mono=True)[0], -1.0, 1.0)
        return dnsmos_ovrl(samples, DNSMOS_RATE)
