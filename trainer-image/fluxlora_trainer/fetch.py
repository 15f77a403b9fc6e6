"""`fluxlora-trainer fetch`: fill the model claim and the run's dataset directory from their s3:// sources."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluxlora.contract import exitcodes
from fluxlora.contract.engine import ENGINE_IMAGE_EXTENSIONS
from fluxlora.contract.objectstore import S3Uri
from fluxlora.contract.runfile import RunSource, RunSources

from .objectstore import FetchResult, RemoteObject, SourceError, Store, fetch
from .report import Reporter

log = logging.getLogger(__name__)

GB = 1e9
MB = 1e6


def stage_text(what: str, done: int, total: int) -> str:
    """The status stage while fetching: 'Fetching model 12.3/33.9 GB' (MB below a gigabyte)."""
    unit, name = (GB, "GB") if total >= GB else (MB, "MB")
    return f"Fetching {what} {done / unit:.1f}/{total / unit:.1f} {name}"


def _checker(source: RunSource) -> Callable[[list[RemoteObject]], None]:
    def check(objects: list[RemoteObject]) -> None:
        names = {o.relative for o in objects}
        # A file the spec names comes from the source, or is in the claim already (the source fills it).
        held = Path(source.directory)
        missing = [path for path in source.required if path not in names and not (held / path).is_file()]
        if missing:
            listed = ", ".join(sorted(names)[:8]) + (" ..." if len(names) > 8 else "")
            raise SourceError(
                exitcodes.EXIT_SOURCE_MISSING,
                f"{source.field}: {source.uri} has no object {missing[0]!r}, and the claim does not hold it "
                f"(the spec names it; found: {listed})",
            )
        # The engine's own test of an image: the extension, case-sensitively, of a file directly in the folder.
        if source.images and not any(
            "/" not in o.relative and Path(o.relative).suffix in ENGINE_IMAGE_EXTENSIONS for o in objects
        ):
            raise SourceError(
                exitcodes.EXIT_SOURCE_MISSING,
                f"{source.field}: no image directly under {source.uri} "
                f"({len(objects)} objects, none with an extension of {', '.join(sorted(ENGINE_IMAGE_EXTENSIONS))})",
            )

    return check


@dataclass(frozen=True)
class Fetched:
    model: FetchResult | None
    dataset: FetchResult | None


def fetch_sources(
    sources: RunSources,
    attempt: int,
    reporter: Reporter | None,
    *,
    dataset_snapshotted: bool = False,
    store: Store | None = None,
) -> Fetched:
    """Fetch the model, then the dataset; report each one's bytes as the attempt's stage.

    ``dataset_snapshotted``: an earlier attempt snapshotted the dataset, which later attempts train
    on (prepare checks it against the recorded hash), so it is not fetched again."""
    store = store or Store.from_env(sources.endpoint or "", sources.region)
    results: dict[str, FetchResult] = {}
    for what, source in (("model", sources.model), ("dataset", sources.dataset)):
        if source is None or (what == "dataset" and dataset_snapshotted):
            continue

        def progress(done: int, total: int, what: str = what) -> None:
            if reporter is not None:  # sent at most every report interval (the reporter's own limit)
                reporter.update("progress", {"attempt": attempt, "stage": stage_text(what, done, total)})
                reporter.tick()

        def waiting(what: str = what, source: RunSource = source) -> None:
            log.info("%s: another run is fetching into %s; waiting for its turn", source.field, source.directory)
            if reporter is not None:
                stage = f"Waiting for another run's fetch of the {what}"
                reporter.update("progress", {"attempt": attempt, "stage": stage}, force=True)
                reporter.flush()

        try:
            uri = S3Uri.parse(source.uri)
        except ValueError as exc:
            raise SourceError(exitcodes.EXIT_CONFIG, f"{source.field}: {exc}") from exc
        results[what] = fetch(
            store,
            uri,
            Path(source.directory),
            source.field,
            progress=progress,
            waiting=waiting,
            check=_checker(source),
            prune=what == "dataset",  # the run's own directory: only what the source holds is trained on
        )
        if reporter is not None:
            reporter.flush()
    return Fetched(results.get("model"), results.get("dataset"))
