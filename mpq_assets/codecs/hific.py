"""HiFiC as a codec: the public PyTorch weights (regimes low / med / high), real CompressAI bitstreams.

The ladder is the three published models ordered by rate (HiFiC-low targets
0.14 bpp, -med 0.30, -high 0.45; the paper evaluated HiFiC-lo); rate control
picks the highest one whose file fits the budget. The file is the ``.mpqc``
container of :mod:`mpq_assets.codecs.container` (the format shared with the
CompressAI codecs; HiFiC's older ``MPQH`` files still decode): codec name,
regime, the entropy path's device type, the original H and W, the shapes of
the hyper-latents z and the latents y, (C, h, w) each (H and W padded to a
multiple of 64, at least 128, then /64 and /16), and their rANS strings. Its
size is the honest rate -- the header (35-40 bytes; 39 for a 512x768 image)
included, times 8 for bits (the paper's script reported HiFiC's bytes per pixel
as bpp).

Weights: see :mod:`mpq_assets.codecs.hific_model` (layout, one-time safetensors
conversion). The default constructor only ever loads real weights; tests wrap
randomly initialised models with :meth:`HiFiC.from_models`.

Determinism: the tables and the table-selecting hyper-synthesis always run on
the CPU, one image at a time, at both ends, so a file decodes on any machine with
the same software stack, whichever device and batch encoded it. The container
records that device type ("cpu"); a file that says otherwise is refused.

Batching: ``batch_size`` images of one padded size go through the encoder and the
generator together on the device (default ``MPQ_CODEC_BATCH``, else 1 on CPU and
8 on a GPU). Batched convolutions differ from single-image ones by up to 2.5e-6
on CPU: in a batch a latent that close to a rounding boundary can round the other
way (another valid file) and a decoded pixel can move one level (2 of 15000 in a
test). With a batch of one a file is bit for bit the single-image encode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mpq_assets.codecs.base import Codec, CodecError, Encoded, Item, Modality
from mpq_assets.codecs.container import Container, pack, unpack
from mpq_assets.settings import Settings, load_settings
from mpq_assets.weights import ModelNotAvailableError, WeightSource

if TYPE_CHECKING:
    import torch

    from mpq_assets.codecs.hific_model import HiFiCCoder, HiFiCModel

ENTROPY_DEVICE_TYPE = "cpu"  # where HiFiCCoder builds the tables and runs the hyper-synthesis
# = hific_model.HIFIC_REGIMES (a test checks it); not imported from there because that module imports torch,
# and the codec registry (so every worker process that only runs Pillow or FFmpeg) imports this one
HIFIC_REGIMES: tuple[str, ...] = ("low", "med", "high")


def _model_module() -> ModuleType:
    import mpq_assets.codecs.hific_model as hific_model

    return hific_model


def _hific_location(regime: str, settings: Settings) -> tuple[bool, str]:
    hm = _model_module()
    path = hm.converted_path(regime, settings.models_dir)
    return path.exists() or hm.find_checkpoint(regime, settings.models_dir) is not None, str(path)


def weight_source(regime: str) -> WeightSource:
    """The ``mpq models`` entry of one regime: a public checkpoint placed by hand, converted once to safetensors
    (there is no stable download URL)."""
    return WeightSource(
        f"hific-{regime}", "file", f"HiFiC generative image codec, {regime} regime (PyTorch re-training; Zenodo "
        "4026003 / the project's README links)", "manual download",
        locate=lambda settings: _hific_location(regime, settings),
        fetch=lambda settings: str(_model_module().ensure_hific_weights(regime, settings.models_dir)))


class HiFiC(Codec):
    """HiFiC-low / -med / -high (PyTorch port weights) with CompressAI entropy coding."""

    name = "hific"
    modality: ClassVar[Modality] = "image"
    extension = ".mpqc"
    description = ("HiFiC (Mentzer et al. 2020), public PyTorch weights low/med/high (Justin-Tan port), "
                   "mean-scale hyperprior coded with CompressAI rANS; our .mpqc container")
    regimes: ClassVar[tuple[str, ...]] = HIFIC_REGIMES
    weight_sources: ClassVar[tuple[WeightSource, ...]] = tuple(weight_source(r) for r in HIFIC_REGIMES)

    def __init__(self, device: str | torch.device | None = None, batch_size: int | None = None,
                 settings: Settings | None = None) -> None:
        """``batch_size``: images per batched encoder / generator call (default: by device, module docstring).
        ``settings``: the deployment's (the step's: its model folder and device); without them, the
        environment's."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.settings = settings or load_settings()
        self._device = device
        self._batch_size = batch_size
        self._regimes: tuple[str, ...] = tuple(self.regimes)
        self._coders: dict[str, HiFiCCoder] = {}
        self._injected = False

    requires = ("compressai",)

    @classmethod
    def from_models(cls, models: Mapping[str, HiFiCModel], batch_size: int | None = None) -> HiFiC:
        """Wrap already-built models (e.g. randomly initialised, for tests) keyed by regime; nothing is loaded."""
        unknown = sorted(set(models) - set(HIFIC_REGIMES))
        if unknown or not models:
            raise ValueError(f"from_models takes models keyed by regimes {HIFIC_REGIMES}, got {sorted(models)}")
        codec = cls(batch_size=batch_size)
        codec._injected = True
        codec._regimes = tuple(r for r in HIFIC_REGIMES if r in models)
        codec._coders = {regime: _model_module().HiFiCCoder(models[regime]) for regime in codec._regimes}
        return codec

    def weights_missing(self) -> str | None:
        if self._injected:
            return None
        return _model_module().missing_weights_message(self._regimes, self.settings.models_dir)

    @property
    def batch_size(self) -> int:
        if self._batch_size is not None:
            return self._batch_size
        from mpq_assets.device import codec_batch_size, parse_codec_batch, resolve_device

        chosen = parse_codec_batch(self.settings.codec_batch)
        if self._coders:  # the device the models are on (from_models keeps theirs)
            return codec_batch_size(next(iter(self._coders.values())).device, chosen)
        return codec_batch_size(resolve_device(self._device_name), chosen)

    @property
    def _device_name(self) -> str:
        return self.settings.device if self._device is None else str(self._device)

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return self.batch_size > 1

    def check(self, item: Item) -> None:
        _as_image(item, self.name)

    def ladder(self, item: Item) -> Sequence[str]:
        return list(self._regimes)

    def label(self, setting: Any) -> str:
        return f"regime={setting}"

    def _coder(self, regime: str) -> HiFiCCoder:
        if regime not in self._regimes:
            raise CodecError(f"{self.name}: unknown regime {regime!r}; this codec has {', '.join(self._regimes)}")
        if regime not in self._coders:
            from mpq_assets.device import resolve_device

            hm = _model_module()
            # ModelNotAvailableError with instructions if absent
            path = hm.ensure_hific_weights(regime, self.settings.models_dir)
            self._coders[regime] = hm.HiFiCCoder(hm.load_hific_model(path, resolve_device(self._device_name)))
        return self._coders[regime]

    def encode_to_budget(self, item: Item, budget_bytes: int) -> Encoded:
        message = self.weights_missing()
        if message:
            raise ModelNotAvailableError(message)
        return super().encode_to_budget(item, budget_bytes)

    def encode(self, item: Item, setting: Any) -> bytes:
        return self.encode_batch([item], setting)[0]

    def encode_batch(self, items: Sequence[Item], setting: Any) -> list[bytes]:
        """One file per image in regime ``setting``; same-size images share the encoder's device batches."""
        import torch

        images = [_as_image(item, self.name) for item in items]
        regime = str(setting)
        coder = self._coder(regime)
        pad = _model_module().pad_to_stride
        tensors = [pad(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float() / 255.0)[0]
                   for image in images]
        return [pack(Container(codec=self.name, setting=regime, height=image.shape[0], width=image.shape[1],
                               shapes=(bits.z_shape, bits.y_shape), strings=(bits.z_string, bits.y_string),
                               device_type=ENTROPY_DEVICE_TYPE))
                for image, bits in zip(images, coder.compress_batch(tensors, self.batch_size), strict=True)]

    def encode_to_budgets(self, item: Item, budgets: Sequence[int]) -> list[Encoded]:
        """The shared ladder search over every budget of one item (each regime encoded at most once)."""
        return self.encode_to_budgets_batch([item], [budgets])[0]

    def encode_to_budgets_batch(self, items: Sequence[Item], budgets: Sequence[Sequence[int]]) -> list[list[Encoded]]:
        """The shared ladder search for several images in lockstep: one batched encode per regime and round."""
        message = self.weights_missing()
        if message:
            raise ModelNotAvailableError(message)
        from mpq_assets.codecs.rate_control import fit_ladder_many_batch

        return fit_ladder_many_batch(self, items, budgets)

    def _unpack(self, data: bytes) -> Container:
        """The checked fields of one file: this codec's, a regime it has, shapes that fit the image."""
        box = unpack(data)
        if box.codec != self.name:
            raise CodecError(f"{self.name}: this .mpqc file was written by codec {box.codec!r}")
        if box.setting not in self._regimes:
            raise CodecError(f"{self.name}: the file is in regime {box.setting!r}, unknown to this codec (it has "
                             f"{', '.join(self._regimes)})")
        if box.device_type != ENTROPY_DEVICE_TYPE:
            raise CodecError(f"{self.name}: this file was entropy-coded on {box.device_type!r}; HiFiC builds its "
                             f"tables on {ENTROPY_DEVICE_TYPE!r} only, so it cannot decode it reliably")
        if len(box.shapes) != 2 or len(box.strings) != 2 or any(len(s) != 3 for s in box.shapes):
            raise CodecError(f"{self.name}: expected 2 tensors (z, y) in the container, got {len(box.shapes)}")
        hm = _model_module()
        expected_y = (hm.padded_size(box.height) // 16, hm.padded_size(box.width) // 16)
        if tuple(box.shapes[1][1:]) != expected_y or tuple(box.shapes[0][1:]) != tuple(d // 4 for d in expected_y):
            raise CodecError(f"{self.name}: latent shapes {box.shapes} do not fit a {box.height}x{box.width} image")
        return box

    def decode(self, data: bytes, like: Item) -> Item:
        return self.decode_batch([data], [like])[0]

    def decode_batch(self, data: Sequence[bytes], like: Sequence[Item]) -> list[Item]:
        """Decode several files; those of one regime and size share the generator's device batches."""
        hm = _model_module()
        boxes = [self._unpack(d) for d in data]
        out: list[Item | None] = [None] * len(boxes)
        for regime in dict.fromkeys(box.setting for box in boxes):
            members = [i for i, box in enumerate(boxes) if box.setting == regime]
            coder = self._coder(regime)
            bitstreams = [hm.HiFiCBitstream(boxes[i].strings[0], boxes[i].strings[1], boxes[i].shapes[0],
                                            boxes[i].shapes[1]) for i in members]
            try:
                padded = coder.decompress_batch(bitstreams, self.batch_size)
            except ValueError as exc:
                raise CodecError(f"{self.name}: {exc}") from exc
            for i, x in zip(members, padded, strict=True):
                image = to_uint8(x[:, :boxes[i].height, :boxes[i].width])
                if isinstance(like[i], np.ndarray) and image.shape != like[i].shape:
                    raise CodecError(f"{self.name} decoded shape {image.shape} differs from original {like[i].shape}")
                out[i] = image
        return out  # type: ignore[return-value]


class HiFiCLo(HiFiC):
    """The paper's fixed setting: HiFiC-low only (one rung; a budget it misses is recorded as not met)."""

    name = "hific-lo"
    description = "HiFiC-low only (the paper's HiFiC-lo setting), PyTorch port weights, CompressAI rANS; .mpqc"
    regimes: ClassVar[tuple[str, ...]] = ("low",)


def to_uint8(chw: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8, rounded."""
    import torch

    return (chw.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def _as_image(item: Item, codec: str) -> np.ndarray:
    if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
        what = f"{item.dtype} array {item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
        raise CodecError(f"{codec} encodes RGB uint8 images (H, W, 3), got {what}")
    if item.shape[0] == 0 or item.shape[1] == 0:
        raise CodecError(f"{codec}: empty image {item.shape}")
    return item
