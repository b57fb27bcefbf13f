"""What `ilog demo` prints at the end: what the CRM emulators hold for this run, and the dead letters.

Everything is filtered to this run's interaction ids, so emulators reused across runs still give
this run's numbers: Tasks by `CallObject`, Zendesk comments by their marker line, webhook
deliveries by the snapshot's interaction id.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from worker.dev.produce import ProduceCounts
from worker.kafka.dead_letters import DeadLetter
from worker.ops.dlq import read_dead_letters
from worker.ops.dlq_commands import letters_table
from worker.runtime.settings import Settings

_MARKER = re.compile(r"\[interaction (\S+) · log v(\d+)\]")
_SHOWN = 5


@dataclass
class DemoReport:
    run_id: str
    settled: bool
    interactions: int
    events_sent: int
    malformed_sent: int
    tasks: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    zendesk_comments: int = 0
    webhook_deliveries: dict[str, int] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["letters"]
        data["tasks"] = len(self.tasks)
        data["tickets"] = len(self.tickets)
        data["dlq_reasons"] = dict(Counter(d["reason"] for d in self.dead_letters))
        return data


def emulator_state(base_url: str, verify: str | bool = True) -> dict[str, Any]:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE must not override the test CA
    response = session.get(f"{base_url.rstrip('/')}/__emulator/state", verify=verify, timeout=10)
    response.raise_for_status()
    return dict(response.json())


def _base(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def collect_report(
    settings: Settings, env: dict[str, str], ids: list[str], counts: ProduceCounts, *, run_id: str, settled: bool
) -> DemoReport:
    wanted = set(ids)
    report = DemoReport(run_id=run_id, settled=settled, interactions=len(ids), events_sent=counts.events,
                        malformed_sent=counts.malformed)
    salesforce = emulator_state(env["ILOG_SALESFORCE_INSTANCE_URL"], env.get("ILOG_SALESFORCE_CA_BUNDLE", True))
    report.tasks = [t for t in salesforce["tasks"] if t.get("CallObject") in wanted]
    zendesk = emulator_state(env["ILOG_ZENDESK_URL"])
    for ticket in zendesk["tickets"]:
        ours = [c for c in ticket.get("comments", []) if _marked_for(c, wanted)]
        if ours or str(ticket.get("external_id") or "") in wanted:
            report.tickets.append({**ticket, "comments": ours})
            report.zendesk_comments += len(ours)
    webhook = emulator_state(_base(env["ILOG_WEBHOOK_URL"]))
    events = Counter(str((d.get("body") or {}).get("event")) for d in webhook["deliveries"]
                     if d.get("interaction_id") in wanted and d.get("status") == 200)
    report.webhook_deliveries = dict(sorted(events.items()))
    for topic in (settings.events_dlq_topic, settings.upserts_dlq_topic):
        report.letters.extend(read_dead_letters(settings, topic))
    report.dead_letters = [d.as_json() for d in report.letters]
    return report


def _marked_for(comment: dict[str, Any], wanted: set[str]) -> bool:
    match = _MARKER.search(str(comment.get("body") or comment.get("plain_body") or ""))
    return bool(match and match.group(1) in wanted)


def counts_table(report: DemoReport) -> Table:
    table = Table(title=f"demo {report.run_id}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    rows = [
        ("interactions produced", report.interactions), ("events sent", report.events_sent),
        ("malformed payloads sent", report.malformed_sent),
        ("Salesforce Tasks", len(report.tasks)),
        ("  of them Completed", sum(t.get("Status") == "Completed" for t in report.tasks)),
        ("Zendesk tickets touched", len(report.tickets)), ("Zendesk comments", report.zendesk_comments),
        ("webhook deliveries", sum(report.webhook_deliveries.values())),
        *((f"  {name}", n) for name, n in report.webhook_deliveries.items()),
        ("dead letters", len(report.dead_letters)),
        *((f"  {reason}", n) for reason, n in report.summary()["dlq_reasons"].items()),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Salesforce Tasks (first {min(_SHOWN, len(tasks))} of {len(tasks)})", title_justify="left")
    for column in ("Id", "Subject", "Status", "CallType", "CallDurationInSeconds", "CallDisposition",
                   "WhoId", "WhatId"):
        table.add_column(column, overflow="fold")
    for task in tasks[:_SHOWN]:
        table.add_row(*(str(task.get(c) or "") for c in ("Id", "Subject", "Status", "CallType",
                                                          "CallDurationInSeconds", "CallDisposition",
                                                          "WhoId", "WhatId")))
    return table


def tickets_table(tickets: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Zendesk tickets (first {min(_SHOWN, len(tickets))} of {len(tickets)})",
                  title_justify="left")
    for column in ("id", "subject", "status", "log comments", "last marker"):
        table.add_column(column, overflow="fold")
    for ticket in tickets[:_SHOWN]:
        markers = [m.group(0) for c in ticket["comments"] if (m := _MARKER.search(str(c.get("body") or "")))]
        table.add_row(str(ticket.get("id")), str(ticket.get("subject") or ""), str(ticket.get("status") or ""),
                      str(len(ticket["comments"])), escape(markers[-1]) if markers else "")
    return table


def print_report(report: DemoReport, console: Console, env: dict[str, str], http_port: int, *, keep: bool) -> None:
    console.print(counts_table(report))
    console.print(tasks_table(report.tasks))
    console.print(tickets_table(report.tickets))
    if report.letters:
        console.print(letters_table(report.letters, f"dead letters ({len(report.letters)})"))
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith("ILOG_") and
                       not k.endswith(("_SECRET", "_TOKEN")))
    sample = report.tasks[0]["CallObject"] if report.tasks else "<interaction id>"
    console.print("\n[bold]look further[/] (with this run's settings):")
    console.print(f"  export {escape(exports)}", soft_wrap=True)
    console.print(f"  ilog inspect {sample}")
    console.print("  ilog dlq list")
    where = f"http://127.0.0.1:{http_port}/metrics"
    console.print(f"  metrics: {where}" + ("" if keep else "  (run with --keep to leave the worker up)"))


def print_keep_hint(console: Console, worker_pid: int, emulators_started: bool, stack_started: bool) -> None:
    console.print("\n[bold]left running[/] (--keep); to stop:")
    console.print(f"  kill {worker_pid}        # the worker")
    if emulators_started:
        console.print("  deploy/local/emulators down")
    if stack_started:
        console.print("  deploy/local/stack down")


def write_summary(report: DemoReport, path: Path) -> None:
    path.write_text(json.dumps(report.summary(), indent=2, default=str), encoding="utf-8")
