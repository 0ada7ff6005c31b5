"""An experiment as YAML: the schema of a ``defs.yaml``'s ``attributes``, and errors that name file, line, field.

The built-in experiments (``builtin/*.yaml`` beside this module) and a user's
study folders (:mod:`mpq_assets.defs.study`, the Dagster component) share this
one schema, so a field means the same thing in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mpq_assets.experiments.spec import Experiment, TaskSpec, TrainingSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskDeclaration(_Strict):
    name: str = Field(description="the task's name in result rows (several models of one task need distinct names)")
    task: str | None = Field(default=None, description="registry task (classification, asr, ocr, ...); "
                             "default: the name")
    args: dict[str, Any] = Field(default_factory=dict, description="task options, e.g. {model: efficientnet-lite0}")
    optional: bool = Field(default=False, description="skip with one line when the model is not available")
    label: str = Field(default="label", description="the item field it is scored against")


class TrainingDeclaration(_Strict):
    recipe: str
    train_args: dict[str, Any] = Field(description="the dataset's arguments for the training split")
    variants: list[str] = Field(default_factory=list, description="training variants as codec@ratio, e.g. jpeg@20x")
    seeds: int = 3
    recipe_args: dict[str, Any] = Field(default_factory=dict)


class ExperimentDeclaration(_Strict):
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


def _variant(text: str) -> tuple[str, str]:
    codec, sep, ratio = text.partition("@")
    if not sep or not codec or not ratio:
        raise ValueError(f"training variant {text!r}: write codec@ratio, e.g. jpeg@20x")
    return codec, ratio


class DeclarationError(ValueError):
    """A declaration that does not load: the message names the YAML file, the line and the field."""


def load_declaration(path: Path) -> Experiment:
    """The experiment a ``type: ... / attributes: ...`` YAML file declares, checked against the registries."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeclarationError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from exc
    attributes = document.get("attributes") if isinstance(document, dict) else None
    if not isinstance(attributes, dict):
        raise DeclarationError(f"{path}: needs an `attributes:` mapping")
    try:
        declared = ExperimentDeclaration.model_validate(attributes)
    except ValidationError as exc:
        raise DeclarationError(describe(path, exc)) from exc
    return checked(declared.experiment(path.parent), path)


def checked(experiment: Experiment, path: Path) -> Experiment:
    """``experiment`` after :meth:`Experiment.check`, its error located in ``path``."""
    try:
        experiment.check()
    except ValueError as exc:  # "experiment NAME: field: unknown ..."
        parts = str(exc).split(": ", 2)
        field = parts[1] if len(parts) == 3 else ""
        line = line_of(path, ["attributes", field]) if field else None
        where = f"{path}:{line}" if line else str(path)
        raise DeclarationError(f"{where}: attributes.{': '.join(parts[1:])}") from exc
    return experiment


def describe(path: Path, exc: BaseException) -> str:
    """``file:line: attributes.field: what is wrong`` for the pydantic error in ``exc``'s chain, else its first
    line."""
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
        line = line_of(path, keys)
        lines.append(f"{path}:{line}: {'.'.join(keys)}: {error['msg']}{shown}" if line else
                     f"{path}: {'.'.join(keys)}: {error['msg']}{shown}")
    return "; ".join(lines)


def line_of(path: Path, keys: list[str]) -> int | None:
    """1-based line of the deepest of ``keys`` that the YAML file has (a missing field: its parent's line)."""
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
