"""`fluxlora-trainer prepare`: check the dataset, snapshot it, hash it, write the repro record."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from . import repro, termination
from .dataset import DatasetError, check_dataset, dataset_hash, snapshot
from .gpu import Nvml
from .report import Reporter
from .runspec import AttemptEnv, RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareResult:
    dataset_hash: str
    images: int
    uncaptioned: int
    reused_snapshot: bool
    repro_dir: Path


def prepare(
    run: RunSpec,
    env: AttemptEnv,
    *,
    reporter: Reporter | None = None,
    nvml: Nvml | None = None,
    freeze: str | None = None,
    wall: float | None = None,
) -> PrepareResult:
    """Raises DatasetError (with exit code and reason) for bad data."""
    layout = run.layout
    started = time.time() if wall is None else wall
    recorded = repro.recorded_dataset_hash(run) if env.attempt > 1 else None
    reused = False
    digest: str | None = None
    report = None

    if recorded is not None and layout.dataset_snapshot.is_dir():
        # A later attempt trains on the snapshot the run started with.
        current = dataset_hash(layout.dataset_snapshot)
        if current == recorded:
            digest, reused = current, True
            report = check_dataset(layout.dataset_snapshot, run.caption_extension, run.trigger_word, run.bucketing)
    if digest is None:
        report = check_dataset(layout.dataset_source, run.caption_extension, run.trigger_word, run.bucketing)
        digest = snapshot(layout.dataset_source, report, layout.dataset_snapshot)
        if recorded is not None and digest != recorded:
            raise DatasetError(
                termination.EXIT_DATASET_CHANGED,
                f"dataset {layout.dataset_source} changed since the run started "
                f"(recorded {recorded}, now {digest}); a resumed run must train on the same data",
            )
    assert report is not None
    if report.uncaptioned:
        log.info(
            "%d images have no caption; the trigger word %r is used",
            len(report.uncaptioned),
            run.trigger_word,
        )
    if report.ignored:
        log.info("not part of the dataset (ignored): %s", ", ".join(report.ignored[:20]))
    try:
        layout.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        repro.write_repro(
            run,
            image=env.image,
            dataset_hash=digest,
            images=len(report.images),
            started_at=started,
            nvml=nvml,
            freeze=freeze,
            attempt=env.attempt,
        )
    except OSError as exc:
        raise DatasetError(
            termination.EXIT_REPRO_WRITE, f"cannot write {layout.repro_dir}: {exc.strerror or exc}"
        ) from exc
    if reporter is not None:
        reporter.update("repro", repro.status_repro(run, image=env.image, dataset_hash=digest), force=True)
    log.info(
        "dataset %s: %d images, hash %s%s",
        layout.dataset_snapshot,
        len(report.images),
        digest,
        " (snapshot reused)" if reused else "",
    )
    return PrepareResult(digest, len(report.images), len(report.uncaptioned), reused, layout.repro_dir)
