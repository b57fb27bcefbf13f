"""requirements.lock (the image) and requirements-dev.lock (`make install`) cover pyproject.toml and agree:
the tests run the versions the image ships. `make lock` renews both."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(name: str) -> dict[str, str]:
    return {package.lower(): version for package, version in PIN.findall((REPO / name).read_text())}


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_every_dependency_is_pinned_in_the_lock_files() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = requirement_names(project["dependencies"])
    dev = requirement_names(project["optional-dependencies"]["dev"])
    assert set() == runtime - set(pins("requirements.lock"))
    assert set() == (runtime | dev) - set(pins("requirements-dev.lock"))


def test_the_dev_lock_keeps_the_runtime_pins() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {} == {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}


def test_redis_comes_with_its_hiredis_extra() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert [d for d in project["dependencies"] if d.startswith("redis")] == ["redis[hiredis]>=5.0"]
    assert not [d for d in project["dependencies"] if d.startswith("hiredis")]
    assert "hiredis" in pins("requirements.lock")
