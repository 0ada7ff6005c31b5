"""Neural audio codecs: EnCodec 24 kHz (mono) and 48 kHz (stereo) through the ``encodec`` package.

Bitstream. Every file is the package's own ECDC container, written by
``encodec.compress.compress``: the magic ``ECDC``, a version byte, a uint32
header size and a JSON header ``{"m": model, "al": frames at the model rate,
"nc": codebooks, "lm": false}``, then for each segment of the model (the 48 kHz
model codes 1 s segments with 1 % overlap, the 24 kHz model one segment) a
float32 scale (48 kHz only: it normalises each segment) and the codes, 10 bits
each, packed and padded to a whole byte. ``encodec`` (its ``decompress`` and
command line) reads our ``.ecdc`` files. The rate is the length of that file.

Settings. The ladder is the model's bandwidths, ascending (24 kHz: 1.5, 3, 6,
12, 24 kbps; 48 kHz: 3, 6, 12, 24 kbps). A bandwidth is a number of residual
codebooks (bandwidth / (frame rate x 10 bits), 75 and 150 frames/s), so without
the entropy-coding LM the size depends only on the clip's duration and the
bandwidth: :func:`ecdc_size` gives it exactly (tests compare it with the bytes
written), and :meth:`encode_to_budgets` uses it to pick each budget's rung and
checks the bytes written against it -- the rate is always the bytes written.
The residual codebooks are coded in order, so the codes at a lower
bandwidth are the first codebooks of the codes at a higher one: every target
ratio of a clip comes from one encoder pass at the highest bandwidth any of them
needs, each file byte for byte its own encode (:func:`pack_ecdc`; tested). With
the LM (``encodec-*-lm``, opt-in) sizes depend on content and the shared
bisection is used.

Audio mapping. The item is resampled (``mpq_assets.media.audio.resample``) to the
model rate and mapped to its channels (``remix``: the 24 kHz model down-mixes to
mono; the 48 kHz model duplicates a mono item and refuses more than 2
channels). ``decode`` goes back to the item's rate and channel count (the mono
decode of a stereo item is duplicated; a mono item's stereo decode is averaged),
trims or pads to the item's frame count and clips to [-1, 1].

Weights and safety. ``encodec`` fetches ``encodec_24khz-d7cc33bc.th`` /
``encodec_48khz-7e698e3e.th`` (and the LMs ``encodec_lm_*.th``) from
``dl.fbaipublicfiles.com/encodec/v0/`` with ``torch.hub.load_state_dict_from_url``,
which unpickles them with ``torch.load(weights_only=False)`` (encodec does not
pass ``weights_only``): a replaced file runs arbitrary code. Its ``decompress``
also rebuilds a *pretrained* model (a download) from the name in the header, and
``EncodecModel.get_lm_model`` downloads the LM the same way. So here: the files
are fetched only by :func:`pull` (``mpq models pull encodec-24khz``) into the
same torch hub cache (``$TORCH_HOME/hub/checkpoints``; ``$MPQ_ENCODEC_WEIGHTS``
names another folder holding the same file names), checked against the
sha256 prefix in their names, loaded with ``torch.load(weights_only=True)`` into a
model built with ``pretrained=False``, and decoded by our own reader of the
container (the mirror of ``encodec.compress.decompress_from_file``) on that
model. The model's ``get_lm_model`` is replaced with one that returns the safely
loaded LM, so no package code path reaches the unsafe loader. Nothing downloads
at run time; a codec without its files says so in :meth:`weights_missing` and
raises :class:`~mpq_assets.weights.ModelNotAvailableError` -- it never falls back
to random weights. ``from_model`` wraps a model that is already built (tests use
randomly initialised ones).

Batching. ``batch_size`` segments of one length go through the encoder (and the
decoder) together on the device (:func:`encode_frames`, :func:`decode_frames`;
default ``MPQ_CODEC_BATCH``, else 1 on CPU and 8 on a GPU). The 48 kHz model's
1 s segments batch across clips; the 24 kHz model codes a clip as one segment,
so only clips of one length share a batch. The file is bit-packed codes, so a
file a batch wrote decodes alone; batched convolutions differ from single-clip
ones by up to 7e-8 on CPU, which can move a code to its neighbour on a near tie.
With a batch of one the file is byte for byte the package's ``compress`` (tested).
The LM codecs code clip by clip.

Device. Models are cached per (name, device) for the process (``resolve_device``:
cuda > mps > cpu). Without the LM the bitstream is bit-packed codes, so encode and
decode may run on different devices; with the LM the arithmetic coder needs the
same probabilities at both ends: encode and decode on the same device type.
"""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mpq_assets.codecs.audio_av import as_audio
from mpq_assets.codecs.base import Codec, CodecError, Encoded, Item, Modality
from mpq_assets.codecs.batching import shape_batches
from mpq_assets.media.audio import Audio, remix, resample
from mpq_assets.settings import Settings, load_settings
from mpq_assets.weights import ModelNotAvailableError, WeightSource, cached
from mpq_assets.weights.files import download, hash_prefix, matches, verify
from mpq_assets.weights.safe_load import load_checkpoint, state_dict

