"""The state store's behaviour suite, run against every implementation of `LogStore`: the in-memory twin
(unit tier, no service) and `RedisStore` against the real redis-server (integration tier).

`make test` runs the Redis half twice: on one node and (`ILOG_TEST_REDIS=cluster`) on a 6-node Redis
Cluster, where a state and its deadline entry are written in ordered steps instead of one script and a
fenced-out write's deadline entry may stay (the finalizer judges it by the stored log; `worker.store.keys`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import redis
from redis.cluster import RedisCluster

from worker.core import native
from worker.core.batch import TtlPolicy
from worker.core.fold import held_log
from worker.core.state import InteractionLog, StoredLog, Tombstone
from worker.core.writes import StateWrite, Stored
from worker.errors import StateLostError
from worker.fold.finalizer import plan_closes
from worker.store import keys
from worker.store.cluster import is_cluster, slot_of
from worker.store.memory import MemoryStore
from worker.store.port import LogStore
from worker.store.redis_store import RedisStore


@dataclass
class Backend:
    store: LogStore
    ttl_ms: Callable[[str], int]  # what is left of an interaction's TTL (the memory twin records it)
    cluster: bool = False  # a Redis Cluster: deadline entries written apart from the states


def _memory() -> Backend:
    store = MemoryStore()
    return Backend(store, store.ttl_ms.__getitem__)


def _redis(request: pytest.FixtureRequest) -> Backend:
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    return Backend(RedisStore(client, prefix), lambda i: int(client.pttl(keys.state_key(prefix, i))),
                   is_cluster(client))


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit),
                        pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return _memory() if request.param == "memory" else _redis(request)


def test_fenced_write_stores_only_over_the_version_read(backend: Backend) -> None:
    store = backend.store
    first = InteractionLog("c1", version=3, edit_deadline_us=1_000)
    assert [] == store.write([StateWrite("c1", 0, first, 60_000, deadline=(2, 1))]).fenced_out
    zombie = InteractionLog("c1", version=2)
    assert ["c1"] == store.write([StateWrite("c1", 0, zombie, 60_000)]).fenced_out
    assert Stored(3, first) == store.load(["c1"])["c1"]
    assert 0 < backend.ttl_ms("c1") <= 60_000
    assert [("c1", 1)] == store.due(2, 10, 100)


def test_an_unknown_interaction_loads_as_nothing_stored(backend: Backend) -> None:
    assert {"never": Stored(0, None)} == backend.store.load(["never", "never"])


def test_the_fold_stages_load_holds_open_logs_as_their_documents(backend: Backend) -> None:
    """`load(..., held=True)`: an open log as the `StoredLog` of the document stored (where the compiled fold over
    documents runs), a tombstone and nothing as without it; every other reader gets the log's objects."""
    store = backend.store
    log = InteractionLog("c5", version=4, edit_deadline_us=7_000_000)
    tomb = Tombstone("c6", 2, datetime(2026, 11, 27, tzinfo=UTC), ("e1",))
    store.write([StateWrite("c5", 0, log, 60_000, deadline=(0, 7_000)), StateWrite("c6", 0, tomb, 60_000)])
    loaded = store.load(["c5", "c6", "never"], held=True)
    expected = held_log(log.to_bytes())
    assert loaded == {"c5": Stored(4, expected if expected is not None else log), "c6": Stored(2, tomb),
                      "never": Stored(0, None)}
    assert native.CORE is None or loaded["c5"].state == StoredLog("c5", 4, 7_000_000, log.to_bytes())
    assert store.load(["c5"])["c5"] == Stored(4, log)


def test_tombstone_replaces_the_log_and_unschedules_its_deadline(backend: Backend) -> None:
    store = backend.store
    store.write([StateWrite("c2", 0, InteractionLog("c2", version=1), 60_000, deadline=(0, 5))])
    tomb = Tombstone("c2", 2, datetime(2026, 11, 27, tzinfo=UTC))
    assert [] == store.write([StateWrite("c2", 1, tomb, 60_000, unschedule_partition=0)]).fenced_out
    assert Stored(2, tomb) == store.load(["c2"])["c2"]
    assert 0 == store.open_windows(0)


