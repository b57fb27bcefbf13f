"""The layering rules: the pure core does no I/O and reads no clock; the contract and the adapters stand alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "worker" / "core"
# orjson and pydantic are pure (no I/O): the state codec and the snapshot JSON use them
ALLOWED_IN_CORE = set(sys.stdlib_module_names) | {"schemas", "__future__", "orjson", "pydantic"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"}


def _imported_modules(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imports_of(module: Path) -> list[str]:
    return _imported_modules(ast.parse(module.read_text(encoding="utf-8")))


CORE_MODULES = _modules(CORE)


def test_the_core_package_holds_the_fold_and_its_snapshot() -> None:
    names = {path.name for path in CORE_MODULES}
    assert {"fold.py", "snapshot.py", "state.py", "batch.py"} <= names


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda path: path.name)
def test_core_imports_only_the_standard_library_schemas_and_itself(module: Path) -> None:
    foreign = [name for name in _imports_of(module)
               if name.split(".")[0] not in ALLOWED_IN_CORE and not name.startswith("worker.core")]
    assert foreign == []


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda path: path.name)
def test_core_never_reads_a_clock(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    calls = [node.func.attr for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS]
    assert calls == []


@pytest.mark.parametrize("package", ["schemas", "adapters"])
def test_contract_and_adapters_import_nothing_of_the_worker(package: str) -> None:
    offending = {str(module.relative_to(REPO)): name for module in _modules(REPO / package)
                 for name in _imports_of(module) if name.split(".")[0] == "worker"}
    assert {} == offending


def test_schemas_import_nothing_of_the_adapters() -> None:
    offending = [str(module) for module in _modules(REPO / "schemas")
                 if any(name.split(".")[0] == "adapters" for name in _imports_of(module))]
    assert [] == offending


IO_CLIENTS = {"confluent_kafka", "redis"}
CLIENT_CONSTRUCTORS = {"Consumer", "Producer", "AdminClient", "Redis", "RedisCluster", "from_url"}
COMPOSITION_ROOT = REPO / "worker" / "runtime" / "bootstrap.py"


def _constructs_clients(module: Path) -> bool:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in CLIENT_CONSTRUCTORS:
                return True
    return False


def test_kafka_and_redis_clients_are_built_in_the_composition_root_only() -> None:
    builders = [str(module.relative_to(REPO)) for module in _modules(REPO / "worker")
                if module != COMPOSITION_ROOT and _constructs_clients(module)]
    assert [] == builders


TARGET_NAMES = ("salesforce", "zendesk", "webhook")
# targets.py builds the targets from their settings; the dev tools seed and read the emulators of each.
MAY_NAME_TARGETS = {REPO / "worker" / "runtime" / "targets.py", REPO / "worker" / "runtime" / "settings.py"}
DEV_TOOLS = REPO / "worker" / "dev"


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (prose may give a target as an example)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            found.add(id(first.value))
    return found


def _words_in_code(module: Path) -> list[str]:
    """Identifiers, attribute names, imported modules and string literals of a module (not its docstrings)."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    words = _imported_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.arg):
            words.append(node.name if not isinstance(node, ast.arg) else node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
    return words


def test_the_worker_never_names_a_target_outside_the_target_registry_and_settings() -> None:
    """What is special about a target reaches the engine through `Target.traits` and its methods."""
    naming = {
        str(module.relative_to(REPO)): sorted({word for word in _words_in_code(module)
                                                if any(name in word.lower() for name in TARGET_NAMES)})
        for module in _modules(REPO / "worker")
        if module not in MAY_NAME_TARGETS and DEV_TOOLS not in module.parents
    }
    assert {} == {module: words for module, words in naming.items() if words}
