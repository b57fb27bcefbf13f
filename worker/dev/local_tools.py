"""Where the local tools are (`deploy/local`: the stack and the CRM emulators) and how to read what they print.

The development tools run from a checkout (`make run`, `ilog demo`): the repository is found from
the working directory upwards, not from this file's location, which says nothing about a checkout
once the package is installed.
"""

from __future__ import annotations

import shlex
from pathlib import Path

LOCAL_TOOLS = Path("deploy") / "local"


def repository_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: the working directory) holding `deploy/local/stack`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / LOCAL_TOOLS / "stack").is_file():
            return folder
    return None


def parse_env_lines(text: str) -> dict[str, str]:
    """`KEY=value` lines as `deploy/local/stack|emulators up|env` print them (`export`, quotes, comments allowed)."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip().removeprefix("export "): _unquoted(value) for key, value in pairs}


def _unquoted(value: str) -> str:
    """A value as the shell reads it (`'/tmp/a b/ca.pem'` is `/tmp/a b/ca.pem`); unbalanced quotes are stripped."""
    try:
        return " ".join(shlex.split(value))
    except ValueError:
        return value.strip().strip("'\"")
