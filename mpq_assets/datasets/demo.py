"""The embedded offline demo datasets (no hub needed).

- ``demo_images``: photos that scikit-image, scikit-learn and matplotlib ship,
  hand-labelled with ImageNet class names where the class is obvious
  (several acceptable names separated by ``|``).
- ``demo_speech``: flite-synthesised sentences at 48 kHz mono with exact
  transcripts (``data/demo_speech``, made by ``scripts/generate_demo_audio.py``).
- ``demo_commands``: espeak-ng / flite command words at 16 kHz, split into
  train and test by voice (``data/demo_commands``, ``scripts/generate_demo_commands.py``).
- ``demo_music``: Bach chorale excerpts rendered per voice (``data/demo_music``);
  the item is the mixture, the stems and the note list are listed in ``extra``.
- ``demo_documents``: paragraphs rendered in DejaVu faces with their exact text
  (``data/demo_documents``, ``scripts/generate_demo_documents.py``), for OCR.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from mpq_assets.artifacts import safe_join
from mpq_assets.datasets.base import Dataset, ItemSource, check_item_id
from mpq_assets.media.audio import load_audio
from mpq_assets.media.image import load_image, to_rgb8
from mpq_assets.media.item import Modality
from mpq_assets.settings import Settings, load_settings


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data
        from PIL import Image

        arr = getattr(skimage.data, name)()
        return to_rgb8(Image.fromarray(arr))

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(name))

    return load


def _matplotlib(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib

        return load_image(Path(matplotlib.get_data_path()) / "sample_data" / name)

    return load


# item_id -> (source, loader, ImageNet label(s) or None)
DEMO_IMAGES: dict[str, tuple[str, Callable[[], np.ndarray], str | None]] = {
    "astronaut": ("skimage.data.astronaut", _skimage("astronaut"), None),
    "chelsea": ("skimage.data.chelsea", _skimage("chelsea"), "tabby|tiger cat|Egyptian cat"),
    "coffee": ("skimage.data.coffee", _skimage("coffee"), "espresso|cup"),
    "rocket": ("skimage.data.rocket", _skimage("rocket"), "missile|projectile"),
    "clock": ("skimage.data.clock", _skimage("clock"), "analog clock|wall clock"),
    "camera": ("skimage.data.camera", _skimage("camera"), None),
    "coins": ("skimage.data.coins", _skimage("coins"), None),
    "immunohistochemistry": ("skimage.data.immunohistochemistry", _skimage("immunohistochemistry"), None),
    "china": ("sklearn china.jpg", _sklearn("china.jpg"), None),
    "flower": ("sklearn flower.jpg", _sklearn("flower.jpg"), None),
    "grace_hopper": ("matplotlib grace_hopper.jpg", _matplotlib("grace_hopper.jpg"), "military uniform"),
}


class DemoImages(Dataset):
    modality: ClassVar[Modality] = "image"

    def items(self) -> Iterator[ItemSource]:
        for item_id, (source, load, label) in DEMO_IMAGES.items():
            yield ItemSource(item_id, source, load, label=label)


class DemoSpeech(Dataset):
    """48 kHz mono TTS sentences; label = exact transcript."""

    modality: ClassVar[Modality] = "audio"

    def __init__(self, per_voice: int | None = None, root: str | Path | None = None,
                 settings: Settings | None = None) -> None:
        if per_voice is not None and per_voice < 1:
            raise ValueError(f"demo_speech: per_voice must be at least 1, not {per_voice}")
        self.per_voice = per_voice  # the first that many sentences of each voice (the quick demo's 12 clips)
        self.root = Path(root) if root else (settings or load_settings()).demo_data_dir / "demo_speech"

    def items(self) -> Iterator[ItemSource]:
        table = self.root / "transcripts.csv"
        if not table.exists():
            raise FileNotFoundError(f"{table} is missing; run scripts/generate_demo_audio.py --only speech")
        taken: dict[str, int] = {}
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                taken[row["voice"]] = taken.get(row["voice"], 0) + 1
                if self.per_voice is not None and taken[row["voice"]] > self.per_voice:
                    continue
                item_id = check_item_id(row["item_id"])
                path = safe_join(self.root, f"{item_id}.flac")
                yield ItemSource(
                    item_id,
                    f"demo_speech/{item_id}.flac (flite voice {row['voice']})",
                    lambda p=path: load_audio(p),
                    label=row["text"],
                    extra={"voice": row["voice"]},
                )


class DemoCommands(Dataset):
    """1 s, 16 kHz synthetic command words (espeak-ng and flite voices); label = the word.

    ``split`` picks the voices: ``train`` and ``test`` are disjoint by voice (``labels.csv`` says which), ``all``
    is both, so a model trained on one split is tested on speakers it never heard. ``per_word`` keeps the first
    that many clips of each word (a smaller study, in the file's fixed order)."""

    modality: ClassVar[Modality] = "audio"
    SPLITS: ClassVar[tuple[str, ...]] = ("train", "test", "all")

    def __init__(self, split: str = "test", per_word: int | None = None, root: str | Path | None = None,
                 settings: Settings | None = None) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"demo_commands: split must be one of {', '.join(self.SPLITS)}, not {split!r}")
        if per_word is not None and per_word < 1:
            raise ValueError(f"demo_commands: per_word must be at least 1, not {per_word}")
        self.split, self.per_word = split, per_word
        self.root = Path(root) if root else (settings or load_settings()).demo_data_dir / "demo_commands"

    def items(self) -> Iterator[ItemSource]:
        table = self.root / "labels.csv"
        if not table.exists():
            raise FileNotFoundError(f"{table} is missing; run scripts/generate_demo_commands.py")
        taken: dict[str, int] = {}
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if self.split != "all" and row["split"] != self.split:
                    continue
                taken[row["word"]] = taken.get(row["word"], 0) + 1
                if self.per_word is not None and taken[row["word"]] > self.per_word:
                    continue
                item_id = check_item_id(row["item_id"])
                path = safe_join(self.root, f"{item_id}.flac")
                yield ItemSource(item_id, f"demo_commands/{item_id}.flac ({row['voice']})",
                                 lambda p=path: load_audio(p), label=row["word"],
                                 extra={"voice": row["voice"], "split": row["split"]})


