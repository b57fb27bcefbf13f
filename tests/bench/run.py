"""`make bench`: run the benchmarks, write one JSON file each plus `summary.json`, print a table.

    python -m tests.bench.run --out bench-results [--only NAME ...] [--quick]

Benchmarks are plain functions `(quick: bool) -> dict` registered in `BENCHMARKS`; each returns
`name`, `parameters`, `measured`, `target` and `meets_target`. Other stages add theirs with
`register(name, function)` from a module listed in `PLUGIN_MODULES` (imported when present), so
this runner does not change when they do. The service benchmarks use the local stack
(`deploy/local/stack`), started when it is not running, with topics and key prefixes of their own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Benchmark = Callable[[bool], dict[str, Any]]

BENCHMARKS: dict[str, Benchmark] = {}
"""Name → benchmark, in the order they run."""

PLUGIN_MODULES = ("tests.bench.sync_bench", "tests.bench.cluster_bench", "tests.bench.peer_bench")
"""Modules that register more benchmarks when imported (e.g. the sync stage's); missing ones are skipped."""


def register(name: str, benchmark: Benchmark) -> None:
    BENCHMARKS[name] = benchmark


def _fold_pure(quick: bool) -> dict[str, Any]:
    from tests.bench.fold_bench import run

    return run(50_000 if quick else 200_000)


def _fold_stage_throughput(quick: bool) -> dict[str, Any]:
    from tests.bench.stage_bench import fold_stage_throughput

    return fold_stage_throughput(quick)


def _redis_memory(quick: bool) -> dict[str, Any]:
    from tests.bench.memory_bench import redis_memory_per_open_interaction

    return redis_memory_per_open_interaction(quick)


def _worker_rss_growth(quick: bool) -> dict[str, Any]:
    from tests.bench.stage_bench import worker_rss_growth

    return worker_rss_growth(quick)


register("fold_pure", _fold_pure)
register("fold_stage_throughput", _fold_stage_throughput)
register("redis_memory_per_open_interaction", _redis_memory)
register("worker_rss_growth", _worker_rss_growth)


def _load_plugins() -> None:
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": _cpu_model(), "load_average_1m": round(os.getloadavg()[0], 2),
            "native_core": _native_core()}


def _native_core() -> str:
    """Which fold core the benchmarks ran: `compiled <version>` or `python` (`ILOG_NATIVE_CORE`, `make install`)."""
    from worker.core import native

    return "python" if native.CORE is None else f"compiled {native.CORE.__version__}"


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def run_one(name: str, quick: bool, out: Path) -> dict[str, Any]:
    print(f"running {name}{' (quick)' if quick else ''} ...", file=sys.stderr, flush=True)
    started_s = time.monotonic()
    try:
        result = BENCHMARKS[name](quick)
    except Exception as error:  # one failing benchmark must not hide the others' numbers
        traceback.print_exc()
        result = {"name": name, "error": f"{type(error).__name__}: {error}", "meets_target": False}
    result["quick"] = quick
    result["duration_s"] = round(time.monotonic() - started_s, 1)
    result["machine"] = machine()
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict[str, Any]]) -> str:
    rows = [("benchmark", "measured", "target", "ok")]
    for result in results:
        measured = result.get("error") or _pairs(result.get("measured", {}))
        rows.append((result["name"], measured, _pairs(result.get("target", {})),
                     "yes" if result.get("meets_target") else "NO"))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    )


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def main(argv: list[str] | None = None) -> int:
    _load_plugins()
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the JSON files")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not the figures)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    results = [run_one(name, args.quick, args.out) for name in names]
    summary = {"machine": machine(), "quick": args.quick, "results": results}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(results))
    return 1 if any("error" in result for result in results) else 0  # a missed target is a figure, not a failure


if __name__ == "__main__":
    # `python -m` runs this file as `__main__`; plugins import `tests.bench.run`: give both one registry.
    sys.modules.setdefault("tests.bench.run", sys.modules[__name__])
    sys.exit(main())
