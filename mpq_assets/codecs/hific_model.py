"""HiFiC (Mentzer et al. 2020, arXiv 2006.09965) in PyTorch, laid out like the public PyTorch checkpoints.

Target layout
-------------
The public PyTorch HiFiC weights are Justin Tan and Grace Han's re-training
(github.com/Justin-Tan/high-fidelity-generative-compression, "Pretrained
Models": ``hific_low.pt`` / ``hific_med.pt`` / ``hific_hi.pt``, ~2 GB each,
target 0.14 / 0.30 / 0.45 bpp, on Google Drive and Zenodo record 4026003).
Each file is a ``torch.save`` of the dict written by that repository's
``utils.save_model``::

    {"model_state_dict": ..., "compression_optimizer_state_dict": ...,
     "hyperprior_optimizer_state_dict": ..., "discriminator_state_dict": ...,
     "discriminator_optimizer_state_dict": ..., "epoch": int, "steps": int,
     "args": {...training arguments...}}

``model_state_dict`` is the whole training ``Model``; the part a codec needs
lives under three prefixes, and the classes below reproduce their module
names, so that part loads with ``load_state_dict(strict=True)``:

- ``Encoder.conv_block{1..5}.{1: conv, 2: ChannelNorm2D}``, ``Encoder.conv_block_out.1``:
  7x7 stride-1 conv, four 3x3 stride-2 convs (filters 60, 120, 240, 480, 960), 3x3
  projection to C=220 latent channels; latents are H/16 x W/16.
- ``Generator.conv_block_init.{0,3: norm, 2: conv}``, ``Generator.resblock_{0..8}``
  (``conv1``, ``conv2``, ``norm1``, ``norm2``), ``Generator.upconv_block{1..4}.{0: conv-T, 1: norm}``,
  ``Generator.conv_block_out.1``: 9 residual blocks at 960 channels (``-nrb 9``),
  four stride-2 transposed convs back to 60 channels, 7x7 conv to RGB.
- ``Hyperprior.analysis_net.conv{1,2,3}`` (3x3, then two 5x5 stride-2 convs with reflect
  padding, N=320), ``Hyperprior.synthesis_mu.conv{1,2,3}`` and
  ``Hyperprior.synthesis_std.conv{1,2,3}`` (transposed convs; mean-scale prior, scales
  lower-bounded at 0.11), ``Hyperprior.hyperlatent_likelihood.{H,a,b}_{0..3}``: the
  factorized prior on the hyper-latents (Ballé 2018, filters 3-3-3).

Normalisation is ``ChannelNorm2D`` (moments over channels, unbiased variance, eps 1e-3,
parameters ``gamma``/``beta`` shaped (1, C, 1, 1)). The rest of ``model_state_dict``
(``Discriminator.*``; entropy-model tables if the model was saved in evaluation mode)
is dropped. Two settings are not visible in tensor shapes and are read from ``args``:
``normalize_input_image`` (inputs in [-1, 1] and a tanh on the output; the README trains
HiFiC-low and -high with ``-norm``) and ``likelihood_type`` (``gaussian``, or
``logistic`` for HiFiC-med per the README).

Loading is safe: :func:`convert_hific_checkpoint` reads a checkpoint once, with
``torch.load(weights_only=True)`` or, when its ``args`` pickles a class that loader
refuses, with the weights layer's restricted unpickler
(:func:`mpq_assets.weights.unpickle.load_torch_restricted`), which keeps tensors and plain
data and never imports or calls anything else; it writes ``$MPQ_MODELS/hific/<regime>.safetensors``. Every
later load is safetensors only (:func:`load_hific_model`).

What was verified against the public code (read, not run): module names, layer order,
kernel sizes, strides, paddings (reflect, asymmetric (0,1,1,0) pads before the stride-2
convs), channel widths, the ChannelNorm2D formula and the density's layer equations.
What could not be verified here: the checkpoints themselves (~2 GB each, on Google Drive
and Zenodo, unreachable from this machine), so their exact ``args`` values and any extra
keys are taken from the training code and README.

Entropy coding uses CompressAI: the hyper-latents are coded with an ``EntropyBottleneck``
whose cumulative is HiFiC's own density (HiFiC applies a tanh factor on all four layers,
CompressAI's on the first three, so the cumulative is delegated, not copied) with the
quantisation offset fixed at 0 as in HiFiC (``z_hat = round(z)``); the latents with a
``GaussianConditional`` (or its logistic twin) on the 64-level scale table from 0.11 to
256, ``y_hat = round(y - mu) + mu``. The tables are built on the CPU and the hyper-synthesis
that selects them runs on the CPU for both encode and decode, so the bitstream does not
depend on GPU non-determinism (CompressAI issues #54, #320).

Deviations from the reference scripts, on purpose: images are padded (reflect) to a
multiple of 64 in pixel space instead of 16 in pixels and then 4 in latent space (same
number of coded latents, border content only), and the decoded image is clamped and
rounded, not min-max stretched as the reference ``save_image(normalize=True)`` does.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mpq_assets.codecs.batching import shape_batches
from mpq_assets.device import exact_convolutions
from mpq_assets.settings import load_settings
from mpq_assets.weights import ModelNotAvailableError, UnsafeCheckpointError, sha256_file
from mpq_assets.weights.safe_load import load_checkpoint, read_safetensors, write_safetensors
from mpq_assets.weights.unpickle import load_torch_restricted, plain_attributes

HIFIC_REGIMES: tuple[str, ...] = ("low", "med", "high")
# public file names per regime (the README links name the high one hific_hi.pt; some mirrors use hific_high.pt)
CHECKPOINT_NAMES: dict[str, tuple[str, ...]] = {
    "low": ("hific_low.pt",),
    "med": ("hific_med.pt",),
    "high": ("hific_hi.pt", "hific_high.pt"),
}
SOURCE_URL = "https://github.com/Justin-Tan/high-fidelity-generative-compression#pretrained-models"
ZENODO_URL = "https://zenodo.org/record/4026003"
LAYOUT = "mpq-hific-v1"
STRIDE = 64  # 16 (encoder) x 4 (hyper-analysis): every padded image gives whole hyper-latents
# the hyper-analysis reflect-pads its 5x5 stride-2 convs by 2, which needs latents of at least 8x8
# (the reference implementation fails on images of 64 px or less); smaller images are padded up
MIN_SIZE = 128
MIN_SCALE = 0.11
DENSITY_FILTERS = (3, 3, 3)
SCALE_TABLE: tuple[float, ...] = tuple(float(s) for s in np.exp(np.linspace(math.log(0.11), math.log(256.0), 64)))
# parts of the training Model's state dict that a codec does not use
_DROPPED_PREFIXES = (
    "Discriminator.",
    "perceptual_loss.",
    "Hyperprior.hyperprior_entropy_model.",
    "Hyperprior.prior_entropy_model.",
    "Hyperprior.prior_density.",
)
_KEPT_PREFIXES = ("Encoder.", "Generator.", "Hyperprior.")


@dataclass(frozen=True)
class HiFiCConfig:
    """Architecture hyper-parameters; the defaults are the published HiFiC (Table 3a of the paper, ``-nrb 9``)."""

    latent_channels: int = 220
    hyper_channels: int = 320
    n_residual_blocks: int = 9
    base_filters: int = 60  # encoder widths base x (1, 2, 4, 8, 16) = 60 ... 960; generator mirrors them
    normalize_input_image: bool = False
    likelihood_type: str = "gaussian"

    def __post_init__(self) -> None:
        if self.likelihood_type not in ("gaussian", "logistic"):
            raise ValueError(f"HiFiC likelihood_type must be 'gaussian' or 'logistic', got {self.likelihood_type!r}")
        for field in ("latent_channels", "hyper_channels", "n_residual_blocks", "base_filters"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"HiFiC {field} must be >= 1")

    @property
    def filters(self) -> tuple[int, ...]:
        return tuple(self.base_filters * 2**i for i in range(5))


# ----------------------------------------------------------------------------- layers


class ChannelNorm2D(nn.Module):
    """Normalise over the channel axis per pixel (unbiased variance), then scale and shift."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True)
        return self.gamma * ((x - mu) * torch.rsqrt(var + self.eps)) + self.beta


