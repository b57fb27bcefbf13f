"""Just enough SOQL for the adapter's look-ups.

Supported: `SELECT f1[, f2...] FROM Task [WHERE cond [AND cond...]] [ORDER BY f [ASC|DESC]] [LIMIT n]`
where cond is `Field = 'text'`, `Field = null` or `Field IN ('a', 'b')`.
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
_IN_RE = re.compile(r"^(\w+)\s+IN\s*\((.*)\)$", re.IGNORECASE | re.DOTALL)


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
        values = {_unquote(v) for v in re.findall(_QUOTED, within.group(2))}
        return lambda r: r.get(name) in values
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[:60]}'")


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
    conditions = [_condition(part) for part in re.split(r"\s+AND\s+", where, flags=re.I)] if where else []
    order = _field(match.group("order")) if match.group("order") else None
    limit = int(match.group("limit")) if match.group("limit") else None
    return Query(
        fields=fields,
        predicate=lambda r: all(cond(r) for cond in conditions),
        order_by=order,
        descending=(match.group("dir") or "").upper() == "DESC",
        limit=limit,
    )
