"""Learned image codecs from CompressAI: MBT2018 (the paper's) and Cheng2020-anchor.

Both are CompressAI's MSE-optimised models, one network per quality index
(``mbt2018``: 1-8, ``cheng2020-anchor``: 1-6). Rate control picks the highest
quality whose *written file* fits the item's byte budget (docs/codecs.md, "Rate
control"); the rate is the container's total size, header included, never the
model's likelihood estimate.

Weights
    The public checkpoints of ``compressai.zoo`` (one file per quality; the
    table is ``compressai.zoo.image.model_urls``). They are read from the torch
    hub cache, ``$TORCH_HOME/hub/checkpoints/<file name of the zoo URL>``, or
    from a folder holding the same file names (constructor ``weights_dir=`` or
    ``MPQ_COMPRESSAI_WEIGHTS=/dir``). ``mpq models pull mbt2018`` downloads all
    qualities into the hub cache (:func:`pull`); where the cache is empty and
    ``MPQ_OFFLINE`` is off, encoding downloads the one quality it needs. The
    zoo's own ``pretrained=True`` path calls ``torch.hub.load_state_dict_from_url``
    with its default ``weights_only=False`` (an unrestricted pickle load), so we
    never call it: we download with ``torch.hub.download_url_to_file`` checking
    the SHA-256 prefix in the file name, and load with
    ``torch.load(path, map_location="cpu", weights_only=True)``. The CDF tables
    stored in the checkpoint are kept (``update()`` only fills missing ones), so
    every machine codes with the same tables. The default constructor only ever
    uses those real weights; random weights enter through :meth:`from_model`
    only (tests). :meth:`NeuralImageCodec.weights_missing` names the files to
    place and the command that fetches them.

Container (``.mpqc``)
    CompressAI's ``compress`` gives entropy-coded strings and a latent shape,
    not a file, so we wrap them in the ``.mpqc`` container of
    :mod:`mpq_assets.codecs.container` (the format shared with HiFiC; files of
    its older layout still decode): codec name, quality (as text), the device
    type that ran the entropy model, the original height and width (before
    padding), the latent shape (CompressAI's ``shape``: the hyper-latent H, W)
    and the strings (y, then z). The header is about 30 bytes (32 for
    ``mbt2018`` on a 512x768 image) and counts toward the rate. A user decodes a
    file with :func:`decode_file` (or ``Mbt2018().decode(data, like=None)``); it
    needs the same weights, on any device (the entropy path runs on the CPU:
    below).

Padding
    The models need sides that are multiples of 64 (four stride-2 analysis
    layers, then two in the hyperprior), so the image is padded at the bottom
    and right by repeating its edge pixels ("replicate": a smooth continuation
    costs fewer bits than a black border) and the decode is cropped back to
    H x W. Any size works, 1x1 included (it codes a 64x64 block).

Devices and determinism
    CompressAI's entropy coder only decodes what it encoded when the very same
    probability tables are computed on both sides (GPU vs CPU float differences
    pick different CDFs: NaN PSNR or black blocks, CompressAI issues #54 and
    #320). So the entropy path -- the hyper-analysis, the coding of z, the
    hyper-synthesis and the autoregressive loop -- always runs on the CPU, one
    image at a time, at both ends; only the transforms ``g_a`` and ``g_s`` run on
    :func:`~mpq_assets.device.resolve_device` (``MPQ_DEVICE``), see
    :mod:`mpq_assets.codecs.compressai_batch`. A file encoded on a GPU machine
    therefore decodes on a CPU-only one (same CompressAI and torch builds, same
    kind of CPU: see that module for the last-bit caveat). The
    container records the device type of the entropy path ("cpu"); a file that
    says otherwise raises :class:`CodecError` (``on_device_mismatch="warn"``
    decodes anyway with a warning).

Speed
    Both models are autoregressive (a masked-convolution context model): the
    latent is coded one position at a time, which CompressAI runs sequentially
    and recommends on CPU. Measured through this codec on one 256x256 image, CPU
    (x86_64 AVX-512, torch 2.14, ``torch.set_num_threads(1)``, a shared 2-core
    machine, best of 3, real architectures with random weights): mbt2018 encode
    0.6-1.1 s, decode 1.2-2.3 s (q1 and q8 alike); cheng2020-anchor encode
    0.45-1.5 s, decode 1.0-2.2 s (q1 fastest, q6 slowest). The per-position
    convolutions are tiny, so extra threads do not help: with 2 threads on the
    loaded machine the same calls took 2-8x longer (up to 8 s encode, 13 s
    decode). Time grows with the pixel count (H/16 x W/16 sequential steps).
    Rate control encodes the lowest quality, then from the highest down to the
    first that fits: at most one encode per quality, shared by all the target
    ratios of an item (``encode_to_budgets``).

Batching across items
    ``batch_size`` images of one padded size go through ``g_a`` (encode) and
    ``g_s`` (decode) together on the device; the entropy path stays per image on
    the CPU, so every file decodes on its own whatever batch wrote it. Default
    ``MPQ_CODEC_BATCH``, else 1 on CPU and 8 on a GPU: on CPU a batch is no
    faster, and with one image at a time a file is bit for bit what CompressAI's
    ``model.compress`` gives for that image alone. Batched convolutions differ
    from single-image ones by up to ~4e-8 (measured on CPU, torch 2.14 / oneDNN),
    so in a batch a latent that close to a rounding boundary can round the other
    way (another valid file of about the same size) and a decoded pixel can move
    one level. The rate search runs for a batch in lockstep
    (:meth:`NeuralImageCodec.encode_to_budgets_batch`): one batched encode per
    quality for all the images that still need it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from mpq_assets.codecs.base import Codec, CodecError, Encoded, Modality
from mpq_assets.codecs.container import Container, pack, unpack
from mpq_assets.settings import Settings, load_settings
from mpq_assets.weights import ModelNotAvailableError, WeightSource, cached
from mpq_assets.weights.files import download, hash_prefix, matches, verify
from mpq_assets.weights.safe_load import load_checkpoint as load_checkpoint_file
from mpq_assets.weights.safe_load import state_dict

log = logging.getLogger(__name__)

WEIGHTS_ENV = "MPQ_COMPRESSAI_WEIGHTS"
METRIC = "mse"
PAD_MULTIPLE = 64
# our codec name -> (CompressAI zoo architecture, qualities)
ARCHITECTURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "mbt2018": ("mbt2018", tuple(range(1, 9))),
    "cheng2020-anchor": ("cheng2020-anchor", tuple(range(1, 7))),
}



# --------------------------------------------------------------------------- weights


def _arch(name: str) -> tuple[str, tuple[int, ...]]:
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown CompressAI codec {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def checkpoint_url(name: str, quality: int) -> str:
    """The zoo's download URL for one quality of ``name`` (``compressai.zoo.image.model_urls``)."""
    from compressai.zoo.image import model_urls

    arch, qualities = _arch(name)
    if quality not in qualities:
        raise KeyError(f"{name} has no quality {quality}; qualities: {qualities[0]}-{qualities[-1]}")
    return model_urls[arch][METRIC][quality]