if TYPE_CHECKING:
    import torch
    from encodec import EncodecModel
    from encodec.model import LMModel

ROOT_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"  # encodec.model.ROOT_URL
WEIGHTS_ENV = "MPQ_ENCODEC_WEIGHTS"  # a folder holding the checkpoints under their own names, instead of the hub cache


@dataclass(frozen=True)
class EncodecSpec:
    """One EnCodec model: where its weights live and what it takes."""

    codec_name: str         # our public name, also the ``mpq models pull`` name
    model_name: str         # encodec's name, written into the ECDC header
    checkpoint: str         # file name under ROOT_URL and in the torch hub checkpoints folder
    lm_checkpoint: str      # the entropy-coding LM's file
    bandwidths: tuple[float, ...]
    sample_rate: int
    channels: int


SPECS: dict[str, EncodecSpec] = {
    "encodec-24khz": EncodecSpec("encodec-24khz", "encodec_24khz", "encodec_24khz-d7cc33bc.th",
                                 "encodec_lm_24khz-1608e3c0.th", (1.5, 3.0, 6.0, 12.0, 24.0), 24_000, 1),
    "encodec-48khz": EncodecSpec("encodec-48khz", "encodec_48khz", "encodec_48khz-7e698e3e.th",
                                 "encodec_lm_48khz-7add9fc3.th", (3.0, 6.0, 12.0, 24.0), 48_000, 2),
}


