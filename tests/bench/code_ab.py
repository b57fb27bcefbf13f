"""Alternating A/B of two versions of the code: a commit (A) against the working tree (B).

    python -m tests.bench.code_ab --base HEAD~3 [--rounds 3] [--bench stage_cpu] [-- ARGS...]

Checks `--base` out into a temporary git worktree and runs one benchmark module (`tests.bench.<bench>`,
default `stage_cpu`; `pure_parts` works too) from each tree in turn, A then B, `--rounds` times: each run a
fresh process whose imports come from its own tree (the module is run with that tree as its working
directory, which Python puts first on `sys.path`), against one local stack (`ILOG_STACK_DIR`, else this
checkout's `.stack`; started if it is not running). Both use this virtualenv, so the compiled core
(`ilog_native`) is the installed one in both: an A/B of Rust code needs its own build. Prints each run's JSON
line with `"side"` and `"round"` added, then one summary line: per side, the median and the range of every
numeric figure. The worktree is removed at the end.

On a shared machine a figure moves by ±20 % between minutes; what one version does better than the other
shows only in runs that alternate (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _stack_env() -> dict[str, str]:
    """The local stack both sides use: `ILOG_STACK_DIR` when set (a relative one from the working directory, as
    `deploy/local/stack` reads it), else this checkout's; the broker's jars from this checkout's cache likewise.
    Without it, the base's worktree would start a stack of its own in its `.stack` and leave it running when
    the worktree is removed."""
    paths = {"ILOG_STACK_DIR": REPO / ".stack", "ILOG_CACHE_DIR": REPO / ".cache"}
    return {**os.environ, **{name: str(Path(os.environ.get(name, default)).resolve())
                             for name, default in paths.items()}}


def _run(tree: Path, bench: str, args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", f"tests.bench.{bench}", *args], cwd=tree, capture_output=True,
                          text=True, check=False, env=_stack_env())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{bench} failed in {tree} (exit {done.returncode}):\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def _numbers(figures: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every numeric figure, nested ones as `outer.inner`."""
    found: dict[str, float] = {}
    for key, value in figures.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            found[prefix + key] = float(value)
        elif isinstance(value, dict):
            found.update(_numbers(value, f"{prefix}{key}."))
    return found


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per side, per numeric figure: median, min, max."""
    by_side: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        figures = by_side.setdefault(run["side"], {})
        for key, value in _numbers({k: v for k, v in run.items() if k not in ("side", "round")}).items():
            figures.setdefault(key, []).append(value)
    return {side: {key: {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}
                   for key, values in figures.items()}
            for side, figures in by_side.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.code_ab", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare the working tree with (A)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bench", default="stage_cpu", help="a module of tests.bench that prints a JSON line")
    parser.add_argument("args", nargs="*", help="passed to the benchmark (after --)")
    options = parser.parse_args(argv)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ilog-ab-") as folder:
        base = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base), options.base], cwd=REPO,
                       check=True)
        try:
            for round_number in range(1, options.rounds + 1):
                for side, tree in (("A", base), ("B", REPO)):
                    run = {"side": side, "round": round_number, **_run(tree, options.bench, options.args)}
                    print(json.dumps(run), flush=True)
                    runs.append(run)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
    print(json.dumps({"base": options.base, "bench": options.bench, "summary": summary(runs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
