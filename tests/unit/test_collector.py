"""The worker's collector policy (`worker.runtime.collector`): survivors frozen, cycles swept.

Each test installs the policy in this process and uninstalls it after (the collector is process-wide).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from worker.runtime.collector import YOUNG_THRESHOLD, Collector


class Node:
    """A GC-tracked object that can be put in a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def clock() -> list[float]:
    return [1_000.0]


@pytest.fixture
def collector(clock: list[float]) -> Iterator[Collector]:
    thresholds = gc.get_threshold()
    installed = Collector(check_every_s=60.0, growth=0.25, clock=lambda: clock[0])
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()
        gc.set_threshold(*thresholds)


def test_what_survives_a_young_collection_is_not_walked_again(collector: Collector) -> None:
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    kept = [[index] for index in range(20_000)]  # like the state cache: alive across collections
    gc.collect(0)
    assert gc.get_freeze_count() >= len(kept)
    # nothing older than the last collection waits in the generations: the next collections walk only
    # what was allocated since
    assert len(gc.get_objects(1)) + len(gc.get_objects(2)) < 1_000
    assert kept[-1] == [19_999]


def test_a_frozen_object_is_still_freed_by_reference_counting(collector: Collector) -> None:
    node = Node()
    gone = weakref.ref(node)
    gc.collect(0)
    del node
    assert gone() is None


def test_a_cycle_that_became_garbage_after_it_was_frozen_waits_for_the_sweep(collector: Collector) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    gc.collect(0)  # the cycle is alive here: frozen
    del first, second
    gc.collect()  # an ordinary full collection does not walk frozen objects
    assert gone() is not None
    assert collector.sweep() >= 2
    assert gone() is None
    assert gc.get_freeze_count() > 0  # what is alive is frozen again after the sweep


def test_a_sweep_comes_once_the_frozen_population_grew_by_a_quarter(
    collector: Collector, clock: list[float]
) -> None:
    population = gc.get_freeze_count()
    kept = [[index] for index in range(population // 10)]  # +10 %: not yet
    gc.collect(0)
    clock[0] += 61.0
    assert collector.sweep_if_due() is False
    kept += [[index] for index in range(population // 5)]  # +30 % in all
    gc.collect(0)
    assert collector.sweep_if_due() is False  # checked a minute ago: not again before the next minute
    clock[0] += 61.0
    assert collector.sweep_if_due() is True
    # measured again from the sweep: the same population does not sweep again
    clock[0] += 61.0
    assert collector.sweep_if_due() is False
    assert len(kept) == population // 10 + population // 5


def test_a_young_cycle_is_collected_as_before(collector: Collector) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    assert gc.collect(0) >= 2
    assert gone() is None


def test_uninstalled_the_generations_are_the_collectors_own_again(clock: list[float]) -> None:
    thresholds = gc.get_threshold()
    installed = Collector(clock=lambda: clock[0])
    installed.install()
    installed.uninstall()
    try:
        kept = [[index] for index in range(1_000)]
        gc.collect(0)
        assert gc.get_freeze_count() == 0
        assert kept[0] == [0]
    finally:
        gc.set_threshold(*thresholds)
