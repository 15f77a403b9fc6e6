"""Kubernetes objects of a run, built from its spec and rendered run (pure: dicts in, dicts out).

Children are owned by the FluxLoraRun (deleting it deletes them):
ServiceAccount/Role/RoleBinding that may only get/patch this run's status and
its own FluxLoraSampleSet, the ConfigMap with the rendered run, the
FluxLoraSampleSet (sample thumbnails, filled in by the trainer), and one Job
per attempt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from fluxlora import api
from fluxlora.contract import layout, podenv
from fluxlora.contract.identity import RunRef as RunRef
from fluxlora.contract.model import Obj
from fluxlora.spec.policy import ObjectStore

APP_LABEL = "app.kubernetes.io/name"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# The operator by name: the managed-by label of a run's children and the component of its events.
OPERATOR = "fluxlora-operator"
RUN_LABEL = "fluxlora.dev/run"
ATTEMPT_LABEL = "fluxlora.dev/attempt"
PUBLISH_LABEL = "fluxlora.dev/publish"  # on the publish Job and its pod: the outcome it publishes
PROFILE_LABEL = "fluxlora.dev/profile"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
CONFIG_HASH_ANNOTATION = "fluxlora.dev/config-hash"
TRAINER_UID = 10001  # the trainer image's own user (trainer-image/Dockerfile: USER 10001:10001)

# Environment of the trainer containers, per attempt (read by fluxlora_trainer; names in podenv).
ENV_ATTEMPT = podenv.ATTEMPT
ENV_RESUME_CHECKPOINT = podenv.RESUME_CHECKPOINT
ENV_RESUME_STEP = podenv.RESUME_STEP
ENV_IMAGE = podenv.IMAGE
# The runtime forwards SIGTERM to the engine and waits 25 s for its last state save.
TERMINATION_GRACE_SECONDS = 60


@dataclass(frozen=True)
class ResumeFrom:
    """A complete state directory (relative to the output claim) and its global step."""

    checkpoint: str
    step: int


def trainer_account_name(run: RunRef) -> str:
    return f"{run.name}-trainer"


def configmap_name(run: RunRef) -> str:
    return f"{run.name}-run"


def job_name(run: RunRef, attempt: int) -> str:
    return f"{run.name}-a{attempt}"


def publish_job_name(run: RunRef) -> str:
    return f"{run.name}-publish"


def run_of_job_name(name: str) -> str | None:
    """The run a Job name of ``job_name`` belongs to (None: not such a name)."""
    run, sep, number = name.rpartition("-a")
    return run if sep and run and number.isdigit() else None


def run_labels(run: RunRef, profile: str) -> dict[str, str]:
    return {
        APP_LABEL: "fluxlora",
        MANAGED_BY_LABEL: OPERATOR,
        RUN_LABEL: run.name,
        PROFILE_LABEL: profile,
    }


def owner_reference(run: RunRef) -> Obj:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(run: RunRef, name: str, labels: dict[str, str]) -> Obj:
    return {"name": name, "namespace": run.namespace, "labels": labels, "ownerReferences": [owner_reference(run)]}


def service_account(run: RunRef, profile: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(run, trainer_account_name(run), run_labels(run, profile)),
        "automountServiceAccountToken": False,  # mounted explicitly by the trainer pod only
    }


def role(run: RunRef, profile: str) -> Obj:
    """The trainer may read and patch its own run's status and its own sample set, and nothing else.

    Objects are named (resourceNames): a Role cannot limit `create` by name, so the operator
    creates the sample set and the trainer only updates it."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(run, trainer_account_name(run), run_labels(run, profile)),
        "rules": [
            {
                "apiGroups": [api.GROUP],
                "resources": [f"{api.PLURAL}/status"],
                "resourceNames": [run.name],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": [api.GROUP],
                "resources": [api.SAMPLESET_PLURAL],
                "resourceNames": [sample_set_name(run)],
                "verbs": ["get", "patch"],
            },
        ],
    }


def role_binding(run: RunRef, profile: str) -> Obj:
    name = trainer_account_name(run)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(run, name, run_labels(run, profile)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": run.namespace}],
    }


