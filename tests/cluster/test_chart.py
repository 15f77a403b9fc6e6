"""The Helm chart rendered by the real helm: lint, both RBAC modes, names scoped to the release,
true NOTES, the values schema enforced by helm itself.

Every test here runs the Go-built helm (tests/cluster/build-tools.sh, which needs Go), so the
module is marked ``cluster``: ``pytest -m "not cluster"`` never builds it. The pure checks of the
chart (the values schema with python-jsonschema, the CRD copy, names in the templates) are in
tests/unit/test_chart_values.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxlora.api import FluxLoraRun
from fluxlora.spec.policy import Policy

from tests.cluster.controlplane import ControlPlane, ensure_binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "fluxlora"

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def helm() -> str:
    return str(ensure_binaries().path("helm"))


def _template(
    helm: str, *args: str, release: str = "rel", namespace: str = "fluxlora-system", chart: Path = CHART
) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", release, str(chart), "-n", namespace, "--kube-version", "1.36.3", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


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
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list", "watch"]},
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


def _run_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Roles that serve runs (not the Lease's)."""
    return [d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("-lease")]


LEASE_RULES = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["rel-fluxlora-operator"],
        "verbs": ["get", "update"],
    },
]


def test_default_install_is_namespaced_to_the_release_namespace_with_exactly_the_verbs_used(helm: str) -> None:
    docs = _template(helm)
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    (role,) = _run_roles(docs)
    assert role["metadata"]["namespace"] == "fluxlora-system"
    assert role["rules"] == EXPECTED_RULES
    assert "--namespace=fluxlora-system" in _args(docs) and "--all-namespaces" not in _args(docs)


def test_cluster_wide_install_uses_a_cluster_role_with_the_same_rules(helm: str) -> None:
    docs = _template(helm, "--set", "clusterWide=true")
    kinds = [d["kind"] for d in docs]
    assert kinds.count("ClusterRole") == 1 and not _run_roles(docs)
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
    roles = sorted(d["metadata"]["namespace"] for d in _run_roles(docs))
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


def test_values_schema_rejects_unknown_policy_keys(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "rel", str(CHART), "--kube-version", "1.36.3", "--set", "policy.allowEverything=true"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "allowEverything" in result.stderr


def test_two_replicas_share_one_lease_that_only_the_operator_may_touch(helm: str) -> None:
    docs = _template(helm)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--lease=fluxlora-system/rel-fluxlora-operator" in container["args"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    (lease_role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-lease")]
    assert lease_role["metadata"]["namespace"] == "fluxlora-system" and lease_role["rules"] == LEASE_RULES
    (binding,) = [
        d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "rel-fluxlora-operator-lease"
    ]
    assert binding["subjects"][0]["name"] == "rel-fluxlora-operator"


