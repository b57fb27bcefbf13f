"""The demo stream always carries malformed payloads, so the demo's DLQ table has something to show."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.dev.demo import DemoOptions, demo_stream


def test_every_demo_stream_has_at_least_three_malformed_payloads() -> None:
    options = DemoOptions(interactions=20, duration_s=10, edit_window_s=3)
    start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    counts = {seed: sum(isinstance(item, bytes) for item in demo_stream(options, seed, start)) for seed in range(300)}
    assert {} == {seed: n for seed, n in counts.items() if n < 3}
