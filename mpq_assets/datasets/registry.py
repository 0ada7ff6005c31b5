"""Dataset registry: one table from names to constructors (keyword arguments come from the experiment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpq_assets.construct import build
from mpq_assets.datasets.base import Dataset
from mpq_assets.datasets.demo import DemoCommands, DemoDocuments, DemoImages, DemoMusic, DemoSpeech
from mpq_assets.datasets.folder import AudioFolder, ImageFolder, MusdbStems, StemsFolder
from mpq_assets.datasets.huggingface import HuggingFaceAudio, HuggingFaceImages
from mpq_assets.datasets.shapes import DemoShapes
from mpq_assets.settings import Settings

DATASETS: dict[str, Callable[..., Dataset]] = {
    "demo_images": DemoImages,
    "demo_speech": DemoSpeech,
    "demo_music": DemoMusic,
    "demo_commands": DemoCommands,
    "demo_shapes": DemoShapes,
    "demo_documents": DemoDocuments,
    "image_folder": ImageFolder,
    "audio_folder": AudioFolder,
    "stems_folder": StemsFolder,
    "musdb18hq": MusdbStems,  # stems_folder on the MUSDB18-HQ copy the settings name
    "hf_images": HuggingFaceImages,
    "hf_audio": HuggingFaceAudio,
}


def make_dataset(dataset: str, /, settings: Settings | None = None, **kwargs: Any) -> Dataset:
    """Build the registered dataset ``dataset`` with its own keyword arguments (which may include ``name``);
    datasets that read deployment paths (demo data, HF caches, MUSDB) get the step's ``settings``."""
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    return build(DATASETS[dataset], settings=settings, **kwargs)