def checkpoint_filename(name: str, quality: int) -> str:
    """The checkpoint's file name, as torch hub stores it (the URL's last part)."""
    return checkpoint_url(name, quality).rsplit("/", 1)[-1]


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where ``torch.hub`` (and so CompressAI's zoo) caches checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The folder checkpoints are read from: ``override`` (a codec's folder, ``MPQ_COMPRESSAI_WEIGHTS``), else
    the hub cache."""
    return Path(override).expanduser() if override else hub_checkpoint_dir()


def checkpoint_paths(name: str, directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where every quality's checkpoint of ``name`` is expected (for ``mpq models``)."""
    folder = weights_dir(directory)
    return [folder / checkpoint_filename(name, q) for q in _arch(name)[1]]


def location(name: str, settings: Settings) -> tuple[bool, str]:
    """(all checkpoints present?, the folder they belong in): the ``mpq models`` listing for ``name``."""
    paths = checkpoint_paths(name, settings.compressai_weights)
    return all(p.is_file() for p in paths), str(paths[0].parent)


def _how_to_get(name: str, folder: Path) -> str:
    return (f"Run `mpq models pull {name}` on a machine with network access and copy the files into {folder} "
            f"here (the torch hub cache, $TORCH_HOME/hub/checkpoints), or set {WEIGHTS_ENV} to a folder holding "
            "them under the same names.")


def _download(name: str, quality: int, target: Path) -> None:
    download(checkpoint_url(name, quality), target, hash_prefix(target.name), _how_to_get(name, target.parent))


