"""The API: the FluxLoraRun resource (its spec in resource.py, its status in runstatus.py), the
engine settings a spec may override (settings.py), the CRD made from them (crd.py), documents
decoded as the API server decodes them (document.py) and the rules the API server applies to the
objects a run becomes (objectrules.py). ``fluxlora.api.X`` names every resource type."""

from __future__ import annotations

from fluxlora.api.resource import (
    API_VERSION as API_VERSION,
)
from fluxlora.api.resource import (
    DNS1123_LABEL as DNS1123_LABEL,
)
from fluxlora.api.resource import (
    DNS1123_SUBDOMAIN as DNS1123_SUBDOMAIN,
)
from fluxlora.api.resource import (
    ENGINE_KEY as ENGINE_KEY,
)
from fluxlora.api.resource import (
    GROUP as GROUP,
)
from fluxlora.api.resource import (
    IMAGE_REFERENCE as IMAGE_REFERENCE,
)
from fluxlora.api.resource import (
    INT32_MAX as INT32_MAX,
)
from fluxlora.api.resource import (
    KIND as KIND,
)
from fluxlora.api.resource import (
    LABEL_VALUE as LABEL_VALUE,
)
from fluxlora.api.resource import (
    MAX_ANNOTATIONS_BYTES as MAX_ANNOTATIONS_BYTES,
)
from fluxlora.api.resource import (
    NO_DOTDOT_CEL as NO_DOTDOT_CEL,
)
from fluxlora.api.resource import (
    OPTIMIZER_ARG as OPTIMIZER_ARG,
)
from fluxlora.api.resource import (
    PLURAL as PLURAL,
)
from fluxlora.api.resource import (
    PRINTABLE as PRINTABLE,
)
from fluxlora.api.resource import (
    QUALIFIED_NAME as QUALIFIED_NAME,
)
from fluxlora.api.resource import (
    QUANTITY as QUANTITY,
)
from fluxlora.api.resource import (
    RELATIVE_PATH as RELATIVE_PATH,
)
from fluxlora.api.resource import (
    RFC3339 as RFC3339,
)
from fluxlora.api.resource import (
    SAMPLESET_KIND as SAMPLESET_KIND,
)
from fluxlora.api.resource import (
    SAMPLESET_PLURAL as SAMPLESET_PLURAL,
)
from fluxlora.api.resource import (
    SAMPLESET_SHORT_NAMES as SAMPLESET_SHORT_NAMES,
)
from fluxlora.api.resource import (
    SAMPLESET_SINGULAR as SAMPLESET_SINGULAR,
)
from fluxlora.api.resource import (
    SHORT_NAMES as SHORT_NAMES,
)
from fluxlora.api.resource import (
    SINGULAR as SINGULAR,
)
from fluxlora.api.resource import (
    VERSION as VERSION,
)
from fluxlora.api.resource import (
    DatasetSpec as DatasetSpec,
)
from fluxlora.api.resource import (
    EvaluationSpec as EvaluationSpec,
)
from fluxlora.api.resource import (
    FluxLoraRun as FluxLoraRun,
)
from fluxlora.api.resource import (
    FluxLoraRunSpec as FluxLoraRunSpec,
)
from fluxlora.api.resource import (
    LabelValue as LabelValue,
)
from fluxlora.api.resource import (
    Metadata as Metadata,
)
from fluxlora.api.resource import (
    ModelSpec as ModelSpec,
)
from fluxlora.api.resource import (
    NetworkSpec as NetworkSpec,
)
from fluxlora.api.resource import (
    ObjectStoreSpec as ObjectStoreSpec,
)
from fluxlora.api.resource import (
    OutputSpec as OutputSpec,
)
from fluxlora.api.resource import (
    OwnerReference as OwnerReference,
)
from fluxlora.api.resource import (
    PodMetadata as PodMetadata,
)
from fluxlora.api.resource import (
    QualifiedName as QualifiedName,
)
from fluxlora.api.resource import (
    ResourcesSpec as ResourcesSpec,
)
from fluxlora.api.resource import (
    ResumeSpec as ResumeSpec,
)
from fluxlora.api.resource import (
    SamplesSpec as SamplesSpec,
)
from fluxlora.api.resource import (
    Toleration as Toleration,
)
from fluxlora.api.resource import (
    TrainingSpec as TrainingSpec,
)
from fluxlora.api.resource import (
    override as override,
)
from fluxlora.api.runstatus import (
    CONDITION_MESSAGE_MAX as CONDITION_MESSAGE_MAX,
)
from fluxlora.api.runstatus import (
    CONDITION_TYPES as CONDITION_TYPES,
)
from fluxlora.api.runstatus import (
    MAX_CONDITIONS as MAX_CONDITIONS,
)
from fluxlora.api.runstatus import (
    Attempt as Attempt,
)
from fluxlora.api.runstatus import (
    Condition as Condition,
)
from fluxlora.api.runstatus import (
    FluxLoraRunStatus as FluxLoraRunStatus,
)
from fluxlora.api.runstatus import (
    GpuSummary as GpuSummary,
)
from fluxlora.api.runstatus import (
    LikenessBest as LikenessBest,
)
from fluxlora.api.runstatus import (
    LikenessPoint as LikenessPoint,
)
from fluxlora.api.runstatus import (
    LikenessReference as LikenessReference,
)
from fluxlora.api.runstatus import (
    LikenessStatus as LikenessStatus,
)
from fluxlora.api.runstatus import (
    LossPoint as LossPoint,
)
from fluxlora.api.runstatus import (
    Phase as Phase,
)
from fluxlora.api.runstatus import (
    Progress as Progress,
)
from fluxlora.api.runstatus import (
    QueueStatus as QueueStatus,
)
from fluxlora.api.runstatus import (
    Repro as Repro,
)
from fluxlora.api.runstatus import (
    ResumePoint as ResumePoint,
)
from fluxlora.api.runstatus import (
    Warning_ as Warning_,
)
from fluxlora.contract.model import (
    LIKENESS_MAX_POINTS as LIKENESS_MAX_POINTS,
)
from fluxlora.contract.model import (
    LOSS_HISTORY_MAX_POINTS as LOSS_HISTORY_MAX_POINTS,
)
from fluxlora.contract.model import (
    MAX_RUN_NAME as MAX_RUN_NAME,
)
from fluxlora.contract.model import (
    ApiModel as ApiModel,
)
