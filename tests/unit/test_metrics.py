"""Metric series follow ownership: a partition that leaves takes its lag and open-windows series along."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from worker.kafka.clients import record_lag
from worker.runtime import metrics


def series(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in REGISTRY.collect() for sample in family.samples if sample.name == name}


def lag_stats(lags: dict[int, int]) -> str:
    return json.dumps({"topics": {"t": {"partitions": {
        **{str(p): {"consumer_lag": lag} for p, lag in lags.items()}, "-1": {"consumer_lag": 7}}}}})


def test_revoked_partitions_lose_their_lag_and_open_windows_series() -> None:
    record_lag("g-revoke", lag_stats({0: 5, 1: 6, 2: 7}))
    for partition in (0, 1, 2):
        metrics.OPEN_WINDOWS.labels(str(partition)).set(partition + 10)
    metrics.forget_partitions("g-revoke", [1, 2])
    assert {(("group", "g-revoke"), ("partition", "0")): 5.0} == {
        k: v for k, v in series("ilog_consumer_lag").items() if ("group", "g-revoke") in k}
    assert 10.0 == series("ilog_open_windows")[(("partition", "0"),)]
    assert (("partition", "1"),) not in series("ilog_open_windows")
    metrics.forget_partitions("g-revoke", [0, 0, 9])  # twice, and one never reported: no error


def test_the_lag_series_follow_the_latest_statistics() -> None:
    record_lag("g-stats", lag_stats({0: 1, 1: 2}))
    record_lag("g-stats", lag_stats({1: 4}))
    record_lag("g-other", lag_stats({0: 3}))
    lag = series("ilog_consumer_lag")
    assert {(("group", "g-stats"), ("partition", "1")): 4.0, (("group", "g-other"), ("partition", "0")): 3.0} == {
        k: v for k, v in lag.items() if k[0][1] in ("g-stats", "g-other")}


def test_build_info_and_the_batch_histogram_have_no_constant_labels() -> None:
    from worker.runtime.build import build_info
    from worker.runtime.runner import StageName, announce

    announce(StageName.FOLD)
    info = build_info()
    assert {tuple(sorted(info._asdict().items())): 1.0} == series("ilog_build_info")
    metrics.BATCH_SECONDS.observe(0.01)
    assert [()] == [k for k in series("ilog_fold_batch_seconds_count")]
