"""The fold stage's write-through state cache: hits skip the store, fencing and revocation evict."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import StateWrite, Stored
from worker.store.cache import StateCache
from worker.store.memory import MemoryStore


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[list[str]] = []

    def load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]:
        ids = list(interaction_ids)
        self.loaded.append(ids)
        return super().load(ids, held=held)


def _write(store: MemoryStore, cache: StateCache, log: InteractionLog, expected: int, partition: int) -> list[str]:
    writes = [StateWrite(log.interaction_id, expected, log, ttl_ms=60_000)]
    fenced = store.write(writes).fenced_out
    cache.written(writes, fenced, lambda _id: partition, now_ms=0)
    return fenced


def test_a_written_state_is_served_from_the_cache_and_only_unknown_ids_reach_the_store() -> None:
    store, cache = CountingStore(), StateCache()
    log = InteractionLog("a", version=1)
    _write(store, cache, log, 0, partition=2)
    loaded = cache.load_through(store.load, ["a", "b", "a"], now_ms=1)
    assert {"a": Stored(1, log), "b": Stored(0, None)} == loaded
    assert [["b"]] == store.loaded


def test_a_fenced_out_write_evicts_the_id_so_the_next_load_reads_the_store() -> None:
    store, cache = CountingStore(), StateCache()
    _write(store, cache, InteractionLog("a", version=1), 0, partition=0)
    newer = InteractionLog("a", version=5)
    store.states["a"] = (5, newer)  # another writer moved on
    assert ["a"] == _write(store, cache, InteractionLog("a", version=2), 1, partition=0)
    assert {"a": Stored(5, newer)} == cache.load_through(store.load, ["a"], now_ms=1)


def test_revoking_a_partition_drops_exactly_its_entries() -> None:
    store, cache = CountingStore(), StateCache()
    _write(store, cache, InteractionLog("a", version=1), 0, partition=0)
    _write(store, cache, InteractionLog("b", version=1), 0, partition=1)
    cache.drop_partitions([0])
    assert (None, Stored(1, InteractionLog("b", version=1))) == (cache.get("a", 1), cache.get("b", 1))


def test_an_entry_expires_with_the_redis_key_it_mirrors_and_the_least_recently_used_goes_first() -> None:
    store, cache = CountingStore(), StateCache(capacity=2)
    _write(store, cache, InteractionLog("a", version=1), 0, partition=0)
    assert cache.get("a", 59_999) is not None
    assert cache.get("a", 60_000) is None
    for interaction_id in ["x", "y", "z"]:
        _write(store, cache, InteractionLog(interaction_id, version=1), 0, partition=0)
    cache.get("y", 0)
    _write(store, cache, InteractionLog("w", version=1), 0, partition=0)
    assert (2, None, None) == (len(cache), cache.get("x", 0), cache.get("z", 0))


def test_a_tombstone_written_drops_the_entry_so_only_open_logs_are_kept() -> None:
    store, cache = CountingStore(), StateCache()
    _write(store, cache, InteractionLog("a", version=1), 0, partition=0)
    _write(store, cache, InteractionLog("b", version=1), 0, partition=0)
    closed = Tombstone("a", version=2, finalized_at=datetime(2026, 1, 1, tzinfo=UTC), applied_ids=("e-1",))
    writes = [StateWrite("a", 1, closed, ttl_ms=60_000)]
    cache.written(writes, store.write(writes).fenced_out, lambda _id: 0, now_ms=0)
    assert (1, None) == (len(cache), cache.get("a", 1))
    assert {"a": Stored(2, closed)} == cache.load_through(store.load, ["a"], now_ms=1)  # from the store
    assert [["a"]] == store.loaded