def test_one_write_call_fences_each_interaction_alone_and_leaves_a_fenced_ones_deadline(backend: Backend) -> None:
    store = backend.store
    store.write([StateWrite("b", 0, InteractionLog("b", version=5), 60_000)])
    writes = [
        StateWrite("a", 0, InteractionLog("a", version=1), 60_000, deadline=(1, 100)),
        StateWrite("b", 4, InteractionLog("b", version=6), 60_000, deadline=(1, 200)),  # stale: 5 is stored
        StateWrite("c", 0, InteractionLog("c", version=2), 30_000, deadline=(3, 300)),
    ]
    assert ["b"] == store.write(writes).fenced_out
    assert {"a": 1, "b": 5, "c": 2} == {i: s.version for i, s in store.load(["a", "b", "c"]).items()}
    fenced_entry = [("b", 200)] if backend.cluster else []  # cluster: added before the fenced write
    assert [("a", 100), *fenced_entry] == store.due(1, 1_000, 10)
    assert [("c", 300)] == store.due(3, 1_000, 10)
    assert 0 < backend.ttl_ms("c") <= 30_000


def test_a_fenced_write_tells_a_state_that_went_backwards_from_one_that_moved_on(backend: Backend) -> None:
    """The version stored now comes back for each fenced-out write: below the expected one (or none
    stored) is a lost write, above it another writer's; both are fenced out, neither is written."""
    store = backend.store
    ids = [f"r{n}" for n in range(40)]  # spread over slots (a cluster answers slot by slot)
    store.write([StateWrite(i, 0, InteractionLog(i, version=5), 60_000) for i in ids])
    writes = [StateWrite(i, [3, 5, 7, 9][n % 4], InteractionLog(i, version=10), 60_000) for n, i in enumerate(ids)]
    writes.append(StateWrite("gone", 2, InteractionLog("gone", version=3), 60_000))
    result = store.write(writes)
    expected_fenced = {i for n, i in enumerate(ids) if n % 4 != 1} | {"gone"}
    assert (expected_fenced, {**{i: 5 for n, i in enumerate(ids) if n % 4 >= 2}, "gone": 0}) == (
        set(result.fenced_out), result.regressed)
    assert {i: 10 if n % 4 == 1 else 5 for n, i in enumerate(ids)} == {
        i: s.version for i, s in store.load(ids).items()}


def test_a_batch_larger_than_one_script_call_keeps_every_fence_and_deadline(backend: Backend) -> None:
    store = backend.store
    ids = [f"i{n}" for n in range(2_500)]
    store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids[::2]])
    writes = [StateWrite(i, 0, InteractionLog(i, version=1), 60_000, deadline=(0, n)) for n, i in enumerate(ids)]
    assert sorted(ids[::2]) == sorted(store.write(writes).fenced_out)  # a cluster answers slot by slot
    scheduled = set(ids) if backend.cluster else set(ids[1::2])  # cluster: fenced-out entries may stay
    assert [(i, n) for n, i in enumerate(ids) if i in scheduled][:5] == store.due(0, 10_000, 5)
    assert len(scheduled) == store.open_windows(0)


def test_a_write_that_both_schedules_and_unschedules_is_refused(backend: Backend) -> None:
    both = StateWrite("d", 0, InteractionLog("d", version=1), 60_000, deadline=(0, 1), unschedule_partition=0)
    with pytest.raises(ValueError, match="not both"):
        backend.store.write([both])
    assert {"d": Stored(0, None)} == backend.store.load(["d"])


def test_due_and_open_windows_of_several_partitions_come_back_per_partition(backend: Backend) -> None:
    store = backend.store
    store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000, deadline=(p, d))
                 for i, p, d in [("x", 0, 10), ("y", 0, 50), ("z", 4, 20)]])
    assert {0: [("x", 10)], 4: [("z", 20)], 5: []} == store.due_many({0: 30, 4: 30, 5: 30}, 10)
    assert {0: 2, 4: 1, 5: 0} == store.open_windows_many([0, 4, 5])


