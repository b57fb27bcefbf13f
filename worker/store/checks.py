"""Start-up checks of the Redis the fold stage keeps its state in.

Eviction: a Redis that may evict keys (`maxmemory` set and a `maxmemory-policy` other than
`noeviction`) drops single interactions' states without a trace; the state marks cannot see that
(they detect a store that lost everything, not one key). The worker refuses to start against it
unless `ILOG_REDIS_ALLOW_EVICTION=true`. Persistence: without AOF and without RDB saves a restart
loses everything; the worker restores from its changelog then, but warns at start. Managed Redis
often forbids CONFIG: then the worker says it could not check, and starts. A Redis that does not
answer at start is checked as soon as it does (the stages wait for it meanwhile): an evicting one
then stops the worker (exit 2) as it would have at start.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
import structlog

from worker.errors import ConfigError
from worker.runtime.settings import Settings
from worker.store.cluster import REDIS_ERRORS, RedisClient

log = structlog.get_logger("ilog.store")


def _config(client: RedisClient, name: str) -> str | None:
    """One setting; a cluster client answers per node ({node: {name: value}}): the first node's."""
    reply: Any = client.config_get(name)
    if isinstance(reply, dict) and name not in reply:
        reply = next((r for r in reply.values() if isinstance(r, dict) and name in r), {})
    value = reply.get(name) if isinstance(reply, dict) else None
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


_RETRY_FIRST_S = 1.0
_RETRY_MAX_S = 30.0


def check_redis(client: RedisClient, settings: Settings, *, at_start: bool = True) -> bool:
    """Check eviction and persistence; False when Redis did not answer (nothing checked). Raises
    ConfigError when Redis may evict and that is not allowed."""
    try:
        policy = _config(client, "maxmemory-policy")
        maxmemory = _config(client, "maxmemory")
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
    except redis.ResponseError as exc:  # CONFIG renamed or not permitted (managed Redis)
        log.warning("could not check Redis eviction and persistence settings; make sure of noeviction and AOF",
                    error=str(exc))
        return True
    except REDIS_ERRORS as exc:
        if at_start:
            log.warning("Redis not reachable at start; eviction and persistence are checked as soon as it answers",
                        error=str(exc))
        return False
    _check_eviction(policy, maxmemory, settings.redis_allow_eviction)
    if appendonly != "yes" and not save:
        log.warning("Redis keeps no data across a restart (no AOF, no RDB saves): every restart means a "
                    "restore from the state changelog; run it with appendonly yes (appendfsync everysec)")
    if not at_start:
        log.info("Redis eviction and persistence checked", maxmemory_policy=policy)
    return True


def check_redis_once_it_answers(client: RedisClient, settings: Settings, stop: threading.Event) -> None:
    """`check_redis` again (1 s, doubling to 30 s apart) until Redis answers or the worker stops."""
    delay_s = _RETRY_FIRST_S
    while not stop.wait(delay_s):
        if check_redis(client, settings, at_start=False):
            return
        delay_s = min(delay_s * 2, _RETRY_MAX_S)


def _check_eviction(policy: str | None, maxmemory: str | None, allowed: bool) -> None:
    if policy is None or policy == "noeviction" or maxmemory in (None, "0"):
        return
    message = (f"Redis may evict keys (maxmemory {maxmemory}, maxmemory-policy {policy}): interaction states "
               "would vanish without a trace; set maxmemory-policy noeviction")
    if not allowed:
        raise ConfigError(message + " (or ILOG_REDIS_ALLOW_EVICTION=true to start anyway)")
    log.error(message)
