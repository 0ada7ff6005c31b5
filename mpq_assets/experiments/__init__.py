"""Experiments are data: a dataset, its modality, its tasks and quality metrics.

The built-in experiments are the YAML files in ``builtin/`` (one per experiment,
the same ``type: / attributes:`` declaration a study folder's ``defs.yaml`` holds,
:mod:`mpq_assets.experiments.declaration`); a user's own live in study folders
(:mod:`mpq_assets.defs.study`). The asset factory turns each into its own asset group.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from mpq_assets.experiments.declaration import DeclarationError, load_declaration
from mpq_assets.experiments.spec import DEFAULT_ANCHORS, Experiment, TaskSpec, TrainingSpec

__all__ = ["DEFAULT_ANCHORS", "EXPERIMENTS", "DeclarationError", "Experiment", "TaskSpec", "TrainingSpec",
           "builtin_experiments"]


def builtin_experiments() -> dict[str, Experiment]:
    """Every ``builtin/*.yaml``, by experiment name (demo ones first, then the paper's, each alphabetically)."""
    folder = Path(str(resources.files("mpq_assets.experiments").joinpath("builtin")))
    paths = sorted(folder.glob("*.yaml"), key=lambda p: (not p.stem.startswith("demo_"), p.stem))
    out: dict[str, Experiment] = {}
    for path in paths:
        experiment = load_declaration(path)
        if experiment.name in out:
            raise DeclarationError(f"{path}: a second experiment named {experiment.name!r}")
        out[experiment.name] = experiment
    return out


EXPERIMENTS: dict[str, Experiment] = builtin_experiments()
