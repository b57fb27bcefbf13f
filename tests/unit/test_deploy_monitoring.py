"""Monitoring manifests (deploy/kubernetes/monitoring): the alert rules pass `promtool check rules`, every
alert has a runbook section, the dashboard loads and asks only for metrics the worker exports, and the
ServiceMonitor scrapes the metrics Service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from tests.unit.test_deploy_kubernetes import KUSTOMIZE_ROOT, REPO, Manifest, of_kind, rendered
from worker.runtime import metrics

MONITORING = KUSTOMIZE_ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RUNBOOK = REPO / "docs" / "runbook.md"
METRIC = re.compile(r"\b(ilog_[a-z_]+)")


@cache
def promtool() -> str:
    """Debian's `prometheus` package provides promtool; installed here when missing, as the local stack
    installs redis-server (root with apt-get), else the test fails saying what to install."""
    found = shutil.which("promtool")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"]
        if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
            subprocess.run(install, capture_output=True, env=env, check=False)
        found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: install it with 'sudo apt-get install prometheus'")
    return found


def exported_names() -> set[str]:
    """Every series name the worker's metrics module can expose."""
    names: set[str] = set()
    for collector in vars(metrics).values():
        if isinstance(collector, Counter):
            names |= {f"{collector._name}_total", f"{collector._name}_created"}
        elif isinstance(collector, Histogram):
            names |= {f"{collector._name}_{suffix}" for suffix in ("bucket", "count", "sum", "created")}
        elif isinstance(collector, Gauge):
            names.add(collector._name)
    return names


def rule_spec() -> Manifest:
    [rule] = of_kind(rendered("monitoring"), "PrometheusRule").values()
    spec: Manifest = rule["spec"]
    return spec


def alerts() -> list[Manifest]:
    return [rule for group in rule_spec()["groups"] for rule in group["rules"] if "alert" in rule]


def test_the_alert_rules_pass_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "ilog-rules.yaml"
    rules.write_text(yaml.safe_dump(rule_spec()))
    checked = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True,
                             check=False)
    assert 0 == checked.returncode, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_the_alerts_cover_what_operators_are_paged_for() -> None:
    assert ["IlogEventsDeadLettered", "IlogFoldLagGrowing", "IlogLoopStalled", "IlogSyncLagGrowing",
            "IlogTargetPaused", "IlogUpsertsDeadLettered", "IlogWindowsOverdue"] == sorted(a["alert"] for a in alerts())
    for alert in alerts():
        assert {"summary", "runbook"} == set(alert["annotations"]), alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}


def test_every_alert_has_its_runbook_section() -> None:
    anchors = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for alert in alerts():
        anchor = alert["annotations"]["runbook"].removeprefix("docs/runbook.md#")
        assert anchor == alert["alert"].lower()
        assert anchor in anchors, f"docs/runbook.md has no section '## {alert['alert']}'"


def test_the_alerts_use_only_exported_metrics() -> None:
    used = {name for alert in alerts() for name in METRIC.findall(alert["expr"])}
    assert set() == used - exported_names()


def test_the_dashboard_loads_and_every_panel_asks_for_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert "ilog-overview" == dashboard["uid"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    for panel in panels:
        names = {name for target in panel["targets"] for name in METRIC.findall(target["expr"])}
        assert names, panel["title"]
        assert set() == names - exported_names(), panel["title"]


def test_the_dashboard_ships_as_a_config_map_for_the_grafana_sidecar() -> None:
    [config_map] = of_kind(rendered("monitoring"), "ConfigMap").values()
    assert ("ilog-grafana-dashboard", "1") == (config_map["metadata"]["name"],
                                              config_map["metadata"]["labels"]["grafana_dashboard"])
    assert json.loads(DASHBOARD.read_text()) == json.loads(config_map["data"]["ilog-dashboard.json"])


def test_the_service_monitor_scrapes_the_metrics_service_with_the_stage_label() -> None:
    [monitor] = of_kind(rendered("monitoring"), "ServiceMonitor").values()
    [service] = of_kind(rendered("base"), "Service").values()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (service["spec"]["ports"][0]["name"], "/metrics")
    assert ["app.kubernetes.io/component"] == monitor["spec"]["podTargetLabels"]


ALERT_TESTS = """
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ilog_consumer_lag{namespace="ns",group="ilog-sync",partition="0",
          app_kubernetes_io_component="sync"}'
        values: '2000+100x40'
      - series: 'ilog_consumer_lag{namespace="paused",group="ilog-sync",partition="0",
          app_kubernetes_io_component="sync"}'
        values: '2000+100x40'
      - series: 'ilog_target_paused{namespace="paused",target="salesforce"}'
        values: '1x40'
      - series: 'ilog_loop_heartbeat_timestamp_seconds{namespace="ns",pod="ilog-fold-0",stage="fold"}'
        values: '0+60x10 600x30'
    alert_rule_test:
      - eval_time: 35m
        alertname: IlogSyncLagGrowing
        exp_alerts:
          - exp_labels: {namespace: ns, group: ilog-sync, severity: warning}
            exp_annotations:
              summary: "Sync lag of ilog-sync is 5500 snapshots and growing, no target paused"
              runbook: docs/runbook.md#ilogsynclaggrowing
      - eval_time: 35m
        alertname: IlogTargetPaused
        exp_alerts:
          - exp_labels: {namespace: paused, target: salesforce, severity: warning}
            exp_annotations:
              summary: "Sync target salesforce has been paused for 10 minutes (credentials, reachability)"
              runbook: docs/runbook.md#ilogtargetpaused
      - eval_time: 12m
        alertname: IlogLoopStalled
        exp_alerts: []
      - eval_time: 16m
        alertname: IlogLoopStalled
        exp_alerts:
          - exp_labels: {namespace: ns, pod: ilog-fold-0, stage: fold, severity: critical}
            exp_annotations:
              summary: "The fold loop of ilog-fold-0 has not stepped for 6m 0s"
              runbook: docs/runbook.md#ilogloopstalled
"""


def test_the_alerts_fire_when_they_should_and_a_paused_target_silences_the_sync_lag(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()))
    (tmp_path / "tests.yaml").write_text(ALERT_TESTS)
    tested = subprocess.run([promtool(), "test", "rules", "tests.yaml"], capture_output=True, text=True,
                            check=False, cwd=tmp_path)
    assert 0 == tested.returncode, tested.stdout + tested.stderr
