"""Folder datasets: every image or audio file below a root, with an optional labels CSV.

Paths never leave the root (symlinks and ``..`` are refused), so a labels file
cannot point the platform at arbitrary files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from mpq_assets.artifacts import safe_join
from mpq_assets.datasets.base import Dataset, ItemSource, item_id_from_name
from mpq_assets.media.audio import load_audio
from mpq_assets.media.image import load_image
from mpq_assets.media.item import Modality
from mpq_assets.settings import Settings, load_settings

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aiff", ".aif"}


LABEL_COLUMNS = ("label", "text", "transcript", "sentence")
LABEL_FILES = ("labels.csv", "transcripts.csv")


class FolderDataset(Dataset):
    """Files under ``root`` with a known extension; labels from a CSV with a ``file`` column and one of
    ``label``, ``text``, ``transcript``, ``sentence`` (``labels.csv`` or ``transcripts.csv`` by default)."""

    modality: ClassVar[Modality]
    extensions: ClassVar[set[str]]

    def __init__(self, root: str | Path, labels_csv: str | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder {self.root} does not exist")
        names = (labels_csv,) if labels_csv else LABEL_FILES
        self.labels_file = next((n for n in names if safe_join(self.root, n).exists()), None)
        if labels_csv and self.labels_file is None:
            raise FileNotFoundError(f"labels file {labels_csv} not found in {self.root}")
        self.labels = self._read_labels(self.labels_file) if self.labels_file else {}

    def _read_labels(self, name: str) -> dict[str, str]:
        path = safe_join(self.root, name)
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = set(reader.fieldnames or ())
            column = next((c for c in LABEL_COLUMNS if c in fields), None)
            if "file" not in fields or column is None:
                raise ValueError(f"{path} needs a 'file' column and one of {LABEL_COLUMNS}")
            return {row["file"]: row[column] for row in reader}

    def items(self) -> Iterator[ItemSource]:
        seen: set[str] = set()
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in self.extensions or path.name == self.labels_file:
                continue
            rel = path.relative_to(self.root).as_posix()
            item_id = item_id_from_name(rel.replace("/", "__"))
            if item_id in seen:
                item_id = item_id_from_name(rel.replace("/", "__").replace(".", "_"))
            seen.add(item_id)
            yield ItemSource(item_id, rel, self._safe_loader(rel), label=self.labels.get(rel))

    def _safe_loader(self, rel: str):  # noqa: ANN202 - a zero-argument loader
        """Resolve the path when the item loads: a symlink out of the root fails that item alone."""
        return lambda: self._loader(safe_join(self.root, rel))()

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

    def __init__(self, root: str | Path, labels_csv: str | None = None, masks_dir: str | None = None) -> None:
        super().__init__(root, labels_csv)
        self.masks = safe_join(self.root, masks_dir) if masks_dir else None

    def items(self) -> Iterator[ItemSource]:
        for src in super().items():
            if self.masks is not None and (self.masks == Path(self.root / src.source).parent
                                           or self.masks in Path(self.root / src.source).parents):
                continue  # the masks folder is not a source of items
            if self.masks is not None:
                mask = self.masks / f"{Path(src.source).stem}.png"
                label = str(safe_join(self.root, str(mask.relative_to(self.root)))) if mask.exists() else None
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


class StemsFolder(Dataset):
    """One folder per track holding the mixture and its stems (MUSDB18-HQ's plain layout).

    ``root/<track>/mixture.wav`` plus ``root/<track>/<stem>.wav`` for each stem
    (any audio extension). The item is the mixture; its label is a JSON object
    mapping stem name -> file, which separation tasks score against.
    For MUSDB18-HQ pass ``root=<musdb18hq>/test``.
    """

    modality = "audio"

    def __init__(self, root: str | Path, mixture: str = "mixture", stems: tuple[str, ...] | None = None) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"stems folder {self.root} does not exist (for MUSDB18-HQ pass <musdb18hq>/test)")
        self.mixture = mixture
        self.stems = stems

    def items(self) -> Iterator[ItemSource]:
        import json

        for track in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = {f.stem: f for f in sorted(track.iterdir()) if f.suffix.lower() in AUDIO_EXTENSIONS}
            if self.mixture not in files:
                continue
            stems = {name: str(safe_join(self.root, track.name, files[name].name)) for name in files
                     if name != self.mixture and (self.stems is None or name in self.stems)}
            mix = safe_join(self.root, track.name, files[self.mixture].name)
            yield ItemSource(item_id_from_name(track.name), f"{track.name}/{mix.name}",
                             lambda p=mix: load_audio(p), label=json.dumps(stems), extra=stems)

    def describe(self) -> str:
        return f"StemsFolder({self.root})"


class MusdbStems(StemsFolder):
    """One split of MUSDB18-HQ (``train`` / ``test``) from the deployment's copy: ``MPQ_MUSDB_ROOT``
    (``Settings.musdb_root``), unless ``root`` names the copy."""

    def __init__(self, split: str = "test", root: str | Path | None = None, stems: tuple[str, ...] | None = None,
                 settings: Settings | None = None) -> None:
        base = Path(root).expanduser() if root else (settings or load_settings()).musdb_root
        super().__init__(base / split, stems=stems)