def test_unscheduled_windows_are_no_longer_due(backend: Backend) -> None:
    store = backend.store
    store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000, deadline=(2, 10)) for i in ("p", "q")])
    store.unschedule(2, ["p", "gone"])
    assert [("q", 10)] == store.due(2, 100, 10)


def test_a_guarded_write_is_refused_whole_on_a_partition_the_store_has_not_marked(backend: Backend) -> None:
    store = backend.store
    store.mark([1])
    assert {1} == store.marked([1, 2])
    with pytest.raises(StateLostError):
        store.write([StateWrite("g", 0, InteractionLog("g", version=1), 60_000)], guard=[1, 2])
    assert {"g": Stored(0, None)} == store.load(["g"])
    assert [] == store.write([StateWrite("g", 0, InteractionLog("g", version=1), 60_000)], guard=[1]).fenced_out
    assert 1 == store.load(["g"])["g"].version


# Redis only: what a cluster does differently (on one node the same tests hold as well).

@pytest.fixture
def redis_store(redis_client: redis.Redis) -> RedisStore:
    return RedisStore(redis_client, f"t-{uuid.uuid4().hex[:10]}")


@pytest.mark.parametrize("encoded", [False, True], ids=["documents-encoded-by-the-store", "documents-from-the-planner"])
def test_a_flushed_script_cache_is_loaded_again_and_the_write_goes_through(
    redis_store: RedisStore, redis_client: redis.Redis, encoded: bool
) -> None:
    """A restarted or newly promoted node has no scripts: the calls it refused are sent again (also when the
    compiled core packed them: writes that carry their documents, as the planner's do)."""
    redis_client.script_flush()
    ids = [f"f{n}" for n in range(50)]
    logs = [InteractionLog(i, version=1) for i in ids]
    writes = [StateWrite(log.interaction_id, 0, log, 60_000, deadline=(2, n),
                         document=log.to_bytes() if encoded else None) for n, log in enumerate(logs)]
    assert [] == redis_store.write(writes).fenced_out
    assert dict.fromkeys(ids, 1) == {i: s.version for i, s in redis_store.load(ids).items()}
    assert 50 == redis_store.open_windows(2)


