"""Exit codes of the trainer pod's containers, and what the operator does with each: the
contract between the trainer (fluxlora_trainer, which exits with them) and the operator
(the planner, which records the attempt's reason and decides whether another attempt can help).

Defined once, here, in ``TABLE``, in the pod contract the trainer imports (``fluxlora.contract``).
docs/operations.md shows ``markdown_table()``
(a unit test keeps the two the same).

A code not in the table (a signal, a crash of Python itself) is an ``Error``, retried.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATASET_MISSING = 10
EXIT_DATASET_EMPTY = 11
EXIT_DATASET_UNSUPPORTED = 12
EXIT_DATASET_CAPTIONS = 13
EXIT_DATASET_UNREADABLE = 14
EXIT_SNAPSHOT_WRITE = 15  # copying the dataset into the output claim failed
EXIT_DATASET_CHANGED = 16
EXIT_REPRO_WRITE = 17  # writing repro/ (or creating checkpoints/) on the output claim failed
EXIT_ENGINE_FAILED = 20
EXIT_ENGINE_START = 21
EXIT_RESUME_STATE = 22
EXIT_ENGINE_INCOMPLETE = 23  # the engine exited 0 short of maxTrainSteps or without the final LoRA
EXIT_SOURCE_MISSING = 30  # an s3:// source: no such bucket, no object under the prefix, a file the spec names
EXIT_SOURCE_DENIED = 31  # the store refused the Secret's credentials
EXIT_SOURCE_CHANGED = 32  # an object changed between its listing and the end of its download
EXIT_SOURCE_CORRUPT = 33  # an object is not a whole file of its kind (a truncated .safetensors)
EXIT_SOURCE_UNAVAILABLE = 34  # the store could not be reached, or failed, after the client's own retries
EXIT_TERMINATED = 143

# The reason of an attempt that ended with a code the table does not name.
GENERIC_REASON = "Error"


@dataclass(frozen=True)
class ExitCode:
    """One exit code: the reason its attempt records, whether the run tries again, and why."""

    code: int
    reason: str
    retried: bool
    meaning: str
    why: str


_DATA_WHY = "the dataset claim holds the same files at the next attempt: it would fail the same way"
_SOURCE_WHY = "the store holds the same objects at the next attempt: it would fail the same way"
_OUTPUT_WHY = (
    "the run's inputs are fine; the output claim refused a write (an I/O error, a full or read-only "
    "volume: the message names the path and the OS error). A volume's trouble can pass (space freed, "
    "the volume remounted), and a resumed attempt must not lose its progress to one failed write; "
    "spec.resume.maxRetries bounds the tries"
)

TABLE: tuple[ExitCode, ...] = (
    ExitCode(
        EXIT_INTERNAL,
        GENERIC_REASON,
        True,
        "an unexpected error in the trainer",
        "nothing says the next attempt fails the same way",
    ),
    ExitCode(
        EXIT_CONFIG,
        "ConfigError",
        False,
        "run.json or the attempt's environment is invalid",
        "both are rendered from the spec, which cannot change: every attempt reads the same",
    ),
    ExitCode(EXIT_DATASET_MISSING, "DataError", False, "the dataset directory does not exist", _DATA_WHY),
    ExitCode(EXIT_DATASET_EMPTY, "DataError", False, "the dataset holds no image", _DATA_WHY),
    ExitCode(
        EXIT_DATASET_UNSUPPORTED, "DataError", False, "an image the engine cannot train on (size, format)", _DATA_WHY
    ),
    ExitCode(EXIT_DATASET_CAPTIONS, "DataError", False, "a caption is missing, empty or too long", _DATA_WHY),
    ExitCode(EXIT_DATASET_UNREADABLE, "DataError", False, "an image or caption cannot be read", _DATA_WHY),
    ExitCode(
        EXIT_SNAPSHOT_WRITE,
        "OutputError",
        True,
        "copying the dataset into its snapshot on the output claim failed",
        _OUTPUT_WHY,
    ),
    ExitCode(
        EXIT_DATASET_CHANGED,
        "DataError",
        False,
        "the dataset changed: while it was copied, or since the run started",
        "a resumed run must train on the data it started with (its next attempt finds the same change), and "
        "a dataset written to while a run copies it is a mistake to fix, not to wait out",
    ),
    ExitCode(
        EXIT_REPRO_WRITE,
        "OutputError",
        True,
        "writing repro/ or creating checkpoints/ on the output claim failed",
        _OUTPUT_WHY,
    ),
    ExitCode(
        EXIT_ENGINE_FAILED,
        GENERIC_REASON,
        True,
        "the engine failed (its own error is the message)",
        "a crash or a CUDA error may not happen again; the next attempt resumes from the last saved state",
    ),
    ExitCode(
        EXIT_ENGINE_START,
        GENERIC_REASON,
        True,
        "the engine's process could not be started",
        "the same image would fail the same way when its command is missing, but a node out of memory or "
        "processes fails it too; maxRetries bounds the tries",
    ),
    ExitCode(
        EXIT_RESUME_STATE,
        "ResumeError",
        False,
        "the resume state is unusable",
        "the next attempt would resume from the same state",
    ),
    ExitCode(
        EXIT_ENGINE_INCOMPLETE,
        "IncompleteTraining",
        False,
        "the engine exited 0 short of maxTrainSteps or without the final LoRA (it saw no image, or printed help)",
        "the same inputs end the same way",
    ),
    ExitCode(
        EXIT_SOURCE_MISSING,
        "SourceError",
        False,
        "an s3:// source is not there: no such bucket, no object under the prefix, a model file the spec names, "
        "or no image in a dataset",
        _SOURCE_WHY,
    ),
    ExitCode(
        EXIT_SOURCE_DENIED,
        "SourceError",
        False,
        "the object store refused the credentials of the run's Secret",
        "the next attempt sends the same credentials; fix the Secret and create the run again",
    ),
    ExitCode(
        EXIT_SOURCE_CHANGED,
        "SourceError",
        False,
        "an object of an s3:// source changed during its download (size, checksum or ETag differs from its listing)",
        "a source written to while a run fetches it is a mistake to fix, not to wait out (as a dataset changed "
        "while it is copied)",
    ),
    ExitCode(
        EXIT_SOURCE_CORRUPT,
        "SourceError",
        False,
        "an object of an s3:// source is not a whole file (a .safetensors shorter than its header says)",
        _SOURCE_WHY,
    ),
    ExitCode(
        EXIT_SOURCE_UNAVAILABLE,
        "SourceUnavailable",
        True,
        "the object store could not be reached or failed, after the S3 client's own retries",
        "a store's outage can pass; what was fetched is kept, and the next attempt fetches the rest",
    ),
    ExitCode(
        EXIT_TERMINATED,
        GENERIC_REASON,
        True,
        "terminated by SIGTERM (a drain or deletion without a disruption condition)",
        "the state saved on SIGTERM is resumed",
    ),
)

_BY_CODE = {entry.code: entry for entry in TABLE}
# Reasons of trainer exits that no retry can fix.
NOT_RETRIED_REASONS = frozenset(entry.reason for entry in TABLE if not entry.retried)


def classify(code: int) -> ExitCode:
    """What a non-zero exit code means for its attempt; a code not in the table is a retried Error."""
    found = _BY_CODE.get(code)
    if found is not None:
        return found
    return ExitCode(code, GENERIC_REASON, True, f"exit code {code}", "not a code of the trainer's: retried")


def markdown_table() -> str:
    """The table docs/operations.md shows."""
    lines = ["| Exit | Reason | Retried | Meaning | Why |", "|---|---|---|---|---|"]
    for e in TABLE:
        lines.append(f"| {e.code} | `{e.reason}` | {'yes' if e.retried else 'no'} | {e.meaning} | {e.why} |")
    return "\n".join(lines) + "\n"
