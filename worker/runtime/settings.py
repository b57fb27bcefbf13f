"""Settings: environment variables prefixed `ILOG_`, read once in the entry point and passed down.

Kafka client options pass through: `ILOG_KAFKA__SECURITY_PROTOCOL=SASL_SSL` becomes the
librdkafka key `security.protocol` (double underscore, then `_` → `.`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def bootstrap_problem(servers: str) -> str | None:
    """What makes `servers` name no broker librdkafka could reach (None: well formed). An entry is
    `host`, `host:port`, `[v6]:port`, optionally behind a `SCHEME://`; a missing port means 9092."""
    entries = [entry.strip() for entry in servers.split(",")]
    if not any(entries):
        return "no server given"
    for entry in entries:
        address = entry.split("://", 1)[-1]
        host, colon, port = address.rpartition(":")
        if not colon or address.endswith("]"):
            continue
        if not host:
            return f"{entry!r} has no host"
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"{entry!r} has no port number"
    return None


_KEY_AND_HEADERS_BYTES = 4096
"""Room a snapshot message needs besides its value (the key is at most 255 characters, two short headers)."""
MAX_SETTING_SECONDS = 10 * 365 * 86_400
"""The longest any `*_SECONDS` setting may be (ten years): longer is a typo, and the deadlines, TTLs and waits
computed from it must stay inside what a datetime, Redis and librdkafka hold (`inf` overflowed them)."""


MAX_TOPIC_CHARS = 249 - len(".replay.dlq.replayed")
"""Kafka's 249 characters less the longest suffix of a topic named after the events or upserts topic."""
_TOPIC_NAME = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_TOPIC_CHARS}}}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ILOG_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    # Topics and connections (CONTRACT.md defaults).
    events_topic: str = "interaction-events"
    upserts_topic: str = "interaction-log-upserts"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka: dict[str, str] = Field(default_factory=dict, description="librdkafka passthrough options")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: Literal["auto", "true", "false"] = Field(
        "auto", description="Redis Cluster: auto asks the node of ILOG_REDIS_URL (INFO cluster); true/false force it"
    )
    key_prefix: str = Field("ilog", description="Redis key prefix; replays may use their own")

    connect_timeout_seconds: float = Field(
        3.0, gt=0, description="commands: how long to wait for Kafka's or Redis' first answer before giving up"
    )

    # Topic bootstrap (`ilog topics create`); docs/deploy.md explains the choices.
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1, description="3 on a production cluster")
    min_insync_replicas: int = Field(1, ge=1, description="2 with replication factor 3: acks=all survives a broker")
    events_retention_seconds: float = Field(
        14 * 86_400.0, gt=0, description="the backfill horizon: `ilog replay --from` reaches back this far"
    )
    upserts_retention_seconds: float = Field(
        7 * 86_400.0, gt=0, description="upserts topic (compacted, then deleted after this long)"
    )
    dlq_retention_seconds: float = Field(30 * 86_400.0, gt=0, description="dead letters kept this long")

    # Edit window and finalization.
    edit_window_seconds: float = Field(120.0, ge=0, description="edits accepted until disconnect + this (event time)")
    finalize_grace_seconds: float = Field(2.0, ge=0, description="windows close once the clock passes deadline + this")
    retention_seconds: float = Field(86_400.0, ge=0, description="state kept after the edit deadline (TTL)")
    open_log_ttl_seconds: float = Field(
        7 * 86_400.0, gt=0, description="TTL of a log that never saw a disconnect (refreshed on every write)"
    )
    replay_lead_seconds: float = Field(
        3_600.0, ge=0, description="`ilog replay` also reads this long before --from and after --to, so the "
        "interactions that cross the range's ends are folded whole; it emits only those first seen in the range",
    )
    sync_epoch_margin_seconds: float = Field(
        60.0, ge=0, description="a missing sync state is trusted as never synced only for interactions that "
        "began this long after the sync epoch and are this much younger than the state's TTL (covers the "
        "clock skew between event sources and the worker); others are looked up at the target first",
    )
    max_clock_skew_seconds: float = Field(
        300.0, ge=0, description="events timed further than this ahead of the wall clock are rejected future_time"
    )
    max_snapshot_bytes: int = Field(
        900_000, ge=1024, description="a snapshot over this is refused: the event that makes it so is rejected "
        "too_large; keep it under the upserts topic's max.message.bytes and the producer's message.max.bytes",
    )
    dlq_max_value_bytes: int = Field(
        262_144, ge=1024, description="DLQ copies of events are cut to this many bytes (headers say so)"
    )

    # Fold and sync loops.
    fold_group: str = "ilog-fold"
    sync_group: str = "ilog-sync"
    batch_size: int = Field(1000, ge=1, le=1_000_000, description=(
        "snapshots the sync stage reads per batch (and its largest target call); the fold stage's is "
        "`fold_batch_size`"))
    fold_batch_size: int = Field(5000, ge=1, le=1_000_000, description=(
        "events the fold stage reads per batch: a fold stage catching up (a backfill, a lag) reads full "
        "batches, where more events of one interaction share a load, a write and a snapshot; a live stage "
        "reads what came within `batch_timeout_seconds` (docs/benchmarks.md, \"A fold batch of its own\")"))
    batch_timeout_seconds: float = Field(0.05, ge=0, description=(
        "how long a consume waits for a full batch (`fold_batch_size`, `batch_size`): below batch / timeout "
        "messages a second every change waits up to this long at each stage (0.05 s: at most 0.1 s of the "
        "end-to-end latency)"))
    drain_timeout_seconds: float = Field(20.0, gt=0)
    state_cache_entries: int = Field(200_000, ge=1, le=100_000_000, description=(
        "fold: open logs kept in memory between two of their events (a write-through copy of Redis), about 1.5 KB "
        "each (a log's document and its entry); a log not kept is read from Redis at its next event"))
    fold_overlap: bool = Field(
        True, description="fold: a full batch's Redis write and delivery reports run while the next batch is "
        "read and planned (at most one batch in flight); false: each batch commits before the next is read"
    )
    native_core: bool = Field(
        True, description="fold: run the compiled core (ilog_native, built by make install) where it is installed; "
        "false: the Python specification alone (same results, slower)"
    )
    group_instance_id: str | None = Field(
        None, description="static membership id (each stage appends -fold / -sync); default: env POD_NAME"
    )
    applied_ids_kept: int = Field(256, ge=1, description="event ids remembered per interaction for dedupe")
    sync_max_queued: int = Field(
        50_000, ge=2, description=(
            "sync: pause consuming while a target has this many interactions queued (about 2 KB of memory each; "
            "a target slower than the changes arrive holds one per open interaction)")
    )
    target_pause_base_seconds: float = Field(
        1.0, gt=0, description="a paused target (credentials refused, unreachable): first wait before trying again"
    )
    target_pause_ceiling_seconds: float = Field(
        300.0, gt=0, description="a paused target: the longest wait between two tries (exponential, jittered)"
    )

    # Outages and state loss.
    broker_settle_seconds: float = Field(
        10.0, ge=0, description="after a broker outage, clocks follow the wall clock again only this long "
        "after fetching works (producers need time to send what they held back)"
    )
    store_retry_max_seconds: float = Field(10.0, gt=0, description="longest wait between Redis retries")
    redis_allow_eviction: bool = Field(
        False, description="start even when Redis may evict keys (maxmemory-policy other than noeviction)"
    )
    health_stall_seconds: float = Field(
        120.0, gt=0, description="/healthz fails when a stage's loop has not come round for this long, or its consumer "
        "has been without its group coordinator this long while the brokers answer (a wedged Kafka client)"
    )

    # Health and metrics.
    http_host: str = Field("127.0.0.1", description="0.0.0.0 in a pod, so probes and scrapes reach it")
    http_port: int = Field(9108, ge=0, le=65_535, description="0: any free port")

    # Salesforce (on when the instance URL is set).
    salesforce_instance_url: str | None = None
    salesforce_login_url: str = "https://login.salesforce.com"
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_client_secret_file: str | None = Field(
        None, description="file holding the client secret, read again on every login (a mounted secret)"
    )
    salesforce_username: str | None = Field(None, description="JWT bearer: the user to act as")
    salesforce_private_key_file: str | None = Field(None, description="JWT bearer: PEM key file")
    salesforce_api_version: str = "62.0"
    salesforce_ca_bundle: str | None = None
    salesforce_attribute_fields: dict[str, str] = Field(
        default_factory=dict, description="interaction attribute → Task field"
    )
    salesforce_budget_per_minute: int = Field(1000, ge=1)
    salesforce_budget_per_day: int = Field(100_000, ge=1)
    salesforce_timeout_seconds: float = Field(30.0, gt=0)
    salesforce_concurrent_calls: int = Field(
        4, ge=1, le=16, description="calls in flight at once, each on interactions of its own (a slow org's round trip)"
    )
    salesforce_budget_pause_seconds: float = Field(
        60.0, gt=0, description="pause after REQUEST_LIMIT_EXCEEDED when Salesforce sends no Retry-After"
    )
    salesforce_max_pause_seconds: float | None = Field(
        None, gt=0, description="dead-letter waiting records once the target was paused this long (unset: wait)"
    )

    # Zendesk (on when the URL is set).
    zendesk_url: str | None = None
    zendesk_email: str | None = None
    zendesk_token: SecretStr | None = None
    zendesk_token_file: str | None = Field(
        None, description="file holding the API token, read again before every batch (a mounted secret)"
    )
    zendesk_mode: Literal["comment", "field"] = "comment"
    zendesk_log_field_id: int | None = None
    zendesk_attribute_fields: dict[str, int] = Field(
        default_factory=dict, description="interaction attribute → custom ticket field id"
    )
    zendesk_missing_ticket: Literal["create", "skip"] = "create"
    zendesk_ca_bundle: str | None = None
    zendesk_budget_per_minute: int = Field(400, ge=1)
    zendesk_budget_per_day: int = Field(500_000, ge=1)
    zendesk_timeout_seconds: float = Field(30.0, gt=0)
    zendesk_job_poll_seconds: float = Field(0.5, gt=0)
    zendesk_job_timeout_seconds: float = Field(60.0, gt=0, description="update_many job: give up polling after")
    zendesk_max_pause_seconds: float | None = Field(
        None, gt=0, description="dead-letter waiting records once the target was paused this long (unset: wait)"
    )
    zendesk_linger_seconds: float = Field(
        3.0, ge=0, description="hold due final logs up to this long to fill update_many jobs (100 tickets)"
    )

    # Webhook (on when the URL is set).
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_concurrency: int = Field(8, ge=1, le=10, description="posts in flight at once (distinct interactions)")
    webhook_ca_bundle: str | None = None
    webhook_max_pause_seconds: float | None = Field(
        None, gt=0, description="dead-letter waiting records once the target was paused this long (unset: wait)"
    )

    # Logging.
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)")
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("redis_cluster", mode="before")
    @classmethod
    def _cluster_words(cls, value: object) -> object:
        """`TRUE`, `1`, `yes`, `on` mean true (any case); `0`, `no`, `off` false."""
        if isinstance(value, bool):
            return str(value).lower()
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        return {"1": "true", "yes": "true", "on": "true", "0": "false", "no": "false", "off": "false"}.get(word, word)

    @field_validator("*")
    @classmethod
    def _a_finite_duration(cls, value: object, info: ValidationInfo) -> object:
        """Every `*_seconds` setting: a finite number of seconds up to `MAX_SETTING_SECONDS` (NaN and negative
        values are refused by each field's own lower bound first)."""
        name = info.field_name or ""
        if name.endswith("_seconds") and isinstance(value, float) and not value <= MAX_SETTING_SECONDS:
            raise PydanticCustomError("duration_range", "Input should be a finite number of seconds, at most "
                                      "{max_s} (ten years)", {"max_s": MAX_SETTING_SECONDS})
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _brokers_named(cls, value: str) -> str:
        """An empty or malformed list is a typo, not an outage: the worker would wait for it forever."""
        problem = bootstrap_problem(value)
        if problem is not None:
            raise PydanticCustomError("kafka_bootstrap", "Input should be host:port[,host:port…] ({problem})",
                                      {"problem": problem})
        return value

    @field_validator("events_topic", "upserts_topic")
    @classmethod
    def _a_topic_name(cls, value: str) -> str:
        """A name Kafka takes for the topic and for the ones named after it (`.dlq`, `.state`, `.replay.dlq`,
        `.dlq.replayed`): an empty or illegal one would only fail later, far from the setting."""
        if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
            raise PydanticCustomError("topic_name", "Input should be a Kafka topic name: letters, digits, '.', '_' "
                                      "and '-', at most {max_chars} characters", {"max_chars": MAX_TOPIC_CHARS})
        return value

    @field_validator("fold_group", "sync_group")
    @classmethod
    def _a_group_name(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("group_name", "Input should be a consumer group name, not empty", {})
        return value

    @field_validator("key_prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        """Each interaction's key is tagged `{<id>}` for Redis Cluster: a brace in the prefix would take its place
        and put every key in one slot."""
        if "{" in value or "}" in value:
            raise PydanticCustomError("key_prefix", "Input should not contain '{' or '}' (the keys' hash tags)", {})
        return value

    @field_validator("log_level")
    @classmethod
    def _a_log_level(cls, value: str) -> str:
        if value.upper() not in _LOG_LEVELS:
            raise PydanticCustomError("log_level", "Input should be one of {levels} (any case)",
                                      {"levels": ", ".join(_LOG_LEVELS)})
        return value.upper()

    @model_validator(mode="after")
    def _snapshot_fits_the_producer(self) -> Settings:
        """A snapshot the planner lets through must not be refused by the producer's own size check."""
        producer_max = self.kafka_config().get("message.max.bytes")
        if producer_max is not None and str(producer_max).isdigit():
            room_bytes = int(producer_max) - _KEY_AND_HEADERS_BYTES
            if self.max_snapshot_bytes > room_bytes:
                raise ValueError(
                    f"ILOG_MAX_SNAPSHOT_BYTES={self.max_snapshot_bytes} does not fit the producer's message.max.bytes="
                    f"{producer_max} (at most {room_bytes}, leaving room for the key and headers)")
        return self

    def kafka_config(self, defaults: Mapping[str, Any] | None = None, /, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration: bootstrap, the caller's tuning `defaults`, the passthrough options
        (`ILOG_KAFKA__…`, which override those defaults), then the caller's own keys (which nothing
        overrides: they are what the stage's guarantees rest on)."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        config.update(defaults or {})
        config.update({key.replace("_", ".").lower(): value for key, value in self.kafka.items()})
        config.update(extra)
        return config

    def max_pause_seconds(self, target: str) -> float | None:
        """`ILOG_<TARGET>_MAX_PAUSE_SECONDS`: None means a paused target waits as long as it takes."""
        value = getattr(self, f"{target}_max_pause_seconds", None)
        return None if value is None else float(value)

    @property
    def state_changelog_topic(self) -> str:
        """The fold stage's state changelog (compacted; partitioned like the events topic)."""
        return f"{self.events_topic}.state"

    def instance_id(self, stage: str) -> str | None:
        """The stage's static-membership id: the configured id, else the pod name, with the stage appended."""
        base = self.group_instance_id or os.environ.get("POD_NAME") or None
        return f"{base}-{stage}" if base else None

    @property
    def events_dlq_topic(self) -> str:
        return f"{self.events_topic}.dlq"

    @property
    def upserts_dlq_topic(self) -> str:
        return f"{self.upserts_topic}.dlq"


# Variables with the prefix that the local tools (or the build info) read, not the settings.
TOOL_VARIABLES = frozenset({"ILOG_STACK_DIR", "ILOG_CACHE_DIR", "ILOG_BUILD_REVISION"})
_TOOL_PREFIXES = ("ILOG_EMULATOR_", "ILOG_BENCH_", "ILOG_TEST_")


def setting_variables() -> list[str]:
    """Every environment variable the settings read (a dict setting also reads `<NAME>__<key>`)."""
    return [f"ILOG_{name.upper()}" for name in Settings.model_fields]


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per `ILOG_*` variable that no setting reads, with the closest setting's name."""
    known = setting_variables()
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("ILOG_") or upper in TOOL_VARIABLES or upper.startswith(_TOOL_PREFIXES):
            continue
        if upper in known or (upper.split("__", 1)[0] in known and "__" in upper):
            continue
        close = difflib.get_close_matches(upper, known, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a setting and is ignored{hint}")
    return warnings