def test_the_finalizer_drops_an_entry_whose_stored_log_has_no_open_window(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    """What a cluster write leaves after a crash between its steps (or a fenced-out write's entry):
    an entry for an open log, or for a tombstone. The finalizer judges it by the stored log."""
    store = redis_store
    store.write([StateWrite("open", 0, InteractionLog("open", version=1), 60_000),
                 StateWrite("done", 0, Tombstone("done", 3, datetime(2026, 1, 1, tzinfo=UTC)), 60_000)])
    prefix = store._prefix
    redis_client.zadd(keys.deadlines_key(prefix, 7), {"open": 10, "done": 20})
    due = store.due(7, 1_000, 10)
    plan = plan_closes(store, 7, 1_000, due=due, load=store.load, grace_ms=0, ttl=TtlPolicy(60_000, 60_000),
                       now_ms=1_000)
    assert ([("open", 10), ("done", 20)], [], []) == (due, plan.writes, plan.snapshots)
    assert 0 == store.open_windows(7)


def test_a_lost_shard_refuses_guarded_writes_in_its_own_slots_only(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    """A shard that lost its data lost its slots' marks: writes there are refused, elsewhere they go on
    (on one node there is one marks hash: everything is refused)."""
    store, prefix = redis_store, redis_store._prefix
    store.mark([3])
    assert [] == store.write([StateWrite("g1", 0, InteractionLog("g1", version=1), 60_000)], guard=[3]).fenced_out
    cluster = is_cluster(redis_client)
    redis_client.delete(keys.slot_marks_key(prefix, slot_of(keys.state_key(prefix, "g1"))) if cluster
                        else keys.marks_key(prefix))
    with pytest.raises(StateLostError) as refused:
        store.write([StateWrite("g1", 1, InteractionLog("g1", version=2), 60_000)], guard=[3])
    assert ([3], 1) == (refused.value.partitions, store.load(["g1"])["g1"].version)
    other = next(f"h{n}" for n in range(100) if slot_of(f"h{n}") != slot_of("g1"))
    elsewhere = [StateWrite(other, 0, InteractionLog(other, version=1), 60_000)]
    if cluster:
        assert [] == store.write(elsewhere, guard=[3]).fenced_out
    else:
        with pytest.raises(StateLostError):
            store.write(elsewhere, guard=[3])


def test_a_write_sent_ahead_is_answered_like_a_write_while_the_client_goes_on_reading(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    """`send_write` (the fold stage's overlapped commit): sent now, answered later, with the same fences,
    deadlines and NOSCRIPT reload as `write`; the client reads on other connections in between."""
    ids = [f"s{n}" for n in range(2_500)]  # three script calls
    logs = [InteractionLog(i, version=1) for i in ids]
    # with their documents, as the planner's writes carry them: packed by the compiled core where it runs
    writes = [StateWrite(log.interaction_id, 0, log, 60_000, deadline=(0, n), document=log.to_bytes())
              for n, log in enumerate(logs)]
    if is_cluster(redis_client):
        assert None is redis_store.send_write(writes)  # a cluster's write is ordered steps: `write` it
        return
    redis_store.mark([0])
    redis_store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids[::2]])
    redis_client.script_flush()
    answer = redis_store.send_write(writes, guard=[0])
    assert answer is not None
    assert {"s1": Stored(0, None)} == redis_store.load(["s1"])  # read before the answer: a connection of its own
    result = answer()
    assert (sorted(ids[::2]), {}) == (sorted(result.fenced_out), result.regressed)
    assert dict.fromkeys(ids, 1) == {i: s.version for i, s in redis_store.load(ids).items()}
    assert [(i, n) for n, i in enumerate(ids) if n % 2][:5] == redis_store.due(0, 10_000, 5)


def test_a_write_sent_ahead_to_a_store_that_lost_its_state_is_refused_when_answered(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    if is_cluster(redis_client):
        pytest.skip("a cluster does not send writes ahead (send_write answers None: the test above)")
    answer = redis_store.send_write([StateWrite("l", 0, InteractionLog("l", version=1), 60_000)], guard=[7])
    assert answer is not None
    with pytest.raises(StateLostError):
        answer()
    assert {"l": Stored(0, None)} == redis_store.load(["l"])
    assert [] == redis_store.write([StateWrite("l", 0, InteractionLog("l", version=1), 60_000)]).fenced_out


# Redis Cluster only: reads and one script call per master (`worker.store.per_master`).

def _masters(client: redis.Redis) -> list[redis.Redis]:
    assert isinstance(client, RedisCluster)
    return [client.get_redis_connection(node) for node in client.get_primaries()]


def _script_calls(client: redis.Redis) -> list[int]:
    """EVALSHA calls each master answered since its stats were reset."""
    return [int(node.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) for node in _masters(client)]


@pytest.fixture
def cluster_store(redis_store: RedisStore, redis_client: redis.Redis) -> RedisStore:
    if not is_cluster(redis_client):
        pytest.skip("Redis Cluster only (ILOG_TEST_REDIS=cluster)")
    return redis_store


def test_a_cluster_write_is_one_script_call_per_master(cluster_store: RedisStore, redis_client: redis.Redis) -> None:
    ids = [f"m{n}" for n in range(600)]  # ~600 slots over 3 masters
    cluster_store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids])  # scripts loaded
    for node in _masters(redis_client):
        node.config_resetstat()
    writes = [StateWrite(i, 1, InteractionLog(i, version=2), 60_000, deadline=(4, n)) for n, i in enumerate(ids)]
    assert [] == cluster_store.write(writes, guard=[]).fenced_out
    assert [1, 1, 1] == _script_calls(redis_client)
    assert dict.fromkeys(ids, 2) == {i: s.version for i, s in cluster_store.load(ids).items()}
    assert 600 == cluster_store.open_windows(4)