def _asymmetric_pad() -> nn.Module:
    return nn.ReflectionPad2d((0, 1, 1, 0))


class Encoder(nn.Module):
    """Image in [0, 1] (or [-1, 1]) -> latents with C channels at 1/16 resolution."""

    n_downsampling_layers = 4

    def __init__(self, config: HiFiCConfig) -> None:
        super().__init__()
        f = config.filters
        self.conv_block1 = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, f[0], kernel_size=7, stride=1), ChannelNorm2D(f[0]), nn.ReLU()
        )
        for i in range(1, 5):
            block = nn.Sequential(
                _asymmetric_pad(), nn.Conv2d(f[i - 1], f[i], kernel_size=3, stride=2), ChannelNorm2D(f[i]), nn.ReLU()
            )
            self.add_module(f"conv_block{i + 1}", block)
        self.conv_block_out = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(f[4], config.latent_channels, kernel_size=3, stride=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv_block{i}")(x)
        return self.conv_block_out(x)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3)
        self.norm1 = ChannelNorm2D(channels)
        self.norm2 = ChannelNorm2D(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = F.relu(self.norm1(self.conv1(self.pad(x))))
        res = self.norm2(self.conv2(self.pad(res)))
        return res + x


class Generator(nn.Module):
    """Quantised latents -> image (before the output transform), 16x upsampling."""

    def __init__(self, config: HiFiCConfig) -> None:
        super().__init__()
        f = config.filters[::-1]  # 960, 480, 240, 120, 60
        self.n_residual_blocks = config.n_residual_blocks
        self.conv_block_init = nn.Sequential(
            ChannelNorm2D(config.latent_channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(config.latent_channels, f[0], kernel_size=3, stride=1),
            ChannelNorm2D(f[0]),
        )
        for m in range(config.n_residual_blocks):
            self.add_module(f"resblock_{m}", ResidualBlock(f[0]))
        for i in range(1, 5):
            block = nn.Sequential(
                nn.ConvTranspose2d(f[i - 1], f[i], kernel_size=3, stride=2, padding=1, output_padding=1),
                ChannelNorm2D(f[i]),
                nn.ReLU(),
            )
            self.add_module(f"upconv_block{i}", block)
        self.conv_block_out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(f[4], 3, kernel_size=7, stride=1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        head = self.conv_block_init(y)
        x = head
        for m in range(self.n_residual_blocks):
            x = getattr(self, f"resblock_{m}")(x)
        x = x + head
        for i in range(1, 5):
            x = getattr(self, f"upconv_block{i}")(x)
        return self.conv_block_out(x)


class HyperpriorAnalysis(nn.Module):
    n_downsampling_layers = 2

    def __init__(self, latent_channels: int, hyper_channels: int) -> None:
        super().__init__()
        c, n = latent_channels, hyper_channels
        self.conv1 = nn.Conv2d(c, n, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(n, n, kernel_size=5, stride=2, padding=2, padding_mode="reflect")
        self.conv3 = nn.Conv2d(n, n, kernel_size=5, stride=2, padding=2, padding_mode="reflect")

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(y)))))


