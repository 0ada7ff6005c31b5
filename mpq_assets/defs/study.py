"""Studies declared in YAML: the ``MpqExperiment`` Dagster component and the study folders that hold it.

A study is a dg project folder (``mpq init DIR`` writes one) whose
``<package>/defs/<name>/defs.yaml`` says::

    type: mpq_assets.defs.study.MpqExperiment
    attributes:
      name: my_photos
      modality: image
      dataset: image_folder
      dataset_args: {root: /data/photos}
      tasks:
        - {name: classification, task: classification, args: {model: efficientnet-lite0}}
      quality_metrics: [psnr, ssim, lpips_alex]
      codecs: [jpeg, webp]
      ratios: [20x, 100x]

``dg``, ``dagster dev`` and ``load_from_defs_folder`` load it like any component;
Dagster validates the attributes and names the file, line and field of a bad
one. The component builds the experiment's assets with the platform's shared
resource and sensors, so any number of studies merge into one code location.
``mpq run --study DIR`` materialises the studies of a folder from the command
line (:func:`load_study` reads them through the same component tree).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from mpq_assets.experiments import Experiment, TaskSpec, TrainingSpec


class TaskDeclaration(dg.Model):
    name: str = Field(description="the task's name in result rows (several models of one task need distinct names)")
    task: str | None = Field(default=None, description="registry task (classification, asr, ocr, ...); "
                             "default: the name")
    args: dict[str, Any] = Field(default_factory=dict, description="task options, e.g. {model: efficientnet-lite0}")
    optional: bool = Field(default=False, description="skip with one line when the model is not available")
    label: str = Field(default="label", description="the item field it is scored against")


class TrainingDeclaration(dg.Model):
    recipe: str
    train_args: dict[str, Any] = Field(description="the dataset's arguments for the training split")
    variants: list[str] = Field(default_factory=list, description="training variants as codec@ratio, e.g. jpeg@20x")
    seeds: int = 3
    recipe_args: dict[str, Any] = Field(default_factory=dict)


class MpqExperiment(dg.Component, dg.Model, dg.Resolvable):
    """One MPQ experiment: a dataset, the tasks and quality metrics run on every compressed variant of it."""

    name: str = Field(description="experiment name: the asset key prefix and the `experiment` column")
    modality: Literal["image", "audio"]
    dataset: str = Field(description="registry dataset: image_folder, audio_folder, hf_images, demo_images, ...")
    dataset_args: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    tasks: list[TaskDeclaration] = Field(default_factory=list)
    quality_metrics: list[str] = Field(default_factory=list)
    headline: list[str] = Field(default_factory=list, description="measures `mpq run` prints (all when empty)")
    codecs: list[str] = Field(default_factory=list, description="codecs `mpq run` materialises (all ready ones "
                              "when empty)")
    ratios: list[str] = Field(default_factory=list, description="target ratios `mpq run` materialises (the grid "
                              "when empty)")
    anchor: str | None = None
    training: TrainingDeclaration | None = None

    def experiment(self, base: Path | None = None) -> Experiment:
        """The :class:`Experiment` declared; a relative ``root`` in ``dataset_args`` is relative to ``base``."""
        args = dict(self.dataset_args)
        if base is not None and isinstance(args.get("root"), str) and not Path(args["root"]).is_absolute():
            args["root"] = str((base / args["root"]).resolve())
        training = None
        if self.training is not None:
            training = TrainingSpec(self.training.recipe, dict(self.training.train_args),
                                    tuple(_variant(v) for v in self.training.variants), self.training.seeds,
                                    dict(self.training.recipe_args))
        return Experiment(
            self.name, self.modality, self.dataset, args, self.description,
            tuple(TaskSpec(t.name, t.task or t.name, dict(t.args), t.optional, t.label) for t in self.tasks),
            tuple(self.quality_metrics), tuple(self.headline), self.anchor, training,
            codecs=tuple(self.codecs), ratios=tuple(self.ratios))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from mpq_assets.definitions import build_definitions

        experiment = self.experiment(context.path)
        experiment.check()
        return build_definitions([experiment], sensors=False)


def _variant(text: str) -> tuple[str, str]:
    codec, sep, ratio = text.partition("@")
    if not sep or not codec or not ratio:
        raise ValueError(f"training variant {text!r}: write codec@ratio, e.g. jpeg@20x")
    return codec, ratio


def load_study(folder: str | Path) -> dict[str, Experiment]:
    """The experiments a study folder (a dg project) declares, by name, through Dagster's component tree."""
    from dagster.components.core.component_tree import ComponentTree

    folder = Path(folder).resolve()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # the project's package, as `dagster dev --working-directory` imports it
    tree = ComponentTree.for_project(path_within_project=folder)
    out: dict[str, Experiment] = {}
    for loc in tree._component_decl_tree():
        where = getattr(loc, "file_path_posix", None)
        if where is None or getattr(loc, "instance_key", None) is None:
            continue  # the folder / file entries; components are the keyed instances
        base = Path(where) if Path(where).is_dir() else Path(where).parent
        try:
            component = tree.load_component(loc)
        except Exception as exc:
            raise StudyError(_describe(base / "defs.yaml", exc)) from exc
        if not isinstance(component, MpqExperiment):
            continue
        experiment = component.experiment(base)
        if experiment.name in out:
            raise StudyError(f"{base / 'defs.yaml'}: a second experiment named {experiment.name!r}")
        try:
            experiment.check()
        except ValueError as exc:  # "experiment NAME: field: unknown ..."
            field = str(exc).split(": ")[1] if str(exc).count(": ") >= 2 else ""
            line = _line_of(base / "defs.yaml", ["attributes", field]) if field else None
            where = f"{base / 'defs.yaml'}:{line}" if line else str(base / "defs.yaml")
            raise StudyError(f"{where}: attributes.{str(exc).split(': ', 1)[1]}") from exc
        out[experiment.name] = experiment
    return out


