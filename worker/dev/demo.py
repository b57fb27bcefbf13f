"""`ilog demo` (what `make run` calls): the whole product on one machine, in about two minutes.

Brings up the local stack and the CRM emulators (reusing running ones), creates topics of its own
(`demo-<timestamp>.*`, key prefix `ilog-demo-<timestamp>`), starts `ilog worker all` as a child
process, produces a paced demo stream, waits until every edit window closed and the sync stage
caught up, then prints what the CRMs now hold (see `worker.dev.demo_report`).
Without `--keep` it stops what it started — the worker, and the emulators and the stack only if
they were not running before; Ctrl-C does the same. Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from random import Random

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console

from worker.core.state import Tombstone
from worker.dev.generator import GeneratorMix, StreamItem, generate_stream, malformed_payload
from worker.dev.local_tools import LOCAL_TOOLS, parse_env_lines, repository_root
from worker.errors import IlogError
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

_SCRIPT_TIMEOUT_S = 900.0  # the first `stack up` resolves Kafka from Maven Central
_READY_TIMEOUT_S = 90.0
_SETTLE_EXTRA_S = 90.0
_TIME_SCALE = 0.03  # calls of 0.6–18 s instead of 20 s–10 min


class DemoError(IlogError):
    """The demo could not go on; the message says what to do."""


@dataclass(frozen=True)
class DemoOptions:
    interactions: int = 200
    duration_s: float = 60.0
    edit_window_s: float = 10.0
    seed: int | None = None
    keep: bool = False
    summary_json: Path | None = None


@dataclass
class Started:
    """What this run started and must stop (nothing else is ever stopped)."""

    repo: Path = Path()
    stack: bool = False
    emulators: bool = False
    worker: subprocess.Popen[bytes] | None = None
    worker_log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def script_env(script: Path, console: Console) -> tuple[dict[str, str], bool]:
    """(ILOG_* lines as a dict, True when this call started it): `env` when running, else `up`."""
    running = subprocess.run([str(script), "env"], capture_output=True, text=True, check=False, timeout=60)
    if running.returncode == 0:
        console.print(f"[dim]{script.name}: reusing the running one[/]")
        return parse_env_lines(running.stdout), False
    console.print(f"{script.name}: starting (the first time downloads what it needs) …")
    try:
        started = subprocess.run([str(script), "up"], capture_output=True, text=True, check=False,
                                 timeout=_SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{script} up did not finish within {_SCRIPT_TIMEOUT_S:.0f} s") from exc
    if started.returncode != 0:
        raise DemoError(f"{script} up failed:\n{started.stderr[-2000:]}")
    return parse_env_lines(started.stdout), True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_settings(env: dict[str, str], run_id: str, options: DemoOptions, http_port: int) -> dict[str, str]:
    """The worker's environment: the scripts' lines plus this run's own names and the short window."""
    return {
        **env,
        "ILOG_EVENTS_TOPIC": f"{run_id}.events", "ILOG_UPSERTS_TOPIC": f"{run_id}.upserts",
        "ILOG_KEY_PREFIX": f"ilog-{run_id}", "ILOG_FOLD_GROUP": f"{run_id}-fold",
        "ILOG_SYNC_GROUP": f"{run_id}-sync", "ILOG_EDIT_WINDOW_SECONDS": str(options.edit_window_s),
        "ILOG_FINALIZE_GRACE_SECONDS": "1", "ILOG_HTTP_PORT": str(http_port), "ILOG_PARTITIONS": "3",
        "ILOG_LOG_FORMAT": "json",
    }


