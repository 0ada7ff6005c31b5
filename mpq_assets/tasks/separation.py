"""Music source separation with Demucs, scored by SDR (see :mod:`mpq_assets.tasks.sdr`).

``SourceSeparation(model=...)`` takes a pretrained Demucs name: ``"htdemucs"``
(Hybrid Transformer Demucs, v4, the default) or ``"hdemucs_mmi"`` (Hybrid Demucs
v3, the paper's model); any other name demucs knows (``htdemucs_ft``,
``htdemucs_6s``, ``mdx_extra``, a single signature such as ``955717e8``,
``namespace/name`` on the HuggingFace hub) and a local ``.th`` / ``.safetensors``
file work too. ``SourceSeparation.from_model(model)`` wraps a model object that is
already built (tests use small randomly initialised ones).

Weights and safety. demucs' own ``get_model`` loads either safetensors files from
the HuggingFace hub (``adefossez/HTDemucs``, ...; demucs 4.1's first choice) or
the legacy ``.th`` files from ``dl.fbaipublicfiles.com`` through the torch hub
cache. Both are unsafe as demucs loads them:

- ``.th`` files are full pickles (``{"klass": <class>, "args", "kwargs", "state",
  "training_args"}``) and ``demucs.states.load_model`` / ``RemoteRepo`` call
  ``torch.load(..., weights_only=False)``: a tampered file runs arbitrary code.
- the safetensors metadata names the class to build as a dotted string that
  demucs imports and calls with the stored arguments (``"os.system"`` would do).

So we fetch the same files from the same places but load them ourselves:
``.th`` with ``torch.load(weights_only=True)`` and only the demucs model classes,
``fractions.Fraction`` (HTDemucs' ``segment``) and numpy scalars/dtypes
allow-listed; safetensors with the class looked up in a fixed table of the demucs
model classes. The checked package then goes through demucs' own
``load_model`` (which builds the class and loads the state). Legacy files are
checked against the sha256 prefix in their name. Quantised (diffq) checkpoints
(``*_q`` models) are refused.

Offline: with ``MPQ_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` only the local caches are
read (the HuggingFace hub cache, and ``$TORCH_HOME/hub/checkpoints``); a missing
model raises :class:`~mpq_assets.tasks.hf.ModelNotAvailableError` saying which
files to fetch. :func:`pull_model` downloads a model into the caches (for a
``mpq models pull htdemucs`` command on a networked machine).

Prediction: the mixture (any rate, any channel count) is resampled and remixed
to the model's rate (44.1 kHz) and channels (2), normalised as demucs does
(minus the mean, over the std of the mono mix), separated with
``demucs.apply.apply_model(split=True, overlap=0.25, shifts=...)``, de-normalised,
and each stem is brought back to the item's rate, channel count and length.
``array`` is float32 ``(n_sources, channels, frames)``; ``summary`` is
``{"sources": [...], "rms": {source: rms}, "sample_rate": rate}``. ``shifts=0``
(the default) is deterministic; with ``shifts > 0`` (demucs' random time-shift
trick) Python's ``random`` is seeded with 0 for the call, so runs repeat. Items
are separated one at a time (``apply_model`` cuts long tracks into segments
itself), so ``batch_size`` is not used.

Labels: a JSON string (or dict) mapping stem name -> audio file, e.g.
``{"soprano": "/data/bwv269/soprano.flac", ...}``. Only stems whose name equals one
of the model's sources (case-insensitive) are scored; the others are skipped
(the demo's Bach voices against htdemucs' drums/bass/other/vocals: only ``bass``).
The stems of one item are scored together (museval's shared silent-window rule).
Rows per item: ``sdr_<stem>`` and ``nsdr_<stem>`` for each matched stem, and
``sdr`` / ``nsdr``, the mean over the item's matched stems. Reference scores
compare each separated source with the separation of the uncompressed item:
``sdr_ref_<source>``, ``nsdr_ref_<source>``, ``sdr_ref``, ``nsdr_ref`` (mean over
sources). Aggregate rows (``item_id=None``) follow the SiSEC/MUSDB convention:
each stem's metric is the **median over tracks** (of per-track medians over
windows), and the headline ``sdr`` / ``nsdr`` / ``sdr_ref`` / ``nsdr_ref`` is the
**mean over stems of those medians** (not the median of per-track means); a
value that is NaN (every window silent) gives no row.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.media.audio import Audio, load_audio, remix, resample
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks import sdr as sdr_metrics
from mpq_assets.tasks.base import Prediction, Score, Task, TaskInfo, same_length
from mpq_assets.tasks.hf import hub_offline
from mpq_assets.weights import WeightSource, cached, files
from mpq_assets.weights.errors import ModelNotAvailableError, UnsafeCheckpointError  # both importable from here
from mpq_assets.weights.safe_load import load_checkpoint, read_safetensors

log = logging.getLogger(__name__)

DEFAULT_MODEL = "htdemucs"      # Hybrid Transformer Demucs (v4)
HF_NAMESPACE = "adefossez"      # where demucs 4.1 publishes its safetensors bags
_SIG = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------- safe loading

def _model_classes() -> dict[str, type]:
    """The only classes a checkpoint may ask to build."""
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return {f"{cls.__module__}.{cls.__qualname__}": cls for cls in (Demucs, HDemucs, HTDemucs)}


def _safe_globals() -> list[Any]:
    """What a demucs ``.th`` pickle needs beyond tensors: model classes, Fraction, numpy scalars."""
    # numpy scalars/dtypes can appear in ``training_args``; rebuilding them runs no foreign code
    extra: list[Any] = [Fraction, np.dtype]
    if int(np.__version__.split(".")[0]) >= 2:  # pragma: no cover - the project pins numpy 1.26
        from numpy._core.multiarray import scalar
    else:
        from numpy.core.multiarray import scalar
    extra.append(scalar)
    extra += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool")]
    return [*_model_classes().values(), *extra]


def _build(package: Any, where: str) -> torch.nn.Module:
    """Check a loaded package (class, args, state) and build the model with demucs' ``load_model``."""
    from demucs.states import load_model

    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= package.keys():
        raise UnsafeCheckpointError(f"{where} is not a demucs model package (klass/args/kwargs/state)")
    if package["klass"] not in _model_classes().values():
        raise UnsafeCheckpointError(f"{where} asks to build {package['klass']!r}, not a demucs model class")
    state = package["state"]
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{where} has no state dict")
    if state.get("__quantized"):
        raise ModelNotAvailableError(f"{where} is a diffq-quantised checkpoint; those are not supported "
                                     "(use the unquantised model, e.g. mdx_extra instead of mdx_extra_q)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UnsafeCheckpointError(f"{where}: the state holds something other than named tensors")
    clean = {"klass": package["klass"], "args": list(package["args"]), "kwargs": dict(package["kwargs"]),
             "state": state}
    model = load_model(clean)
    model.eval()
    return model


def load_th(path: str | os.PathLike[str]) -> torch.nn.Module:
    """A legacy demucs ``.th`` file, unpickled with ``weights_only=True`` and the allow-list above."""
    package = load_checkpoint(path, "demucs checkpoint", allow=_safe_globals(),
                              hint="It needs objects outside the allow-list of demucs model classes, Fraction "
                                   "and numpy scalars, so it was not loaded.")
    return _build(package, str(path))


def _decode_json(value: Any) -> Any:
    """demucs' JSON encoding of init arguments (fractions as ``{"_type": "fraction", ...}``)."""
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(int(value["numerator"]), int(value["denominator"]))
        return {k: _decode_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_json(v) for v in value]
    return value


def load_safetensors(path: str | os.PathLike[str]) -> torch.nn.Module:
    """A demucs safetensors file; the class named in its metadata must be a demucs model class."""
    tensors, metadata = read_safetensors(path)
    klass = _model_classes().get(metadata.get("klass", ""))
    if klass is None:
        raise UnsafeCheckpointError(f"{path} names the class {metadata.get('klass')!r}, not a demucs model class")
    if "structure" in metadata:
        raise ModelNotAvailableError(f"{path} is a quantised (diffq) checkpoint; those are not supported")
    package = {"klass": klass, "args": _decode_json(json.loads(metadata.get("args", "[]"))),
               "kwargs": _decode_json(json.loads(metadata.get("kwargs", "{}"))), "state": tensors}
    return _build(package, str(path))


def load_file(path: str | os.PathLike[str]) -> torch.nn.Module:
    path = Path(path)
    return load_safetensors(path) if path.suffix == ".safetensors" else load_th(path)


# ------------------------------------------------------------- where weights live

def _hf_cache_dir(settings: Settings | None = None) -> str:
    """The HF hub cache the settings name (huggingface_hub reads its environment only at import); the
    environment's settings when none are given."""
    return str((settings or load_settings()).hf_hub_cache)


def _hf_files(name: str, local_only: bool, settings: Settings | None = None) -> tuple[dict[str, Any], list[Path]]:
    """The bag yaml and safetensors files of ``name`` from the HF hub (cache only if ``local_only``)."""
    import yaml
    from demucs.hf import hf_repo_name
    from huggingface_hub import hf_hub_download

    namespace, short = name.split("/", 1) if "/" in name else (HF_NAMESPACE, name)
    repo_id = f"{namespace}/{hf_repo_name(short)}"
    kwargs = {"local_files_only": local_only, "cache_dir": _hf_cache_dir(settings)}
    with open(hf_hub_download(repo_id, f"{short}.yaml", **kwargs)) as f:
        bag = yaml.safe_load(f)
    sigs = _bag_signatures(bag, f"{repo_id}/{short}.yaml")
    return bag, [Path(hf_hub_download(repo_id, f"{sig}.safetensors", **kwargs)) for sig in sigs]


def _bag_signatures(bag: Any, where: str) -> list[str]:
    sigs = bag.get("models") if isinstance(bag, dict) else None
    if not sigs or not all(isinstance(s, str) and _SIG.match(s) for s in sigs):
        raise ModelNotAvailableError(f"{where} is not a demucs bag of models (no valid 'models' list)")
    return sigs


def _legacy_index() -> dict[str, str]:
    """Signature -> URL of every legacy ``.th`` file demucs knows (its packaged ``remote/files.txt``)."""
    from demucs.pretrained import REMOTE_ROOT, _parse_remote_files

    return _parse_remote_files(REMOTE_ROOT / "files.txt")


def legacy_plan(name: str) -> tuple[dict[str, Any] | None, list[tuple[str, Path]]]:
    """The bag (None for one signature) and (URL, torch hub cache path) of each legacy file; KeyError if unknown."""
    import yaml
    from demucs.pretrained import REMOTE_ROOT

    index = _legacy_index()
    bag: dict[str, Any] | None
    if name in index:
        bag = None
    else:
        yaml_file = REMOTE_ROOT / f"{name}.yaml"
        if not _SIG.match(name) or not yaml_file.is_file():
            raise KeyError(name)
        bag = yaml.safe_load(yaml_file.read_text())
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    plan = []
    for sig in [name] if bag is None else _bag_signatures(bag, f"demucs remote/{name}.yaml"):
        if sig not in index:
            raise KeyError(sig)
        url = index[sig]
        plan.append((url, checkpoints / url.rsplit("/", 1)[1]))
    return bag, plan


def _legacy_files(name: str, local_only: bool) -> tuple[dict[str, Any] | None, list[Path]]:
    """The verified legacy files of ``name`` (downloaded unless ``local_only``); each name carries its SHA-256
    prefix (``955717e8-8726e21a.th``)."""
    bag, plan = legacy_plan(name)
    paths = []
    for url, path in plan:
        checksum = files.hash_prefix(path.name) or path.stem.rsplit("-", 1)[-1]
        if path.is_file():
            files.verify(path, checksum)  # a corrupt or replaced file is an error, not a reason to look on
        elif local_only:
            raise FileNotFoundError(f"{path} is missing")
        else:
            try:
                files.download(url, path, checksum)
            except ModelNotAvailableError as exc:  # unreachable: reported with the other sources tried
                raise OSError(str(exc)) from exc
        paths.append(path)
    return bag, paths


def _missing_message(name: str, local_only: bool, reasons: list[str]) -> str:
    where = ("is not in the local caches and downloads are off (MPQ_OFFLINE / HF_HUB_OFFLINE)" if local_only
             else "could not be found locally nor downloaded")
    lines = [f"Demucs model {name!r} {where}.",
             f"To get it: run `mpq models pull {name}` on a machine with network access and copy its caches "
             "here: the HuggingFace hub cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) or the torch hub "
             f"checkpoints folder ($TORCH_HOME/hub/checkpoints, here {Path(torch.hub.get_dir()) / 'checkpoints'})."]
    try:
        _, plan = legacy_plan(name)
        lines.append("Or download these files into that checkpoints folder: "
                     + ", ".join(f"{url}" for url, _ in plan) + ".")
    except KeyError:
        lines.append("Known demucs names: htdemucs (v4), htdemucs_ft, htdemucs_6s, hdemucs_mmi (v3), mdx, "
                     "mdx_extra; or pass a local .th / .safetensors file.")
    lines.append("Tried: " + "; ".join(reasons))
    return "\n".join(lines)


def _fetch(name: str, local_only: bool, settings: Settings | None = None
           ) -> tuple[dict[str, Any] | None, list[Path]]:
    """Find (or download) the files of ``name``: HF hub first, as demucs 4.1 does, then the legacy files."""
    reasons = []
    try:
        return _hf_files(name, local_only, settings)
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - any hub failure means "try the next source"
        reasons.append(f"HuggingFace hub: {type(exc).__name__}: {exc}".splitlines()[0])
    if "/" not in name:
        try:
            return _legacy_files(name, local_only)
        except ModelNotAvailableError:
            raise
        except KeyError:
            reasons.append(f"legacy demucs repo: no model named {name!r}")
        except Exception as exc:  # noqa: BLE001
            reasons.append(f"legacy demucs repo: {type(exc).__name__}: {exc}".splitlines()[0])
    raise ModelNotAvailableError(_missing_message(name, local_only, reasons))


def load_pretrained(name: str, offline: bool | None = None, settings: Settings | None = None) -> torch.nn.Module:
    """A demucs model (a ``BagOfModels``, or one model for a signature or file), loaded safely; ``offline=None``
    follows the settings (``MPQ_OFFLINE`` / ``HF_HUB_OFFLINE``)."""
    from demucs.apply import BagOfModels

    path = Path(name).expanduser()
    if path.suffix in (".th", ".safetensors"):
        if not path.is_file():
            raise ModelNotAvailableError(f"demucs checkpoint file {path} does not exist")
        return load_file(path)
    local_only = hub_offline(settings) if offline is None else offline
    bag, paths = _fetch(name, local_only, settings)
    models = [load_file(f) for f in paths]
    if bag is None:  # a single signature
        return models[0]
    result = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    result.eval()
    return result


def pull_model(name: str, settings: Settings | None = None) -> list[Path]:
    """Download ``name``'s files into the caches (ignoring the offline flags); returns their paths."""
    _, paths = _fetch(name, local_only=False, settings=settings)
    for f in paths:  # check they load before claiming success
        load_file(f)
    return paths


def _demucs_source(name: str, use: str) -> WeightSource:
    """A pretrained demucs model: present when all its legacy ``.th`` files are in the torch hub checkpoints
    folder; fetched from the HF hub or those URLs (network), then checked to load safely."""

    def locate(settings: Settings) -> tuple[bool, str]:
        try:
            paths = [path for _, path in legacy_plan(name)[1]]
        except (KeyError, ImportError):
            paths = []
        return bool(paths) and all(p.exists() for p in paths), ", ".join(map(str, paths)) or "demucs not installed"

    def fetch(settings: Settings) -> str:
        pull_model(name, settings)
        return locate(settings)[1]

    return WeightSource(name, "download", use, "demucs", locate=locate, fetch=fetch)


# --------------------------------------------------------------------- the task

_SHIFT_LOCK = threading.Lock()  # guards Python's global random state, not a cache


def _load_cached(name: str, device: torch.device, settings: Settings | None = None) -> torch.nn.Module:
    """The model on ``device``, loaded once per process per (name, device)."""

    def load() -> torch.nn.Module:
        log.info("loading demucs model %s on %s", name, device)
        return load_pretrained(name, settings=settings).to(device)

    return cached(("demucs", name, str(device)), load)


def check_audio(item: Any) -> Audio:
    if not isinstance(item, Audio):
        raise ValueError(f"the separation task takes Audio items, got {type(item).__name__}")
    if item.frames == 0:
        raise ValueError("the mixture has no samples")
    return item


def _to_item_layout(samples: np.ndarray, rate: int, target: Audio) -> np.ndarray:
    """One stem (channels, frames) at ``rate`` -> the target's rate, channel count and length."""
    audio = remix(resample(Audio(np.ascontiguousarray(samples, dtype=np.float32), rate), target.sample_rate),
                  target.channels)
    return sdr_metrics.pad_or_truncate(audio.samples, target.frames).astype(np.float32, copy=False)


def metric_suffix(name: str) -> str:
    """A stem or source name as used in metric names: lower case, anything else than [a-z0-9] -> '_'."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_") or "source"


class SourceSeparation(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="separation",
        modality="audio",
        label_metrics=("sdr", "nsdr"),
        reference_metrics=("sdr_ref", "nsdr_ref"),
        higher_is_better={"sdr": True, "nsdr": True, "sdr_ref": True, "nsdr_ref": True},
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        _demucs_source(DEFAULT_MODEL, "Demucs v4 (hybrid transformer)"),
        _demucs_source("hdemucs_mmi", "Demucs v3 (the paper's)"),
    )

    def __init__(self, model: str = DEFAULT_MODEL, shifts: int = 0, overlap: float = 0.25,
                 label_root: str | None = None, device: torch.device | str = "cpu", batch_size: int = 1,
                 settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        if shifts < 0:
            raise ValueError(f"shifts must be >= 0, got {shifts}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.model = model
        self.shifts = int(shifts)
        self.overlap = float(overlap)
        self.label_root = Path(label_root) if label_root else None
        self.settings = settings  # None: the environment's, read when a model loads
        self._module: torch.nn.Module | None = None

    @classmethod
    def from_model(cls, module: torch.nn.Module, name: str = "custom", **kwargs: Any) -> SourceSeparation:
        """Wrap a built demucs model (``Demucs``/``HDemucs``/``HTDemucs``/``BagOfModels``); no loading, no cache."""
        for attr in ("sources", "samplerate", "audio_channels"):
            if not hasattr(module, attr):
                raise TypeError(f"{type(module).__name__} has no {attr!r}; not a demucs model")
        task = cls(model=name, **kwargs)
        task._module = module.to(task.device).eval()
        return task

    @property
    def model_id(self) -> str:
        path = Path(self.model).expanduser()
        return str(path.resolve()) if path.suffix in (".th", ".safetensors") else self.model

    def load(self) -> torch.nn.Module:
        """The model (process cache per (name, device)); ModelNotAvailableError when it is missing."""
        if self._module is None:
            self._module = _load_cached(self.model_id, self.device, self.settings)
        return self._module

    @property
    def sources(self) -> list[str]:
        return list(self.load().sources)

    # -- predict

    def _separate(self, module: torch.nn.Module, mix: torch.Tensor) -> torch.Tensor:
        from demucs.apply import apply_model

        def run() -> torch.Tensor:
            with torch.no_grad():
                return apply_model(module, mix[None], shifts=self.shifts, split=True, overlap=self.overlap,
                                   device=self.device, progress=False)[0]

        if not self.shifts:
            return run()
        with _SHIFT_LOCK:  # apply_model draws its shifts from Python's global random
            state = random.getstate()
            random.seed(0)
            try:
                return run()
            finally:
                random.setstate(state)

    def predict(self, items: Sequence[Audio]) -> list[Prediction]:
        module = self.load()
        rate, channels = int(module.samplerate), int(module.audio_channels)
        sources = list(module.sources)
        out: list[Prediction] = []
        for item in items:
            audio = check_audio(item)
            mix = remix(resample(audio, rate), channels)
            x = torch.from_numpy(np.ascontiguousarray(mix.samples, dtype=np.float32))
            mono = x.mean(dim=0)  # demucs' normalisation: by the mean and std of the mono mix
            mean = mono.mean()
            std = mono.std() + 1e-8 if x.shape[-1] > 1 else torch.tensor(1.0)
            estimates = self._separate(module, (x - mean) / std) * std + mean
            est = estimates.detach().cpu().numpy()
            array = np.stack([_to_item_layout(stem, rate, audio) for stem in est])
            rms = {name: round(float(np.sqrt(np.mean(np.square(array[i], dtype=np.float64)))), 6)
                   for i, name in enumerate(sources)}
            out.append(Prediction(summary={"sources": sources, "rms": rms, "sample_rate": audio.sample_rate},
                                  array=array))
        return out

    # -- score

    def _label_stems(self, label: Any) -> dict[str, Path]:
        if label is None or (isinstance(label, str) and not label.strip()):
            return {}
        stems = json.loads(label) if isinstance(label, str) else label
        if not isinstance(stems, dict):
            raise ValueError(f"a separation label maps stem names to audio files, got {type(stems).__name__}")
        out = {}
        for name, path in stems.items():
            p = Path(str(path)).expanduser()
            if not p.is_absolute() and self.label_root is not None:
                p = self.label_root / p
            out[str(name)] = p
        return out

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        same_length(item_ids, predictions, labels)
        rows: list[Score] = []
        for item_id, prediction, label in zip(item_ids, predictions, labels, strict=True):
            stems = self._label_stems(label)
            if not stems:
                continue
            if prediction.array is None:
                log.warning("separation: no separated audio kept for %s; not scored", item_id)
                continue
            sources = [str(s).lower() for s in prediction.summary.get("sources", [])]
            matched = [(stem, path, sources.index(stem.lower())) for stem, path in stems.items()
                       if stem.lower() in sources]
            if not matched:
                log.debug("separation: no stem of %s (%s) is a model source (%s)", item_id, sorted(stems), sources)
                continue
            rate = int(prediction.summary.get("sample_rate") or 44100)
            estimates = np.asarray(prediction.array, dtype=np.float32)
            refs = [self._reference_stem(path, rate, estimates.shape[1]) for _, path, _ in matched]
            frames = max(r.shape[-1] for r in refs)
            ref = np.stack([sdr_metrics.pad_or_truncate(r, frames) for r in refs])
            est = np.stack([sdr_metrics.pad_or_truncate(estimates[i], frames) for _, _, i in matched])
            names = [metric_suffix(stem) for stem, _, _ in matched]
            rows += self._rows(item_id, ref, est, rate, names, "sdr", "nsdr")
        return rows + self._aggregates(rows)

    def _reference_stem(self, path: Path, rate: int, channels: int) -> np.ndarray:
        return remix(resample(load_audio(path), rate), channels).samples

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        same_length(item_ids, predictions, reference)
        rows: list[Score] = []
        for item_id, prediction, ref in zip(item_ids, predictions, reference, strict=True):
            if prediction.array is None or ref.array is None:
                log.warning("separation: no separated audio kept for %s; no reference score", item_id)
                continue
            r = np.asarray(ref.array, dtype=np.float32)
            e = sdr_metrics.pad_or_truncate(np.asarray(prediction.array, dtype=np.float32), r.shape[-1])
            if e.shape != r.shape:
                raise ValueError(f"{item_id}: separation {e.shape} and reference {r.shape} differ in sources "
                                 "or channels")
            names = [metric_suffix(s) for s in ref.summary.get("sources", range(r.shape[0]))]
            rate = int(ref.summary.get("sample_rate") or 44100)
            rows += self._rows(item_id, r, e, rate, names, "sdr_ref", "nsdr_ref")
        return rows + self._aggregates(rows)

    @classmethod
    def aggregate(cls, metric: str, rows: Sequence[Score]) -> float | None:
        """SiSEC/MUSDB: a stem's metric is its median over tracks; a headline the mean over stems of those."""
        if metric in HEADLINES:
            stems = sorted({r.metric for r in rows if _headline_of(r.metric) == metric})
            medians = [cls.aggregate(stem, rows) for stem in stems]
            return float(np.mean(medians)) if medians else None
        values = [r.value for r in rows if r.metric == metric]
        if _headline_of(metric) is not None:
            return float(np.median(values)) if values else None
        return super().aggregate(metric, rows)

    @classmethod
    def _aggregates(cls, rows: Sequence[Score]) -> list[Score]:
        """One partition row per metric (``aggregate``), with n = the tracks that have the metric."""
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.metric] = counts.get(row.metric, 0) + 1
        out = []
        for metric, n in counts.items():
            value = cls.aggregate(metric, rows)
            if value is not None:
                out.append(Score(metric, value, None, n=n))
        return out

    @staticmethod
    def _rows(item_id: str, ref: np.ndarray, est: np.ndarray, rate: int, names: list[str],
              sdr_name: str, nsdr_name: str) -> list[Score]:
        rows: list[Score] = []
        for metric, values in ((sdr_name, sdr_metrics.bss_sdr(ref, est, rate)),
                               (nsdr_name, sdr_metrics.nsdr(ref, est))):
            kept = []
            for name, value in zip(names, values, strict=True):
                if np.isfinite(value):
                    kept.append(float(value))
                    rows.append(Score(f"{metric}_{name}", float(value), item_id))
                else:
                    log.info("%s_%s of %s is undefined (silent in every window); no row", metric, name, item_id)
            if kept:
                rows.append(Score(metric, float(np.mean(kept)), item_id))
        return rows


HEADLINES = ("sdr", "nsdr", "sdr_ref", "nsdr_ref")  # per item: the mean over its stems


def _headline_of(metric: str) -> str | None:
    """The headline a per-stem metric belongs to (``sdr_ref_bass`` -> ``sdr_ref``), None for a headline."""
    if metric in HEADLINES:
        return None
    for base in sorted(HEADLINES, key=len, reverse=True):
        if metric.startswith(base + "_"):
            return base
    return None
