"""Dataset registry: one table from names to constructors (keyword arguments come from the experiment)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpq_assets.datasets.base import Dataset
from mpq_assets.datasets.demo import DemoImages, DemoMusic, DemoSpeech
from mpq_assets.datasets.folder import AudioFolder, ImageFolder
from mpq_assets.datasets.huggingface import HuggingFaceImages

DATASETS: dict[str, Callable[..., Dataset]] = {
    "demo_images": DemoImages,
    "demo_speech": DemoSpeech,
    "demo_music": DemoMusic,
    "image_folder": ImageFolder,
    "audio_folder": AudioFolder,
    "hf_images": HuggingFaceImages,
}


def make_dataset(name: str, **kwargs: Any) -> Dataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return DATASETS[name](**kwargs)
