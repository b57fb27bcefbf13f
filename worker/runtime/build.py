"""What is running: the package version, the source revision, Python and librdkafka versions.

The revision comes from `ILOG_BUILD_REVISION` (the image sets it from its `REVISION` build argument),
else from git when running from a checkout, else "unknown".
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import confluent_kafka

PACKAGE = "interaction-log-sync"
REVISION_VARIABLE = "ILOG_BUILD_REVISION"
_GIT_TIMEOUT_S = 2.0


class BuildInfo(NamedTuple):
    version: str
    revision: str
    python: str
    librdkafka: str

    def describe(self) -> str:
        return (f"ilog {self.version} (revision {self.revision}, Python {self.python}, "
                f"librdkafka {self.librdkafka})")


@cache
def build_info() -> BuildInfo:
    return BuildInfo(_version(), _revision(), platform.python_version(), confluent_kafka.libversion()[0])


def _version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def _revision() -> str:
    given = os.environ.get(REVISION_VARIABLE, "").strip()
    if given:
        return given
    source = Path(__file__).resolve().parents[2]
    if not (source / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"
