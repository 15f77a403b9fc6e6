"""The trainer's exit codes and env names: defined once (fluxlora.contract.exitcodes, fluxlora.contract.podenv), used by
the operator and the trainer alike, each code classified (reason, retried or not) and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fluxlora.contract import exitcodes, podenv
from fluxlora.planner import status as S
from fluxlora.spec import manifests
from fluxlora_trainer import runspec, termination

from tests.builders import NOW, JobBuilder, PodBuilder, attempt, facts
from tests.unit.test_status import cond

ROOT = Path(__file__).resolve().parents[2]
CONSTANTS = {name: value for name, value in vars(exitcodes).items() if name.startswith("EXIT_")}


def test_every_exit_code_but_success_is_in_the_table_once() -> None:
    codes = [entry.code for entry in exitcodes.TABLE]
    assert len(codes) == len(set(codes))
    assert sorted(codes) == sorted(v for k, v in CONSTANTS.items() if k != "EXIT_OK")


def test_a_reason_is_either_always_retried_or_never() -> None:
    """The operator decides from the attempt's recorded reason (status.NOT_RETRYABLE_REASONS): a reason
    shared by a retried and a final code would make one of them lie."""
    retried = {e.reason for e in exitcodes.TABLE if e.retried}
    final = {e.reason for e in exitcodes.TABLE if not e.retried}
    assert not retried & final
    assert final == exitcodes.NOT_RETRIED_REASONS
    assert final <= S.NOT_RETRYABLE_REASONS and not retried & S.NOT_RETRYABLE_REASONS


@pytest.mark.parametrize(
    ("code", "reason", "retried"),
    [
        (exitcodes.EXIT_INTERNAL, "Error", True),
        (exitcodes.EXIT_CONFIG, "ConfigError", False),
        (exitcodes.EXIT_DATASET_MISSING, "DataError", False),
        (exitcodes.EXIT_DATASET_UNREADABLE, "DataError", False),
        # 15 and 17 are failed writes to the output claim (a full disk, an I/O error), not dataset problems.
        (exitcodes.EXIT_SNAPSHOT_WRITE, "OutputError", True),
        (exitcodes.EXIT_DATASET_CHANGED, "DataError", False),
        (exitcodes.EXIT_REPRO_WRITE, "OutputError", True),
        (exitcodes.EXIT_ENGINE_FAILED, "Error", True),
        (exitcodes.EXIT_RESUME_STATE, "ResumeError", False),
        (exitcodes.EXIT_ENGINE_INCOMPLETE, "IncompleteTraining", False),
        (exitcodes.EXIT_TERMINATED, "Error", True),
        (137, "Error", True),  # not a code of the trainer's (SIGKILL)
    ],
)
def test_classification_and_what_the_operator_records(code: int, reason: str, retried: bool) -> None:
    entry = exitcodes.classify(code)
    assert (entry.reason, entry.retried) == (reason, retried)
    found = S.pod_failure(PodBuilder(1, "Failed").exited(code, message="why").obj())
    assert found is not None and (found.reason, found.message) == (reason, "why")
    assert (reason in S.NOT_RETRYABLE_REASONS) is (not retried)


@pytest.mark.parametrize("entry", exitcodes.TABLE, ids=[str(e.code) for e in exitcodes.TABLE])
def test_the_plan_retries_exactly_the_codes_the_table_says(entry: exitcodes.ExitCode) -> None:
    """A failed first attempt (maxRetries 3) is followed by a second one, or the run fails for good."""
    p = S.plan(
        facts({"attempts": [attempt(1)]}),
        [JobBuilder(1).failed("BackoffLimitExceeded").obj()],
        [PodBuilder(1, "Failed").exited(entry.code, message="the trainer's one line").obj()],
        NOW,
    )
    if entry.retried:
        assert [type(a).__name__ for a in p.actions] == ["CreateAttempt"] and p.status["phase"] != "Failed"
    else:
        assert p.actions == [] and p.status["phase"] == "Failed"
        failed = cond(p.status, "Failed")
        assert (failed["reason"], failed["message"]) == (entry.reason, "the trainer's one line")


def test_the_docs_show_the_table() -> None:
    assert exitcodes.markdown_table() in (ROOT / "docs" / "operations.md").read_text()


def test_the_trainer_uses_the_same_codes() -> None:
    for name, value in CONSTANTS.items():
        assert getattr(termination, name) == value


# Files allowed to spell an exit code's number or an env name: where they are defined.
DEFINITIONS = {"operator/fluxlora/contract/exitcodes.py", "operator/fluxlora/contract/podenv.py"}
SOURCES = sorted(p for p in [*(ROOT / "operator" / "fluxlora").rglob("*.py"), *(ROOT / "trainer-image").rglob("*.py")])


def test_exit_codes_and_env_names_are_defined_once() -> None:
    spelled = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        if rel in DEFINITIONS:
            continue
        text = path.read_text()
        spelled += [f"{rel}: {m}" for m in re.findall(r"""["']FLUXLORA_[A-Z_]+["']""", text)]
        spelled += [f"{rel}: {m}" for m in re.findall(r"^EXIT_[A-Z_]+ = \d+", text, flags=re.MULTILINE)]
    # The likeness tool's own exit codes (`fluxlora-trainer likeness`, not the pod's) are its CLI's.
    spelled = [s for s in spelled if "EXIT_NO_REFERENCE_FACE" not in s and "EXIT_SCORER_UNAVAILABLE" not in s]
    assert spelled == []


def test_the_operator_sets_and_the_trainer_reads_the_same_per_attempt_env() -> None:
    assert (manifests.ENV_ATTEMPT, manifests.ENV_RESUME_CHECKPOINT, manifests.ENV_RESUME_STEP, manifests.ENV_IMAGE) == (
        podenv.PER_ATTEMPT
    )
    env = {podenv.ATTEMPT: "3", podenv.RESUME_CHECKPOINT: "a/b-state", podenv.RESUME_STEP: "40", podenv.IMAGE: "i:1"}
    read = runspec.attempt_env(env)
    assert (read.attempt, read.resume_checkpoint, read.resume_step, read.image) == (3, "a/b-state", 40, "i:1")
    with pytest.raises(runspec.RunSpecError, match=podenv.RESUME_STEP):
        runspec.attempt_env({podenv.RESUME_STEP: "-1"})
