"""Folder datasets: every image or audio file below a root, with an optional labels CSV.

Paths never leave the root (symlinks and ``..`` are refused), so a labels file
cannot point the platform at arbitrary files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from mpq_assets.codecs.base import Modality
from mpq_assets.datasets.base import Dataset, ItemSource, item_id_from_name
from mpq_assets.media.audio import load_audio
from mpq_assets.media.image import load_image
from mpq_assets.storage_paths import safe_join

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif"}


class FolderDataset(Dataset):
    """Files under ``root`` with a known extension; labels from ``labels.csv`` (``file,label``)."""

    modality: ClassVar[Modality]
    extensions: ClassVar[set[str]]

    def __init__(self, root: str | Path, labels_csv: str | None = "labels.csv") -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")
        self.labels = self._read_labels(labels_csv) if labels_csv else {}

    def _read_labels(self, name: str) -> dict[str, str]:
        path = safe_join(self.root, name)
        if not path.exists():
            return {}
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{path} needs the columns 'file' and 'label'")
            return {row["file"]: row["label"] for row in reader}

    def items(self) -> Iterator[ItemSource]:
        seen: set[str] = set()
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in self.extensions:
                continue
            rel = path.relative_to(self.root).as_posix()
            safe = safe_join(self.root, rel)  # refuses symlinks that point outside the root
            item_id = item_id_from_name(rel.replace("/", "__"))
            if item_id in seen:
                item_id = item_id_from_name(rel.replace("/", "__").replace(".", "_"))
            seen.add(item_id)
            yield ItemSource(item_id, rel, self._loader(safe), label=self.labels.get(rel))

    def _loader(self, path: Path):  # noqa: ANN202 - a zero-argument loader
        raise NotImplementedError

    def describe(self) -> str:
        return f"{type(self).__name__}({self.root})"


class ImageFolder(FolderDataset):
    """Images under ``root``; labels from ``labels.csv`` and/or segmentation masks from ``masks_dir``.

    A mask is a PNG label map with the image's stem (``masks/cat.png`` for ``cat.jpg``);
    its path becomes the item's label.
    """

    modality = "image"
    extensions = IMAGE_EXTENSIONS

    def __init__(self, root: str | Path, labels_csv: str | None = "labels.csv", masks_dir: str | None = None) -> None:
        super().__init__(root, labels_csv)
        self.masks = safe_join(self.root, masks_dir) if masks_dir else None

    def items(self) -> Iterator[ItemSource]:
        for src in super().items():
            if self.masks is not None and (self.masks == Path(self.root / src.source).parent
                                           or self.masks in Path(self.root / src.source).parents):
                continue  # the masks folder is not a source of items
            if self.masks is not None:
                mask = self.masks / f"{Path(src.source).stem}.png"
                label = str(mask) if mask.exists() else None
                yield ItemSource(src.item_id, src.source, src.load, label=label, extra=src.extra)
            else:
                yield src

    def _loader(self, path: Path):  # noqa: ANN202
        return lambda: load_image(path)


class AudioFolder(FolderDataset):
    modality = "audio"
    extensions = AUDIO_EXTENSIONS

    def _loader(self, path: Path):  # noqa: ANN202
        return lambda: load_audio(path)
