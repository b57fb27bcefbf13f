"""The Redis store: one pipelined round trip per batch for reads, one for writes (fenced Lua)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis

from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import State, StateWrite, Stored
from worker.errors import StateLostError, StoreError, StoreUnavailableError
from worker.store import keys
from worker.store.port import WriteResult

_WRITES_PER_CALL = 1_000  # a script call blocks Redis while it runs: bound its length
_LOST_REPLY = "ILOGLOST"


@contextmanager
def store_errors(action: str) -> Iterator[None]:
    """The store boundary: a driver error leaves it as the store's own, saying what failed: unreachable
    (`StoreUnavailableError`: wait and retry), state lost (`StateLostError`), anything else (`StoreError`)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # BusyLoadingError is a ConnectionError
        raise StoreUnavailableError(f"{action} failed: {exc}") from exc
    except redis.ResponseError as exc:
        text = str(exc)
        if text.startswith(_LOST_REPLY):
            raise StateLostError([int(text.split()[1])]) from exc
        raise StoreError(f"{action} failed: {exc}") from exc
    except redis.RedisError as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


def encode_state(state: State, document: bytes | None = None) -> tuple[bytes, str]:
    """The stored bytes and kind; `document` is the state's bytes when the caller encoded them already."""
    encoded = document if document is not None else state.to_bytes()
    return encoded, keys.KIND_TOMBSTONE if isinstance(state, Tombstone) else keys.KIND_LOG


def decode_state(document: bytes | None, kind: bytes | str | None) -> State | None:
    if document is None:
        return None
    kind_text = kind.decode() if isinstance(kind, bytes) else kind
    if kind_text == keys.KIND_TOMBSTONE:
        return Tombstone.from_bytes(document)
    return InteractionLog.from_bytes(document)


