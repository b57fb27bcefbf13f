"""A Redis Cluster's state reads and fenced writes, sent to each master directly instead of per hash slot.

With interactions spread over 16,384 slots, a batch of 1,000 states touches about as many slots as
states: one script call per slot is one call per state, each paying Redis's per-command and per-script
entry cost, each packed and routed by the cluster client in Python (docs/benchmarks.md, "Redis
Cluster"). `fenced_write_node.lua` (Redis >= 7.0, `allow-cross-slot-keys`) takes every state a master
serves in one call, guarded by the marks hash of each slot in it.

The reads (one HMGET per state, as on one node) and the calls go straight to the masters of the
client's slot map, packed as the single node's are, all sent before any reply is read (one round trip,
the masters working in parallel), without the cluster pipeline's routing of every command in Python.
A read or call a master cannot answer as sent is left over, and the store sends it through the cluster
client as before (the writes one call per slot); that client follows MOVED and ASK, refreshes its slot
map and rides out a failover:
- the client's map has no master for a slot (the cluster client then answers as it would without us);
- a key of the call is not served by that node (a failover, a resharding, a stale map): the script
  refuses before its first write ("ILOGMOVED");
- the node is read-only (a demoted master), loading, or in a cluster that is down;
- the node cannot be reached, or the connection broke before the answer (the call may have run: each
  write is fenced by version, and a write that landed comes back fenced out, which the fold stage
  re-reads and folds again as a duplicate).
A refused guard ("ILOGLOST") and a full Redis (OOM) are raised as the per-slot calls raise them. On a
Redis that refuses the script (older than 7.0) every write is left over, and the store keeps to
per-slot calls from then on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, TypeAlias

import redis
import structlog
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import SlotNotCoveredError

from worker.core.writes import StateWrite
from worker.store import keys
from worker.store.cluster import TRANSIENT_ERRORS, slot_of
from worker.store.wire import encoded_write, packed, read_reply

log = structlog.get_logger("ilog.store")

WRITES_PER_CALL = 1_000  # a script call blocks its master while it runs: bound its length
_MOVED_REPLY = "ILOGMOVED"
# Answers that mean "not this node, not now" (besides TRANSIENT_ERRORS: cluster down, TRYAGAIN, loading,
# unreachable): the cluster client's per-slot calls sort them out.
_ELSEWHERE = (redis.exceptions.AskError, redis.exceptions.ReadOnlyError)  # AskError: MOVED as well
_Call: TypeAlias = "tuple[ClusterNode, Sequence[StateWrite], list[Any]]"  # master, its writes, the script call


class PerMaster:
    """State reads and fenced writes sent to each master directly (module docstring)."""

    def __init__(self, client: RedisCluster, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = resources.files("worker.store").joinpath("fenced_write_node.lua").read_text()
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        self.enabled = True

    def read(self, state_keys: Sequence[str], fields: Sequence[str]) -> tuple[list[Any], list[int]]:
        """HMGET `fields` of every key: (the rows, None where left over; the indexes left over)."""
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        left: list[int] = []
        for index, key in enumerate(state_keys):
            node = self._master_of(slot_of(key))
            if node is None:
                left.append(index)
            else:
                by_node.setdefault(node.name, (node, []))[1].append(index)
        calls: list[tuple[ClusterNode, list[Any]]] = []
        order: list[int] = []
        for node, indexes in by_node.values():
            calls += [(node, ["HMGET", state_keys[i], *fields]) for i in indexes]
            order += indexes
        rows: list[Any] = [None] * len(state_keys)
        refused: Exception | None = None
        for index, reply in zip(order, self._send(calls), strict=True):
            if isinstance(reply, list):
                rows[index] = reply
            elif _elsewhere(reply):
                left.append(index)
            elif refused is None:
                refused = reply
        if refused is not None:
            raise refused
        return rows, sorted(left)

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> tuple[dict[str, int], list[StateWrite]]:
        """(the ids fenced out → the version stored now, the writes left for per-slot calls)."""
        if not self.enabled:
            return {}, list(writes)
        calls, left = self._calls(writes, sorted(set(guard)))
        fenced: dict[str, int] = {}
        replies = self._send([(node, command) for node, _chunk, command in calls])
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing and self._load([calls[i][0] for i in missing]):
            for i, reply in zip(missing, self._send([(calls[i][0], calls[i][2]) for i in missing]), strict=True):
                replies[i] = reply
        refused: Exception | None = None
        for (_node, chunk, _command), reply in zip(calls, replies, strict=True):
            if isinstance(reply, list):
                fenced.update((chunk[int(reply[j]) - 1].interaction_id, int(reply[j + 1]))
                              for j in range(0, len(reply), 2))
            elif not self.enabled or _elsewhere(reply):
                left.extend(chunk)
            elif refused is None:
                refused = reply
        if refused is not None:
            raise refused
        return fenced, left

    def _calls(self, writes: Sequence[StateWrite], guarded: list[int]) -> tuple[list[_Call], list[StateWrite]]:
        """(master, writes, EVALSHA command) per master of the slot map and chunk of WRITES_PER_CALL; and
        the writes of slots the map has no master for."""
        by_node: dict[str, tuple[ClusterNode, list[tuple[int, str, StateWrite]]]] = {}
        left: list[StateWrite] = []
        prefix = self._prefix
        for item in writes:
            key = keys.state_key(prefix, item.interaction_id)
            slot = slot_of(key)
            node = self._master_of(slot)
            if node is None:
                left.append(item)
            else:
                by_node.setdefault(node.name, (node, []))[1].append((slot, key, item))
        calls: list[_Call] = []
        for node, entries in by_node.values():
            for i in range(0, len(entries), WRITES_PER_CALL):
                chunk = entries[i:i + WRITES_PER_CALL]
                calls.append((node, [item for _slot, _key, item in chunk], self._command(chunk, guarded)))
        return calls, left

    def _master_of(self, slot: int) -> ClusterNode | None:
        """The slot's master in the client's map; None when the map has none (the cluster client then
        refreshes it, or says why not)."""
        try:
            return self._client.nodes_manager.get_node_from_slot(slot)
        except SlotNotCoveredError:
            return None

    def _command(self, chunk: Sequence[tuple[int, str, StateWrite]], guarded: list[int]) -> list[Any]:
        """One EVALSHA of `fenced_write_node.lua` (its header has the layout)."""
        marks = ([keys.slot_marks_key(self._prefix, slot) for slot in dict.fromkeys(slot for slot, _k, _i in chunk)]
                 if guarded else [])
        args: list[Any] = ["EVALSHA", self._sha, 0, len(chunk), len(marks), len(guarded), *guarded, *marks]
        for _slot, key, item in chunk:
            document, kind = encoded_write(item)
            args += (key, item.expected_version, item.state.version, document, kind, max(item.ttl_ms, 1))
        return args

    def _send(self, calls: Sequence[tuple[ClusterNode, list[Any]]]) -> list[Any]:
        """Every command written to its master before any answer is read; an answer per command, errors
        returned (a master that cannot be reached answers its commands with the error)."""
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, (node, _command) in enumerate(calls):
            by_node.setdefault(node.name, (node, []))[1].append(index)
        replies: list[Any] = [None] * len(calls)
        sent: list[tuple[Any, Any, list[int]]] = []
        try:
            for node, indexes in by_node.values():
                pool = self._client.get_redis_connection(node).connection_pool
                connection = _sent(pool, [calls[i][1] for i in indexes])
                if isinstance(connection, Exception):
                    for i in indexes:
                        replies[i] = connection
                else:
                    sent.append((pool, connection, indexes))
            for _pool, connection, indexes in sent:
                for i, reply in zip(indexes, _answers(connection, len(indexes)), strict=True):
                    replies[i] = reply
        finally:
            for pool, connection, _indexes in sent:
                pool.release(connection)
        return replies

    def _load(self, nodes: Sequence[ClusterNode]) -> bool:
        """The script loaded on these masters (restarted, flushed or newly promoted); False when Redis
        refuses it (older than 7.0: no script flags), and the per-master calls stop."""
        for node in {node.name: node for node in nodes}.values():
            try:
                self._client.get_redis_connection(node).script_load(self._script)
            except TRANSIENT_ERRORS:
                continue  # its calls are sent again, fail again, and are left to the per-slot calls
            except redis.ResponseError as exc:
                self.enabled = False
                log.warning("Redis refused the per-master write script; writing one call per hash slot",
                            node=node.name, error=str(exc))
                return False
        return True


def _sent(pool: Any, commands: list[list[Any]]) -> Any:
    """A connection of `pool` the commands were written to, or the error that stopped it."""
    try:
        connection = pool.get_connection()
    except TRANSIENT_ERRORS as exc:
        return exc
    try:
        connection.send_packed_command(packed(connection, commands))
    except TRANSIENT_ERRORS as exc:
        connection.disconnect()
        pool.release(connection)
        return exc
    return connection


def _answers(connection: Any, count: int) -> list[Any]:
    """`count` answers read off the connection; when it breaks, the error stands for the answers owed."""
    answers: list[Any] = []
    try:
        while len(answers) < count:
            answers.append(read_reply(connection))
    except TRANSIENT_ERRORS as exc:
        connection.disconnect()  # the answers still owed cannot be read from it
        answers += [exc] * (count - len(answers))
    return answers


def _elsewhere(reply: Any) -> bool:
    """An answer that leaves the call's writes to the per-slot calls (module docstring)."""
    if isinstance(reply, (*TRANSIENT_ERRORS, *_ELSEWHERE)):
        return True
    return isinstance(reply, redis.ResponseError) and str(reply).startswith(_MOVED_REPLY)
