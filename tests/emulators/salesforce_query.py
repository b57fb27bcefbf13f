"""Just enough SOQL for the adapter's look-ups, with Salesforce's syntax rules for what it accepts.

Supported: `SELECT f1[, f2...] FROM Task [WHERE cond [AND cond...]] [ORDER BY f [ASC|DESC]] [LIMIT n]`
where cond is `Field = 'text'`, `Field = null`, `Field IN ('a', 'b', ...)` or `Field NOT IN (...)`.
An `IN` list holds one or more string literals separated by commas (an empty list, a bare word or
a missing comma is MALFORMED_QUERY, as Salesforce answers); keywords are case-insensitive, and
`AND` inside a quoted literal is text, not a keyword.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.emulators.salesforce_schema import FIELDS_BY_LOWER

_QUERY_RE = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED = r"'((?:[^'\\]|\\.)*)'"
_EQ_RE = re.compile(rf"^(\w+)\s*=\s*(?:{_QUOTED}|(null))$", re.IGNORECASE)
_IN_RE = re.compile(r"^(\w+)\s+(NOT\s+)?IN\s*\((.*)\)$", re.IGNORECASE | re.DOTALL)
_LIST_ITEM_RE = re.compile(rf"\s*{_QUOTED}\s*(,|$)", re.DOTALL)
_AND_OUTSIDE_QUOTES_RE = re.compile(rf"{_QUOTED}|\s+AND\s+", re.IGNORECASE)


class SoqlError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    predicate: Callable[[dict[str, Any]], bool]
    order_by: str | None
    descending: bool
    limit: int | None

    def run(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = [r for r in records if self.predicate(r)]
        if self.order_by:
            key = self.order_by
            rows.sort(key=lambda r: (r.get(key) is None, str(r.get(key))), reverse=self.descending)
        if self.limit is not None:
            rows = rows[: self.limit]
        return [{name: row.get(name) for name in self.fields} for row in rows]


def _field(name: str) -> str:
    spec = FIELDS_BY_LOWER.get(name.strip().lower())
    if spec is None:
        raise SoqlError("INVALID_FIELD", f"No such column '{name.strip()}' on entity 'Task'.")
    return spec.name


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _condition(text: str) -> Callable[[dict[str, Any]], bool]:
    text = text.strip()
    eq = _EQ_RE.match(text)
    if eq:
        name = _field(eq.group(1))
        wanted = None if eq.group(3) else _unquote(eq.group(2))
        return lambda r: r.get(name) == wanted
    within = _IN_RE.match(text)
    if within:
        name = _field(within.group(1))
        values = _literal_list(within.group(3))
        if within.group(2):
            return lambda r: r.get(name) not in values
        return lambda r: r.get(name) in values
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[:60]}'")


def _literal_list(text: str) -> frozenset[str]:
    """The values of `('a', 'b')` (without the parentheses); anything else is MALFORMED_QUERY."""
    values: list[str] = []
    position = 0
    while position < len(text):
        item = _LIST_ITEM_RE.match(text, position)
        if item is None or item.end() == position:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[position:position + 60].strip()}'")
        values.append(_unquote(item.group(1)))
        position = item.end()
        if item.group(2) == "," and not text[position:].strip():
            raise SoqlError("MALFORMED_QUERY", "unexpected token: ')'")
    if not values:
        raise SoqlError("MALFORMED_QUERY", "unexpected token: ')'")
    return frozenset(values)


def _split_and(where: str) -> list[str]:
    """The conditions of a WHERE clause: split at AND keywords that are not inside a literal."""
    parts: list[str] = []
    start = 0
    for match in _AND_OUTSIDE_QUOTES_RE.finditer(where):
        if match.group(1) is None and not match.group(0).startswith("'"):
            parts.append(where[start:match.start()])
            start = match.end()
    parts.append(where[start:])
    return parts


def parse_soql(soql: str) -> Query:
    match = _QUERY_RE.match(soql)
    if not match:
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{soql[:60]}'")
    if match.group("obj").lower() != "task":
        raise SoqlError("INVALID_TYPE",
                        f"sObject type '{match.group('obj')}' is not supported. If you are attempting to use "
                        "a custom object, be sure to append the '__c' after the entity name.")
    fields = tuple(_field(name) for name in match.group("fields").split(","))
    where = match.group("where")
    conditions = [_condition(part) for part in _split_and(where)] if where else []
    order = _field(match.group("order")) if match.group("order") else None
    limit = int(match.group("limit")) if match.group("limit") else None
    return Query(
        fields=fields,
        predicate=_all_of(conditions),
        order_by=order,
        descending=(match.group("dir") or "").upper() == "DESC",
        limit=limit,
    )


def _all_of(conditions: list[Callable[[dict[str, Any]], bool]]) -> Callable[[dict[str, Any]], bool]:
    """The WHERE clause as one test per record; the common single condition without a wrapper (a query
    scans every Task, and the emulator shares the benchmarks' cores with the worker it serves)."""
    if len(conditions) == 1:
        return conditions[0]
    return lambda r: all(cond(r) for cond in conditions)