def test_a_cluster_write_and_read_on_a_stale_slot_map_go_through_the_per_slot_calls(
    cluster_store: RedisStore, redis_client: redis.Redis
) -> None:
    """The client's map sends a slot to the wrong master (as after a failover or a resharding): that master's
    script refuses before its first write, and its writes go one call per slot, following MOVED; its reads
    are answered MOVED and read again through the cluster client."""
    assert isinstance(redis_client, RedisCluster)
    prefix = cluster_store._prefix
    ids = [f"w{n}" for n in range(300)]
    moved = slot_of(keys.state_key(prefix, ids[0]))
    owner = redis_client.nodes_manager.slots_cache[moved][0]
    wrong = next(node for node in redis_client.get_primaries() if node.name != owner.name)
    redis_client.nodes_manager.slots_cache[moved] = [wrong]
    writes = [StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids]
    assert [] == cluster_store.write(writes).fenced_out
    assert owner.name == redis_client.nodes_manager.slots_cache[moved][0].name  # MOVED corrected the map
    redis_client.nodes_manager.slots_cache[moved] = [wrong]  # reads: that master answers MOVED, read again
    assert dict.fromkeys(ids, 1) == {i: s.version for i, s in cluster_store.load(ids).items()}
    assert owner.name == redis_client.nodes_manager.slots_cache[moved][0].name


def test_a_guarded_cluster_write_refused_on_one_master_stores_nothing_there(
    cluster_store: RedisStore, redis_client: redis.Redis
) -> None:
    """One slot's marks gone: the call of its master stores none of its writes (the guard is read before the
    first write); the other masters' writes are stored, and the store says which partition lost its state."""
    assert isinstance(redis_client, RedisCluster)
    store, prefix = cluster_store, cluster_store._prefix
    store.mark([5])
    ids = [f"q{n}" for n in range(300)]
    lost_slot = slot_of(keys.state_key(prefix, ids[0]))
    redis_client.delete(keys.slot_marks_key(prefix, lost_slot))
    node_of = redis_client.nodes_manager.get_node_from_slot
    lost_master = node_of(lost_slot).name
    with pytest.raises(StateLostError) as refused:
        store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids], guard=[5])
    assert [5] == refused.value.partitions
    stored = {i: s.version for i, s in store.load(ids).items()}
    on_lost = {i for i in ids if node_of(slot_of(keys.state_key(prefix, i))).name == lost_master}
    assert (dict.fromkeys(on_lost, 0), dict.fromkeys(set(ids) - on_lost, 1)) == (
        {i: v for i, v in stored.items() if i in on_lost}, {i: v for i, v in stored.items() if i not in on_lost})


def test_a_cluster_that_refuses_the_per_master_script_is_written_one_call_per_slot(
    cluster_store: RedisStore, redis_client: redis.Redis
) -> None:
    """As Redis older than 7.0 would (no script flags): the script is refused when loaded, every write goes
    through the per-slot calls, and the store stops trying."""
    per_master = cluster_store._per_master
    assert per_master is not None
    per_master._script = "#!lua flags=no-such-flag\nreturn {}"
    per_master._sha = hashlib.sha1(per_master._script.encode()).hexdigest()
    ids = [f"o{n}" for n in range(100)]
    assert [] == cluster_store.write([StateWrite(i, 0, InteractionLog(i, version=1), 60_000) for i in ids]).fenced_out
    assert (False, dict.fromkeys(ids, 1)) == (per_master.enabled,
                                              {i: s.version for i, s in cluster_store.load(ids).items()})
    zombie = [StateWrite(i, 0, InteractionLog(i, version=9), 60_000) for i in ids[:3]]
    assert sorted(ids[:3]) == sorted(cluster_store.write(zombie).fenced_out)
