"""HuggingFace checkpoint loading shared by the image tasks: offline rule, clear errors, batching, and the
one declaration of a hub model's weights (``hub_source``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mpq_assets.settings import Settings, load_settings
from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.weights.source import WeightSource

__all__ = ["HFImageModel", "ModelNotAvailableError", "check_image", "checkpoint_id", "class_names_from_config",
           "hf_preprocess", "hub_offline", "hub_source", "load_hf", "run_grouped"]


def hub_offline(settings: Settings | None = None) -> bool:
    """Only the local HuggingFace cache may be used (``MPQ_OFFLINE`` or ``HF_HUB_OFFLINE``); the environment's
    settings when none are given (standalone use)."""
    return (settings or load_settings()).hub_offline


def hub_source(name: str, use: str) -> WeightSource:
    """The weights of hub checkpoint ``name``: present when its ``config.json`` is in the settings' hub cache,
    fetched with ``snapshot_download`` (network) into that cache."""

    def locate(settings: Settings) -> tuple[bool, str]:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json", cache_dir=str(settings.hf_hub_cache))
        return isinstance(hit, str), str(Path(hit).parent) if isinstance(hit, str) else "HuggingFace cache"

    def fetch(settings: Settings) -> str:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, cache_dir=str(settings.hf_hub_cache))

    return WeightSource(name, "hub", use, name, locate=locate, fetch=fetch)


def checkpoint_id(model: str) -> str:
    """A local folder becomes its absolute path; a hub name stays as it is."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def load_hf(loader: Callable[..., Any], model: str, what: str, settings: Settings | None = None) -> Any:
    """``loader.from_pretrained(model)`` with the offline rule and a clear error when it is missing."""
    settings = settings or load_settings()
    try:  # the settings' hub cache: huggingface_hub itself reads HF_HUB_CACHE once, at import
        return loader.from_pretrained(checkpoint_id(model), local_files_only=settings.hub_offline,
                                      cache_dir=str(settings.hf_hub_cache))
    except OSError as exc:
        if Path(model).expanduser().is_dir():
            raise ModelNotAvailableError(
                f"cannot load the {what} from the local folder {model!r}: {exc}\n"
                "The folder needs the files written by save_pretrained() (config.json, weights, "
                "preprocessor_config.json).") from exc
        where = ("is not in the local HuggingFace cache and downloads are off (MPQ_OFFLINE / HF_HUB_OFFLINE)"
                 if settings.hub_offline else "could not be found locally nor downloaded from the HuggingFace hub")
        raise ModelNotAvailableError(
            f"{what} {model!r} {where}.\nTo get it: run once on a machine with network access "
            f"(it is cached under ~/.cache/huggingface), or `huggingface-cli download {model}` "
            "(then copy the cache over), or pass a local folder holding the checkpoint "
            f"as the model.\nOriginal error: {exc}") from exc


def check_image(item: Any) -> np.ndarray:
    if not isinstance(item, np.ndarray) or item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
        desc = f"{type(item).__name__} {getattr(item, 'shape', '')} {getattr(item, 'dtype', '')}".strip()
        raise ValueError(f"image tasks take RGB uint8 arrays of shape (H, W, 3), got {desc}")
    return item


def hf_preprocess(processor: Any, item: np.ndarray) -> torch.Tensor:
    """One item through a HF image processor -> float tensor (3, h, w)."""
    out = processor(images=item, return_tensors="pt", input_data_format="channels_last")
    return out["pixel_values"][0]


def run_grouped(tensors: Sequence[torch.Tensor], forward: Callable[[torch.Tensor], torch.Tensor],
                device: torch.device) -> list[torch.Tensor]:
    """Stack equally-shaped tensors, run each stack on ``device``; per-item outputs in input order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(tensors)
    with torch.inference_mode():
        for indices in groups.values():
            batch = torch.stack([tensors[i] for i in indices]).to(device)
            result = forward(batch)
            for j, i in enumerate(indices):
                out[i] = result[j]
    return out  # type: ignore[return-value]


def class_names_from_config(config: Any) -> list[str]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n = int(getattr(config, "num_labels", len(id2label)) or len(id2label))
    return [id2label.get(i, f"LABEL_{i}") for i in range(n)]


class HFImageModel:
    """A HuggingFace image checkpoint and its processor on a device; ``forward`` returns the logits."""

    def __init__(self, auto_model: Any, model: str, device: torch.device, what: str,
                 settings: Settings | None = None) -> None:
        from transformers import AutoImageProcessor

        self.processor = load_hf(AutoImageProcessor, model, "image processor", settings)
        self.model = load_hf(auto_model, model, what, settings)
        self.model.to(device).eval()
        self.labels = class_names_from_config(self.model.config)

    def preprocess(self, item: np.ndarray) -> torch.Tensor:
        return hf_preprocess(self.processor, item)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=batch).logits
