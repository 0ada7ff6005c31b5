"""Dataset registry: one table from names to constructors (keyword arguments come from the experiment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpq_assets.datasets.base import Dataset
from mpq_assets.datasets.demo import DemoImages, DemoMusic, DemoSpeech
from mpq_assets.datasets.folder import AudioFolder, ImageFolder, StemsFolder
from mpq_assets.datasets.huggingface import HuggingFaceAudio, HuggingFaceImages

DATASETS: dict[str, Callable[..., Dataset]] = {
    "demo_images": DemoImages,
    "demo_speech": DemoSpeech,
    "demo_music": DemoMusic,
    "image_folder": ImageFolder,
    "audio_folder": AudioFolder,
    "stems_folder": StemsFolder,
    "hf_images": HuggingFaceImages,
    "hf_audio": HuggingFaceAudio,
}


def make_dataset(dataset: str, /, **kwargs: Any) -> Dataset:
    """Build the registered dataset ``dataset`` with its own keyword arguments (which may include ``name``)."""
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[dataset](**kwargs)