class RedisStore:
    """Interaction state in Redis; every batch is one round trip to read and one to write."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = resources.files("worker.store").joinpath("fenced_write.lua").read_text()
        # EVALSHA directly: redis-py's Script object would add a SCRIPT EXISTS round trip per batch.
        self._sha: str = client.register_script(self._script).sha

    @property
    def client(self) -> redis.Redis:
        return self._client

    def load(self, interaction_ids: Iterable[str]) -> dict[str, Stored]:
        ids = list(dict.fromkeys(interaction_ids))
        if not ids:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for interaction_id in ids:
            pipe.hmget(
                keys.state_key(self._prefix, interaction_id),
                [keys.FIELD_VERSION, keys.FIELD_DOCUMENT, keys.FIELD_KIND],
            )
        with store_errors(f"loading {len(ids)} interactions"):
            rows: list[list[Any]] = pipe.execute()
        return {
            interaction_id: Stored(int(version or 0), decode_state(document, kind))
            for interaction_id, (version, document, kind) in zip(ids, rows, strict=True)
        }

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        """Fenced writes; with `guard`, refused as a whole (StateLostError) when one of them is unmarked."""
        if not writes:
            return WriteResult()
        commands = [self._fenced_write_command(writes[i:i + _WRITES_PER_CALL], guard)
                    for i in range(0, len(writes), _WRITES_PER_CALL)]
        with store_errors(f"writing {len(writes)} interactions"):
            try:
                replies = self._execute(commands)
            except redis.exceptions.NoScriptError:
                # Redis restarted or flushed its script cache: no call of the batch ran (a call is
                # all-or-nothing), so sending the whole batch again is safe.
                self._client.script_load(self._script)
                replies = self._execute(commands)
        fenced: list[str] = []
        for offset, reply in zip(range(0, len(writes), _WRITES_PER_CALL), replies, strict=True):
            fenced.extend(writes[offset + index - 1].interaction_id for index in reply)
        return WriteResult(fenced_out=fenced)

    def _execute(self, commands: list[list[Any]]) -> list[Any]:
        """One round trip: a single call directly, several in one pipeline."""
        if len(commands) == 1:
            return [self._client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return list(pipe.execute())

    def _fenced_write_command(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> list[Any]:
        """One EVALSHA of the fenced-write script for these writes (`fenced_write.lua` has the layout).

        One call for many writes: packing and parsing a command per write cost the client as much as
        everything else it does for a write."""
        prefix = self._prefix
        state_keys: list[str] = []
        args: list[Any] = [len(writes)]
        deadline_sets: dict[int, int] = {}  # partition → its KEYS index, after the state keys
        for item in writes:
            state_keys.append(keys.state_key(prefix, item.interaction_id))
            document, kind = encode_state(item.state, item.document)
            op, partition, score = _deadline_op(item)
            index = deadline_sets.setdefault(partition, len(writes) + len(deadline_sets) + 1) if op else 0
            args += (item.expected_version, item.state.version, document, kind, max(item.ttl_ms, 1),
                     item.interaction_id, op, index, score)
        set_keys = [keys.deadlines_key(prefix, partition) for partition in deadline_sets]
        guarded = sorted(set(guard))
        args += (len(guarded), *guarded)
        if guarded:
            set_keys.append(keys.marks_key(prefix))
        return ["EVALSHA", self._sha, len(state_keys) + len(set_keys), *state_keys, *set_keys, *args]

    def marked(self, partitions: Sequence[int]) -> set[int]:
        """The partitions whose state this store holds (see `keys.marks_key`)."""
        if not partitions:
            return set()
        with store_errors("reading the state marks"):
            found: list[Any] = self._client.hmget(keys.marks_key(self._prefix), [str(p) for p in partitions])
        return {p for p, value in zip(partitions, found, strict=True) if value is not None}

    def mark(self, partitions: Sequence[int]) -> None:
        """Say that this store holds these partitions' state (fresh, or restored)."""
        if partitions:
            now_ms = str(int(time.time() * 1000))
            with store_errors("writing the state marks"):
                self._client.hset(keys.marks_key(self._prefix), mapping={str(p): now_ms for p in partitions})

    def due(self, partition: int, until_ms: int, limit: int) -> list[tuple[str, int]]:
        with store_errors(f"reading the due windows of partition {partition}"):
            rows: list[tuple[bytes, float]] = self._client.zrangebyscore(  # type: ignore[assignment]
                keys.deadlines_key(self._prefix, partition), "-inf", until_ms, start=0, num=limit, withscores=True
            )
        return [(member.decode(), int(score)) for member, score in rows]

    def open_windows(self, partition: int) -> int:
        with store_errors(f"counting the open windows of partition {partition}"):
            return int(self._client.zcard(keys.deadlines_key(self._prefix, partition)))

    def due_many(self, until_ms: dict[int, int], limit: int) -> dict[int, list[tuple[str, int]]]:
        """`due` of several partitions (partition → until_ms) in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for partition, until in until_ms.items():
            pipe.zrangebyscore(keys.deadlines_key(self._prefix, partition), "-inf", until, start=0, num=limit,
                               withscores=True)
        with store_errors(f"reading the due windows of {len(until_ms)} partitions"):
            rows: list[list[tuple[bytes, float]]] = pipe.execute()
        return {partition: [(member.decode(), int(score)) for member, score in found]
                for partition, found in zip(until_ms, rows, strict=True)}

    def open_windows_many(self, partitions: Sequence[int]) -> dict[int, int]:
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.zcard(keys.deadlines_key(self._prefix, partition))
        with store_errors(f"counting the open windows of {len(partitions)} partitions"):
            counts = pipe.execute()
        return {partition: int(count) for partition, count in zip(partitions, counts, strict=True)}

    def unschedule(self, partition: int, interaction_ids: Sequence[str]) -> None:
        if interaction_ids:
            with store_errors(f"unscheduling {len(interaction_ids)} windows of partition {partition}"):
                self._client.zrem(keys.deadlines_key(self._prefix, partition), *interaction_ids)

    def close(self) -> None:
        self._client.close()


def _deadline_op(item: StateWrite) -> tuple[str, int, int]:
    """(op, partition, score) of a write's deadline entry: "a" schedule, "r" unschedule, "" none."""
    if item.deadline is not None:
        if item.unschedule_partition is not None:
            raise ValueError("a write either schedules or unschedules a deadline, not both")
        return "a", item.deadline[0], item.deadline[1]
    if item.unschedule_partition is not None:
        return "r", item.unschedule_partition, 0
    return "", 0, 0