def run_configmap(
    run: RunRef,
    profile: str,
    run_json: Obj,
    dataset_toml: str,
    config_hash: str,
    sample_prompts: str | None = None,
) -> Obj:
    meta = _metadata(run, configmap_name(run), run_labels(run, profile))
    meta["annotations"] = {CONFIG_HASH_ANNOTATION: config_hash}
    data = {
        layout.RUN_JSON_KEY: json.dumps(run_json, indent=2, sort_keys=True) + "\n",
        layout.DATASET_TOML_KEY: dataset_toml,
    }
    if sample_prompts is not None:
        data[layout.SAMPLE_PROMPTS_KEY] = sample_prompts
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def sample_set_name(run: RunRef) -> str:
    """The run's FluxLoraSampleSet has the run's name."""
    return run.name


def sample_set(run: RunRef, profile: str, prompts: list[str]) -> Obj:
    """The run's FluxLoraSampleSet, before any image: the prompts, no samples yet."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.SAMPLESET_KIND,
        "metadata": _metadata(run, sample_set_name(run), run_labels(run, profile)),
        "run": run.name,
        "prompts": list(prompts),
        "samples": [],
    }


# The trainer image's own user; the claims' files are its group's (fsGroup).
_RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": TRAINER_UID,
    "runAsGroup": TRAINER_UID,
    "fsGroup": TRAINER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}

_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _volumes(run: RunRef, spec: api.FluxLoraRunSpec) -> list[Obj]:
    volumes: list[Obj] = [
        {"name": "run", "configMap": {"name": configmap_name(run)}},
        {"name": "models", "persistentVolumeClaim": {"claimName": spec.model.claim_name, "readOnly": True}},
    ]
    if spec.dataset.claim_name is not None:
        claim = {"claimName": spec.dataset.claim_name, "readOnly": True}
        volumes.append({"name": "dataset", "persistentVolumeClaim": claim})
    return [
        *volumes,
        {"name": "output", "persistentVolumeClaim": {"claimName": spec.output.claim_name}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]


def _mounts(spec: api.FluxLoraRunSpec, container: str) -> list[Obj]:
    """The trainer's mounts; the fetch container writes the model claim and reads no dataset claim."""
    fetching = container == FETCH_CONTAINER
    mounts: list[Obj] = [
        {"name": "run", "mountPath": layout.RUN_MOUNT, "readOnly": True},
        {"name": "models", "mountPath": layout.MODELS_MOUNT, "readOnly": not fetching},
    ]
    if spec.dataset.claim_name is not None and not fetching:
        mounts.append({"name": "dataset", "mountPath": layout.DATASET_MOUNT, "readOnly": True})
    mounts.append({"name": "output", "mountPath": layout.OUTPUT_MOUNT})
    if not fetching:
        mounts.append({"name": "shm", "mountPath": layout.SHM_MOUNT})
    return [*mounts, {"name": "tmp", "mountPath": layout.TMP_MOUNT}]


