"""The Redis store against the real redis-server: fenced writes, TTLs, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from schemas.log import InteractionLog, Tombstone
from worker import keys
from worker.settings import Settings
from worker.store import RedisStore, StateWrite, Stored


def test_fenced_write_stores_only_over_the_version_read(settings: Settings, redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, settings.key_prefix)
    first = InteractionLog("c1", version=3, edit_deadline_us=1_000)
    assert [] == store.write([StateWrite("c1", 0, first, 60_000, deadline=(2, 1))]).fenced_out
    zombie = InteractionLog("c1", version=2)
    assert ["c1"] == store.write([StateWrite("c1", 0, zombie, 60_000)]).fenced_out
    assert Stored(3, first) == store.load(["c1"])["c1"]
    assert 0 < redis_client.pttl(keys.state_key(settings.key_prefix, "c1")) <= 60_000
    assert [("c1", 1)] == store.due(2, 10, 100)


def test_tombstone_replaces_the_log_and_unschedules_its_deadline(
    settings: Settings, redis_client: redis.Redis
) -> None:
    store = RedisStore(redis_client, settings.key_prefix)
    store.write([StateWrite("c2", 0, InteractionLog("c2", version=1), 60_000, deadline=(0, 5))])
    tomb = Tombstone("c2", 2, datetime(2026, 11, 27, tzinfo=UTC))
    assert [] == store.write([StateWrite("c2", 1, tomb, 60_000, unschedule_partition=0)]).fenced_out
    assert Stored(2, tomb) == store.load(["c2"])["c2"]
    assert 0 == store.open_windows(0)

