"""The fold is pure: standard library and `schemas` only, and no clock reads."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).resolve().parents[2] / "worker"
ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"schemas", "__future__"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"}


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def _pure_modules() -> list[Path]:
    """worker/fold.py and every worker module it imports, transitively (they must be pure too)."""
    found, pending = [], [WORKER / "fold.py"]
    while pending:
        module = pending.pop()
        if module in found:
            continue
        found.append(module)
        names = _imported_modules(ast.parse(module.read_text(encoding="utf-8")))
        pending += [WORKER / f"{name.split('.', 1)[1]}.py" for name in names if name.startswith("worker.")]
    return sorted(found)


PURE_MODULES = _pure_modules()


def test_the_pure_modules_are_the_fold_and_its_snapshot() -> None:
    assert [path.name for path in PURE_MODULES] == ["fold.py", "fold_snapshot.py"]


@pytest.mark.parametrize("module", PURE_MODULES, ids=lambda path: path.name)
def test_fold_imports_only_the_standard_library_and_schemas(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    foreign = [name for name in _imported_modules(tree)
               if name.split(".")[0] not in ALLOWED_ROOTS and name not in {"worker.fold_snapshot"}]
    assert foreign == []


@pytest.mark.parametrize("module", PURE_MODULES, ids=lambda path: path.name)
def test_fold_never_reads_a_clock(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    calls = [node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS]
    assert calls == []