def pull(name: str, directory: str | os.PathLike[str] | None = None) -> str:
    """Download (or verify) every quality of ``name`` into the hub cache; for ``mpq models pull``."""
    paths = checkpoint_paths(name, directory)
    for quality, path in zip(_arch(name)[1], paths, strict=True):
        if not matches(path, hash_prefix(path.name)):
            _download(name, quality, path)
    return str(paths[0].parent)


def weight_source(name: str) -> WeightSource:
    """The ``mpq models`` entry of ``name``: every quality's zoo checkpoint, checked against its file name's hash."""
    paper = " (the paper's MBT2018)" if name == "mbt2018" else ""
    use = f"learned image codec{paper}, {len(_arch(name)[1])} qualities"
    return WeightSource(name, "download", use, "compressai zoo", locate=lambda settings: location(name, settings),
                        fetch=lambda settings: pull(name, settings.compressai_weights))


def load_checkpoint(name: str, quality: int, path: Path) -> Any:
    """A CompressAI model from a zoo checkpoint, read with ``weights_only=True``, in eval mode on CPU."""
    from compressai.zoo import load_state_dict as rename_keys
    from compressai.zoo.image import model_architectures

    verify(path, hash_prefix(path.name), _how_to_get(name, path.parent))
    checkpoint = state_dict(load_checkpoint_file(path, "CompressAI checkpoint"), path, nested=("state_dict", "network"))
    arch = _arch(name)[0]
    try:
        model = model_architectures[arch].from_state_dict(rename_keys(checkpoint))
    except (KeyError, RuntimeError) as exc:
        raise ModelNotAvailableError(f"{path} is not a {arch} checkpoint: {exc}") from exc
    model.eval()
    model.update()  # fills CDF tables only where the checkpoint lacks them; stored ones are kept
    return model


def _cached_model(name: str, quality: int, folder: Path, device: Any, offline: bool) -> Any:
    """The process-wide model for (name, quality, device, folder), loaded (or downloaded) once."""
    path = folder / checkpoint_filename(name, quality)

    def load() -> Any:
        if not path.is_file():
            if folder != hub_checkpoint_dir() or offline:
                why = "downloads are off (MPQ_OFFLINE)" if folder == hub_checkpoint_dir() else f"{WEIGHTS_ENV} is set"
                raise ModelNotAvailableError(
                    f"{name} q={quality}: the checkpoint {path} is missing and {why}.\n{_how_to_get(name, folder)}")
            _download(name, quality, path)
        return load_checkpoint(name, quality, path).to(device)

    return cached(("compressai", name, quality, str(device), str(path)), load)


# --------------------------------------------------------------------------- codecs


def _padded(n: int) -> int:
    return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE


def _latent_shape(height: int, width: int) -> tuple[int, int]:
    """CompressAI's ``shape`` (the hyper-latent size) for an image padded to multiples of 64."""
    return _padded(height) // PAD_MULTIPLE, _padded(width) // PAD_MULTIPLE


