"""The README's recipes run as printed: its metric and its task give the values they should, through the
same interfaces the pipeline calls."""

from __future__ import annotations

import numpy as np
import pytest

from mpq_assets.settings import REPO_ROOT
from mpq_assets.tasks.base import Score

pytestmark = pytest.mark.fast


def _recipe(defines: str) -> dict:
    """Execute the README's python block that defines ``defines`` and return its namespace."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    (block,) = [b for b in blocks if f"class {defines}(" in b]
    namespace: dict = {}
    exec(compile(block, f"README.md ({defines})", "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_the_metric_recipe_scores_through_the_metric_interface() -> None:
    metric = _recipe("MeanAbsoluteError")["MeanAbsoluteError"]("cpu")
    grey = np.full((8, 6, 3), 100, np.uint8)
    metric.update([grey, grey], [grey + 3, grey])
    assert metric.compute().tolist() == [3.0, 0.0]
    assert metric.info.name == "mae" and not metric.info.higher_is_better
    assert metric.applicable(grey) is None


def test_the_task_recipe_predicts_scores_and_aggregates() -> None:
    task = _recipe("Brightness")["Brightness"]()
    dark, light = np.full((4, 4, 3), 10, np.uint8), np.full((4, 4, 3), 40, np.uint8)
    reference = task.predict([dark, dark])
    rows = task.score_reference(["a", "b"], task.predict([dark, light]), reference)
    assert [(r.item_id, r.value) for r in rows] == [("a", 0.0), ("b", 30.0), (None, 15.0)]
    assert task.score_labels(["a"], reference[:1], [None]) == []
    assert task.aggregate("shift", [r for r in rows if r.item_id == "b"]) == 30.0
    assert isinstance(rows[-1], Score) and rows[-1].n == 2 and task.info.self_scores == {"shift": 0.0}