class HyperpriorSynthesis(nn.Module):
    def __init__(self, latent_channels: int, hyper_channels: int) -> None:
        super().__init__()
        c, n = latent_channels, hyper_channels
        self.conv1 = nn.ConvTranspose2d(n, n, kernel_size=5, stride=2, padding=2, output_padding=1)
        self.conv2 = nn.ConvTranspose2d(n, n, kernel_size=5, stride=2, padding=2, output_padding=1)
        self.conv3 = nn.ConvTranspose2d(n, c, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.relu(self.conv2(F.relu(self.conv1(z)))))


class HyperpriorDensity(nn.Module):
    """Factorized prior on the hyper-latents (Ballé et al. 2018, sec. 6.1), one univariate model per channel.

    ``cdf_logits`` maps values shaped (channels, 1, n) to the logits of their cumulative.
    """

    def __init__(self, channels: int, init_scale: float = 10.0, filters: tuple[int, ...] = DENSITY_FILTERS) -> None:
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        widths = (1, *self.filters, 1)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        for k in range(len(self.filters) + 1):
            h = torch.full((channels, widths[k + 1], widths[k]), float(np.log(np.expm1(1 / scale / widths[k + 1]))))
            self.register_parameter(f"H_{k}", nn.Parameter(h))
            self.register_parameter(f"a_{k}", nn.Parameter(torch.zeros(channels, widths[k + 1], 1)))
            self.register_parameter(f"b_{k}", nn.Parameter(torch.empty(channels, widths[k + 1], 1).uniform_(-0.5, 0.5)))

    def cdf_logits(self, x: torch.Tensor) -> torch.Tensor:
        logits = x
        for k in range(len(self.filters) + 1):
            logits = torch.matmul(F.softplus(getattr(self, f"H_{k}")), logits) + getattr(self, f"b_{k}")
            logits = logits + torch.tanh(getattr(self, f"a_{k}")) * torch.tanh(logits)
        return logits


