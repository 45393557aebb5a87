"""The deployment files: the Dockerfile lints clean, the overlays render and validate strictly."""

from __future__ import annotations

import json
import re
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Settings

# Runs kustomize and the schema validators as processes.
pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
#: Where pip put the console scripts of the dev tools (hadolint, kubectl, kubernetes-validate).
BIN = Path(sysconfig.get_path("scripts"))
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
#: Checked against the current release and the oldest one supported (preStop's sleep
#: action is there from 1.30 on).
KUBERNETES_VERSIONS = ["1.37.0", "1.30.0"]


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def rendered(overlay: str) -> list[dict[str, Any]]:
    result = tool("kubectl", "kustomize", f"k8s/overlays/{overlay}")
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def one(documents: list[dict[str, Any]], kind: str, name: str = "pcs-gateway") -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = tool("hadolint", "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_overlays_are_demo_and_production() -> None:
    assert OVERLAYS == ["demo", "production"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_validates_strictly(
    overlay: str, version: str, tmp_path: Path
) -> None:
    documents = rendered(overlay)
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    result = tool("kubernetes-validate", "--strict", "-k", version, str(manifest))
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(documents), result.stdout
    kinds = {d["kind"] for d in documents}
    assert {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds


def test_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = one(rendered("demo"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicie"] = "Always"
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(deployment))
    result = tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSIONS[0], str(manifest))
    assert result.returncode != 0


def test_demo_overlay_is_one_replica_on_the_emulator_with_memory_cache() -> None:
    documents = rendered("demo")
    deployment = one(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert one(documents, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "--demo"]
    assert one(documents, "ConfigMap")["data"]["PCS_GATEWAY_CACHE_URL"] == "memory://"


def test_production_overlay_has_what_production_needs() -> None:
    documents = rendered("production")
    deployment = one(documents, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] >= 2
    assert one(documents, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    spread = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert spread == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    (container,) = spec["containers"]
    config = one(documents, "ConfigMap")["data"]
    assert config["PCS_GATEWAY_ENVIRONMENT"] == "production"
    # The cache URL (with its password) and the API keys come from the Secret only.
    assert "PCS_GATEWAY_CACHE_URL" not in config
    assert {"secretRef": {"name": "pcs-gateway-secrets"}} in container["envFrom"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    # SIGTERM comes after the preStop pause; the drain and the close must fit in the rest.
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(config["PCS_GATEWAY_DRAIN_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > pause + drain
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    redis = one(documents, "StatefulSet", "pcs-gateway-redis")
    assert redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_settings_are_gateway_settings(overlay: str) -> None:
    names = {f"PCS_GATEWAY_{field.upper()}" for field in Settings.model_fields}
    data = one(rendered(overlay), "ConfigMap")["data"]
    assert set(data) - names == set()


#: What the gateway may call on PCS, by the ARN form of the resources each action reads.
READ_ONLY_PCS = {
    "pcs:ListClusters": {"*"},
    "pcs:GetCluster": {"arn:aws:pcs:*:111122223333:cluster/*"},
    "pcs:ListQueues": {"arn:aws:pcs:*:111122223333:cluster/*"},
    "pcs:ListComputeNodeGroups": {"arn:aws:pcs:*:111122223333:cluster/*"},
    "pcs:GetQueue": {"arn:aws:pcs:*:111122223333:cluster/*/queue/*"},
    "pcs:GetComputeNodeGroup": {"arn:aws:pcs:*:111122223333:cluster/*/computenodegroup/*"},
    "pcs:ListTagsForResource": {
        "arn:aws:pcs:*:111122223333:cluster/*",
        "arn:aws:pcs:*:111122223333:cluster/*/queue/*",
        "arn:aws:pcs:*:111122223333:cluster/*/computenodegroup/*",
    },
}


def test_iam_policy_allows_only_the_pcs_calls_the_client_makes() -> None:
    policy = json.loads((ROOT / "k8s" / "iam-policy.json").read_text())
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    granted: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        for action in statement["Action"]:
            granted.setdefault(action, set()).update(
                [resources] if isinstance(resources, str) else resources
            )
    # Exactly the read-only calls, each on the resource type it reads, nothing that changes PCS.
    assert granted == READ_ONLY_PCS
    # Every PCS operation the gateway calls on its aioboto3 client is among them.
    source = "\n".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))
    operations = set(re.findall(r"_client\.([a-z_]+)\(", source))
    assert "get_cluster" in operations
    called = {"pcs:" + "".join(w.title() for w in op.split("_")) for op in operations}
    assert called <= set(granted)


def test_observability_renders_the_alerts_and_a_dashboard_configmap(tmp_path: Path) -> None:
    result = tool("kubectl", "kustomize", "k8s/observability")
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert sorted(d["kind"] for d in documents) == ["ConfigMap", "PrometheusRule"]
    dashboard = one(documents, "ConfigMap", "pcs-gateway-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["grafana-dashboard.json"])["uid"] == "pcs-gateway"
    # The ConfigMap validates strictly; the PrometheusRule's kind is the operator's (a CRD
    # the validator has no schema for): promtool checks it, in test_dashboards.py.
    manifest = tmp_path / "dashboard.yaml"
    manifest.write_text(yaml.safe_dump(dashboard))
    checked = tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSIONS[0], str(manifest))
    assert checked.returncode == 0 and " passed for resource " in checked.stdout, checked.stdout
    # Kept out of the overlays: they must apply where the PrometheusRule kind does not exist.
    for overlay in OVERLAYS:
        assert "PrometheusRule" not in {d["kind"] for d in rendered(overlay)}