def test_metrics_have_a_service_and_an_optional_service_monitor(helm: str) -> None:
    docs = _template(helm)
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-address=0.0.0.0:9090" in container["args"] and "--log-format=text" in container["args"]
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    docs = _template(helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", "logFormat=json")
    (monitor,) = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        "--log-format=json"
        in next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    off = _template(helm, "--set", "metrics.enabled=false")
    assert not [d for d in off if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics")]
    assert "--metrics-address=" in _args(off)


def test_operator_pod_is_restricted_and_probed(helm: str) -> None:
    deployment = next(d for d in _template(helm) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Liveness is kopf's endpoint; readiness is a different one (fluxlora.controller.probes), on its own port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in container["args"]
    assert f"--readiness=http://0.0.0.0:{ports['ready']}/readyz" in container["args"]
    assert ports["health"] != ports["ready"]


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
        {"kind": "ServiceAccount", "name": "rel-fluxlora-dashboard", "namespace": "fluxlora-system"}
    ]
    (deployment,) = _dashboard(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["serviceAccountName"] == "rel-fluxlora-dashboard"
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
        [helm, "template", "rel", str(CHART), "--kube-version", "1.36.3", "--set", "replica=3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "replica" in result.stderr


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


# --------------------------------------------------------------------------- names scoped to the release

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def _keys(docs: list[dict[str, Any]]) -> set[tuple[str, str | None, str]]:
    """(kind, namespace or None for cluster-scoped objects, name) of every rendered object."""
    return {
        (d["kind"], None if d["kind"] in CLUSTER_SCOPED else d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
    }


@pytest.mark.parametrize(
    ("release", "values", "fullname"),
    [
        ("fluxlora", [], "fluxlora"),  # the release name holds the chart's name: used as it is
        ("rel", [], "rel-fluxlora"),
        ("rel", ["--set", "nameOverride=lora"], "rel-lora"),
        ("rel", ["--set", "fullnameOverride=team-x-trainer"], "team-x-trainer"),
    ],
)
def test_every_name_follows_the_release_and_the_overrides(
    helm: str, release: str, values: list[str], fullname: str
) -> None:
    docs = _template(helm, *DASHBOARD_ON, "--set", "watchNamespaces={team-a,fluxlora-system}", *values, release=release)
    names = {d["metadata"]["name"] for d in docs}
    assert all(n.startswith(f"{fullname}-") for n in names), sorted(names)
    operator, dashboard = f"{fullname}-operator", f"{fullname}-dashboard"
    kinds = {(k, n) for k, _, n in _keys(docs)}
    assert {("ServiceAccount", operator), ("Deployment", operator), ("ServiceAccount", dashboard)} <= kinds
    assert ("Service", dashboard) in kinds and ("Deployment", dashboard) in kinds
    # Roles in the release namespace carry the base name; elsewhere the release namespace too.
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Role"}
    assert (("fluxlora-system", operator) in roles) and (("team-a", f"{operator}-fluxlora-system") in roles)
    # Every reference names an object the chart renders.
    pod = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == operator)["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == operator
    for volume in pod["spec"]["volumes"]:
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in kinds
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in kinds
        ns = binding["metadata"].get("namespace")
        role_ns = None if binding["roleRef"]["kind"] == "ClusterRole" else ns
        assert (binding["roleRef"]["kind"], role_ns, binding["roleRef"]["name"]) in _keys(docs)
        for subject in binding["subjects"]:
            assert subject["namespace"] == "fluxlora-system" and ("ServiceAccount", subject["name"]) in kinds
    selector = pod["metadata"]["labels"]
    assert selector["app.kubernetes.io/instance"] == release


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "clusterWide=true"],
        DASHBOARD_ON,  # the dashboard reads every namespace: a ClusterRole
        [*DASHBOARD_ON, "--set", "watchNamespaces={shared}", "--set", "dashboard.namespaces={shared}"],
    ],
)
def test_two_releases_of_one_name_in_two_namespaces_share_no_object(helm: str, values: list[str]) -> None:
    first = _template(helm, *values, release="fluxlora", namespace="team-a")
    second = _template(helm, *values, release="fluxlora", namespace="team-b")
    assert _keys(first) and not _keys(first) & _keys(second)


def test_helm_renders_offline_with_the_kubernetes_version_it_was_built_with(helm: str, tmp_path: Path) -> None:
    """No --kube-version: the Go-built helm must carry its own (build-tools.sh's ldflags), not v1.20."""
    result = subprocess.run([helm, "template", "rel", str(CHART)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # the chart asks for kubeVersion >= 1.30
    probe = tmp_path / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (probe / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n"
        "data: {version: '{{ .Capabilities.KubeVersion.Version }}'}\n"
    )
    (cm,) = [d for d in yaml.safe_load_all(subprocess.check_output([helm, "template", str(probe)], text=True)) if d]
    go_mod = (ROOT / "tests" / "cluster" / "tools" / "helm" / "go.mod").read_text().split()
    client_go = go_mod[go_mod.index("k8s.io/client-go") + 1]  # v0.<minor>.<patch>
    assert cm["data"]["version"] == f"v1.{client_go.split('.')[1]}.0"


# --------------------------------------------------------------------------- NOTES


def _notes(helm: str, tmp_path: Path, *values: str) -> tuple[str, list[dict[str, Any]]]:
    """The rendered NOTES.txt (helm template leaves NOTES out: a copy of the chart renders them into
    a ConfigMap with tpl) and the chart's objects, for the same values."""
    chart = tmp_path / "fluxlora"
    shutil.copytree(CHART, chart)
    (chart / "notes.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: zz-notes, namespace: x}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}}\n'
    )
    docs = _template(helm, *values, chart=chart)
    notes = next(d for d in docs if d["metadata"]["name"] == "zz-notes")["data"]["notes"]
    return notes, [d for d in docs if d["metadata"]["name"] != "zz-notes"]


@pytest.mark.parametrize("values", [[], DASHBOARD_ON])
def test_notes_name_only_objects_and_commands_that_exist(helm: str, tmp_path: Path, values: list[str]) -> None:
    notes, docs = _notes(helm, tmp_path, *values)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert "https://" not in notes  # no URL of a repository that may not exist
    (deployment,) = re.findall(r"rollout status deployment/(\S+)", notes)
    assert ("Deployment", deployment) in kinds
    services = re.findall(r"port-forward svc/(\S+) 8080:(\d+)", notes)
    assert len(services) == (1 if values else 0)
    for name, port in services:
        service = next(d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Service", name))
        assert [p["port"] for p in service["spec"]["ports"]] == [int(port)]
    # The run it shows is a valid FluxLoraRun, and the commands after it name that run.
    manifest = textwrap.dedent(notes.split("<<'RUN'\n", 1)[1].split("\n  RUN\n", 1)[0])
    run = FluxLoraRun.model_validate(yaml.safe_load(manifest))
    assert f"kubectl describe flr {run.metadata.name}" in notes and "kubectl get fluxloraruns -w" in notes


# --------------------------------------------------------------------------- two releases, installed


def test_two_releases_install_side_by_side_in_two_namespaces(cluster: ControlPlane, namespace: str) -> None:
    """`helm install` of the same release name in two namespaces, each cluster-wide with a dashboard
    (ClusterRoles and ClusterRoleBindings of both): neither install collides with the other."""
    other = f"{namespace[:56]}-b"
    cluster.kubectl("create", "namespace", other)
    installed: list[str] = []

    def helm_(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cluster.helm_path), "--kubeconfig", cluster.kubeconfig, *args],
            capture_output=True, text=True, env=cluster.env(), check=False,
        )  # fmt: skip

    try:
        for ns in (namespace, other):
            result = helm_(
                "install", "fluxlora", str(CHART), "-n", ns, "--skip-crds",
                "--set", "clusterWide=true", *DASHBOARD_ON,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            installed.append(ns)
        for ns in (namespace, other):
            roles = cluster.kubectl("get", "clusterrole", "-o", "name", "-l", "app.kubernetes.io/instance=fluxlora")
            assert f"clusterrole.rbac.authorization.k8s.io/fluxlora-operator-{ns}" in roles.stdout.split()
            binding = cluster.kubectl_json("get", "clusterrolebinding", f"fluxlora-dashboard-{ns}")
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fluxlora-dashboard", "namespace": ns}]
    finally:
        for ns in installed:
            helm_("uninstall", "fluxlora", "-n", ns)
        cluster.kubectl("delete", "namespace", other, "--wait=false", "--ignore-not-found", check=False)