def _spec(name: str) -> EncodecSpec:
    if name not in SPECS:
        raise KeyError(f"unknown EnCodec model {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


# ------------------------------------------------------------- where weights live

def checkpoint_dir(folder: Path | None = None) -> Path:
    """Where the checkpoints are read: ``folder`` (the settings' ``MPQ_ENCODEC_WEIGHTS``), else the torch hub
    cache encodec downloads into (``$TORCH_HOME/hub/checkpoints``)."""
    import torch.hub

    return Path(folder).expanduser() if folder else Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_paths(name: str, lm: bool = False, folder: Path | None = None) -> list[Path]:
    """Where the checkpoint files of ``name`` (``encodec-24khz`` / ``encodec-48khz``) are expected."""
    spec = _spec(name)
    files = [spec.checkpoint] + ([spec.lm_checkpoint] if lm else [])
    return [checkpoint_dir(folder) / f for f in files]


def checkpoint_urls(name: str, lm: bool = False) -> list[str]:
    spec = _spec(name)
    files = [spec.checkpoint] + ([spec.lm_checkpoint] if lm else [])
    return [ROOT_URL + f for f in files]


def location(name: str, settings: Settings) -> tuple[bool, str]:
    """(model checkpoint present?, the folder it belongs in): the ``mpq models`` listing for ``name``."""
    path = checkpoint_paths(name, folder=settings.encodec_weights)[0]
    return path.is_file(), str(path.parent)


def weight_source(name: str) -> WeightSource:
    """The ``mpq models`` entry of ``name``: Meta's checkpoint URL, checked against the hash in its file name."""
    rate = "24 kHz mono" if name == "encodec-24khz" else "48 kHz stereo"
    return WeightSource(name, "download", f"EnCodec {rate} neural audio codec", "encodec (Meta's download)",
                        locate=lambda settings: location(name, settings),
                        fetch=lambda settings: pull(name, settings.encodec_weights))


def missing_weights(name: str, lm: bool = False, folder: Path | None = None) -> str | None:
    """One line saying which files are missing and how to get them; None if all are there."""
    missing = [p for p in checkpoint_paths(name, lm, folder) if not p.is_file()]
    if not missing:
        return None
    what = "EnCodec 24 kHz" if name == "encodec-24khz" else "EnCodec 48 kHz"
    return (f"{what} weights are not here: {', '.join(map(str, missing))} missing. Run `mpq models pull {name}` "
            f"(needs network; fetches {', '.join(ROOT_URL + p.name for p in missing)}), or copy the file(s) into "
            f"{checkpoint_dir(folder)} (the torch hub cache, $TORCH_HOME/hub/checkpoints, or ${WEIGHTS_ENV}).")


def _load_state(path: Path) -> dict[str, Any]:
    """A checkpoint's state dict, checked against its name's sha256 prefix, unpickled with weights_only=True."""
    verify(path, hash_prefix(path.name), "Run `mpq models pull` again.")
    return state_dict(load_checkpoint(path, "EnCodec checkpoint"), path, nested=())


# ----------------------------------------------------------------------- models

def build_model(name: str) -> EncodecModel:
    """The package's model for ``name`` with random weights (``pretrained=False``), named for the container.

    Built exactly as ``EncodecModel.encodec_model_24khz`` / ``_48khz`` build it, in eval mode. Its RVQ
    codebooks are all zero until weights are loaded (encodec initialises them by k-means in training).
    """
    from encodec import EncodecModel

    spec = _spec(name)
    build = {"encodec_24khz": EncodecModel.encodec_model_24khz,
             "encodec_48khz": EncodecModel.encodec_model_48khz}[spec.model_name]
    with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated; encodec 0.1.1 still uses it
        warnings.simplefilter("ignore", FutureWarning)
        model = build(pretrained=False)
    model.name = spec.model_name
    return model.eval()


def build_lm(model: EncodecModel) -> LMModel:
    """The entropy-coding LM for ``model`` with random weights, shaped as ``get_lm_model`` builds it."""
    from encodec.model import LMModel

    lm = LMModel(model.quantizer.n_q, model.quantizer.bins, num_layers=5, dim=200,
                 past_context=int(3.5 * model.frame_rate))
    return lm.eval()


def attach_lm(model: EncodecModel, get_lm: Callable[[], LMModel]) -> EncodecModel:
    """Replace ``model.get_lm_model`` (an unsafe download) with ``get_lm``; used by ``compress(use_lm=True)``."""
    model.get_lm_model = get_lm  # an instance attribute shadows the method
    return model


def load_model(name: str, folder: Path | None = None) -> EncodecModel:
    """The pretrained model from the torch hub cache (or ``folder``), loaded safely (on CPU);
    ModelNotAvailableError if missing."""
    reason = missing_weights(name, folder=folder)
    if reason:
        raise ModelNotAvailableError(reason)
    model = build_model(name)
    path = checkpoint_paths(name, folder=folder)[0]
    try:
        model.load_state_dict(_load_state(path))
    except RuntimeError as exc:
        raise ModelNotAvailableError(f"{path} does not fit the {name} model: {exc}") from exc
    return model.eval()


def load_lm(name: str, model: EncodecModel, folder: Path | None = None) -> LMModel:
    """The pretrained LM of ``name``, loaded safely onto ``model``'s device."""
    reason = missing_weights(name, lm=True, folder=folder)
    if reason:
        raise ModelNotAvailableError(reason)
    lm = build_lm(model)
    path = checkpoint_paths(name, lm=True, folder=folder)[1]
    try:
        lm.load_state_dict(_load_state(path))
    except RuntimeError as exc:
        raise ModelNotAvailableError(f"{path} does not fit the {name} LM: {exc}") from exc
    return lm.to(next(model.parameters()).device).eval()


def pull(name: str, folder: Path | None = None) -> str:
    """Download ``name``'s model and LM checkpoints (network) into :func:`checkpoint_dir`; returns that folder.

    ``download_url_to_file`` checks the sha256 prefix in the file name before moving the file into place;
    each file is then loaded once with ``weights_only=True`` to check it is a plain state dict.
    """
    paths = checkpoint_paths(name, lm=True, folder=folder)
    for url, path in zip(checkpoint_urls(name, lm=True), paths, strict=True):
        if not matches(path, hash_prefix(path.name)):
            download(url, path, hash_prefix(path.name), f"Or copy {path.name} into {path.parent}.")
        _load_state(path)
    return str(paths[0].parent)


_RUN_LOCK = threading.Lock()  # set_target_bandwidth mutates the shared model: one encode at a time


def _no_lm() -> LMModel:
    raise ModelNotAvailableError("this EnCodec model has no entropy-coding LM (use a codec without -lm)")


def cached_model(name: str, device: torch.device, folder: Path | None = None) -> EncodecModel:
    """The pretrained model of ``name`` on ``device``, loaded once per process (its LM loads on first use)."""
    key = (name, str(device), str(checkpoint_dir(folder)))

    def load() -> EncodecModel:
        model = load_model(name, folder).to(device)
        return attach_lm(model, lambda: cached(("encodec-lm", *key), lambda: load_lm(name, model, folder)))

    return cached(("encodec", *key), load)


# -------------------------------------------------------------------- container

def _segments(model: EncodecModel, length: int) -> list[int]:
    """Frames at the model rate of each coded segment (as ``decompress_from_file`` walks them)."""
    seg = model.segment_length or length
    stride = model.segment_stride or length
    return [min(length - offset, seg) for offset in range(0, length, stride)]


def _steps(model: EncodecModel, segment: int) -> int:
    return int(math.ceil(segment / model.sample_rate * model.frame_rate))  # the package's own expression


def num_codebooks(model: EncodecModel, bandwidth: float) -> int:
    return int(model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth))