class Hyperprior(nn.Module):
    def __init__(self, config: HiFiCConfig) -> None:
        super().__init__()
        c, n = config.latent_channels, config.hyper_channels
        self.analysis_net = HyperpriorAnalysis(c, n)
        self.synthesis_mu = HyperpriorSynthesis(c, n)
        self.synthesis_std = HyperpriorSynthesis(c, n)
        self.hyperlatent_likelihood = HyperpriorDensity(n)


def latent_parameters(
    synthesis_mu: nn.Module, synthesis_std: nn.Module, z_hat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and scales of the latents from decoded hyper-latents (scales lower-bounded at 0.11)."""
    return synthesis_mu(z_hat), torch.clamp(synthesis_std(z_hat), min=MIN_SCALE)


class HiFiCModel(nn.Module):
    """Encoder, generator and hyperprior; ``state_dict()`` keys are the public checkpoints' keys."""

    def __init__(self, config: HiFiCConfig | None = None) -> None:
        super().__init__()
        self.config = config or HiFiCConfig()
        self.Encoder = Encoder(self.config)
        self.Generator = Generator(self.config)
        self.Hyperprior = Hyperprior(self.config)

    # input/output transforms of the reference implementation
    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        return x01 * 2.0 - 1.0 if self.config.normalize_input_image else x01

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        if self.config.normalize_input_image:
            out = (torch.tanh(out) + 1.0) / 2.0
        return torch.clamp(out, 0.0, 1.0)

    def analysis(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded image in [0, 1] -> (latents y, hyper-latents z), both unquantised."""
        y = self.Encoder(self.preprocess(x01))
        return y, self.Hyperprior.analysis_net(y)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Quantised latents -> padded image in [0, 1]."""
        return self.postprocess(self.Generator(y_hat))

    @torch.no_grad()
    def reconstruct(self, x01: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction without a bitstream: pad, quantise z and y, generate, crop.

        z is rounded, y is rounded around the predicted means. This is what an exact entropy coder
        must reproduce: ``HiFiCCoder`` decodes to the same tensor.
        """
        h, w = x01.shape[-2:]
        y, z = self.analysis(pad_to_stride(x01))
        z_hat = torch.round(z)
        means, _ = latent_parameters(self.Hyperprior.synthesis_mu, self.Hyperprior.synthesis_std, z_hat)
        y_hat = torch.round(y - means) + means
        return self.synthesis(y_hat)[..., :h, :w]


def padded_size(size: int) -> int:
    """The coded extent of an image side: a multiple of ``STRIDE``, at least ``MIN_SIZE``."""
    return max(MIN_SIZE, -(-size // STRIDE) * STRIDE)


def pad_to_stride(x: torch.Tensor) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to :func:`padded_size`: reflect, repeated for tiny images; edge for 1 px."""
    h, w = x.shape[-2:]
    pad_h, pad_w = padded_size(h) - h, padded_size(w) - w
    while pad_h or pad_w:
        step_h = min(pad_h, x.shape[-2] - 1)
        step_w = min(pad_w, x.shape[-1] - 1)
        if step_h == 0 and step_w == 0:  # a 1-pixel axis cannot be reflected
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


# ----------------------------------------------------------------------------- entropy coding


def _entropy_models():
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    class HyperlatentBottleneck(EntropyBottleneck):
        """CompressAI's factorized coder with HiFiC's density as its cumulative and the offset fixed at 0."""

        def __init__(self, density: HyperpriorDensity) -> None:
            super().__init__(density.channels, filters=density.filters)
            self.density = density

        def _logits_cumulative(self, inputs: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
            return self.density.cdf_logits(inputs)

        @torch.no_grad()
        def build(self) -> None:
            self._update_quantiles()  # bisection for the tails on HiFiC's density
            self.quantiles.data[:, 0, 1] = 0.0  # HiFiC codes round(z), not round(z - median) + median
            self.update(force=True)

    class LogisticConditional(GaussianConditional):
        """Mean-scale logistic conditional (HiFiC's ``likelihood_type='logistic'``)."""

        def _standardized_cumulative(self, inputs: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(inputs)

        @staticmethod
        def _standardized_quantile(quantile: float) -> float:
            return math.log(quantile / (1.0 - quantile))

    return HyperlatentBottleneck, GaussianConditional, LogisticConditional


@dataclass(frozen=True)
class HiFiCBitstream:
    """The two entropy-coded strings and the shapes the decoder needs (latents are 4x the hyper-latents)."""

    z_string: bytes
    y_string: bytes
    z_shape: tuple[int, int, int]
    y_shape: tuple[int, int, int]


class HiFiCCoder:
    """A HiFiC model plus its CPU entropy models: real bitstreams in, images out.

    The encoder, hyper-analysis and generator run on the model's device, over
    batches of same-size images; the hyper-synthesis that selects the probability
    tables runs on CPU copies, one image at a time in both directions, so encoder
    and decoder always agree on the tables whatever batch or device ran the rest.
    """

    def __init__(self, model: HiFiCModel) -> None:
        bottleneck_cls, gaussian_cls, logistic_cls = _entropy_models()
        self.model = model.eval()
        hyper = model.Hyperprior
        self._synthesis_mu = copy.deepcopy(hyper.synthesis_mu).cpu().eval()
        self._synthesis_std = copy.deepcopy(hyper.synthesis_std).cpu().eval()
        self.hyperlatent_coder = bottleneck_cls(copy.deepcopy(hyper.hyperlatent_likelihood).cpu()).eval()
        cond_cls = logistic_cls if model.config.likelihood_type == "logistic" else gaussian_cls
        self.latent_coder = cond_cls(list(SCALE_TABLE), scale_bound=MIN_SCALE).eval()
        self.hyperlatent_coder.build()
        self.latent_coder.update()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _parameters(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return latent_parameters(self._synthesis_mu, self._synthesis_std, z_hat)

    @torch.no_grad()
    def compress(self, x01: torch.Tensor) -> HiFiCBitstream:
        """One image (1, 3, H, W) in [0, 1], already padded by :func:`pad_to_stride`."""
        if x01.dim() != 4 or x01.shape[0] != 1:
            raise ValueError(f"HiFiCCoder.compress takes one image padded by pad_to_stride, got {tuple(x01.shape)}")
        return self.compress_batch([x01[0]], 1)[0]

    @torch.no_grad()
    def compress_batch(self, images: Sequence[torch.Tensor], batch_size: int) -> list[HiFiCBitstream]:
        """Padded images (3, H, W) in [0, 1]: the encoder and hyper-analysis run on the model's device over
        batches of one size, the entropy coding on the CPU image by image (so any batch decodes alone)."""
        for x in images:
            h, w = x.shape[-2:]
            if x.dim() != 3 or (h, w) != (padded_size(h), padded_size(w)):
                raise ValueError(f"HiFiCCoder takes images (3, H, W) padded by pad_to_stride, got {tuple(x.shape)}")
        out: list[HiFiCBitstream | None] = [None] * len(images)
        for group in shape_batches([tuple(x.shape) for x in images], batch_size):
            with exact_convolutions():
                y, z = self.model.analysis(torch.stack([images[i] for i in group]).to(self.device))
            y, z = y.float().cpu(), z.float().cpu()
            for j, i in enumerate(group):
                out[i] = self._code(y[j:j + 1], z[j:j + 1])
        return out  # type: ignore[return-value]

    def _code(self, y: torch.Tensor, z: torch.Tensor) -> HiFiCBitstream:
        z_string = self.hyperlatent_coder.compress(z)[0]
        z_hat = self.hyperlatent_coder.decompress([z_string], z.shape[-2:])
        means, scales = self._parameters(z_hat)
        indexes = self.latent_coder.build_indexes(scales)
        y_string = self.latent_coder.compress(y, indexes, means=means)[0]
        return HiFiCBitstream(z_string, y_string, tuple(z.shape[1:]), tuple(y.shape[1:]))

    @torch.no_grad()
    def decompress(self, bitstream: HiFiCBitstream) -> torch.Tensor:
        """The padded image (1, 3, H, W) in [0, 1]."""
        return self.decompress_batch([bitstream], 1)[0][None]

    @torch.no_grad()
    def decompress_batch(self, bitstreams: Sequence[HiFiCBitstream], batch_size: int) -> list[torch.Tensor]:
        """Padded images (3, H, W) in [0, 1] on the CPU: latents decoded on the CPU one by one, the generator
        on the model's device over batches of one latent shape."""
        latents = [self._latent(b) for b in bitstreams]
        out: list[torch.Tensor | None] = [None] * len(latents)
        for group in shape_batches([tuple(y.shape) for y in latents], batch_size):
            with exact_convolutions():
                x = self.model.synthesis(torch.cat([latents[i] for i in group]).to(self.device)).float().cpu()
            for j, i in enumerate(group):
                out[i] = x[j].clone()  # not a view: an item must not keep its whole batch alive
        return out  # type: ignore[return-value]

    def _latent(self, bitstream: HiFiCBitstream) -> torch.Tensor:
        cfg = self.model.config
        zc, zh, zw = bitstream.z_shape
        yc, yh, yw = bitstream.y_shape
        if zc != cfg.hyper_channels or yc != cfg.latent_channels or (yh, yw) != (4 * zh, 4 * zw):
            raise ValueError(
                f"bitstream shapes z={bitstream.z_shape} y={bitstream.y_shape} do not fit this model "
                f"(C={cfg.latent_channels}, N={cfg.hyper_channels})"
            )
        z_hat = self.hyperlatent_coder.decompress([bitstream.z_string], (zh, zw))
        means, scales = self._parameters(z_hat)
        indexes = self.latent_coder.build_indexes(scales)
        return self.latent_coder.decompress([bitstream.y_string], indexes, means=means)


# ----------------------------------------------------------------------------- weights


def hific_dir(models_dir: Path | None = None) -> Path:
    """``<models>/hific``: the settings' model folder (``MPQ_MODELS``), given by the codec that asks."""
    return (models_dir if models_dir is not None else load_settings().models_dir) / "hific"


def converted_path(regime: str, models_dir: Path | None = None) -> Path:
    """Where the one-time safetensors conversion of ``regime`` lives: ``$MPQ_MODELS/hific/<regime>.safetensors``."""
    _check_regime(regime)
    return hific_dir(models_dir) / f"{regime}.safetensors"


def checkpoint_paths(regime: str, models_dir: Path | None = None) -> list[Path]:
    """Where a downloaded public checkpoint is looked for (``$MPQ_MODELS/hific/hific_low.pt`` ...)."""
    _check_regime(regime)
    return [hific_dir(models_dir) / name for name in CHECKPOINT_NAMES[regime]]


def find_checkpoint(regime: str, models_dir: Path | None = None) -> Path | None:
    return next((p for p in checkpoint_paths(regime, models_dir) if p.is_file()), None)


def _check_regime(regime: str) -> None:
    if regime not in HIFIC_REGIMES:
        raise ValueError(f"unknown HiFiC regime {regime!r}; known: {', '.join(HIFIC_REGIMES)}")


def missing_weights_message(regimes: tuple[str, ...] = HIFIC_REGIMES, models_dir: Path | None = None) -> str | None:
    """None when every regime has converted weights or a public checkpoint to convert; else how to get them."""
    missing = [r for r in regimes if not converted_path(r, models_dir).is_file()
               and find_checkpoint(r, models_dir) is None]
    if not missing:
        return None
    wanted = ", ".join(str(checkpoint_paths(r, models_dir)[0]) for r in missing)
    return (
        f"HiFiC weights missing for {', '.join(missing)}: put the public PyTorch checkpoints at {wanted} "
        f"(hific_low.pt / hific_med.pt / hific_hi.pt, ~2 GB each, from {SOURCE_URL}: Google Drive links, also "
        f"Zenodo {ZENODO_URL}). `mpq models pull` cannot download them (Google Drive has no stable direct URL "
        "and this machine may have no network); once a .pt file is in place it is converted once to "
        f"{hific_dir(models_dir)}/<regime>.safetensors on first use (or by `mpq models pull hific-<regime>`)."
    )


def ensure_hific_weights(regime: str, models_dir: Path | None = None) -> Path:
    """The converted safetensors for ``regime``, converting a downloaded checkpoint once if needed."""
    target = converted_path(regime, models_dir)
    if target.is_file():
        return target
    source = find_checkpoint(regime, models_dir)
    if source is None:
        reason = missing_weights_message((regime,), models_dir) or f"HiFiC {regime} weights missing"
        raise ModelNotAvailableError(reason)
    return convert_hific_checkpoint(source, target, regime=regime)


def load_hific_model(path: str | Path, device: torch.device | str = "cpu") -> HiFiCModel:
    """Build the model from a converted ``.safetensors`` file (its metadata carries the configuration)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: HiFiC weights load from safetensors only; convert checkpoints once with "
                         "convert_hific_checkpoint()")
    state, metadata = read_safetensors(path)
    if metadata.get("layout") != LAYOUT or "config" not in metadata:
        raise ValueError(f"{path} is not a converted HiFiC checkpoint (metadata layout {metadata.get('layout')!r})")
    config = HiFiCConfig(**json.loads(metadata["config"]))
    with torch.device("meta"):
        model = HiFiCModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


# ----------------------------------------------------------------------------- conversion


def _read_checkpoint(path: Path) -> tuple[Any, str]:
    try:
        return load_checkpoint(path, "HiFiC checkpoint"), "torch.load(weights_only=True)"
    except UnsafeCheckpointError:
        pass  # e.g. ``args`` pickled as an instance of the training script's class
    # torch's own loader (zip and legacy formats, storages), every other global resolved by the allow-list
    return load_torch_restricted(path), "restricted unpickler (tensors and plain data only)"


def _split_state(checkpoint: Any, source: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    raw = checkpoint.get("model_state_dict", checkpoint)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: 'model_state_dict' is a {type(raw).__name__}, not a state dict")
    args = plain_attributes(checkpoint.get("args", {}))
    state: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        key = str(key)
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith(_DROPPED_PREFIXES):
            dropped.append(key)
        elif key.startswith(_KEPT_PREFIXES):
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
            state[key] = value.detach().to(torch.float32).contiguous().clone()
        else:
            raise ValueError(f"{source}: unexpected key {key!r} in the model state dict (not HiFiC's layout)")
    if not state:
        raise ValueError(f"{source}: no Encoder./Generator./Hyperprior. weights found; is this a HiFiC checkpoint?")
    return state, args, dropped


def config_from_state_dict(state: Mapping[str, torch.Tensor], args: Mapping[str, Any] | None = None) -> HiFiCConfig:
    """Architecture from tensor shapes, plus the two settings shapes cannot show, from the training ``args``."""
    args = dict(args or {})
    try:
        latent = int(state["Encoder.conv_block_out.1.weight"].shape[0])
        base = int(state["Encoder.conv_block1.1.weight"].shape[0])
        hyper = int(state["Hyperprior.analysis_net.conv1.weight"].shape[0])
    except KeyError as exc:
        raise ValueError(f"not a HiFiC state dict: missing {exc.args[0]}") from exc
    blocks = {k.split(".")[1] for k in state if k.startswith("Generator.resblock_")}
    if any(k.startswith("Generator.latent_noise_map") for k in state) or args.get("sample_noise"):
        raise ValueError("HiFiC checkpoints with sample_noise=True are not supported (decoding would be random)")
    if args.get("use_latent_mixture_model"):
        raise ValueError("HiFiC checkpoints with the latent mixture model (DLMM) are not supported")
    if args.get("use_channel_norm") is False:
        raise ValueError("HiFiC checkpoints trained with instance norm (use_channel_norm=False) are not supported")
    unread = [k for k in ("normalize_input_image", "likelihood_type") if k not in args]
    if unread:  # the reference loader cannot build a model without them either
        raise ValueError(f"the checkpoint's args do not say {' or '.join(unread)}; cannot tell how to run it")
    return HiFiCConfig(
        latent_channels=latent,
        hyper_channels=hyper,
        n_residual_blocks=len(blocks),
        base_filters=base,
        normalize_input_image=bool(args["normalize_input_image"]),
        likelihood_type=str(args["likelihood_type"]),
    )


def check_state_dict(state: Mapping[str, torch.Tensor], config: HiFiCConfig) -> None:
    """Raise naming every missing, unexpected or mis-shaped key (no memory is allocated for the model)."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in HiFiCModel(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} != {expected[k]}"
              for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != expected[k]]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:8]}" if missing else "", f"unexpected {unexpected[:8]}" if unexpected else "",
                 f"shape mismatch {shapes[:8]}" if shapes else ""]
        raise ValueError("HiFiC state dict does not match the architecture: " + "; ".join(p for p in parts if p))


def convert_hific_checkpoint(src: str | Path, dst: str | Path, *, regime: str | None = None) -> Path:
    """Convert a public HiFiC checkpoint to safetensors, once; return ``dst``.

    If ``dst`` exists it is returned untouched. Otherwise ``src`` is read with
    ``torch.load(weights_only=True)`` or, if its ``args`` pickles a class that loader
    refuses, with a restricted unpickler: tensors, containers and plain data are rebuilt,
    instances of other classes become inert attribute dicts, and any attempt to call a
    non-allowlisted global (the way a malicious pickle runs code) raises
    ``pickle.UnpicklingError``. The Encoder/Generator/Hyperprior weights are checked against
    the architecture and written atomically with the configuration, source file and its
    SHA-256 in the metadata.
    """
    src, dst = Path(src), Path(dst)
    if dst.is_file():
        return dst
    if not src.is_file():
        raise FileNotFoundError(f"HiFiC checkpoint {src} does not exist")
    checkpoint, reader = _read_checkpoint(src)
    state, args, dropped = _split_state(checkpoint, src)
    del checkpoint  # optimiser states and the discriminator: ~2/3 of a public file
    recorded = args.get("regime")
    if regime and isinstance(recorded, str) and recorded not in (regime, {"high": "hi"}.get(regime)):
        raise ValueError(f"{src} was trained for regime {recorded!r} but is being installed as {regime!r}")
    config = config_from_state_dict(state, args)
    check_state_dict(state, config)
    metadata = {
        "layout": LAYOUT,
        "config": json.dumps(asdict(config), sort_keys=True),
        "regime": regime or str(args.get("regime", "")),
        "source": src.name,
        "source_sha256": sha256_file(src),
        "reader": reader,
        "dropped_keys": str(len(dropped)),
        "args": json.dumps({k: v for k, v in args.items() if isinstance(v, str | int | float | bool | None)},
                           sort_keys=True),
    }
    return write_safetensors(dst, state, metadata)
