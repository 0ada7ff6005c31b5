"""What an experiment is: a dataset, its modality, its tasks and quality metrics, an optional training study."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mpq_assets.datasets import Dataset, make_dataset
from mpq_assets.media.item import Modality
from mpq_assets.settings import Settings

# BD-rate anchors when an experiment names none: JPEG for images; Opus for audio, whose kbps ladder keeps
# distinct points down to ~6 kbps where MP3 and AAC collapse onto their floors (too few points for BD-rate).
DEFAULT_ANCHORS: dict[Modality, str] = {"image": "jpeg", "audio": "opus"}


@dataclass(frozen=True)
class TaskSpec:
    """One task of an experiment: ``name`` keys its rows, ``task`` picks the registry entry.

    ``optional=True``: when the model's weights are not available the task is
    skipped with one clear note (the rest of the experiment runs); otherwise the
    asset fails with the message saying how to get them.

    ``label``: the ground truth it is scored against: the item's ``label``, or one of the dataset's named
    per-item fields (``voice`` for speaker verification on a speech set whose label is the transcript).
    """

    name: str
    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    optional: bool = False
    label: str = "label"


@dataclass(frozen=True)
class TrainingSpec:
    """Training on compressed data: a ``recipe`` (``mpq_assets.training.RECIPES``) trained on the dataset's
    training split (``train_args``: the dataset's arguments for it, e.g. ``{"split": "train"}``) once per
    training variant (the uncompressed split, and each codec x bitrate in ``variants``) and seed, then tested on
    every test variant (the experiment's own items, uncompressed and every compressed partition).

    The training split is an experiment of its own, ``<name>_train``, so its compressed variants are ordinary
    ``compressed`` partitions with rates, files and errors like any other."""

    recipe: str
    train_args: Mapping[str, Any]
    variants: tuple[tuple[str, str], ...] = ()
    seeds: int = 3
    recipe_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    modality: Modality
    dataset: str
    dataset_args: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    tasks: tuple[TaskSpec, ...] = ()
    quality_metrics: tuple[str, ...] = ()
    headline: tuple[str, ...] = ()  # measures the demo summary prints (all when empty)
    anchor: str | None = None       # BD-rate anchor codec; None: DEFAULT_ANCHORS of the modality
    training: TrainingSpec | None = None  # train x test variant study (``training_assets``)
    # what scripted runs (`mpq run`, the demo) materialise by default: every ready codec / the whole grid when
    # empty; the UI offers every partition either way
    codecs: tuple[str, ...] = ()
    ratios: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise ValueError naming the field when a name is not registered (dataset, task, metric, codec, ratio)."""
        from mpq_assets.codecs import RATIOS, codec_names
        from mpq_assets.datasets.registry import DATASETS
        from mpq_assets.quality.registry import METRICS
        from mpq_assets.tasks.registry import TASKS

        def unknown(field: str, names: Iterable[str], known: Iterable[str]) -> None:
            bad = [n for n in names if n not in set(known)]
            if bad:
                raise ValueError(f"experiment {self.name}: {field}: unknown {', '.join(map(repr, bad))}; known: "
                                 f"{', '.join(sorted(known))}")

        unknown("dataset", [self.dataset], DATASETS)
        unknown("tasks", [t.task for t in self.tasks], TASKS)
        unknown("quality_metrics", self.quality_metrics, METRICS)
        unknown("codecs", self.codecs, codec_names(self.modality))
        unknown("ratios", self.ratios, RATIOS)

    @property
    def bd_anchor(self) -> str:
        """The codec every BD-rate in ``rate_curves`` is measured against."""
        return self.anchor or DEFAULT_ANCHORS[self.modality]

    def training_split(self) -> Experiment:
        """The experiment holding the training split's items and compressed variants: ``<name>_train``."""
        if self.training is None:
            raise ValueError(f"experiment {self.name} declares no training")
        return Experiment(f"{self.name}_train", self.modality, self.dataset,
                          {**dict(self.dataset_args), **dict(self.training.train_args)},
                          description=f"training split of {self.name}", anchor=self.anchor)

    def make_dataset(self, settings: Settings | None = None) -> Dataset:
        """The experiment's dataset, built with the step's ``settings`` (demo data, caches, MUSDB copy)."""
        ds = make_dataset(self.dataset, settings=settings, **dict(self.dataset_args))
        if ds.modality != self.modality:
            raise ValueError(f"experiment {self.name}: dataset {self.dataset} is {ds.modality}, not {self.modality}")
        return ds
