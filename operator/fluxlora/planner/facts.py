"""What the planner knows of a run: its spec evaluated (profiles, rules, policy) and rendered (pure).

A run whose spec cannot be evaluated (a resume point beyond its steps
included: rules.check_resume_step) gets the errors that make its status Failed
(InvalidSpec, or PolicyDenied when only the policy refused it); a valid one
gets its argv and config hash, and the rendered run the handlers create
children from.
"""

from __future__ import annotations

from typing import Any

from fluxlora.contract.model import Obj
from fluxlora.planner import status as run_status
from fluxlora.spec.policy import Policy
from fluxlora.spec.profiles import ProfileSet
from fluxlora.spec.render import RenderedRun, render
from fluxlora.spec.rules import evaluate


def facts_of(
    body: Obj, profiles: ProfileSet, image: str, policy: Policy | None = None
) -> tuple[run_status.RunFacts, RenderedRun | None]:
    """The run's facts for status.plan, and the rendered run when it is valid (and the policy allows it)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    resume_spec = spec.get("resume") or {}
    # The status is the operator's and the trainer's record, not part of what the user asked for.
    evaluation = evaluate({k: v for k, v in body.items() if k != "status"}, profiles, policy or Policy(), image)
    warnings = [w.as_dict() for w in evaluation.warnings]
    common: dict[str, Any] = {
        "name": str(meta.get("name")),
        "uid": str(meta.get("uid")),
        "generation": meta.get("generation"),
        "status": body.get("status") or {},
        "suspend": bool(spec.get("suspend")),
        "dry_run": bool(spec.get("dryRun")),
        "max_retries": int(resume_spec.get("maxRetries", 3)),
        "warnings": warnings,
    }
    if not evaluation.ok or evaluation.run is None or evaluation.config is None:
        errors = [e.message for e in evaluation.errors] or ["the spec cannot be evaluated"]
        reasons = {e.reason for e in evaluation.errors}
        reason = "PolicyDenied" if reasons == {"PolicyDenied"} else "InvalidSpec"
        return run_status.RunFacts(errors=errors, error_reason=reason, **common), None
    rendered = render(evaluation.run, evaluation.config, evaluation.warnings, image, policy)
    facts = run_status.RunFacts(
        first_resume=rendered.first_resume,
        command=rendered.argv,
        config_hash=rendered.config_hash,
        max_train_steps=evaluation.config.engine.max_train_steps,
        publish=evaluation.run.spec.output.publish,
        **common,
    )
    return facts, rendered