def ecdc_size(model: EncodecModel, length: int, bandwidth: float) -> int:
    """Exact size in bytes of the ECDC file (no LM) for ``length`` frames at the model rate.

    header (9 bytes + JSON) + per segment: a float32 scale if the model normalises, and
    ceil(steps x codebooks x 10 bits / 8) bytes of packed codes.
    """
    return _container_size(model, length, num_codebooks(model, bandwidth))


def _container_size(model: EncodecModel, length: int, nc: int) -> int:
    from encodec import binary

    meta = json.dumps({"m": model.name, "al": length, "nc": nc, "lm": False}).encode("utf-8")
    size = binary._encodec_header_struct.size + len(meta)
    for segment in _segments(model, length):
        size += (4 if model.normalize else 0) + math.ceil(_steps(model, segment) * nc * model.bits_per_codebook / 8)
    return size


Frame = tuple["torch.Tensor", "torch.Tensor | None"]  # one segment: codes (1, K, T) and its scale (1,) or None


def _read_header(fo: io.BytesIO, size: int, model: EncodecModel, codec: str) -> tuple[int, int, bool]:
    """The checked (length, codebooks, uses the LM) of an ECDC header; a file without the LM must be exactly the
    ``size`` its header implies."""
    from encodec import binary

    try:
        meta = binary.read_ecdc_header(fo)
    except (ValueError, EOFError, struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"{codec}: not an ECDC bitstream: {exc}") from exc
    if not isinstance(meta, dict):
        raise CodecError(f"{codec}: ECDC header is not a JSON object")
    name, length, nc, use_lm = meta.get("m"), meta.get("al"), meta.get("nc"), meta.get("lm")
    if name != model.name:
        raise CodecError(f"{codec}: the bitstream was written by {name!r}; this codec decodes {model.name!r}")
    if not isinstance(length, int) or length <= 0 or not isinstance(nc, int) or not 1 <= nc <= model.quantizer.n_q:
        raise CodecError(f"{codec}: invalid ECDC header {meta}")
    if not use_lm:
        expected = _container_size(model, length, nc)
        if size != expected:
            raise CodecError(f"{codec}: bitstream is {size} bytes, its header implies {expected} "
                             "(truncated or corrupt)")
    return length, nc, bool(use_lm)


def _pulled(code: int | None) -> int:
    """A code pulled from the stream; ``None`` means the stream ran out."""
    if code is None:
        raise EOFError("the stream ended sooner than expected")
    return code


def _read_packed_codes(fo: io.BytesIO, bits: int, nc: int, steps: int) -> torch.Tensor:
    """A segment's codes (1, nc, steps) stored as packed ``bits``-bit integers, step by step."""
    import torch
    from encodec import binary

    unpacker = binary.BitUnpacker(bits, fo)
    codes = torch.zeros(1, nc, steps, dtype=torch.long)  # filled code by code on the CPU, then moved once
    for t in range(steps):
        for k in range(nc):
            codes[0, k, t] = _pulled(unpacker.pull())
    return codes


def _read_lm_codes(fo: io.BytesIO, lm: LMModel, nc: int, steps: int, device: torch.device) -> torch.Tensor:
    """A segment's codes (1, nc, steps) arithmetic-decoded with the LM's probabilities, step by step."""
    import torch
    from encodec.quantization.ac import ArithmeticDecoder, build_stable_quantized_cdf

    decoder = ArithmeticDecoder(fo)
    states: Any = None
    offset = 0
    prev = torch.zeros(1, nc, 1, dtype=torch.long, device=device)
    codes = torch.zeros(1, nc, steps, dtype=torch.long)  # filled code by code on the CPU, then moved once
    for t in range(steps):
        with torch.no_grad():
            probas, states, offset = lm(prev, states, offset)
        for k in range(nc):
            cdf = build_stable_quantized_cdf(probas[0, :, k, 0], decoder.total_range_bits, check=False)
            codes[0, k, t] = _pulled(decoder.pull(cdf))
        prev = 1 + codes[:, :, t:t + 1].to(device)
    return codes


