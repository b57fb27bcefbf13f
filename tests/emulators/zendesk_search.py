"""`GET /api/v2/search.json?query=…` of the emulated Zendesk, for the property terms the worker uses.

Shape: Support API "Search" (`results` each with `result_type`, `count`, `next_page`,
`previous_page`, `facets`; ≤ 100 a page, ≤ 1,000 results in all). Terms are `key:value` or
`key:"quoted value"`, separated by spaces; a key repeated is OR'ed, different keys are AND'ed.
Supported keys: `type` (ticket) and `external_id`; anything else (free text included) is answered
400 so a test notices the emulator does not know it, where Zendesk would search for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MAX_RESULTS = 1_000
_TERM_RE = re.compile(r'\s*(?P<key>[a-z_]+):(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))')
SUPPORTED_KEYS = frozenset({"type", "external_id"})


class SearchQueryError(ValueError):
    pass


def parse_query(query: str) -> dict[str, set[str]]:
    """Values per key; raises SearchQueryError for what the emulator does not search."""
    terms: dict[str, set[str]] = {}
    position = 0
    while position < len(query.rstrip()):
        match = _TERM_RE.match(query, position)
        if match is None:
            raise SearchQueryError(f"unsupported search term at: {query[position:position + 40]!r}")
        key = match.group("key")
        if key not in SUPPORTED_KEYS:
            raise SearchQueryError(f"the emulator does not search by {key!r}")
        value = match.group("quoted") if match.group("quoted") is not None else match.group("bare")
        terms.setdefault(key, set()).add(value)
        position = match.end()
    if terms.get("type", {"ticket"}) != {"ticket"}:
        raise SearchQueryError("the emulator searches tickets only")
    return terms


def matching_tickets(tickets: Iterable[dict[str, Any]], terms: dict[str, set[str]]) -> list[dict[str, Any]]:
    wanted = terms.get("external_id")
    return [ticket for ticket in tickets if wanted is None or ticket.get("external_id") in wanted]


def search_page(found: list[dict[str, Any]], page: int, per_page: int, link: str) -> dict[str, Any]:
    found = found[:MAX_RESULTS]
    per_page = max(1, min(per_page, 100))
    chunk = found[(page - 1) * per_page: page * per_page]
    return {
        "results": [{**ticket, "result_type": "ticket"} for ticket in chunk],
        "facets": None,
        "count": len(found),
        "next_page": link.format(page + 1, per_page) if page * per_page < len(found) else None,
        "previous_page": link.format(page - 1, per_page) if page > 1 else None,
    }
