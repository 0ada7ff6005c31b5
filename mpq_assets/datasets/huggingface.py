"""HuggingFace ``datasets`` sources by name and split (ImageNet-1k val, beans, ADE20k, ...).

Uses the normal HF cache and honours ``HF_HUB_OFFLINE=1`` / ``MPQ_OFFLINE=1``; when
the data is not cached and the hub cannot be reached, the error says so and how
to fetch it. A folder written by ``Dataset.save_to_disk`` works too (pass its path).

Labels: a ``ClassLabel`` column becomes the class index as a string (ImageNet
indices match the ImageNet classifiers' outputs); segmentation masks are saved
once as PNG label maps under the artifacts dir and the label is their path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mpq_assets.artifacts import atomic_write_bytes, masks_dir
from mpq_assets.datasets.base import Dataset, ItemSource, item_id_from_name
from mpq_assets.media.image import to_rgb8
from mpq_assets.media.item import Modality
from mpq_assets.settings import Settings, load_settings

# the paper's image sets, with the columns each uses
KNOWN: dict[str, dict[str, Any]] = {
    "imagenet-1k": {"name": "ILSVRC/imagenet-1k", "split": "validation", "label_column": "label"},
    "beans": {"name": "AI-Lab-Makerere/beans", "split": "test", "label_column": "labels"},
    "ade20k": {"name": "zhoubolei/scene_parse_150", "split": "validation", "label_column": None,
               "mask_column": "annotation"},
}


def _force_offline() -> None:
    """HF libraries read HF_HUB_OFFLINE once at import; set their flags too so offline holds mid-process."""
    import datasets
    import huggingface_hub

    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


class DatasetUnavailable(FileNotFoundError):
    """The dataset is neither cached locally nor reachable."""


class _HuggingFaceSource(Dataset):
    """Shared loading: hub name (cache, offline rule) or a save_to_disk folder, with one clear error."""

    name: str
    split: str
    config: str | None
    revision: str | None

    settings: Settings

    def _offline(self) -> bool:
        return self.settings.hub_offline

    def load(self):  # noqa: ANN201 - datasets.Dataset
        import datasets

        local = Path(self.name).expanduser()
        try:
            saved = ("dataset_info.json", "state.json", "dataset_dict.json")
            if local.is_dir() and any((local / f).exists() for f in saved):
                ds = datasets.load_from_disk(str(local))
                if isinstance(ds, datasets.DatasetDict):
                    ds = ds[self.split]
                return ds
            if self._offline():
                _force_offline()
            return datasets.load_dataset(self.name, self.config, split=self.split, revision=self.revision)
        except Exception as exc:  # the hub raises many types; all mean "not available here"
            where = self.settings.hf_datasets_cache
            raise DatasetUnavailable(
                f"HuggingFace dataset {self.name!r} (split {self.split!r}) is not available: {type(exc).__name__}: "
                f"{exc}. It is not in the local cache ({where}) and the hub could not be used"
                f"{' (offline mode)' if self._offline() else ''}. Fetch it once on a machine with network "
                f"(python -c \"import datasets; datasets.load_dataset('{self.name}', split='{self.split}')\"; "
                "gated sets such as imagenet-1k need `huggingface-cli login` and accepting their terms), "
                "or pass the folder of a Dataset.save_to_disk copy as the name."
            ) from exc



class HuggingFaceImages(_HuggingFaceSource):
    modality: ClassVar[Modality] = "image"

    def __init__(self, name: str, split: str | None = None, config: str | None = None,
                 image_column: str = "image", label_column: str | None = "label", mask_column: str | None = None,
                 limit: int | None = None, revision: str | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        preset = KNOWN.get(name, {})
        self.name = preset.get("name", name)
        self.split = split or preset.get("split", "validation")
        self.config = config
        self.image_column = image_column
        self.label_column = preset.get("label_column", label_column)
        self.mask_column = mask_column or preset.get("mask_column")
        self.limit = limit
        self.revision = revision

    def items(self) -> Iterator[ItemSource]:
        ds = self.load()
        if self.image_column not in ds.column_names:
            raise ValueError(f"{self.name}: no column {self.image_column!r}; columns are {ds.column_names}")
        n = len(ds) if self.limit is None else min(self.limit, len(ds))
        mask_dir = masks_dir(self.settings, self.name, self.split)
        for index in range(n):
            item_id = item_id_from_name(f"{self.split}_{index:06d}")  # splits may be sliced: "validation[:500]"

            def load(i: int = index) -> np.ndarray:
                return to_rgb8(ds[i][self.image_column])

            label = None
            if self.label_column and self.label_column in ds.column_names:
                label = self._label(ds.features[self.label_column], ds[index][self.label_column])
            elif self.mask_column:
                label = str(self._save_mask(ds[index][self.mask_column], mask_dir / f"{item_id}.png"))
            yield ItemSource(item_id, f"hf:{self.name}/{self.split}[{index}]", load, label=label)

    @staticmethod
    def _label(feature: Any, value: Any) -> str:
        """Class index as a string; a multi-label list becomes '|'-joined class names (ChestX-ray style)."""
        if isinstance(value, list | tuple):
            names = getattr(getattr(feature, "feature", None), "names", None)
            return "|".join(names[v] if names and isinstance(v, int) else str(v) for v in value)
        return str(value)

    @staticmethod
    def _save_mask(mask: Any, path: Path) -> Path:
        import io

        from PIL import Image

        if not path.exists():
            arr = np.asarray(mask)
            if arr.ndim == 3:  # some exports store the class index in the first channel
                arr = arr[..., 0]
            buf = io.BytesIO()
            Image.fromarray(arr.astype(np.uint8), "L").save(buf, format="PNG")
            atomic_write_bytes(path, buf.getvalue())
        return path

    def describe(self) -> str:
        return f"HuggingFaceImages({self.name}, split={self.split})"


# the paper's speech set and a common alternative, with their transcript columns
KNOWN_AUDIO: dict[str, dict[str, Any]] = {
    "common_voice_11": {"name": "mozilla-foundation/common_voice_11_0", "config": "en", "split": "test",
                        "text_column": "sentence"},
    "librispeech_test_clean": {"name": "openslr/librispeech_asr", "config": "clean", "split": "test",
                               "text_column": "text"},
}


class HuggingFaceAudio(_HuggingFaceSource):
    """Speech/audio datasets; audio is decoded by MPQ (soundfile / PyAV), not by ``datasets``,
    so no torchcodec is needed. The label is the transcript column."""

    modality: ClassVar[Modality] = "audio"

    def __init__(self, name: str, split: str | None = None, config: str | None = None,
                 audio_column: str = "audio", text_column: str | None = "text", limit: int | None = None,
                 revision: str | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        preset = KNOWN_AUDIO.get(name, {})
        self.name = preset.get("name", name)
        self.split = split or preset.get("split", "test")
        self.config = config or preset.get("config")
        self.audio_column = audio_column
        self.text_column = preset.get("text_column", text_column)
        self.limit = limit
        self.revision = revision

    def items(self) -> Iterator[ItemSource]:
        import datasets

        from mpq_assets.media.audio import decode_audio_bytes, load_audio

        ds = self.load()
        if self.audio_column not in ds.column_names:
            raise ValueError(f"{self.name}: no column {self.audio_column!r}; columns are {ds.column_names}")
        ds = ds.cast_column(self.audio_column, datasets.Audio(decode=False))
        n = len(ds) if self.limit is None else min(self.limit, len(ds))
        for index in range(n):
            row = ds[index]
            ref = row[self.audio_column]
            item_id = item_id_from_name(f"{self.split}_{index:06d}")  # splits may be sliced: "validation[:500]"

            def load(ref: dict = ref, what: str = item_id):  # noqa: ANN202 - Audio
                if ref.get("bytes"):
                    return decode_audio_bytes(ref["bytes"], what=what)
                return load_audio(ref["path"])

            label = str(row[self.text_column]) if self.text_column in row else None
            yield ItemSource(item_id, f"hf:{self.name}/{self.split}[{index}]", load, label=label)

    def describe(self) -> str:
        return f"HuggingFaceAudio({self.name}, split={self.split})"