def _read_segment(fo: io.BytesIO, model: EncodecModel, lm: LMModel | None, nc: int, steps: int,
                  device: torch.device) -> Frame:
    """One segment of an ECDC file: its scale (if the model normalises), then its codes, on ``device``."""
    import torch
    from encodec import binary

    scale = None
    if model.normalize:
        (value,) = struct.unpack("!f", binary._read_exactly(fo, 4))
        scale = torch.tensor(value, device=device).view(1)
    if lm is not None:
        codes = _read_lm_codes(fo, lm, nc, steps, device)
    else:
        codes = _read_packed_codes(fo, model.bits_per_codebook, nc, steps)
    return codes.to(device), scale


def read_frames(data: bytes, model: EncodecModel, codec: str) -> tuple[int, list[Frame]]:
    """Parse an ECDC file for ``model``: (length at the model rate, the segments' codes and scales)."""
    fo = io.BytesIO(data)
    length, nc, use_lm = _read_header(fo, len(data), model, codec)
    lm = model.get_lm_model() if use_lm else None
    device = next(model.parameters()).device
    frames = []
    try:
        for segment in _segments(model, length):
            frames.append(_read_segment(fo, model, lm, nc, _steps(model, segment), device))
    except (EOFError, struct.error) as exc:
        raise CodecError(f"{codec}: cannot decode bitstream: {exc}") from exc
    return length, frames


def decode_frames(model: EncodecModel, files: Sequence[tuple[int, Sequence[Frame]]], batch_size: int
                  ) -> list[torch.Tensor]:
    """Waveforms (C, length) of parsed files: segments of one shape share the decoder's batches, then each
    file's segments are overlap-added as ``EncodecModel.decode`` does (exactly it, with a batch of one)."""
    import torch
    from encodec.utils import _linear_overlap_add

    from mpq_assets.device import exact_convolutions

    segments = [(f, k) for f, (_, frames) in enumerate(files) for k in range(len(frames))]
    decoded: dict[tuple[int, int], torch.Tensor] = {}
    shapes = [tuple(files[f][1][k][0].shape) for f, k in segments]
    with torch.no_grad(), exact_convolutions():
        for group in shape_batches(shapes, batch_size):
            members = [segments[i] for i in group]
            codes = torch.cat([files[f][1][k][0] for f, k in members])
            scales = [files[f][1][k][1] for f, k in members]
            scale = None if scales[0] is None else torch.cat(scales)  # type: ignore[arg-type]
            out = model._decode_frame((codes, scale))
            for j, key in enumerate(members):
                decoded[key] = out[j:j + 1]
    waves = []
    for f, (length, frames) in enumerate(files):
        parts = [decoded[(f, k)] for k in range(len(frames))]
        wav = parts[0] if model.segment_length is None else _linear_overlap_add(parts, model.segment_stride or 1)
        waves.append(wav[0, :, :length])
    return waves


def encode_frames(model: EncodecModel, wavs: Sequence[torch.Tensor], bandwidth: float, batch_size: int
                  ) -> list[list[Frame]]:
    """``EncodecModel.encode`` of each waveform (C, T) at ``bandwidth``: the segments of one length share the
    encoder's batches (with a batch of one, exactly ``model.encode``). Residual codebooks are coded in
    order, so the codes of a lower bandwidth are the first codebooks of these (:func:`pack_ecdc`)."""
    import torch

    from mpq_assets.device import exact_convolutions

    segments = []  # (clip, segment index, samples)
    for w, wav in enumerate(wavs):
        length = wav.shape[-1]
        seg = model.segment_length or length
        stride = model.segment_stride or length
        segments += [(w, k, wav[:, offset:offset + seg]) for k, offset in enumerate(range(0, length, stride))]
    counts = Counter(w for w, *_ in segments)
    frames: list[list[Frame | None]] = [[None] * counts[w] for w in range(len(wavs))]
    device = next(model.parameters()).device
    with _RUN_LOCK, torch.no_grad(), exact_convolutions():  # set_target_bandwidth mutates the shared model
        model.set_target_bandwidth(bandwidth)
        for group in shape_batches([tuple(x.shape) for *_, x in segments], batch_size):
            codes, scale = model._encode_frame(torch.stack([segments[i][2] for i in group]).to(device))
            for j, i in enumerate(group):
                w, k, _ = segments[i]
                frames[w][k] = (codes[j:j + 1], None if scale is None else scale[j].view(1))
    return frames  # type: ignore[return-value]


