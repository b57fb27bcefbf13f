"""`ilog replay` reports its rate: events/s by wall clock and per CPU second, with the load average."""

from __future__ import annotations

from worker.ops.replay import ReplayPlan, ReplayResult, replay_summary


def _plan() -> ReplayPlan:
    return ReplayPlan(group="ilog-replay-x", key_prefix="ilog-replay-x", upserts_topic="u", dlq_topic="d",
                      start_offsets={0: 10, 1: 0}, stop_offsets={0: 1010, 1: 500}, started_ms=0)


def test_the_result_line_gives_the_rate_by_wall_clock_and_per_cpu_second_beside_the_load() -> None:
    result = ReplayResult(plan=_plan(), events_read=1500, seconds=0.5, cpu_seconds=0.75,
                          remaining={0: 0, 1: 0})

    assert replay_summary(result, load_average_1m=3.456) == {
        "group": "ilog-replay-x", "key_prefix": "ilog-replay-x", "upserts_topic": "u", "dlq_topic": "d",
        "events_read": 1500, "events_per_s": 3000.0, "seconds": 0.5, "events_per_cpu_s": 2000.0,
        "cpu_seconds": 0.75, "load_average_1m": 3.46, "interrupted": False, "remaining_lag": 0,
    }


def test_an_interrupted_replay_reports_what_it_read_and_the_lag_it_left() -> None:
    result = ReplayResult(plan=_plan(), events_read=250, seconds=2.0, cpu_seconds=0.5, interrupted=True,
                          remaining={0: 1000, 1: 250})

    summary = replay_summary(result, load_average_1m=0.0)

    assert (summary["events_per_s"], summary["events_per_cpu_s"], summary["interrupted"],
            summary["remaining_lag"]) == (125.0, 500.0, True, 1250)


def test_a_replay_that_read_nothing_in_no_time_reports_a_zero_rate() -> None:
    summary = replay_summary(ReplayResult(plan=_plan()), load_average_1m=1.0)

    assert (summary["events_read"], summary["events_per_s"], summary["events_per_cpu_s"]) == (0, 0.0, 0.0)