class DemoMusic(Dataset):
    """Bach chorale mixtures; the label (JSON) maps each stem name to its FLAC file; ``extra`` holds the stems
    too and ``notes``, the chorale's note list (``notes.csv``: the transcription target)."""

    modality: ClassVar[Modality] = "audio"
    stems: ClassVar[tuple[str, ...]] = ("soprano", "alto", "tenor", "bass")

    def __init__(self, root: str | Path | None = None, settings: Settings | None = None) -> None:
        self.root = Path(root) if root else (settings or load_settings()).demo_data_dir / "demo_music"

    def items(self) -> Iterator[ItemSource]:
        table = self.root / "tracks.csv"
        if not table.exists():
            raise FileNotFoundError(f"{table} is missing; run scripts/generate_demo_audio.py --only music")
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                track = check_item_id(row["track_id"])
                mixture = safe_join(self.root, track, "mixture.flac")
                stems = {s: str(safe_join(self.root, track, f"{s}.flac")) for s in self.stems}
                notes = safe_join(self.root, track, "notes.csv")
                yield ItemSource(
                    track,
                    f"demo_music/{track} ({row.get('title', '')})",
                    lambda p=mixture: load_audio(p),
                    label=json.dumps(stems),
                    extra={**stems, **({"notes": str(notes)} if notes.is_file() else {})},
                )


class DemoDocuments(Dataset):
    """Rendered text paragraphs (grayscale PNG, loaded as RGB); label = the exact text."""

    modality: ClassVar[Modality] = "image"

    def __init__(self, root: str | Path | None = None, settings: Settings | None = None) -> None:
        self.root = Path(root) if root else (settings or load_settings()).demo_data_dir / "demo_documents"

    def items(self) -> Iterator[ItemSource]:
        table = self.root / "texts.csv"
        if not table.exists():
            raise FileNotFoundError(f"{table} is missing; run scripts/generate_demo_documents.py")
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                item_id = check_item_id(row["item_id"])
                path = safe_join(self.root, f"{item_id}.png")
                yield ItemSource(item_id, f"demo_documents/{item_id}.png ({row['font']} {row['size']} px)",
                                 lambda p=path: load_image(p), label=row["text"],
                                 extra={"font": row["font"], "size": row["size"]})
