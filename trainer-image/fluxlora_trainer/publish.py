"""`fluxlora-trainer publish`: put a finished run's results under spec.output.publish (s3://...).

A run that succeeded publishes its final LoRA, the best checkpoint (likeness), repro/ and the
sample images; one that failed for good publishes its latest LoRA checkpoint and repro/. Each
object's key is its path inside the run's output directory, below the prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fluxlora.contract import exitcodes
from fluxlora.contract.objectstore import S3Uri

from . import engine
from .objectstore import SourceError, Store, Uploaded, upload
from .runspec import RunSpec

FIELD = "spec.output.publish"
_STEP = re.compile(r"-step(?P<step>\d{8})\.safetensors$")


@dataclass(frozen=True)
class Selection:
    files: list[tuple[Path, str]]  # (file, its path inside the output directory)


def _latest_checkpoint(checkpoints: Path, output_name: str) -> Path | None:
    """The LoRA of the highest global step (attempt-N/ folders name files by their own steps: the
    newest file wins among equal names)."""
    found = [
        (int(m.group("step")), p.stat().st_mtime, p)
        for p in checkpoints.rglob(f"{output_name}-step*.safetensors")
        if (m := _STEP.search(p.name)) is not None
    ]
    return max(found)[2] if found else None


def select(run: RunSpec, outcome: str) -> Selection:
    """What a run with ``outcome`` (succeeded, failed) publishes."""
    out = run.layout.output_dir
    checkpoints = run.layout.checkpoint_dir
    chosen: list[Path] = []
    if outcome == "succeeded":
        final = checkpoints / engine.final_checkpoint_name(run.output_name)
        if not final.is_file():
            raise SourceError(exitcodes.EXIT_ENGINE_INCOMPLETE, f"{FIELD}: the run succeeded without {final}")
        chosen.append(final)
        best = checkpoints / engine.best_checkpoint_name(run.output_name)
        if best.is_file():
            chosen.append(best)
        chosen += sorted(p for p in checkpoints.rglob("*.png") if p.is_file())
    else:
        latest = _latest_checkpoint(checkpoints, run.output_name)
        if latest is not None:
            chosen.append(latest)
    chosen += sorted(p for p in run.layout.repro_dir.rglob("*") if p.is_file())
    return Selection([(p, p.relative_to(out).as_posix()) for p in chosen])


def publish(run: RunSpec, uri_text: str, outcome: str, store: Store) -> Uploaded:
    try:
        uri = S3Uri.parse(uri_text)
    except ValueError as exc:
        raise SourceError(exitcodes.EXIT_CONFIG, f"{FIELD}: {exc}") from exc
    return upload(store, uri, select(run, outcome).files, FIELD)
