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
- a sweep every `SWEEP_EVERY_S` from the runner's main loop: unfreeze, one full collection,
  freeze again (one pause of a full collection, logged with what it found and how long it took:
  1.2 s at 30,000 open logs on a 2-core machine, docs/benchmarks.md).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("ilog.worker")

YOUNG_THRESHOLD = 50_000
SWEEP_EVERY_S = 900.0


class Collector:
    """Installed once per process by `ilog worker` (`install`); `sweep_if_due` runs from its main loop."""

    def __init__(self, sweep_every_s: float = SWEEP_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.sweep_every_s = sweep_every_s
        self._clock = clock
        self._sweeping = False
        self._installed = False
        self._last_sweep_s = clock()

    def install(self) -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
        if not self._installed:
            gc.callbacks.append(self._after_collection)
            self._installed = True
        self._last_sweep_s = self._clock()

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
        if self._clock() - self._last_sweep_s < self.sweep_every_s:
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
            self._last_sweep_s = self._clock()
        log.info("collector sweep", unreachable=found, seconds=round(time.perf_counter() - started_s, 3),
                 frozen=gc.get_freeze_count())
        return found


def tune_gc() -> Collector:
    """The worker's policy (`ilog worker`, the benchmarks that measure as it runs)."""
    collector = Collector()
    collector.install()
    return collector