def pack_ecdc(model: EncodecModel, length: int, frames: Sequence[Frame], nc: int) -> bytes:
    """The ECDC file (no LM) of the first ``nc`` codebooks of ``frames``: byte for byte what
    ``encodec.compress.compress(model, wav, use_lm=False)`` writes at the bandwidth of ``nc`` codebooks."""
    from encodec import binary

    fo = io.BytesIO()
    binary.write_ecdc_header(fo, {"m": model.name, "al": length, "nc": nc, "lm": False})
    for codes, scale in frames:
        if codes.shape[1] < nc:
            raise ValueError(f"frames hold {codes.shape[1]} codebooks, {nc} asked for")
        if scale is not None:
            fo.write(struct.pack("!f", scale.cpu().item()))
        packer = binary.BitPacker(model.bits_per_codebook, fo)
        for value in codes[0, :nc].t().reshape(-1).tolist():  # time-major: every codebook of step t, then t + 1
            packer.push(value)
        packer.flush()
    return fo.getvalue()


# ------------------------------------------------------------------------ codecs

class _Encodec(Codec):
    """An EnCodec model as an MPQ codec; the setting is the bandwidth in kbps."""

    modality: ClassVar[Modality] = "audio"
    extension: ClassVar[str] = ".ecdc"
    model_key: ClassVar[str]
    use_lm: ClassVar[bool] = False

    def __init__(self, device: str | None = None, batch_size: int | None = None,
                 settings: Settings | None = None) -> None:
        """``batch_size``: segments per batched encoder / decoder call (default: by device, module docstring).
        ``settings``: the deployment's (the step's); without them, the environment's."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.settings = settings or load_settings()
        self._device_name = device or self.settings.device
        self._batch_size = batch_size
        self._model: EncodecModel | None = None

    @classmethod
    def from_model(cls, model: EncodecModel, lm: LMModel | None = None, batch_size: int | None = None) -> _Encodec:
        """Wrap a model that is already built (e.g. :func:`build_model`), on its own device; ``lm`` for ``-lm``."""
        spec = _spec(cls.model_key)
        if (model.sample_rate, model.channels) != (spec.sample_rate, spec.channels):
            raise ValueError(f"{cls.name} needs a {spec.sample_rate} Hz, {spec.channels}-channel EnCodec model, "
                             f"got {model.sample_rate} Hz, {model.channels} channel(s)")
        if model.name not in (spec.model_name, "unset"):
            raise ValueError(f"{cls.name} needs the {spec.model_name} model, got {model.name!r}")
        model.name = spec.model_name  # the container only accepts encodec's model names
        attach_lm(model, (lambda: lm) if lm is not None else _no_lm)
        codec = cls(batch_size=batch_size)
        codec._model = model.eval()
        return codec

    @property
    def batch_size(self) -> int:
        if self._batch_size is not None:
            return self._batch_size
        from mpq_assets.device import codec_batch_size, parse_codec_batch, resolve_device

        chosen = parse_codec_batch(self.settings.codec_batch)
        if self._model is not None:
            return codec_batch_size(next(self._model.parameters()).device, chosen)
        return codec_batch_size(resolve_device(self._device_name), chosen)

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return self.batch_size > 1 and not self.use_lm  # the LM codes clip by clip

    requires = ("encodec", "torchaudio")

    def weights_missing(self) -> str | None:
        if self._model is not None:
            return None
        return missing_weights(self.model_key, lm=self.use_lm, folder=self.settings.encodec_weights)

    def model(self) -> EncodecModel:
        """The model (loaded once per process and device); ModelNotAvailableError without its weights."""
        if self._model is None:
            from mpq_assets.device import resolve_device

            reason = self.weights_missing()
            if reason:
                raise ModelNotAvailableError(reason)
            self._model = cached_model(self.model_key, resolve_device(self._device_name),
                                       self.settings.encodec_weights)
        return self._model

    # -- audio <-> model format

    def check(self, item: Item) -> None:
        self._check(item)

    def _check(self, item: Item) -> Audio:
        audio = as_audio(item, self.name)
        spec = _spec(self.model_key)
        if spec.channels == 2 and audio.channels > 2:
            raise CodecError(f"{self.name} codes 1 or 2 channels, item has {audio.channels}")
        return audio

    def _to_model(self, audio: Audio, model: EncodecModel) -> torch.Tensor:
        import torch

        if audio.channels > model.channels:  # down-mix first: resample fewer channels
            audio = resample(remix(audio, model.channels), model.sample_rate)
        else:
            audio = remix(resample(audio, model.sample_rate), model.channels)
        device = next(model.parameters()).device
        return torch.from_numpy(np.ascontiguousarray(audio.samples, dtype=np.float32)).to(device)

    def _from_model(self, wav: torch.Tensor, rate: int, like: Audio) -> Audio:
        decoded = Audio(wav.detach().float().cpu().numpy(), rate)
        if decoded.channels > like.channels:
            decoded = resample(remix(decoded, like.channels), like.sample_rate)
        else:
            decoded = remix(resample(decoded, like.sample_rate), like.channels)
        out = np.zeros((like.channels, like.frames), dtype=np.float32)
        n = min(like.frames, decoded.frames)
        out[:, :n] = np.clip(decoded.samples[:, :n], -1.0, 1.0)
        return Audio(out, like.sample_rate)

    # -- the codec interface

    def ladder(self, item: Item) -> list[float]:
        self._check(item)
        return list(_spec(self.model_key).bandwidths)

    def _bandwidth(self, setting: Any) -> float:
        bandwidth = float(setting)
        if bandwidth not in _spec(self.model_key).bandwidths:
            raise CodecError(f"{self.name}: no bandwidth {setting!r}; choose one of {_spec(self.model_key).bandwidths}")
        return bandwidth

    def encode(self, item: Item, setting: Any) -> bytes:
        return self.encode_batch([item], setting)[0]

    def encode_batch(self, items: Sequence[Item], setting: Any) -> list[bytes]:
        """One ECDC file per clip at bandwidth ``setting``; segments of one length share the encoder's batches."""
        audios = [self._check(item) for item in items]
        bandwidth = self._bandwidth(setting)
        model = self.model()
        wavs = [self._to_model(audio, model) for audio in audios]
        if self.use_lm:
            from encodec.compress import compress

            files = []
            for wav in wavs:
                with _RUN_LOCK:
                    model.set_target_bandwidth(bandwidth)
                    files.append(compress(model, wav, use_lm=True))
        else:
            nc = num_codebooks(model, bandwidth)
            frames = encode_frames(model, wavs, bandwidth, self.batch_size)
            files = [pack_ecdc(model, wav.shape[-1], f, nc) for wav, f in zip(wavs, frames, strict=True)]
        if not all(files):
            raise CodecError(f"{self.name} failed at {self.label(setting)}: encoder wrote no bytes")
        return files

    def decode(self, data: bytes, like: Item) -> Audio:
        return self.decode_batch([data], [like])[0]

    def decode_batch(self, data: Sequence[bytes], like: Sequence[Item]) -> list[Audio]:
        """Decode several files; segments of one shape share the decoder's batches."""
        for item, d in zip(like, data, strict=True):
            if not isinstance(item, Audio):
                raise CodecError(f"{self.name} decodes audio, got like={type(item).__name__}")
            if not d:
                raise CodecError(f"{self.name}: cannot decode an empty bitstream")
        model = self.model()
        parsed = [read_frames(d, model, self.name) for d in data]
        waves = decode_frames(model, parsed, self.batch_size)
        return [self._from_model(wav, model.sample_rate, item) for wav, item in zip(waves, like, strict=True)]

    def label(self, setting: Any) -> str:
        return f"{float(setting):g}kbps" + ("+lm" if self.use_lm else "")

    def expected_size(self, item: Item, setting: Any) -> int:
        """The exact size of ``encode(item, setting)`` without the LM (from the duration at the model rate)."""
        audio = as_audio(item, self.name)
        model = self.model()
        # the frame count ``resample`` (scipy's resample_poly) gives: ceil(frames * up / down)
        g = math.gcd(model.sample_rate, audio.sample_rate)
        up, down = model.sample_rate // g, audio.sample_rate // g
        length = -(-audio.frames * up // down)
        return ecdc_size(model, length, self._bandwidth(setting))

    def encode_to_budgets(self, item: Item, budgets: Sequence[int]) -> list[Encoded]:
        """:meth:`encode_to_budget` for several budgets of one item, from one pass of the encoder."""
        return self.encode_to_budgets_batch([item], [budgets])[0]

    def encode_to_budget(self, item: Item, budget_bytes: int) -> Encoded:
        """Without the LM: the largest bandwidth whose exact size fits; the bytes written are checked."""
        return self.encode_to_budgets(item, [budget_bytes])[0]

    def encode_to_budgets_batch(self, items: Sequence[Item], budgets: Sequence[Sequence[int]]) -> list[list[Encoded]]:
        """Every budget of every clip without the LM: each budget gets the largest bandwidth whose exact size
        (:meth:`expected_size`) fits, and every clip goes through the encoder once, at the highest bandwidth
        any of them needs; lower bandwidths are the first codebooks of those codes (byte for byte their own
        encodes). The bytes written are checked against the expected sizes."""
        import time

        self.model()  # missing weights raise ModelNotAvailableError here, not wrapped into a CodecError
        if self.use_lm:
            from mpq_assets.codecs.rate_control import fit_ladder_many

            return [fit_ladder_many(self, item, b) for item, b in zip(items, budgets, strict=True)]
        if not items:
            return []
        model = self.model()
        ladder = list(_spec(self.model_key).bandwidths)
        picks = []  # per clip: the rung each budget picks
        for item, item_budgets in zip(items, budgets, strict=True):
            sizes = [self.expected_size(item, bw) for bw in self.ladder(item)]
            picks.append([max((i for i, size in enumerate(sizes) if size <= b), default=0) for b in item_budgets])
        out: list[list[Encoded] | None] = [None] * len(items)
        for top in sorted({max(p, default=0) for p in picks}):  # clips that need the same top bandwidth together
            members = [i for i, p in enumerate(picks) if max(p, default=0) == top]
            t0 = time.perf_counter()
            wavs = [self._to_model(self._check(items[i]), model) for i in members]
            frames = encode_frames(model, wavs, ladder[top], self.batch_size)
            files: list[dict[int, bytes]] = []
            for i, wav, clip in zip(members, wavs, frames, strict=True):
                files.append({r: pack_ecdc(model, wav.shape[-1], clip, num_codebooks(model, ladder[r]))
                              for r in set(picks[i])})
            each = (time.perf_counter() - t0) / len(members)
            for i, clip_files in zip(members, files, strict=True):
                answers = []
                for k, (budget, rung) in enumerate(zip(budgets[i], picks[i], strict=True)):
                    data, expected = clip_files[rung], self.expected_size(items[i], ladder[rung])
                    if len(data) != expected:
                        raise CodecError(f"{self.name} at {self.label(ladder[rung])}: wrote {len(data)} bytes, "
                                         f"the ECDC layout gives {expected}")
                    answers.append(Encoded(data, self.label(ladder[rung]), len(data) <= budget, int(k == 0),
                                           each if k == 0 else 0.0))
                out[i] = answers
        return out  # type: ignore[return-value]


class Encodec24(_Encodec):
    """EnCodec 24 kHz (causal, mono), 1.5-24 kbps; stereo items are down-mixed and the decode duplicated."""

    name: ClassVar[str] = "encodec-24khz"
    description: ClassVar[str] = "EnCodec 24 kHz mono, 1.5/3/6/12/24 kbps, ECDC container (no LM)"
    model_key: ClassVar[str] = "encodec-24khz"
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (weight_source("encodec-24khz"),)


class Encodec48(_Encodec):
    """EnCodec 48 kHz (non-causal, stereo, 1 s segments), 3-24 kbps; mono items are duplicated."""

    name: ClassVar[str] = "encodec-48khz"
    description: ClassVar[str] = "EnCodec 48 kHz stereo, 3/6/12/24 kbps, ECDC container (no LM)"
    model_key: ClassVar[str] = "encodec-48khz"
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (weight_source("encodec-48khz"),)


class Encodec24Lm(Encodec24):
    """EnCodec 24 kHz with the entropy-coding LM (the package reports 20-30 % smaller files; slow on CPU)."""

    name: ClassVar[str] = "encodec-24khz-lm"
    description: ClassVar[str] = "EnCodec 24 kHz mono, 1.5-24 kbps + arithmetic coding with the EnCodec LM"
    use_lm: ClassVar[bool] = True


class Encodec48Lm(Encodec48):
    """EnCodec 48 kHz with the entropy-coding LM."""

    name: ClassVar[str] = "encodec-48khz-lm"
    description: ClassVar[str] = "EnCodec 48 kHz stereo, 3-24 kbps + arithmetic coding with the EnCodec LM"
    use_lm: ClassVar[bool] = True

