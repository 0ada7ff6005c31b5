"""Experiments are data: a dataset, its modality, its tasks and quality metrics.

The built-in experiments are the entries of ``EXPERIMENTS``; a user's own are
``defs.yaml`` files of a study folder (:mod:`mpq_assets.defs.study`). The asset
factory turns each into its own asset group.
"""

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


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment("demo_images", "image", "demo_images",
                   description="Photos shipped by scikit-image / scikit-learn / matplotlib, 5 hand-labelled",
                   # three offline ImageNet classifiers of one family at three input sizes: which breaks first?
                   tasks=(TaskSpec("classification", "classification", {"model": "efficientnet-lite0"}),
                          TaskSpec("lite1", "classification", {"model": "efficientnet-lite1"}),
                          TaskSpec("lite2", "classification", {"model": "efficientnet-lite2"})),
                   # lpips_vgg is available too, but costs ~1.3 s per 512 px item on 2 CPU cores (25x Alex)
                   quality_metrics=("psnr", "ssim", "ms_ssim", "lpips_alex"),
                   headline=("psnr", "ms_ssim", "lpips_alex", "classification.agreement", "classification.kl",
                             "classification.top1")),
        # The paper's image sets and models: need the HuggingFace hub (or its cache) and, for
        # imagenet-1k, an access token. Offline they fail with a message saying how to fetch them.
        Experiment("paper_imagenet", "image", "hf_images", {"name": "imagenet-1k"},
                   description="ImageNet-1k validation, ViT-B/16 (the paper's classifier)",
                   tasks=(TaskSpec("classification", "classification",
                                   {"model": "google/vit-base-patch16-224"}),),
                   quality_metrics=("psnr", "ms_ssim", "lpips_alex")),
        Experiment("paper_beans", "image", "hf_images", {"name": "beans"},
                   description="Beans leaf disease test split, ViT fine-tuned on beans",
                   tasks=(TaskSpec("classification", "classification", {"model": "nateraw/vit-base-beans"}),),
                   quality_metrics=("psnr", "ms_ssim", "lpips_alex")),
        # the paper's third finding on real data: beans' train split (1034 images) compressed, a linear probe
        # on the paper's ViT's pooled features per training variant, tested on the test split's variants
        Experiment("paper_beans_training", "image", "hf_images", {"name": "beans", "split": "test"},
                   description="Beans: a linear probe on ViT-B/16 features trained on each compressed variant of "
                   "the train split",
                   training=TrainingSpec("linear_probe", {"split": "train"},
                                         variants=(("jpeg", "20x"), ("jpeg", "100x"), ("webp", "200x"),
                                                   ("hific", "200x")),
                                         recipe_args={"backbone": "hf:google/vit-base-patch16-224"})),
        Experiment("paper_ade20k", "image", "hf_images", {"name": "ade20k"},
                   description="ADE20k (scene_parse_150) validation, SegFormer-B0",
                   tasks=(TaskSpec("segmentation", "segmentation",
                                   {"model": "nvidia/segformer-b0-finetuned-ade-512-512"}),),
                   quality_metrics=("psnr", "ms_ssim", "lpips_alex")),
        Experiment("demo_speech", "audio", "demo_speech",
                   description="flite TTS sentences, 48 kHz mono like Common Voice, exact transcripts",
                   # two Whisper sizes and a speaker encoder, all from PyPI packages: which breaks first?
                   tasks=(TaskSpec("asr", "asr", {"model": "tiny.en-ct2"}),
                          TaskSpec("asr_base", "asr", {"model": "base-ct2"}, optional=True),
                          TaskSpec("speaker", "speaker", {"model": "resemblyzer"}, optional=True, label="voice")),
                   quality_metrics=("snr", "si_sdr", "log_mel_distance", "stoi", "pesq", "cdpam", "dnsmos"),
                   headline=("si_sdr", "stoi", "pesq", "cdpam", "asr.wer", "asr.wer_ref", "asr_base.wer",
                             "asr_base.wer_ref", "speaker.speaker_sim", "speaker.eer")),
        Experiment("demo_music", "audio", "demo_music",
                   description="Bach chorale excerpts rendered per voice (FluidR3_GM), 44.1 kHz stereo",
                   # Basic Pitch ships in its wheel; no separation weights ship on PyPI: separation runs when
                   # `mpq models pull htdemucs` has been done
                   tasks=(TaskSpec("transcription", "transcription", {"model": "basic-pitch"}, optional=True,
                                   label="notes"),
                          TaskSpec("separation", "separation", {"model": "htdemucs"}, optional=True)),
                   quality_metrics=("snr", "si_sdr", "log_mel_distance", "cdpam"),
                   headline=("snr", "si_sdr", "log_mel_distance", "cdpam", "transcription.note_f1",
                             "transcription.note_f1_ref", "separation.sdr_ref")),
        Experiment("demo_documents", "image", "demo_documents",
                   description="paragraphs rendered in six DejaVu faces at 16-26 px, exact text; Tesseract OCR",
                   tasks=(TaskSpec("ocr", "ocr", {"model": "tesseract-eng"}, optional=True),),
                   quality_metrics=("psnr", "ssim", "ms_ssim", "lpips_alex"),
                   headline=("psnr", "ms_ssim", "lpips_alex", "ocr.cer", "ocr.wer", "ocr.cer_ref")),
        Experiment("demo_commands", "audio", "demo_commands", {"split": "test"},
                   description="espeak-ng / flite command words at 16 kHz; a keyword CNN trained on each "
                   "training variant, tested on voices it never heard",
                   training=TrainingSpec("mel_cnn", {"split": "train"},
                                         variants=(("opus", "20x"), ("opus", "50x"), ("mp3", "20x"),
                                                   ("mp3", "50x"), ("codec2", "100x")),
                                         seeds=3, recipe_args={"epochs": 20})),
        Experiment("demo_shapes", "image", "demo_shapes", {"split": "test"},
                   description="generated shapes on smooth backgrounds; a linear probe on EfficientNet-Lite0 "
                   "features trained on each training variant, tested on background palettes it never saw",
                   training=TrainingSpec("linear_probe", {"split": "train"},
                                         variants=(("jpeg", "20x"), ("jpeg", "50x"), ("webp", "100x"),
                                                   ("webp", "200x")), seeds=3)),
        # The paper's audio sets: Common Voice 11 (hub, needs accepting its terms) and MUSDB18-HQ
        # (a local copy: MPQ_MUSDB_ROOT, default data/musdb18hq, its test/ split).
        Experiment("paper_commonvoice", "audio", "hf_audio", {"name": "common_voice_11"},
                   description="Common Voice 11 English test split, openai-whisper",
                   tasks=(TaskSpec("asr", "asr", {"model": "base"}),),
                   quality_metrics=("si_sdr", "stoi", "pesq", "cdpam")),
        Experiment("paper_musdb", "audio", "musdb18hq", {"split": "test"},
                   description="MUSDB18-HQ test split, Demucs v3 (hdemucs_mmi, the paper's)",
                   tasks=(TaskSpec("separation", "separation", {"model": "hdemucs_mmi"}),),
                   quality_metrics=("si_sdr", "log_mel_distance", "cdpam")),
    )
}

