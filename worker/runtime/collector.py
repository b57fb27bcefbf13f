"""The worker's garbage-collector policy: the collector walks each surviving object once.

Reference counting frees almost everything a worker allocates; the cyclic collector exists for
the rest (reference cycles) and finds none on the fold's path (0 objects in a 316,000-event run,
docs/benchmarks.md). Left at its generations, it re-walks what survives: the fold's state cache
holds the logs of every open interaction, about a million objects at 30,000 open logs, and one
middle-generation collection over them stopped the fold for 1.5 s (the whole of the fold's
latency tail at 500 interactions a second).

So, after start-up, the worker:
- freezes what start-up built and collects the young generation every 50,000 allocations
  (`gc.set_threshold(50_000, 20, 20)`, not 700);
- moves what survives each collection to the permanent generation (`gc.freeze()` in a collector
  callback): the next collections walk only objects allocated since. Refcounting still frees a
  frozen object the moment its last reference goes; only a reference cycle that became garbage
  after it was frozen waits for:
- a sweep when the frozen population grew by a quarter since the last one (the rule CPython
  applies to its own full collections), checked every `CHECK_EVERY_S` from the runner's main loop:
  unfreeze, one full collection, freeze again. A sweep is one pause of a full collection, logged
  with what it found and how long it took: 1.0 to 1.2 s at 30,000 open logs on a 2-core machine; the
  check counts the frozen objects, 0.17 s there (docs/benchmarks.md). A worker whose open logs hold
  steady does not sweep; cycles that leak grow the population until it does.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("ilog.worker")

YOUNG_THRESHOLD = 50_000
CHECK_EVERY_S = 900.0
SWEEP_GROWTH = 0.25


class Collector:
    """Installed once per process by `ilog worker` (`install`); `sweep_if_due` runs from its main loop."""

    def __init__(self, check_every_s: float = CHECK_EVERY_S, growth: float = SWEEP_GROWTH,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check_every_s = check_every_s
        self.growth = growth
        self._clock = clock
        self._sweeping = False
        self._installed = False
        self._last_check_s = clock()
        self._swept_population = 0  # frozen objects right after the last sweep (or install)

    def install(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
        if not self._installed:
            gc.callbacks.append(self._after_collection)
            self._installed = True
        self._last_check_s = self._clock()
        self._swept_population = gc.get_freeze_count()

    def uninstall(self) -> None:
        """Back to the collector's own generations (tests; a process that stops being a worker)."""
        if self._installed:
            gc.callbacks.remove(self._after_collection)
            self._installed = False
        gc.unfreeze()

    def _after_collection(self, phase: str, _info: dict[str, Any]) -> None:
        # runs inside the collector, in whichever thread allocated: only the O(1) list move
        if phase == "stop" and not self._sweeping:
            gc.freeze()

    def sweep_if_due(self) -> bool:
        """Every `check_every_s`: a sweep when the frozen population grew by more than `growth`."""
        now_s = self._clock()
        if now_s - self._last_check_s < self.check_every_s:
            return False
        self._last_check_s = now_s
        if gc.get_freeze_count() <= self._swept_population * (1 + self.growth):
            return False
        self.sweep()
        return True

    def sweep(self) -> int:
        """One full collection of everything, frozen objects included; what it found (unreachable objects)."""
        self._sweeping = True
        started_s = time.perf_counter()
        try:
            gc.unfreeze()
            found = gc.collect()
        finally:
            gc.freeze()
            self._sweeping = False
            self._swept_population = gc.get_freeze_count()
        log.info("collector sweep", unreachable=found, seconds=round(time.perf_counter() - started_s, 3),
                 frozen=self._swept_population)
        return found


def tune_gc() -> Collector:
    """The worker's policy (`ilog worker`, the benchmarks that measure as it runs)."""
    collector = Collector()
    collector.install()
    return collector
