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

import dagster as dg

from mpq_assets.experiments import Experiment
from mpq_assets.experiments.declaration import DeclarationError, ExperimentDeclaration, checked, describe

StudyError = DeclarationError  # a study folder that does not load: the message names file, line and field


class MpqExperiment(dg.Component, ExperimentDeclaration, dg.Resolvable):
    """One MPQ experiment: a dataset, the tasks and quality metrics run on every compressed variant of it (the
    fields: :class:`~mpq_assets.experiments.declaration.ExperimentDeclaration`)."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from mpq_assets.definitions import build_definitions

        experiment = checked(self.experiment(context.path), context.path / "defs.yaml")
        return build_definitions([experiment], sensors=False)


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
            raise StudyError(describe(base / "defs.yaml", exc)) from exc
        if not isinstance(component, MpqExperiment):
            continue
        experiment = checked(component.experiment(base), base / "defs.yaml")
        if experiment.name in out:
            raise StudyError(f"{base / 'defs.yaml'}: a second experiment named {experiment.name!r}")
        out[experiment.name] = experiment
    return out


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

# Dagster resolves a relative working_directory against the shell's cwd, not this file: the folder is written
# absolute, so `dagster dev -w DIR/workspace.yaml` works from anywhere (rerun `mpq init` elsewhere if it moves)
WORKSPACE = """load_from:
  - python_module:
      module_name: {package}.definitions
      working_directory: {folder}
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
        folder / "workspace.yaml": WORKSPACE.format(package=package, folder=folder),
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
