"""What one webhook delivery costs the sync process: client CPU per post, for the poster (libcurl) and the
two clients it replaced (a requests session, then urllib3's pool).

The receiver emulator runs in a child process, so the figures are the posting process's own CPU
(user + system, all its threads) for the same snapshots, signed and posted by `WebhookTarget`
through each client, one at a time and with the default concurrency of 8. Registered as
`webhook_post_cost` (`python -m tests.bench.run --only webhook_post_cost`); on its own:
`python -m tests.bench.webhook_posts [--quick]`.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests
import urllib3

from adapters.base import Synced, SyncItem
from adapters.http_post import Answer, Poster
from adapters.http_session import RecordingSession, transport_error
from adapters.webhook import Session, WebhookTarget
from schemas.snapshot import LogSnapshot
from tests.emulators.server import EmulatorServer
from tests.emulators.webhook import WebhookApp

_SECRET = "bench-webhook-secret"
_PATH = "/hooks/interaction-log"
_SNAPSHOT: dict[str, Any] = {
    "version": 7, "trigger": "state_changed", "state": "disconnected", "media": "voice", "direction": "inbound",
    "queue": "support-en", "agent_id": "agent-17", "customer": {"address": "+4915112345678", "name": "Erika M."},
    "subject": "Inbound call", "notes": "Customer asked about invoice 4711; promised a callback.",
    "name": {"system": "salesforce", "type": "Contact", "id": "0035g00000XXXXXAAA"},
    "related_to": {"system": "salesforce", "type": "Case", "id": "5005g00000YYYYYAAA"},
    "connected_at": "2026-11-27T08:00:01.123Z", "disconnected_at": "2026-11-27T08:05:01.123Z",
    "edit_deadline": "2026-11-27T08:07:01.123Z", "duration_seconds": 300, "hold_seconds": 20, "hold_count": 1,
    "talk_seconds": 280, "wrapup_code": "resolved", "attributes": {"lang": "en", "tier": "gold"},
}


class _PoolPoster:
    """The webhook's client before libcurl: urllib3's pool manager, no requests session (answers only: the
    benchmark's receiver never fails)."""

    def __init__(self) -> None:
        self._pool = urllib3.PoolManager(maxsize=10, block=False, retries=False,
                                         timeout=urllib3.Timeout(connect=10.0, read=10.0))

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> Answer:
        response = self._pool.request("POST", url, body=data, headers=headers, redirect=False)
        return Answer(response.status, response.headers, response.data)

    def close(self) -> None:
        self._pool.clear()


class _SessionPoster:
    """The webhook's former client: a requests session, its errors translated as the session adapters do."""

    def __init__(self) -> None:
        self._session = RecordingSession(None, 10.0)

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> requests.Response:
        try:
            return self._session.post(url, data=data, headers=headers)
        except requests.RequestException as exc:
            raise transport_error(exc) from exc

    def close(self) -> None:
        self._session.close()


def _serve(urls: Any) -> None:
    server = EmulatorServer(WebhookApp(_SECRET), 0).start()
    urls.put(server.base_url + _PATH)
    server.serve_forever()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(url: str, session: Session, concurrency: int, items: Sequence[SyncItem]) -> dict[str, Any]:
    target = WebhookTarget(url=url, secret=_SECRET, session=session, concurrency=concurrency)
    try:
        target.sync(items[:50])  # connections open, code warm
        cpu_s, wall_s = _cpu_s(), time.monotonic()
        outcomes = [outcome for start in range(0, len(items), 500) for outcome in target.sync(items[start:start + 500])]
        cpu_s, wall_s = _cpu_s() - cpu_s, time.monotonic() - wall_s
    finally:
        target.close()
    return {"posts": len(items), "synced": sum(isinstance(o, Synced) for o in outcomes),
            "client_cpu_us_per_post": round(cpu_s / len(items) * 1e6, 1), "posts_per_s": round(len(items) / wall_s)}


def run(quick: bool) -> dict[str, Any]:
    count = 1_000 if quick else 4_000
    items = [SyncItem(LogSnapshot.model_validate({**_SNAPSHOT, "interaction_id": f"conv-{n:06d}"}))
             for n in range(count)]
    urls: Any = multiprocessing.get_context("spawn").Queue()
    receiver = multiprocessing.get_context("spawn").Process(target=_serve, args=(urls,), daemon=True)
    receiver.start()
    try:
        url = urls.get(timeout=30)
        clients: dict[str, Callable[[], Session]] = {
            "requests_session": _SessionPoster, "urllib3_pool": _PoolPoster, "poster": lambda: Poster(url, None, 10.0)}
        measured = {f"{name}_concurrency_{concurrency}": _measure(url, make(), concurrency, items)
                    for concurrency in (1, 8) for name, make in clients.items()}
    finally:
        receiver.terminate()
        receiver.join(10)
    # no speed target: a figure to compare clients by; "ok" says every post was delivered
    return {"name": "webhook_post_cost", "parameters": {"posts": count, "receiver": "emulator, own process"},
            "measured": measured, "target": {"synced": "every post"},
            "meets_target": all(run["synced"] == count for run in measured.values())}


def main(argv: list[str]) -> int:
    print(json.dumps(run("--quick" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
