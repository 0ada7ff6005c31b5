"""The module layout holds: no import cycles (imports inside functions included), Dagster only in the
wiring, and the lower layers import nothing above them (docs/architecture.md)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from mpq_assets.settings import REPO_ROOT

pytestmark = pytest.mark.fast  # the `make check` tier

PACKAGE = REPO_ROOT / "mpq_assets"
WIRING = {"definitions", "defs", "deploy", "cli"}  # the only places that may import Dagster
# layer -> the MPQ top-level modules / packages it may import
LOWER = {
    "settings": set(),
    "artifacts": {"settings"},
    "media": {"artifacts", "settings"},
    "store": {"artifacts", "settings"},
    "weights": {"artifacts", "settings"},
    "analysis": {"artifacts", "settings"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """MPQ module -> the MPQ modules it imports (outside TYPE_CHECKING), and -> external top-level packages."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    inner: dict[str, set[str]] = defaultdict(set)
    outer: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
            node.test) for n in ast.walk(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in hidden or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if not target.startswith("mpq_assets"):
                    outer[name].add(target.split(".")[0])
                    continue
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    inner[name].add(target)
    return inner, outer


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles() -> None:
    inner, _ = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(inner.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(inner):
        if node not in state:
            visit(node)


def test_dagster_only_in_the_wiring_and_lower_layers_import_nothing_above() -> None:
    inner, outer = _graph()
    dagster = sorted(m for m, pkgs in outer.items() if pkgs & {"dagster", "dagster_dask", "dagster_k8s"}
                     and _top(m) not in WIRING)
    assert not dagster, f"Dagster imported outside the wiring: {dagster}"
    for module, targets in inner.items():
        layer = _top(module)
        if layer in LOWER:
            above = sorted(t for t in targets if _top(t) not in LOWER[layer] | {layer, ""})
            assert not above, f"{module} ({layer}) imports {above}"


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read the environment: ``os.getenv(...)``, ``os.environ.get(...)``, ``os.environ[...]`` loads."""
    lines = []
    for node in ast.walk(tree):
        text = ast.unparse(node) if isinstance(node, ast.Call | ast.Subscript) else ""
        call = isinstance(node, ast.Call) and text.startswith(("os.getenv(", "os.environ.get(", "os.environ.items("))
        load = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and text.startswith("os.environ[")
        if call or load:
            lines.append(node.lineno)
    return lines


def test_only_settings_and_the_wiring_read_the_environment() -> None:
    allowed = {"settings", "deploy", "defs", "bench"}  # bench sets up and restores its own runs
    readers = {_module(p): lines for p in PACKAGE.rglob("*.py")
               if _top(_module(p)) not in allowed and (lines := _environment_reads(ast.parse(p.read_text("utf-8"))))}
    assert not readers, f"read the environment outside settings.py: {readers}"
