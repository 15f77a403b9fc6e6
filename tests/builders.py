"""Builders for what the tests make, in the spirit of Kueue's testing wrappers (pkg/util/testing).

``RunBuilder``: a FluxLoraRun. ``JobBuilder`` and ``PodBuilder``: an attempt's Job and Pod as the
planner reads them. ``attempt()``: an attempt record of ``status.attempts``. ``facts()``: the
planner's ``RunFacts``. Each builder method sets one thing and returns the builder; ``obj()``
returns a new dict each time::

    RunBuilder("alice").profile("final").gpus(2).queue("team-a").obj()
    RunBuilder("alice").steps(400, save_every=50).kwok_hold().manifest()  # for kubectl apply
    JobBuilder(1).failed("BackoffLimitExceeded").obj()
    PodBuilder(1, "Failed").exited(137, "OOMKilled").obj()
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fluxlora.contract.model import Obj
from fluxlora.planner import status as S
from fluxlora.spec.manifests import ENV_RESUME_CHECKPOINT, ENV_RESUME_STEP

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:05:00Z"
UID = "run-uid"  # the run of facts() and JobBuilder: the Jobs' owner
DOCUMENT_UID = "11111111-2222-3333-4444-555555555555"  # RunBuilder's run as the API server holds it

# The kwok stages of the test control plane (tests/cluster/stages.yaml) read these pod labels and
# annotations: hold the pod Running, end it after a duration, fail it with an exit code.
FAKE = "fluxlora.dev/fake-"

# Set by the API server, never in a document a user applies (RunBuilder.manifest drops them).
_SERVER_SET = ("namespace", "uid", "generation", "resourceVersion", "creationTimestamp", "managedFields")


# ----------------------------------------------------------------------------- FluxLoraRun


class RunBuilder:
    """A FluxLoraRun: profile ``fast``, claims flux-models, datasets (path alice, trigger word
    "ohwx woman") and outputs, in namespace team-a with a fixed uid, as the API server holds it.
    ``manifest()`` is the document to apply (no namespace, uid or other server-set metadata).

    Spec sections take their fields by their API names (``training(saveEveryNSteps=50)``) and merge
    them into what is there; ``spec(**sections)`` does the same for any section."""

    def __init__(self, name: str = "run-1", namespace: str = "team-a") -> None:
        self._doc: Obj = {
            "apiVersion": "fluxlora.dev/v1alpha1",
            "kind": "FluxLoraRun",
            "metadata": {"name": name, "namespace": namespace, "uid": DOCUMENT_UID},
            "spec": {
                "profile": "fast",
                "model": {"claimName": "flux-models"},
                "dataset": {"claimName": "datasets", "path": "alice", "triggerWord": "ohwx woman"},
                "output": {"claimName": "outputs"},
            },
        }

    @classmethod
    def example(cls, file: str = "run-fast.yaml", name: str | None = None) -> RunBuilder:
        """A document of examples/ as it is written (metadata: its name only)."""
        builder = cls()
        builder._doc = yaml.safe_load((EXAMPLES / file).read_text())
        return builder.name(name) if name else builder

    def obj(self) -> Obj:
        return copy.deepcopy(self._doc)

    def manifest(self) -> Obj:
        """The document for kubectl apply: the object less what the API server sets."""
        document = self.obj()
        for key in _SERVER_SET:
            document["metadata"].pop(key, None)
        return document

    # metadata

    def name(self, name: str) -> RunBuilder:
        self._doc["metadata"]["name"] = name
        return self

    def namespace(self, namespace: str) -> RunBuilder:
        self._doc["metadata"]["namespace"] = namespace
        return self

    def uid(self, uid: str) -> RunBuilder:
        self._doc["metadata"]["uid"] = uid
        return self

    def generation(self, generation: int) -> RunBuilder:
        self._doc["metadata"]["generation"] = generation
        return self

    def resource_version(self, version: str) -> RunBuilder:
        self._doc["metadata"]["resourceVersion"] = version
        return self

    def created(self, timestamp: str) -> RunBuilder:
        self._doc["metadata"]["creationTimestamp"] = timestamp
        return self

    def labels(self, labels: Mapping[str, str]) -> RunBuilder:
        self._doc["metadata"].setdefault("labels", {}).update(labels)
        return self

    def annotations(self, annotations: Mapping[str, str]) -> RunBuilder:
        self._doc["metadata"].setdefault("annotations", {}).update(annotations)
        return self

    def managed_fields(self, entries: list[Obj]) -> RunBuilder:
        self._doc["metadata"]["managedFields"] = copy.deepcopy(entries)
        return self

    def status(self, status: Mapping[str, Any]) -> RunBuilder:
        self._doc["status"] = copy.deepcopy(dict(status))
        return self

    # spec

    def spec(self, **sections: Any) -> RunBuilder:
        """Any spec field: a mapping merges into the section of that name, anything else replaces it."""
        for section, value in sections.items():
            if isinstance(value, Mapping):
                self._section(section).update(copy.deepcopy(dict(value)))
            else:
                self._doc["spec"][section] = copy.deepcopy(value)
        return self

    def _section(self, name: str) -> Obj:
        section: Obj = self._doc["spec"].setdefault(name, {})
        return section

    def profile(self, profile: str) -> RunBuilder:
        return self.spec(profile=profile)

    def model(self, claim: str | None = None, **fields: Any) -> RunBuilder:
        return self.spec(model=_with_claim(claim, fields))

    def dataset(self, claim: str | None = None, **fields: Any) -> RunBuilder:
        return self.spec(dataset=_with_claim(claim, fields))

    def output(self, claim: str | None = None, **fields: Any) -> RunBuilder:
        return self.spec(output=_with_claim(claim, fields))

    def network(self, **fields: Any) -> RunBuilder:
        return self.spec(network=fields)

    def training(self, **fields: Any) -> RunBuilder:
        return self.spec(training=fields)

    def steps(self, max_train_steps: int, save_every: int | None = None) -> RunBuilder:
        """spec.training.maxTrainSteps (and saveEveryNSteps)."""
        fields: Obj = {"maxTrainSteps": max_train_steps}
        if save_every is not None:
            fields["saveEveryNSteps"] = save_every
        return self.training(**fields)

    def samples(self, **fields: Any) -> RunBuilder:
        return self.spec(samples=fields)

    def evaluation(self, **fields: Any) -> RunBuilder:
        return self.spec(evaluation=fields)

    def resources(self, **fields: Any) -> RunBuilder:
        return self.spec(resources=fields)

    def gpus(self, gpus: int) -> RunBuilder:
        return self.resources(gpus=gpus)

    def image(self, image: str) -> RunBuilder:
        return self.spec(image=image)

    def queue(self, queue: str, priority: str | None = None) -> RunBuilder:
        """spec.queueName (Kueue's LocalQueue) and spec.queuePriorityClassName."""
        self.spec(queueName=queue)
        return self.spec(queuePriorityClassName=priority) if priority else self

    def suspend(self, suspend: bool = True) -> RunBuilder:
        return self.spec(suspend=suspend)

    def dry_run(self, dry_run: bool = True) -> RunBuilder:
        return self.spec(dryRun=dry_run)

    def resume_from(self, state: str, step: int | None = None) -> RunBuilder:
        """spec.resume.from (a saved state) and fromStep."""
        fields: Obj = {"from": state}
        if step is not None:
            fields["fromStep"] = step
        return self.spec(resume=fields)

    def max_retries(self, retries: int) -> RunBuilder:
        return self.spec(resume={"maxRetries": retries})

    def pod_labels(self, labels: Mapping[str, str]) -> RunBuilder:
        """spec.pod.labels (the map made, empty, when ``labels`` is)."""
        self._section("pod").setdefault("labels", {}).update(labels)
        return self

    def pod_annotations(self, annotations: Mapping[str, str]) -> RunBuilder:
        self._section("pod").setdefault("annotations", {}).update(annotations)
        return self

    # the kwok stages of the test control plane

    def kwok_hold(self) -> RunBuilder:
        """kwok keeps the pod Running (a test, or the pod simulator, ends it)."""
        return self.pod_labels({f"{FAKE}hold": "true"})

    def kwok_duration(self, duration: str) -> RunBuilder:
        """kwok ends the pod ``duration`` after it starts (Succeeded, or Failed with kwok_fail)."""
        return self.pod_annotations({f"{FAKE}duration": duration})

    def kwok_fail(self, exit_code: int, reason: str | None = None, message: str | None = None) -> RunBuilder:
        """kwok ends the pod Failed: the train container exits with ``exit_code`` (``reason``, ``message``)."""
        annotations = {f"{FAKE}exit-code": str(exit_code)}
        if reason is not None:
            annotations[f"{FAKE}reason"] = reason
        if message is not None:
            annotations[f"{FAKE}message"] = message
        return self.pod_labels({f"{FAKE}fail": "true"}).pod_annotations(annotations)


def _with_claim(claim: str | None, fields: Obj) -> Obj:
    return {"claimName": claim, **fields} if claim is not None else fields


# ----------------------------------------------------------------------------- Job and Pod


class JobBuilder:
    """Attempt ``n``'s Job of run ``r`` (uid ``UID``) as the planner reads it: name r-a<n>, uid
    job-<n>, the run's labels and owner, the train container's resume env (none by default)."""

    def __init__(self, n: int, run: str = "r") -> None:
        self._doc: Obj = {
            "metadata": {
                "name": f"{run}-a{n}",
                "uid": f"job-{n}",
                "creationTimestamp": NOW,
                "labels": {"fluxlora.dev/run": run, "fluxlora.dev/attempt": str(n)},
                "ownerReferences": [{"uid": UID, "kind": "FluxLoraRun", "name": run}],
            },
            "spec": {"suspend": False, "template": {"spec": {"containers": [{"name": "train", "env": []}]}}},
            "status": {"conditions": []},
        }
        self.resume("", 0)

    def obj(self) -> Obj:
        return copy.deepcopy(self._doc)

    def owner(self, uid: str) -> JobBuilder:
        """The uid of the run that owns it (another run's: a leftover)."""
        self._doc["metadata"]["ownerReferences"][0]["uid"] = uid
        return self

    def complete(self) -> JobBuilder:
        self._doc["status"]["conditions"].append({"type": "Complete", "status": "True", "lastTransitionTime": LATER})
        return self

    def failed(self, reason: str, message: str = "") -> JobBuilder:
        self._doc["status"]["conditions"].append(
            {"type": "Failed", "status": "True", "reason": reason, "message": message, "lastTransitionTime": LATER}
        )
        return self

    def suspend(self, suspend: bool = True) -> JobBuilder:
        self._doc["spec"]["suspend"] = suspend
        return self

    def deleting(self) -> JobBuilder:
        self._doc["metadata"]["deletionTimestamp"] = LATER
        return self

    def resume(self, checkpoint: str, step: int) -> JobBuilder:
        """The state the attempt resumes from (its train container's env)."""
        (train,) = self._doc["spec"]["template"]["spec"]["containers"]
        train["env"] = [
            {"name": ENV_RESUME_CHECKPOINT, "value": checkpoint},
            {"name": ENV_RESUME_STEP, "value": str(step)},
        ]
        return self


class PodBuilder:
    """Attempt ``n``'s Pod (owned by JobBuilder(n)'s Job) in ``phase``; its train container
    running, no init container status and no conditions unless told."""

    def __init__(self, n: int, phase: str = "Running") -> None:
        self._doc: Obj = {
            "metadata": {
                "name": f"r-a{n}-xyz",
                "uid": f"pod-{n}",
                "creationTimestamp": NOW,
                "ownerReferences": [{"uid": f"job-{n}", "kind": "Job"}],
            },
            "status": {
                "phase": phase,
                "containerStatuses": [{"name": "train", "state": {"running": {}}}],
                "initContainerStatuses": [],
                "conditions": [],
            },
        }

    def obj(self) -> Obj:
        return copy.deepcopy(self._doc)

    def owner(self, job_uid: str) -> PodBuilder:
        """The uid of the Job that owns it (another Job's: a pod left by an earlier run)."""
        self._doc["metadata"]["ownerReferences"][0]["uid"] = job_uid
        return self

    def phase(self, phase: str) -> PodBuilder:
        self._doc["status"]["phase"] = phase
        return self

    def exited(self, code: int, reason: str | None = None, message: str = "") -> PodBuilder:
        """The train container terminated with ``code`` (reason Error unless told)."""
        state = {"terminated": {"exitCode": code, "reason": reason or "Error", "message": message}}
        return self._train(state)

    def waiting(self, reason: str, message: str = "") -> PodBuilder:
        """The train container waiting (ImagePullBackOff, CreateContainerConfigError, ...)."""
        return self._train({"waiting": {"reason": reason, "message": message}})

    def _train(self, state: Obj) -> PodBuilder:
        self._doc["status"]["containerStatuses"] = [{"name": "train", "state": state}]
        return self

    def init_exited(self, code: int, message: str = "") -> PodBuilder:
        """The prepare init container terminated with ``code``."""
        self._doc["status"]["initContainerStatuses"] = [
            {"name": "prepare", "state": {"terminated": {"exitCode": code, "message": message}}}
        ]
        return self

    def conditions(self, *conditions: Obj) -> PodBuilder:
        self._doc["status"]["conditions"] = copy.deepcopy(list(conditions))
        return self

    def reason(self, reason: str, message: str = "") -> PodBuilder:
        """status.reason and message (Evicted, ...)."""
        self._doc["status"] |= {"reason": reason, "message": message}
        return self

    def deleting(self) -> PodBuilder:
        self._doc["metadata"]["deletionTimestamp"] = LATER
        return self


# ----------------------------------------------------------------------------- status and planner input


def attempt(n: int, result: str = "Running", reason: str | None = None, **fields: Any) -> Obj:
    """Attempt ``n`` of status.attempts (Job r-a<n>, started at NOW); ``fields`` add or replace."""
    record: Obj = {"number": n, "jobName": f"r-a{n}", "startTime": NOW, "result": result}
    if reason:
        record["reason"] = reason
    record.update(fields)
    return record


def facts(status: Obj | None = None, **fields: Any) -> S.RunFacts:
    """The planner's view of run ``r`` (uid ``UID``, generation 1, 1000 steps); ``fields`` replace."""
    base: Obj = {
        "name": "r",
        "uid": UID,
        "generation": 1,
        "status": status or {},
        "command": ["accelerate", "launch"],
        "max_train_steps": 1000,
    }
    base.update(fields)
    return S.RunFacts(**base)