def settings_from(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        return Settings(_env_file=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_worker(env: dict[str, str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ILOG_")} | env
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen([sys.executable, "-m", "worker.ops.cli", "worker", "all"], cwd=cwd, env=child_env,
                                stdout=log_file, stderr=log_file, start_new_session=True)


def wait_ready(worker: subprocess.Popen[bytes], http_port: int, log_path: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise DemoError(f"the worker exited with {worker.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise DemoError(f"the worker was not ready within {_READY_TIMEOUT_S:.0f} s; see {log_path}")


def demo_stream(options: DemoOptions, seed: int, start: datetime) -> list[StreamItem]:
    """The generator's mix, plus a few malformed payloads for sure (≥ 3) so the DLQ has something to show."""
    mix = GeneratorMix(duplicate_ratio=0.02, late_edit_ratio=0.05)
    rate_per_s = max(options.interactions / max(options.duration_s, 1.0), 0.01)
    stream = generate_stream(options.interactions, seed=seed, start=start, rate_per_s=rate_per_s,
                             edit_window_s=options.edit_window_s, mix=mix, time_scale=_TIME_SCALE)
    rng = Random(f"{seed}:demo-malformed")
    # Positions are drawn among the well-formed events only, so every draw inserts one payload.
    for number in range(max(3, options.interactions // 50)):
        positions = [i for i, item in enumerate(stream) if isinstance(item, dict)]
        position = rng.choice(positions)
        event = stream[position]
        assert isinstance(event, dict)
        stream.insert(position + 1, malformed_payload(event, rng, f"{event['id']}-bad{number}"))
    return stream


def seed_zendesk_tickets(zendesk_url: str, stream: list[StreamItem]) -> None:
    """The Zendesk tickets agents navigate to exist in the emulator, as they would in a real account."""
    import requests

    ids = sorted({int(ref["id"]) for item in stream if isinstance(item, dict)
                  for ref in _refs(item.get("data") or {}) if ref.get("type") == "ticket"})
    tickets = [{"id": ticket_id, "subject": f"Customer request #{ticket_id}", "description": "Opened by the demo"}
               for ticket_id in ids]
    if tickets:
        session = requests.Session()
        session.trust_env = False
        session.post(f"{zendesk_url.rstrip('/')}/__emulator/seed", json={"tickets": tickets},
                     timeout=30).raise_for_status()


def _refs(data: dict[str, object]) -> list[dict[str, str]]:
    found = [data.get(name) for name in ("name", "related_to", "record")]
    return [ref for ref in found if isinstance(ref, dict) and ref.get("system") == "zendesk"]


def wait_settled(settings: Settings, ids: list[str], timeout_s: float) -> bool:
    """Every log finalized (a tombstone in Redis) and the sync group committed the upserts topic's end."""
    store = bootstrap.log_store(settings)
    consumer = bootstrap.plain_consumer(settings, **{"group.id": settings.sync_group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (all(isinstance(s.state, Tombstone) for s in store.load(ids).values())
                    and _sync_caught_up(consumer, settings.upserts_topic)):
                return True
            time.sleep(0.5)
        return False
    finally:
        consumer.close()
        store.close()


def _sync_caught_up(consumer: Consumer, topic: str) -> bool:
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    for tp in committed:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
        if high > 0 and tp.offset < high:
            return False
    return True


def stop_started(started: Started, console: Console) -> None:
    """Stop the worker (SIGTERM, then SIGKILL), and the emulators and stack only if this run started them."""
    if started.worker is not None and started.worker.poll() is None:
        started.worker.send_signal(signal.SIGTERM)
        try:
            started.worker.wait(30)
        except subprocess.TimeoutExpired:
            started.worker.kill()
            started.worker.wait(10)
        console.print(f"[dim]worker stopped (pid {started.worker.pid})[/]")
    for name, ours in (("emulators", started.emulators), ("stack", started.stack)):
        if ours:
            script = started.repo / LOCAL_TOOLS / name
            subprocess.run([str(script), "down"], capture_output=True, check=False, timeout=120)
            console.print(f"[dim]{script.name} stopped[/]")


def local_repository() -> Path:
    """The checkout the demo runs in: its `deploy/local` scripts start the stack and the emulators."""
    repo = repository_root()
    if repo is None:
        raise DemoError(f"ilog demo runs from a checkout of the repository (make run): no {LOCAL_TOOLS}/stack "
                        f"in {Path.cwd()} or above")
    return repo


def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo; Ctrl-C (exit 130) stops everything it started, `--keep` leaves it running otherwise."""
    started = Started()
    interrupted = False
    try:
        return _demo(options, console, started)
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: stopping what this demo started[/]")
        return 130
    finally:
        if interrupted or not options.keep:
            stop_started(started, console)


def _demo(options: DemoOptions, console: Console, started: Started) -> int:
    from worker.dev.demo_report import collect_report, print_keep_hint, print_report, write_summary
    from worker.dev.produce import produce_to_kafka
    from worker.kafka.topics import create_topics

    run_id = "demo-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    seed = options.seed if options.seed is not None else int(time.time())
    started.repo = local_repository()
    stack_env, started.stack = script_env(started.repo / LOCAL_TOOLS / "stack", console)
    emulator_env, started.emulators = script_env(started.repo / LOCAL_TOOLS / "emulators", console)
    http_port = free_port()
    started.env = demo_settings({**stack_env, **emulator_env}, run_id, options, http_port)
    settings = settings_from(started.env)
    create_topics(settings)
    started.worker_log = started.repo / ".stack" / "demo" / f"{run_id}.log"
    started.worker = start_worker(started.env, started.worker_log, started.repo)
    wait_ready(started.worker, http_port, started.worker_log)
    console.print(f"run [bold]{run_id}[/] · seed {seed} · worker pid {started.worker.pid} · "
                  f"edit window [bold]{options.edit_window_s:g} s[/] (demo setting; production default 120 s)")
    stream = demo_stream(options, seed, datetime.now(UTC))
    seed_zendesk_tickets(emulator_env["ILOG_ZENDESK_URL"], stream)
    counts = produce_to_kafka(stream, settings, paced=True, progress=True)
    ids = sorted({item["subject"] for item in stream if isinstance(item, dict)})
    console.print(f"waiting for the {options.edit_window_s:g} s edit windows to close and the sync to finish …")
    settle_s = options.edit_window_s + _SETTLE_EXTRA_S
    settled = wait_settled(settings, ids, settle_s)
    if not settled:
        console.print(f"[yellow]not everything settled within {settle_s:.0f} s; showing what is there "
                      f"(worker log: {started.worker_log})[/]")
    report = collect_report(settings, started.env, ids, counts, run_id=run_id, settled=settled)
    print_report(report, console, started.env, http_port, keep=options.keep)
    if options.summary_json is not None:
        write_summary(report, options.summary_json)
    if options.keep:
        print_keep_hint(console, started.worker.pid, started.emulators, started.stack)
    return 0 if settled else 1
