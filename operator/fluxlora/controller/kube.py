"""The operator's calls to the API server, through the official kubernetes client's typed APIs.

Objects go in and come out as plain dicts, the form the pure core renders and
reads: a typed model is built only to send an object (the round trip is
lossless for every child the operator renders: tests/unit/test_kube.py), and
responses are read raw (``_preload_content=False``) rather than deserialized
into models nothing here would use. Login: in-cluster, else kubeconfig, with
the client's own token refresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from fluxlora import api
from fluxlora.contract.model import Obj

TIMEOUT_SECONDS = 30


class ApiError(Exception):
    """The API server refused a request: its HTTP status and its Status body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


def _error(exc: ApiException) -> ApiError:
    raw = exc.body
    try:
        body = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        body = {"message": raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or exc.reason)}
    return ApiError(int(exc.status or 0), body)


def _json(response: Any) -> Obj:
    raw = response.data
    data: Obj = json.loads(raw) if raw else {}
    return data


# Our own kinds, created through the CustomObjectsApi (runs: by the benchmark and tests).
_CUSTOM_PLURALS = {api.SAMPLESET_KIND: api.SAMPLESET_PLURAL, api.KIND: api.PLURAL}


class Kube:
    """The requests the operator makes, each one typed API call."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.client = api_client
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.objects = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        # kind -> (model, create, read) for the children the operator makes.
        self._kinds: dict[str, tuple[Any, Callable[..., Any], Callable[..., Any]]] = {
            "ServiceAccount": (
                client.V1ServiceAccount,
                self.core.create_namespaced_service_account,
                self.core.read_namespaced_service_account,
            ),
            "ConfigMap": (
                client.V1ConfigMap,
                self.core.create_namespaced_config_map,
                self.core.read_namespaced_config_map,
            ),
            "Role": (client.V1Role, self.rbac.create_namespaced_role, self.rbac.read_namespaced_role),
            "RoleBinding": (
                client.V1RoleBinding,
                self.rbac.create_namespaced_role_binding,
                self.rbac.read_namespaced_role_binding,
            ),
            "Job": (client.V1Job, self.batch.create_namespaced_job, self.batch.read_namespaced_job),
        }

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        try:
            return _json(method(*args, _preload_content=False, _request_timeout=TIMEOUT_SECONDS, **kwargs))
        except ApiException as exc:
            raise _error(exc) from exc

    # ------------------------------------------------------------------ children

    def create(self, obj: Obj) -> Obj:
        namespace = obj["metadata"]["namespace"]
        plural = _CUSTOM_PLURALS.get(obj["kind"])
        if plural is not None:
            return self._call(
                self.objects.create_namespaced_custom_object, api.GROUP, api.VERSION, namespace, plural, obj
            )
        model, create, _ = self._kinds[obj["kind"]]
        return self._call(create, namespace, model.from_dict(obj))

    def read(self, kind: str, namespace: str, name: str) -> Obj:
        if kind == api.SAMPLESET_KIND:
            return self._call(
                self.objects.get_namespaced_custom_object, api.GROUP, api.VERSION, namespace, api.SAMPLESET_PLURAL, name
            )
        _, _, read = self._kinds[kind]
        return self._call(read, name, namespace)

    def jobs(self, namespace: str, selector: str) -> list[Obj]:
        items: list[Obj] = self._call(self.batch.list_namespaced_job, namespace, label_selector=selector)["items"]
        return items

    def pods(self, namespace: str, selector: str) -> list[Obj]:
        items: list[Obj] = self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)["items"]
        return items

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, first, its pods (foreground)."""
        self._call(
            self.batch.delete_namespaced_job,
            name,
            namespace,
            body=client.V1DeleteOptions(propagation_policy="Foreground"),
        )

    def create_event(self, namespace: str, event: Obj) -> None:
        self._call(self.core.create_namespaced_event, namespace, client.CoreV1Event.from_dict(event))

    # ------------------------------------------------------------------ leases (one active replica)

    def read_lease(self, namespace: str, name: str) -> Obj:
        return self._call(self.coordination.read_namespaced_lease, name, namespace)

    def create_lease(self, namespace: str, name: str, spec: Obj) -> Obj:
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name}, "spec": spec}
        return self._call(self.coordination.create_namespaced_lease, namespace, client.V1Lease.from_dict(lease))

    def replace_lease(self, namespace: str, name: str, resource_version: str, spec: Obj) -> Obj:
        """Write the Lease only if it is still at ``resource_version`` (else 409)."""
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "resourceVersion": resource_version},
            "spec": spec,
        }
        return self._call(self.coordination.replace_namespaced_lease, name, namespace, client.V1Lease.from_dict(lease))

    # ------------------------------------------------------------------ runs

    def read_run(self, namespace: str, name: str) -> Obj:
        return self._call(
            self.objects.get_namespaced_custom_object, api.GROUP, api.VERSION, namespace, api.PLURAL, name
        )

    def patch_run_status(self, namespace: str, name: str, resource_version: str, status: Obj) -> Obj:
        """A merge patch of the status, refused (409) unless the run is still at ``resource_version``."""
        return self._call(
            self.objects.patch_namespaced_custom_object_status,
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"metadata": {"resourceVersion": resource_version}, "status": status},
            _content_type="application/merge-patch+json",
        )


def connect(connections: int) -> Kube:
    """In-cluster login, else the kubeconfig; ``connections`` kept-alive connections at most."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = connections
    return Kube(client.ApiClient(cfg))