FETCH_CONTAINER = "fetch"
# The keys of the object store's Secret (the names the AWS SDKs read from the environment).
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def _store_env(store: ObjectStore) -> list[Obj]:
    """The fetch container's credentials, from the Secret by reference (the pod spec holds no value)."""
    env: list[Obj] = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": store.secret_name, "key": key}}} for key in SECRET_KEYS
    ]
    # No instance-metadata lookups: the credentials are the Secret's or none.
    return [*env, {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"}]


@dataclass(frozen=True)
class TrainerResources:
    """What the train container asks for: GPUs, and CPU/memory requests for runs that name none."""

    gpus: int
    default_cpu: str
    default_memory: str


def _resources(spec: api.FluxLoraRunSpec, asked: TrainerResources) -> Obj:
    """GPUs as request and limit; CPU/memory the spec names as request and limit, else a default request.

    Every trainer pod has CPU and memory requests, so it is never BestEffort
    (first to be evicted under node pressure, scheduled as if it needed nothing).
    """
    gpus = str(asked.gpus)
    requests: dict[str, str] = {"nvidia.com/gpu": gpus}
    limits: dict[str, str] = {"nvidia.com/gpu": gpus}
    for name, given, default in (
        ("cpu", spec.resources.cpu, asked.default_cpu),
        ("memory", spec.resources.memory, asked.default_memory),
    ):
        requests[name] = given or default
        if given:
            limits[name] = given
    return {"requests": requests, "limits": limits}


def _env(attempt: int, resume: ResumeFrom | None, image: str, log_format: str) -> list[Obj]:
    env = [
        {"name": ENV_ATTEMPT, "value": str(attempt)},
        {"name": ENV_RESUME_CHECKPOINT, "value": resume.checkpoint if resume else ""},
        {"name": ENV_RESUME_STEP, "value": str(resume.step) if resume else "0"},
        {"name": ENV_IMAGE, "value": image},
        {"name": "HOME", "value": layout.TMP_MOUNT},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if log_format != "text":
        env.append({"name": podenv.LOG_FORMAT, "value": log_format})
    return env


def _container(name: str, image: str, command: str, env: list[Obj], resources: Obj | None, mounts: list[Obj]) -> Obj:
    container: Obj = {
        "name": name,
        "image": image,
        # args, not command: the image's entrypoint (tini -- fluxlora-trainer) reaps engine workers.
        "args": [command, "--run", layout.RUN_FILE],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": _RESTRICTED_CONTAINER,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if resources is not None:
        container["resources"] = resources
    return container


def job(
    run: RunRef,
    spec: api.FluxLoraRunSpec,
    profile: str,
    attempt: int,
    image: str,
    config_hash: str,
    resume: ResumeFrom | None = None,
    *,
    asked: TrainerResources,
    log_format: str = "text",
    store: ObjectStore | None = None,
) -> Obj:
    """The Job of one attempt: GPU request, claims, restricted security, no retries of its own.

    A run with an s3:// source fetches it first, in the `fetch` init container: the only one
    with the store's Secret in its environment, and the only one that writes the model claim."""
    labels = run_labels(run, profile) | {ATTEMPT_LABEL: str(attempt)}
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name
    if spec.queue_priority_class_name:
        job_labels[KUEUE_PRIORITY_CLASS_LABEL] = spec.queue_priority_class_name
    pod_labels = dict((spec.pod.labels if spec.pod else None) or {}) | labels
    pod_annotations = dict((spec.pod.annotations if spec.pod else None) or {}) | {CONFIG_HASH_ANNOTATION: config_hash}
    env = _env(attempt, resume, image, log_format)
    pod_spec: Obj = {
        "serviceAccountName": trainer_account_name(run),
        "automountServiceAccountToken": True,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": dict(_RESTRICTED_POD),
        "initContainers": [_container("prepare", image, "prepare", env, None, _mounts(spec, "prepare"))],
        "containers": [_container("train", image, "run", env, _resources(spec, asked), _mounts(spec, "train"))],
        "volumes": _volumes(run, spec),
    }
    if spec.model.source or spec.dataset.source:
        if store is None or store.secret_name is None:
            raise ValueError("a run with an s3:// source needs the object store's Secret (validation says so first)")
        fetch_env = env + _store_env(store)
        fetch = _container(FETCH_CONTAINER, image, "fetch", fetch_env, None, _mounts(spec, FETCH_CONTAINER))
        pod_spec["initContainers"].insert(0, fetch)
    resources = spec.resources
    if resources.node_selector:
        pod_spec["nodeSelector"] = dict(resources.node_selector)
    if resources.tolerations:
        pod_spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in resources.tolerations]
    if resources.priority_class_name:
        pod_spec["priorityClassName"] = resources.priority_class_name
    job_spec: Obj = {
        "backoffLimit": 0,  # the operator owns retries, with resume
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if resources.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = resources.active_deadline_seconds
    if spec.queue_name:
        job_spec["suspend"] = True  # Kueue admits (unsuspends) it
    meta = _metadata(run, job_name(run, attempt), job_labels)
    meta["annotations"] = {CONFIG_HASH_ANNOTATION: config_hash}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


PUBLISH_CONTAINER = "publish"
PUBLISH_RETRIES = 2  # a failed upload is tried again by the Job controller: the store's trouble can pass
# What the publish container asks for: it reads files and sends them; no GPU.
PUBLISH_RESOURCES: Obj = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


def publish_job(
    run: RunRef, spec: api.FluxLoraRunSpec, profile: str, image: str, outcome: str, store: ObjectStore
) -> Obj:
    """The Job that uploads a finished run's results to spec.output.publish (``outcome``: succeeded or
    failed). Its one container has the store's Secret; it reads the output claim and writes nothing there."""
    if spec.output.publish is None or store.secret_name is None:
        raise ValueError("a run that publishes needs spec.output.publish and the store's Secret")
    labels = run_labels(run, profile) | {PUBLISH_LABEL: outcome}
    pod_labels = dict((spec.pod.labels if spec.pod else None) or {}) | labels
    mounts: list[Obj] = [
        {"name": "run", "mountPath": layout.RUN_MOUNT, "readOnly": True},
        {"name": "output", "mountPath": layout.OUTPUT_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": layout.TMP_MOUNT},
    ]
    env: list[Obj] = [
        {"name": "HOME", "value": layout.TMP_MOUNT},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *_store_env(store),
    ]
    container = _container(PUBLISH_CONTAINER, image, "publish", env, PUBLISH_RESOURCES, mounts)
    container["args"] = [*container["args"], "--outcome", outcome]
    pod_spec: Obj = {
        "serviceAccountName": trainer_account_name(run),
        "automountServiceAccountToken": True,  # it reports status.publish through the run's own Role
        "restartPolicy": "Never",
        "securityContext": dict(_RESTRICTED_POD),
        "containers": [container],
        "volumes": [
            {"name": "run", "configMap": {"name": configmap_name(run)}},
            {"name": "output", "persistentVolumeClaim": {"claimName": spec.output.claim_name, "readOnly": True}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.resources.node_selector:
        pod_spec["nodeSelector"] = dict(spec.resources.node_selector)
    if spec.resources.tolerations:
        pod_spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.resources.tolerations]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(run, publish_job_name(run), labels),
        "spec": {
            "backoffLimit": PUBLISH_RETRIES,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


# ----------------------------------------------------------------------------- children that already exist

# What must be the same in an existing child for it to be the one this run made (beyond the
# controller reference): a ConfigMap's command, a Role's rules, a RoleBinding's grant.
_CONTENT_KEYS = {
    "ConfigMap": ("data",),
    "Role": ("rules",),
    "RoleBinding": ("roleRef", "subjects"),
}


@dataclass(frozen=True)
class Ownership:
    """Whose an existing object of a child's name is."""

    kind: str  # "ours" | "leftover" (an earlier run of the same name) | "foreign"
    why: str  # for people: who controls it, or what differs


def controller_of(obj: Obj) -> Obj | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") is True:
            result: Obj = ref
            return result
    return None


def ownership(existing: Obj, wanted: Obj, run: RunRef) -> Ownership:
    """Is ``existing`` (found under ``wanted``'s name) this run's child? Decided by the controller's UID.

    Never adopted: an object without a controller, or controlled by anything
    else, is "foreign". A FluxLoraRun controller with this run's name and
    another UID is "leftover": the earlier run is gone (names are unique), so
    the garbage collector deletes the object. Ours must also still say what
    the operator wrote (_CONTENT_KEYS).
    """
    ref = controller_of(existing)
    if ref is None:
        return Ownership("foreign", "it has no controller owner reference (made by someone else, or orphaned)")
    described = f"{ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"
    is_run = ref.get("kind") == api.KIND and str(ref.get("apiVersion", "")).split("/")[0] == api.GROUP
    if ref.get("uid") != run.uid:
        if is_run and ref.get("name") == run.name:
            return Ownership("leftover", f"it belongs to an earlier run of the same name, uid {ref.get('uid')}")
        return Ownership("foreign", f"it is controlled by {described}")
    for key in _CONTENT_KEYS.get(str(wanted.get("kind")), ()):
        if existing.get(key) != wanted.get(key):
            return Ownership("foreign", f"its {key} is not what the operator wrote (changed after creation?)")
    return Ownership("ours", "")
