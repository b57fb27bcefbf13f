"""How a command fails: one line on stderr that says what, where and what to do, and an exit code.

2: a bad setting, an unreachable service, a file that cannot be read (the environment is wrong);
1: anything unexpected. `--debug` adds the traceback.
"""

from __future__ import annotations

import traceback
from typing import NamedTuple

import redis
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from worker.errors import IlogError

EXIT_ENVIRONMENT = 2
EXIT_UNEXPECTED = 1
_SECRET_WORDS = ("secret", "token", "password", "key", "url")


class Failure(NamedTuple):
    line: str
    exit_code: int


def describe_failure(command: str, exc: BaseException) -> Failure:
    """The one line (prefixed with the command) and the exit code for `exc`."""
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return Failure(f"{command}: {settings_problem(exc)}", EXIT_ENVIRONMENT)
    if (moved := _cause_of_type(exc, redis.exceptions.MovedError)) is not None:
        where = _one_line(str(moved))
        return Failure(f"{command}: bad setting: Redis redirected a key to another node (MOVED {where}): "
                       "ILOG_REDIS_URL names a node of a Redis Cluster, so set ILOG_REDIS_CLUSTER=true (or auto) "
                       "(docs: README 'Settings')", EXIT_ENVIRONMENT)
    if isinstance(exc, IlogError):
        return Failure(f"{command}: {_one_line(str(exc))}", EXIT_ENVIRONMENT)
    if isinstance(exc, UnicodeDecodeError) and _raised_in(exc, "dotenv"):
        return Failure(f"{command}: bad setting: the .env file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                       "fix or remove it (docs: README 'Settings')", EXIT_ENVIRONMENT)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Failure(f"{command}: cannot reach Redis ({_one_line(str(exc))}); check ILOG_REDIS_URL and that "
                       "Redis is up", EXIT_ENVIRONMENT)
    if isinstance(exc, KafkaException) and _invalid_option(exc):
        return Failure(f"{command}: bad Kafka client option ({_one_line(exc.args[0].str())}); check the "
                       "ILOG_KAFKA__ settings", EXIT_ENVIRONMENT)
    if isinstance(exc, KafkaException):
        return Failure(f"{command}: Kafka failed ({_one_line(str(exc))}); check ILOG_KAFKA_BOOTSTRAP and that "
                       "the brokers are up", EXIT_ENVIRONMENT)
    return Failure(f"{command}: unexpected {type(exc).__name__}: {_one_line(str(exc))} (run with --debug for "
                   "the traceback)", EXIT_UNEXPECTED)


def settings_problem(exc: ValidationError) -> str:
    """`ILOG_EDIT_WINDOW_SECONDS='abc': Input should be a valid number…` for each bad setting."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        variable = "ILOG_" + field.split(".", 1)[0].upper()
        shown = "" if any(word in field.lower() for word in _SECRET_WORDS) else f"={_short(error['input'])}"
        problems.append(f"{variable}{shown}: {error['msg']}")
    return ("bad setting " + "; ".join(problems)
            + " (fix the environment variable or .env; docs: README 'Settings')")


def _cause_of_type(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """`exc` or the first of its causes (`raise … from`, or raised while handling) that is a `kind`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _raised_in(exc: BaseException, package: str) -> bool:
    """`exc` was raised inside `package` (read off its traceback: pydantic-settings reads `.env` through python-dotenv,
    which lets a decoding error through as it is)."""
    return any(f"/{package}/" in frame.filename for frame in traceback.extract_tb(exc.__traceback__))


def _invalid_option(exc: KafkaException) -> bool:
    """librdkafka refused its configuration (an unknown or malformed `ILOG_KAFKA__` option)."""
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError._INVALID_ARG


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())
