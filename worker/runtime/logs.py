"""Logging: every line through one structlog chain — JSON lines in production, a console renderer on a TTY.

structlog's own loggers, the standard library's (`logging.getLogger(...)`, used by libraries) and
librdkafka's (the Kafka clients' `logger` hook, see `worker.runtime.bootstrap.kafka_hooks`) all end in
one handler with structlog's `ProcessorFormatter`, so the whole stderr stream is one format. Tracebacks
are structured fields (`exception`: a list of frames), not text spread over lines.

Never log note text or credentials: events carry ids, partitions, offsets, reasons and counts.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time

import structlog
import structlog.tracebacks

from adapters.http_session import CLIENT_LOGGERS
from worker.runtime.settings import Settings

_REDACTED_KEYS = frozenset({"notes", "note", "wrapup_note", "description", "body", "password", "token", "secret"})
KAFKA_LOGGER_NAME = "librdkafka"
REPEAT_WINDOW_S = 30.0
_VARYING = re.compile(r"\d+")


def trace_fields(traceparent: str | None) -> dict[str, str]:
    """`trace_id` and `span_id` of a W3C traceparent (already checked well-formed), for a log line."""
    if traceparent is None:
        return {}
    _version, trace_id, span_id, _flags = traceparent.split("-", 3)
    return {"trace_id": trace_id, "span_id": span_id}


class RepeatThrottle:
    """Lets a message through once per `window_s` (digits ignored: `after 0ms` = `after 3ms`) and says how
    often it was held back. A broker that stays down reconnects every few seconds; one line per window
    says so as well as a hundred."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        self._window_s = window_s
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def admit(self, message: str) -> int | None:
        """None: hold it back; else how many times it was held back since it last went through."""
        key = _VARYING.sub("#", message)
        now_s = time.monotonic()
        with self._lock:
            last_s, held = self._seen.get(key, (float("-inf"), 0))
            if now_s - last_s < self._window_s:
                self._seen[key] = (last_s, held + 1)
                return None
            self._seen[key] = (now_s, 0)
            return held


class _RepeatFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._throttle = RepeatThrottle()

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._throttle.admit(record.getMessage())
        if held:
            record.msg = f"{record.getMessage()} (repeated {held} times)"
            record.args = None
        return held is not None


_KAFKA_REPEATS = _RepeatFilter()


def _redact(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    for key in _REDACTED_KEYS.intersection(event_dict):
        event_dict[key] = "[redacted]"
    return event_dict


def _shared_processors() -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]


def configure_logging(settings: Settings) -> None:
    """The worker's logging: `ILOG_LOG_LEVEL`, `ILOG_LOG_FORMAT`; librdkafka's lines included."""
    use_console = settings.log_format == "console" or (settings.log_format == "auto" and sys.stderr.isatty())
    _configure(logging.getLevelName(settings.log_level.upper()), use_console=use_console, kafka_lines=True,
               cache=True)


def configure_command_logging(*, debug: bool) -> None:
    """Commands other than the worker: errors only (the command says what failed in one line);
    `--debug` shows everything, librdkafka's lines too."""
    # not cached: a command that runs the fold stage (replay) configures the worker's logging after this
    _configure(logging.DEBUG if debug else logging.ERROR, use_console=sys.stderr.isatty(), kafka_lines=debug,
               cache=False)


def _configure(level: int, *, use_console: bool, kafka_lines: bool, cache: bool) -> None:
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    # no locals in the frames: they would carry note text and credentials into the log
    tracebacks: list[structlog.types.Processor] = [] if use_console else [structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False))]
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.StackInfoRenderer(),
            *tracebacks,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tracebacks,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    # The HTTP clients of the adapters log whole request and response bodies at DEBUG (zenpy: a
    # ticket update with the log's note text): at most their warnings reach the log, whatever level.
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # librdkafka is chatty at its default level; its errors also come through `error_cb`.
    kafka_logger = logging.getLogger(KAFKA_LOGGER_NAME)
    kafka_logger.setLevel(logging.NOTSET if kafka_lines else logging.CRITICAL + 1)
    if _KAFKA_REPEATS not in kafka_logger.filters:
        kafka_logger.addFilter(_KAFKA_REPEATS)
