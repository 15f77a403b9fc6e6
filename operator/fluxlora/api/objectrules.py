"""Rules of the Kubernetes objects a run becomes, checked before they are created.

The schema (resource.py) checks each value's syntax: qualified-name keys, label
values, quantities, image references. These are the rules across values that
the API server applies to the run itself or to the Job and ConfigMap made
from it; a run that broke one would be refused by the API server at create
time and fail late. Each has a CEL twin in crd.py where the CRD can express it.
"""

from __future__ import annotations

from fluxlora.api import MAX_ANNOTATIONS_BYTES, FluxLoraRun
from fluxlora.api.document import Problem

TOLERATION_EXISTS_NO_VALUE = "must be empty when operator is Exists"
TOLERATION_EMPTY_KEY = "must be set unless operator is Exists (an empty key with Exists tolerates every taint)"
TOLERATION_SECONDS_EFFECT = "needs effect NoExecute"
PRIORITY_WITHOUT_QUEUE = "needs spec.queueName: only Kueue reads a workload priority class"
DATASET_ONE_SOURCE = "set either claimName (with path) or source, not both and not neither"
DATASET_PATH_WITH_CLAIM = "claimName and path go together: the directory of images inside the claim"
ANNOTATIONS_TOO_LARGE = f"must be at most {MAX_ANNOTATIONS_BYTES // 1024} KiB in total (keys and values)"


def _annotation_bytes(annotations: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())


def check(run: FluxLoraRun) -> list[Problem]:
    out: list[Problem] = []
    meta = run.metadata
    if meta.name is None and meta.generate_name is None:
        out.append(Problem("metadata.name", "is required", None))
    if meta.annotations and _annotation_bytes(meta.annotations) > MAX_ANNOTATIONS_BYTES:
        out.append(Problem("metadata.annotations", ANNOTATIONS_TOO_LARGE, _annotation_bytes(meta.annotations)))
    if run.spec.queue_priority_class_name and not run.spec.queue_name:
        out.append(Problem("spec.queuePriorityClassName", PRIORITY_WITHOUT_QUEUE, run.spec.queue_priority_class_name))
    dataset = run.spec.dataset
    if (dataset.claim_name is None) == (dataset.source is None):
        out.append(Problem("spec.dataset", DATASET_ONE_SOURCE, dataset.claim_name or dataset.source))
    elif (dataset.claim_name is None) != (dataset.path is None):
        out.append(Problem("spec.dataset.path", DATASET_PATH_WITH_CLAIM, dataset.path))
    for i, t in enumerate(run.spec.resources.tolerations or []):
        where = f"spec.resources.tolerations[{i}]"
        if t.operator == "Exists" and t.value:
            out.append(Problem(f"{where}.value", TOLERATION_EXISTS_NO_VALUE, t.value))
        if not t.key and t.operator != "Exists":
            out.append(Problem(f"{where}.key", TOLERATION_EMPTY_KEY, t.key or ""))
        if t.toleration_seconds is not None and t.effect != "NoExecute":
            out.append(Problem(f"{where}.tolerationSeconds", TOLERATION_SECONDS_EFFECT, t.toleration_seconds))
    return out