class StudyError(ValueError):
    """A study folder that does not load: the message names the defs.yaml, the line and the field."""


def _describe(path: Path, exc: BaseException) -> str:
    """``file:line: attributes.field: what is wrong`` for a pydantic error in the chain, else the first line."""
    from pydantic import ValidationError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return f"{path}: {str(exc).splitlines()[0]}"
    lines = []
    for error in cause.errors():
        loc = [str(k) for k in error["loc"]]
        got = error.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        if loc and " at " in loc[-1]:  # Dagster already located it: "attributes.name at FILE:LINE"
            field, _, where = loc[-1].partition(" at ")
            lines.append(f"{where}: {field}: {error['msg']}{shown}")
            continue
        keys = ["attributes", *loc]
        line = _line_of(path, keys)
        lines.append(f"{path}:{line}: {'.'.join(keys)}: {error['msg']}{shown}" if line else
                     f"{path}: {'.'.join(keys)}: {error['msg']}{shown}")
    return "; ".join(lines)


def _line_of(path: Path, keys: list[str]) -> int | None:
    """1-based line of the deepest of ``keys`` that the YAML file has (a missing field: its parent's line)."""
    import yaml

    try:
        node: Any = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == key), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and key.isdigit() and int(key) < len(node.value):
            node = node.value[int(key)]
            line = node.start_mark.line + 1
        else:
            break
    return line


PYPROJECT = """[project]
name = "{package}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["mpq-assets"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "{package}"
registry_modules = ["mpq_assets.defs.study"]
"""

DEFINITIONS = '''"""The study's code location: every defs.yaml under defs/, plus MPQ's sensors once
(dagster dev -w workspace.yaml, or dagster dev -m {package}.definitions -d .)."""

from pathlib import Path

import dagster as dg

from mpq_assets.definitions import platform_definitions


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
                                platform_definitions())
'''

WORKSPACE = """load_from:
  - python_module:
      module_name: {package}.definitions
      working_directory: .
      location_name: {package}
"""

EXAMPLE = """# An MPQ experiment (docs/studies.md in the MPQ repository lists every field).
type: mpq_assets.defs.study.MpqExperiment

attributes:
  name: {name}                 # asset key prefix and the `experiment` column in DuckDB
  modality: image              # image | audio
  dataset: image_folder        # image_folder, audio_folder, stems_folder, hf_images, hf_audio, ...
  dataset_args:
    root: ../../../images      # relative to this file; put your images (and labels.csv) there
  description: my photos, compressed
  tasks:                       # name: result rows; task: registry task; args: its options
    - name: classification
      task: classification
      args: {{model: efficientnet-lite0}}
  quality_metrics: [psnr, ssim, lpips_alex]
  codecs: [jpeg, webp]         # what `mpq run` materialises (empty: every ready codec)
  ratios: [20x, 100x]          # (empty: the whole grid, 20x ... 1000x)
  # training:                  # optional: train on each compressed variant of a training split
  #   recipe: linear_probe
  #   train_args: {{root: ../../../train_images}}
  #   variants: [jpeg@20x]
"""


def init_study(folder: str | Path, name: str = "my_study") -> list[Path]:
    """Write a study folder: a dg project with one commented ``defs.yaml``; returns the files written."""
    folder = Path(folder).resolve()
    package = "".join(c if c.isalnum() else "_" for c in folder.name).strip("_").lower() or "study"
    if package[0].isdigit():
        package = f"study_{package}"
    files: Mapping[Path, str] = {
        folder / "pyproject.toml": PYPROJECT.format(package=package),
        folder / "workspace.yaml": WORKSPACE.format(package=package),
        folder / package / "__init__.py": "",
        folder / package / "definitions.py": DEFINITIONS.format(package=package),
        folder / package / "defs" / "__init__.py": "",
        folder / package / "defs" / name / "defs.yaml": EXAMPLE.format(name=name),
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists; `mpq init` writes a new study folder")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
