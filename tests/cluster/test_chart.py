"""The Helm chart: lint, render for both RBAC modes, and carry the generated CRD unchanged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxlora.policy import Policy

from controlplane import ControlPlane, ensure_binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxlora"


@pytest.fixture(scope="module")
def helm() -> str:
    return str(ensure_binaries().path("helm"))


def _template(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "rel", str(CHART), "-n", "fluxlora-system", "--kube-version", "1.36.3", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("name", ["fluxlora.dev_fluxloraruns.yaml", "fluxlora.dev_fluxlorasamplesets.yaml"])
def test_chart_crd_is_the_generated_crd(name: str) -> None:
    assert (CHART / "crds" / name).read_text() == (ROOT / "crds" / name).read_text(), (
        f"charts/fluxlora/crds drifted: copy crds/{name} (make crd)"
    )
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (ROOT / "crds").iterdir())


DASHBOARD_ON = ["--set", "dashboard.enabled=true"]


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "watchNamespaces={team-a,team-b}"], DASHBOARD_ON, [*DASHBOARD_ON, "--set", "watchNamespaces={a}"]],
)
def test_helm_lint_is_clean(helm: str, values: list[str]) -> None:
    result = subprocess.run([helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Exactly the verbs the operator's code uses (handlers.py, kopf): nothing to patch or delete
# children it only creates, nothing cluster-wide by default.
EXPECTED_RULES = [
    {"apiGroups": ["fluxlora.dev"], "resources": ["fluxloraruns"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["fluxlora.dev"], "resources": ["fluxloraruns/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["fluxlora.dev"], "resources": ["fluxloraruns/finalizers"], "verbs": ["update"]},
    # create the run's thumbnail set; get to check an existing one is this run's; patch only to grant it
    {"apiGroups": ["fluxlora.dev"], "resources": ["fluxlorasamplesets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps", "serviceaccounts"], "verbs": ["get", "create"]},
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def _args(docs: list[dict[str, Any]]) -> list[str]:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def _policy_configmap(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-policy"))


def test_default_install_is_namespaced_to_the_release_namespace_with_exactly_the_verbs_used(helm: str) -> None:
    docs = _template(helm)
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "fluxlora-system"
    assert role["rules"] == EXPECTED_RULES
    assert "--namespace=fluxlora-system" in _args(docs) and "--all-namespaces" not in _args(docs)


def test_cluster_wide_install_uses_a_cluster_role_with_the_same_rules(helm: str) -> None:
    docs = _template(helm, "--set", "clusterWide=true")
    kinds = [d["kind"] for d in docs]
    assert kinds.count("ClusterRole") == 1 and "Role" not in kinds
    assert next(d for d in docs if d["kind"] == "ClusterRole")["rules"] == EXPECTED_RULES
    assert "--all-namespaces" in _args(docs)


def test_cluster_wide_and_watch_namespaces_together_are_refused(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--kube-version", "1.36.3",
         "--set", "clusterWide=true", "--set", "watchNamespaces={team-a}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0 and "either clusterWide=true or watchNamespaces" in result.stderr


def test_namespaced_install_has_a_role_per_namespace_and_no_cluster_role(helm: str) -> None:
    docs = _template(helm, "--set", "watchNamespaces={team-a,team-b}")
    roles = sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "Role")
    assert roles == ["team-a", "team-b"] and not [d for d in docs if d["kind"].startswith("Cluster")]
    assert "--namespace=team-a" in _args(docs) and "--namespace=team-b" in _args(docs)


def test_policy_values_become_the_file_the_operator_reads(helm: str, tmp_path: Path) -> None:
    docs = _template(helm, "--set", "policy.allowedImages={registry.example/trainers/*}", "--set", "policy.maxGpus=2")
    assert "--policy=/etc/fluxlora/policy/policy.yaml" in _args(docs)
    (tmp_path / "policy.yaml").write_text(_policy_configmap(docs)["data"]["policy.yaml"])
    policy = Policy.load(tmp_path / "policy.yaml")
    assert policy.allowed_images == ["registry.example/trainers/*"] and policy.max_gpus == 2


def test_chart_default_policy_is_the_operators_default(helm: str, tmp_path: Path) -> None:
    """Only the configured trainer image, no priority classes, GPU taints only, no pod annotations."""
    configmap = next(
        d for d in _template(helm) if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-policy")
    )
    (tmp_path / "policy.yaml").write_text(configmap["data"]["policy.yaml"])
    assert Policy.load(tmp_path / "policy.yaml") == Policy()
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["policy"]["properties"]
    assert set(schema) == {f.alias for f in Policy.model_fields.values()}


def test_values_schema_rejects_unknown_policy_keys(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--kube-version", "1.36.3", "--set", "policy.allowEverything=true"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "allowEverything" in result.stderr


def test_operator_pod_is_restricted_single_and_probed(helm: str) -> None:
    deployment = next(d for d in _template(helm) if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_extra_profiles_become_a_configmap_the_operator_mounts(helm: str) -> None:
    docs = _template(helm, "--set-string", "profiles.tiny=[network]\nnetwork_dim = 8\nnetwork_alpha = 8\n")
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-profiles"))
    assert "network_dim = 8" in configmap["data"]["flux_tiny.toml"]


def test_the_dashboard_is_off_by_default(helm: str) -> None:
    assert not [d for d in _template(helm) if d["metadata"]["name"].endswith("-dashboard")]


def _dashboard(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and "dashboard" in d["metadata"]["name"]]


def test_the_dashboard_reads_runs_and_sample_sets_and_nothing_else(helm: str) -> None:
    docs = _template(helm, *DASHBOARD_ON)
    (role,) = _dashboard(docs, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["fluxlora.dev"],
            "resources": ["fluxloraruns", "fluxlorasamplesets"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (binding,) = _dashboard(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fluxlora-operator-dashboard", "namespace": "fluxlora-system"}
    ]
    (deployment,) = _dashboard(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["serviceAccountName"] == "fluxlora-operator-dashboard"
    assert container["command"] == ["fluxlora", "dashboard"]  # not the image's `fluxlora operator`
    assert container["args"] == ["--host=0.0.0.0", "--port=8080"]  # every namespace
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (service,) = _dashboard(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_a_namespaced_dashboard_has_a_read_only_role_per_namespace(helm: str) -> None:
    docs = _template(helm, *DASHBOARD_ON, "--set", "dashboard.namespaces={team-a,team-b}")
    roles = _dashboard(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(r["rules"][0]["verbs"] == ["get", "list", "watch"] for r in roles)
    assert not _dashboard(docs, "ClusterRole")
    args = _dashboard(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_values_schema_rejects_unknown_values(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--kube-version", "1.36.3", "--set", "replicas=3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "replicas" in result.stderr


@pytest.mark.cluster
@pytest.mark.parametrize(
    "values", [[], ["--set", "watchNamespaces={NAMESPACE}"], [*DASHBOARD_ON, "--set", "watchNamespaces={NAMESPACE}"]]
)
def test_rendered_chart_is_accepted_by_the_api_servers_own_schemas(
    cluster: ControlPlane, namespace: str, values: list[str]
) -> None:
    # kubeconform needs schema downloads this machine cannot make; a server-side dry run
    # validates against the real API server's OpenAPI (strict field validation) instead.
    values = [v.replace("NAMESPACE", namespace) for v in values]
    docs = _template(str(cluster.helm_path), "--namespace", namespace, *values)
    for doc in docs:
        doc["metadata"]["namespace"] = doc["metadata"].get("namespace", namespace)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-",
        input="\n---\n".join(yaml.safe_dump(d) for d in docs), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)