class NeuralImageCodec(Codec):
    """A CompressAI architecture with one model per quality; subclasses set ``name`` (a key of ARCHITECTURES)."""

    modality: ClassVar[Modality] = "image"
    extension: ClassVar[str] = ".mpqc"

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None, device: Any = None,
                 on_device_mismatch: Literal["error", "warn"] = "error", batch_size: int | None = None,
                 settings: Settings | None = None) -> None:
        """Real weights from ``weights_dir`` (default: the settings' ``MPQ_COMPRESSAI_WEIGHTS``, else the torch
        hub cache).

        ``batch_size``: images per batched ``g_a`` / ``g_s`` call (default ``MPQ_CODEC_BATCH``, else 1 on CPU
        and 8 on a GPU; module docstring, "Batching"). ``settings``: the deployment's (the step's); without
        them, the environment's.
        """
        self.settings = settings or load_settings()
        chosen = weights_dir or self.settings.compressai_weights
        self._weights_dir = Path(chosen).expanduser() if chosen else None
        self._device = device
        self._models: dict[int, Any] | None = None  # set by from_model only
        if on_device_mismatch not in ("error", "warn"):
            raise ValueError(f"on_device_mismatch must be 'error' or 'warn', got {on_device_mismatch!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.on_device_mismatch = on_device_mismatch
        self._batch_size = batch_size

    @classmethod
    def from_model(cls, models: Mapping[int, Any] | Any, quality: int | None = None, device: Any = None,
                   on_device_mismatch: Literal["error", "warn"] = "error",
                   batch_size: int | None = None) -> NeuralImageCodec:
        """Wrap already-built CompressAI models: ``{quality: model}``, or one model and its ``quality``.

        The ladder is the given qualities. Models are put in eval mode, get CDF
        tables if they have none (``update()``) and move to ``device`` (default
        ``MPQ_DEVICE``). Tests use this with random weights; results from such a
        codec must never be mixed with the real one's.
        """
        from compressai.zoo.image import model_architectures

        if not isinstance(models, Mapping):
            if quality is None:
                raise ValueError("from_model(model) needs the quality it stands for: from_model(model, quality=q)")
            models = {quality: models}
        if not models:
            raise ValueError("from_model needs at least one model")
        arch_cls = model_architectures[_arch(cls.name)[0]]
        codec = cls(device=device, on_device_mismatch=on_device_mismatch, batch_size=batch_size)
        dev = codec.device
        table = {}
        for q, model in sorted(models.items()):
            if not isinstance(q, int) or not 0 < q < 256:
                raise ValueError(f"quality must be an int in 1..255, got {q!r}")
            if not isinstance(model, arch_cls):
                raise TypeError(f"{cls.name} wraps {arch_cls.__name__} models, got {type(model).__name__} for q={q}")
            model.eval()
            model.update()
            table[q] = model.to(dev)
        codec._models = table
        return codec

    requires = ("compressai",)

    @property
    def device(self) -> Any:
        from mpq_assets.device import resolve_device

        return resolve_device(self.settings.device if self._device is None else str(self._device))

    @property
    def batch_size(self) -> int:
        from mpq_assets.device import codec_batch_size, parse_codec_batch

        if self._batch_size is not None:
            return self._batch_size
        return codec_batch_size(self.device, parse_codec_batch(self.settings.codec_batch))

    @property
    def batched(self) -> bool:  # type: ignore[override]
        return self.batch_size > 1

    @property
    def qualities(self) -> tuple[int, ...]:
        return tuple(self._models) if self._models is not None else _arch(self.name)[1]

    @property
    def folder(self) -> Path:
        return weights_dir(self._weights_dir)

    def weights_missing(self, qualities: Sequence[int] | None = None) -> str | None:
        """What is missing of the checkpoints of ``qualities`` (default: every quality the ladder uses)."""
        if self._models is not None:
            return None
        folder = self.folder
        wanted = set(qualities) if qualities is not None else set(_arch(self.name)[1])
        missing = [folder / checkpoint_filename(self.name, q) for q in _arch(self.name)[1] if q in wanted]
        missing = [p.name for p in missing if not p.is_file()]
        if not missing:
            return None
        return (f"{self.name} needs CompressAI's pretrained checkpoints, not found in {folder}: missing "
                f"{', '.join(missing)} (e.g. {folder / missing[0]}). {_how_to_get(self.name, folder)}")

    def model(self, quality: int) -> Any:
        """The model for one quality (loaded once per process; raises ModelNotAvailableError if absent)."""
        if quality not in self.qualities:
            raise CodecError(f"{self.name} has no quality {quality}; qualities: {list(self.qualities)}")
        if self._models is not None:
            return self._models[quality]
        return _cached_model(self.name, quality, self.folder, self.device, self.settings.offline)

    def ladder(self, item: np.ndarray) -> Sequence[int]:
        return list(self.qualities)

    def label(self, setting: Any) -> str:
        return f"q={setting}"

    def check(self, item: np.ndarray) -> None:
        if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3:
            what = f"{item.dtype} array of shape {item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
            raise CodecError(f"{self.name} encodes RGB uint8 arrays (H, W, 3), got a {what}")
        if item.shape[0] < 1 or item.shape[1] < 1:
            raise CodecError(f"{self.name}: empty image of shape {item.shape}")

    def _padded_tensor(self, item: np.ndarray) -> Any:
        """(3, H', W') float in [0, 1], padded at the bottom and right to multiples of 64 (edge pixels)."""
        import torch

        self.check(item)
        h, w = item.shape[:2]
        padded = np.pad(item, ((0, _padded(h) - h), (0, _padded(w) - w), (0, 0)), mode="edge")
        return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float() / 255.0

    def encode(self, item: np.ndarray, setting: Any) -> bytes:
        return self.encode_batch([item], setting)[0]

    def encode_batch(self, items: Sequence[np.ndarray], setting: Any) -> list[bytes]:
        """One file per image at quality ``setting``; same-size images share the device batches of ``g_a``."""
        from mpq_assets.codecs.compressai_batch import ENTROPY_DEVICE, compress_batch

        quality = int(setting)
        tensors = [self._padded_tensor(item) for item in items]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Inference on GPU is not recommended")
            outs = compress_batch(self.model(quality), tensors, self.batch_size)
        files = []
        for item, out in zip(items, outs, strict=True):
            strings = []
            for group in out["strings"]:
                if len(group) != 1:
                    raise CodecError(f"{self.name}: expected one string per group for one image, got {len(group)}")
                strings.append(bytes(group[0]))
            shape = tuple(int(s) for s in out["shape"])
            h, w = item.shape[:2]
            files.append(pack(Container(self.name, str(quality), h, w, (shape,), tuple(strings), ENTROPY_DEVICE.type)))
        return files

    def _read(self, data: bytes, like: np.ndarray | None) -> tuple[Container, int]:
        """The checked header of one file and its quality (see :meth:`decode`)."""
        from mpq_assets.codecs.compressai_batch import ENTROPY_DEVICE

        c = unpack(data)
        if c.codec != self.name:
            raise CodecError(f"this .mpqc file was written by {c.codec!r}, not {self.name!r}")
        if not (c.setting.isascii() and c.setting.isdigit()):
            raise CodecError(f"{self.name}: corrupt .mpqc header: quality {c.setting!r} is not an integer")
        quality = int(c.setting)
        if quality not in self.qualities:
            raise CodecError(f"{self.name}: corrupt .mpqc header: quality {quality} is not one of "
                             f"{list(self.qualities)}")
        if like is not None and tuple(like.shape[:2]) != (c.height, c.width):
            raise CodecError(f"{self.name}: the file holds a {c.height}x{c.width} image, the original is "
                             f"{like.shape[0]}x{like.shape[1]}")
        if c.shapes != (_latent_shape(c.height, c.width),) or len(c.strings) != 2:
            raise CodecError(f"{self.name}: corrupt .mpqc header: latent shapes {c.shapes} and {len(c.strings)} "
                             f"strings do not fit a {c.height}x{c.width} image")
        if c.device_type != ENTROPY_DEVICE.type:
            msg = (f"{self.name}: this file was entropy-coded on {c.device_type!r}; this reader runs the entropy "
                   f"model on {ENTROPY_DEVICE.type!r}, and CompressAI decodes reliably only on the device type "
                   "that encoded (docs/codecs.md, 'Neural codecs'). Re-encode the original with this version: its "
                   f"files always say {ENTROPY_DEVICE.type!r} and decode on any machine.")
            if self.on_device_mismatch == "error":
                raise CodecError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        return c, quality

    def decode(self, data: bytes, like: np.ndarray | None) -> np.ndarray:
        """Decode a ``.mpqc`` file; ``like`` (the original) is checked against the stored size, or None to skip."""
        return self.decode_batch([data], [like])[0]

    def decode_batch(self, data: Sequence[bytes], like: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Decode several files; those of one quality and size share the device batches of ``g_s``."""
        import torch

        from mpq_assets.codecs.compressai_batch import decompress_batch

        read = [self._read(d, item) for d, item in zip(data, like, strict=True)]
        boxes = [c for c, _ in read]
        out: list[np.ndarray | None] = [None] * len(boxes)
        for quality in dict.fromkeys(q for _, q in read):
            members = [i for i, (_, q) in enumerate(read) if q == quality]
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Inference on GPU is not recommended")
                    recons = decompress_batch(self.model(quality), [(boxes[i].strings, boxes[i].shapes[0])
                                                                    for i in members], self.batch_size)
            except (CodecError, ModelNotAvailableError):
                raise
            except Exception as exc:
                raise CodecError(f"{self.name} q={quality}: decoding failed: {type(exc).__name__}: {exc}") from exc
            for i, x_hat in zip(members, recons, strict=True):
                c = boxes[i]
                pixels = (x_hat[:, :c.height, :c.width] * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
                out[i] = np.ascontiguousarray(pixels)
        return out  # type: ignore[return-value]

    def encode_to_budget(self, item: np.ndarray, budget_bytes: int) -> Encoded:
        """The highest quality whose file fits ``budget_bytes``, exactly (no size monotonicity assumed).

        Encodes the lowest quality first (if it does not fit, the target is
        unreachable: ``rate_met=False``), then from the highest quality down to
        the first that fits. As the budget grows the chosen quality never drops.
        """
        return self.encode_to_budgets(item, [budget_bytes])[0]

    def encode_to_budgets(self, item: np.ndarray, budgets: Sequence[int]) -> list[Encoded]:
        """:meth:`encode_to_budget` for several budgets of one item, each quality encoded at most once."""
        return self.encode_to_budgets_batch([item], [budgets])[0]

    def encode_to_budgets_batch(self, items: Sequence[np.ndarray], budgets: Sequence[Sequence[int]]
                                ) -> list[list[Encoded]]:
        """:meth:`encode_to_budget` for every budget of every item: the same search, in lockstep.

        After the lowest quality, each quality from the highest down is encoded --
        in one :meth:`encode_batch` for all the items that still have a budget with
        no fitting quality. Each item's answers are the ones its single-budget
        searches give; each (item, quality) is encoded at most once.
        """
        import time

        ladder = [int(q) for q in self.ladder(items[0])] if items else []
        files: list[dict[int, bytes]] = [{} for _ in items]
        seconds: list[dict[int, float]] = [{} for _ in items]

        def encode(members: Sequence[int], quality: int) -> None:
            t0 = time.perf_counter()
            try:
                data = self.encode_batch([items[i] for i in members], quality)
            except (CodecError, ModelNotAvailableError):
                raise
            except Exception as exc:
                raise CodecError(f"{self.name} failed at {self.label(quality)}: {type(exc).__name__}: {exc}"
                                 ) from exc
            each = (time.perf_counter() - t0) / len(members)
            for i, d in zip(members, data, strict=True):
                files[i][quality], seconds[i][quality] = d, each

        if not items:
            return []
        lowest = ladder[0]
        encode(range(len(items)), lowest)
        chosen: list[dict[int, int]] = [{} for _ in items]  # per item: budget index -> quality
        open_ = [[k for k, b in enumerate(bs) if len(files[i][lowest]) <= b] for i, bs in enumerate(budgets)]
        for quality in reversed(ladder[1:]):
            members = [i for i in range(len(items)) if open_[i]]
            if not members:
                break
            encode(members, quality)
            for i in members:
                size = len(files[i][quality])
                chosen[i].update({k: quality for k in open_[i] if size <= budgets[i][k]})
                open_[i] = [k for k in open_[i] if k not in chosen[i]]
        return [self._answers(ladder, files[i], seconds[i], chosen[i], budgets[i]) for i in range(len(items))]

    def _answers(self, ladder: list[int], files: dict[int, bytes], seconds: dict[int, float],
                 chosen: dict[int, int], budgets: Sequence[int]) -> list[Encoded]:
        """One item's :class:`Encoded` per budget; each encode is counted once, for the smallest budget needing it."""
        lowest = ladder[0]
        out: dict[int, Encoded] = {}
        tried: set[int] = set()
        for k in sorted(range(len(budgets)), key=lambda k: budgets[k]):
            met = len(files[lowest]) <= budgets[k]
            quality = chosen.get(k, lowest)
            path = {lowest} | ({q for q in ladder[1:] if q >= quality} if met else set())
            new = path - tried
            tried |= path
            out[k] = Encoded(files[quality], self.label(quality), met, len(new), sum(seconds[q] for q in new))
        return [out[k] for k in range(len(budgets))]


class Mbt2018(NeuralImageCodec):
    name = "mbt2018"
    description = ("Minnen et al. 2018 joint autoregressive + hierarchical priors (CompressAI zoo, MSE), "
                   "qualities 1-8, .mpqc container")
    weight_sources = (weight_source("mbt2018"),)


class Cheng2020Anchor(NeuralImageCodec):
    name = "cheng2020-anchor"
    description = ("Cheng et al. 2020 anchor (residual blocks, autoregressive context; CompressAI zoo, MSE), "
                   "qualities 1-6, .mpqc container")
    weight_sources = (weight_source("cheng2020-anchor"),)


NEURAL_IMAGE_CODECS: dict[str, type[NeuralImageCodec]] = {"mbt2018": Mbt2018, "cheng2020-anchor": Cheng2020Anchor}


def decode_file(path: str | os.PathLike[str], device: Any = None) -> np.ndarray:
    """Decode a ``.mpqc`` file to an RGB uint8 array with the real weights of the model named in its header."""
    data = Path(path).read_bytes()
    model = unpack(data).codec
    if model not in NEURAL_IMAGE_CODECS:
        raise CodecError(f"{path}: unknown model {model!r}; known: {', '.join(NEURAL_IMAGE_CODECS)}")
    return NEURAL_IMAGE_CODECS[model](device=device).decode(data, like=None)
