"""`fluxlora-trainer prepare|run` (the trainer image's entry point)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fluxlora.contract import logs, podenv
from fluxlora.contract.model import LIKENESS_THRESHOLD

from . import repro, termination
from .dataset import DatasetError
from .faces import FaceModelUnavailable
from .fetch import fetch_sources
from .gpu import Nvml
from .objectstore import SourceError, Store
from .prepare import prepare as do_prepare
from .publish import publish as do_publish
from .report import Reporter, RunApi, connect
from .runspec import DEFAULT_RUN_FILE, AttemptEnv, RunSpec, RunSpecError, attempt_env, load_run
from .runtime import Runtime, RuntimeOptions
from .scoring import report_text, score_folders

EXIT_NO_REFERENCE_FACE = 3
EXIT_SCORER_UNAVAILABLE = 4
DEFAULT_THRESHOLD = LIKENESS_THRESHOLD

log = logging.getLogger("fluxlora_trainer")


def _api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--run",
            "run_file",
            default=DEFAULT_RUN_FILE,
            show_default=True,
            envvar=podenv.RUN_FILE,
            help="The rendered run (run.json).",
        ),
        click.option(
            "--termination-log",
            default=None,
            envvar=podenv.TERMINATION_LOG,
            help=f"Where the one-line reason goes [default: {termination.DEFAULT_TERMINATION_LOG}].",
        ),
        click.option("--kubeconfig", default=None, help="Report through this kubeconfig (tests, local runs)."),
        click.option("--server", default=None, help="API server URL (with --token-file and --ca-file)."),
        click.option("--token-file", default=None, help="Bearer token file."),
        click.option("--ca-file", default=None, help="CA bundle of the API server."),
        click.option(
            "--insecure-skip-tls-verify",
            "insecure",
            is_flag=True,
            help="Do not verify the server's certificate.",
        ),
        click.option(
            "--report-interval",
            default=10.0,
            show_default=True,
            type=float,
            help="Minimum seconds between status patches.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _setup_logging() -> None:
    level = os.environ.get(podenv.LOG_LEVEL, "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        stream=sys.stderr,
        format="fluxlora-trainer %(levelname)s %(message)s",
    )
    if os.environ.get(podenv.LOG_FORMAT, "text") == "json":
        logs.use_json()


def _load(run_file: str, tlog: str | None, attempt: bool = True) -> tuple[RunSpec, AttemptEnv]:
    try:
        run = load_run(run_file)
        env = attempt_env() if attempt else AttemptEnv(0, "", 0, "")
        logs.set_for_process(namespace=run.run.namespace, run=run.run.name, attempt=env.attempt)
        return run, env
    except RunSpecError as exc:
        msg = termination.one_line(f"bad run configuration: {exc}")
        log.error("%s", msg)
        termination.write_termination(msg, termination.termination_log_path(tlog))
        sys.exit(termination.EXIT_CONFIG)


def _reporter(run: RunSpec, interval: float, **conn: Any) -> Reporter:
    sink: RunApi = connect(**conn)
    return Reporter(sink, run.run.namespace, run.run.name, min_interval=interval)


@click.group()
def main() -> None:
    """In-pod runtime of a FluxLoraRun: prepare the data, then run and report the training."""
    _setup_logging()


@main.command()
@_api_options
def fetch(
    run_file: str,
    termination_log: str | None,
    kubeconfig: str | None,
    server: str | None,
    token_file: str | None,
    ca_file: str | None,
    insecure: bool,
    report_interval: float,
) -> None:
    """Fill the model claim and the run's dataset directory from their s3:// sources (credentials: the
    environment's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)."""
    run, env = _load(run_file, termination_log)
    tlog = termination.termination_log_path(termination_log)
    if run.sources is None:
        termination.write_termination("nothing to fetch: the run has no s3:// source", tlog)
        return
    reporter = _reporter(
        run,
        report_interval,
        kubeconfig=kubeconfig,
        server=server,
        token_file=token_file,
        ca_file=ca_file,
        insecure=insecure,
    )
    snapshotted = env.attempt > 1 and repro.recorded_dataset_hash(run) is not None
    try:
        fetched = fetch_sources(run.sources, env.attempt, reporter, dataset_snapshotted=snapshotted)
    except SourceError as exc:
        msg = termination.one_line(exc.reason)
        log.error("%s", msg)
        reporter.update("progress", {"attempt": env.attempt, "stage": "Failed"}, force=True)
        reporter.flush()
        termination.write_termination(msg, tlog)
        sys.exit(exc.code)
    except Exception as exc:
        msg = termination.one_line(f"fetch failed: {type(exc).__name__}: {exc}")
        log.exception("%s", msg)
        termination.write_termination(msg, tlog)
        sys.exit(termination.EXIT_INTERNAL)
    done = {
        what: {
            "uri": source.uri,
            "attempt": env.attempt,
            "objects": r.objects,
            "bytes": r.bytes_total,
            "fetchedBytes": r.bytes_fetched,
            "seconds": round(r.seconds, 2),
            "contentKey": r.key,
        }
        for what, r, source in (
            ("model", fetched.model, run.sources.model),
            ("dataset", fetched.dataset, run.sources.dataset),
        )
        if r is not None and source is not None
    }
    if done:
        reporter.update("sources", done, force=True)
        reporter.flush()
    termination.write_termination(
        "fetched: " + ", ".join(f"{w} {d['fetchedBytes']} of {d['bytes']} bytes" for w, d in done.items()), tlog
    )
    click.echo(json.dumps(done))


@main.command()
@_api_options
@click.option(
    "--outcome",
    type=click.Choice(["succeeded", "failed"]),
    required=True,
    help="What the run's end was: succeeded (final LoRA, best checkpoint, repro/, samples) or failed "
    "(latest checkpoint, repro/).",
)
def publish(
    run_file: str,
    termination_log: str | None,
    kubeconfig: str | None,
    server: str | None,
    token_file: str | None,
    ca_file: str | None,
    insecure: bool,
    report_interval: float,
    outcome: str,
) -> None:
    """Upload a finished run's results to spec.output.publish; report status.publish."""
    run, _ = _load(run_file, termination_log, attempt=False)
    tlog = termination.termination_log_path(termination_log)
    sources = run.sources
    if sources is None or sources.publish is None:
        termination.write_termination("nothing to publish: the run has no spec.output.publish", tlog)
        return
    reporter = _reporter(
        run,
        report_interval,
        kubeconfig=kubeconfig,
        server=server,
        token_file=token_file,
        ca_file=ca_file,
        insecure=insecure,
    )
    state = {"uri": sources.publish, "outcome": outcome}
    reporter.update("publish", {**state, "state": "Uploading"}, force=True)
    reporter.flush()
    try:
        done = do_publish(run, sources.publish, outcome, Store.from_env(sources.endpoint or "", sources.region))
    except SourceError as exc:
        msg = termination.one_line(exc.reason)
        log.error("%s", msg)
        reporter.update("publish", {**state, "state": "Failed", "message": msg}, force=True)
        reporter.flush()
        termination.write_termination(msg, tlog)
        sys.exit(exc.code)
    except Exception as exc:
        msg = termination.one_line(f"publish failed: {type(exc).__name__}: {exc}")
        log.exception("%s", msg)
        reporter.update("publish", {**state, "state": "Failed", "message": msg}, force=True)
        reporter.flush()
        termination.write_termination(msg, tlog)
        sys.exit(termination.EXIT_INTERNAL)
    result = {**state, "state": "Published", "objects": done.uris, "bytes": done.bytes_total}
    result["seconds"] = round(done.seconds, 2)
    reporter.update("publish", result, force=True)
    reporter.flush()
    log.info(
        "published %d objects (%d bytes) to %s in %.1f s",
        len(done.uris),
        done.bytes_total,
        sources.publish,
        done.seconds,
    )
    termination.write_termination(f"published {len(done.uris)} objects to {sources.publish}", tlog)
    click.echo(json.dumps(result))


@main.command()
@_api_options
def prepare(
    run_file: str,
    termination_log: str | None,
    kubeconfig: str | None,
    server: str | None,
    token_file: str | None,
    ca_file: str | None,
    insecure: bool,
    report_interval: float,
) -> None:
    """Check and snapshot the dataset, hash it, write repro/ and report status.repro."""
    run, env = _load(run_file, termination_log)
    tlog = termination.termination_log_path(termination_log)
    reporter = _reporter(
        run,
        report_interval,
        kubeconfig=kubeconfig,
        server=server,
        token_file=token_file,
        ca_file=ca_file,
        insecure=insecure,
    )
    try:
        result = do_prepare(run, env, reporter=reporter, nvml=Nvml())
    except DatasetError as exc:
        msg = termination.one_line(exc.reason)
        log.error("%s", msg)
        termination.write_termination(msg, tlog)
        sys.exit(exc.code)
    except Exception as exc:
        msg = termination.one_line(f"prepare failed: {type(exc).__name__}: {exc}")
        log.exception("%s", msg)
        termination.write_termination(msg, tlog)
        sys.exit(termination.EXIT_INTERNAL)
    termination.write_termination(f"prepared: {result.images} images, dataset {result.dataset_hash}", tlog)
    click.echo(
        json.dumps(
            {
                "datasetHash": result.dataset_hash,
                "images": result.images,
                "reusedSnapshot": result.reused_snapshot,
            }
        )
    )


@main.command()
@_api_options
@click.option(
    "--engine-cmd",
    default=None,
    envvar=podenv.ENGINE_CMD,
    help="JSON list replacing the argv prefix up to and including flux_train_network.py.",
)
@click.option(
    "--tokenizer-dir",
    default=None,
    envvar=podenv.TOKENIZER_DIR,
    help="Directory with the CLIP-L and T5 tokenizers, replacing --tokenizer_cache_dir (local runs).",
)
@click.option(
    "--grace-seconds",
    default=25.0,
    show_default=True,
    type=float,
    help="After forwarding SIGTERM, wait this long before SIGKILL.",
)
@click.option("--gpu-interval", default=10.0, show_default=True, type=float, help="Seconds between GPU samples.")
def run(
    run_file: str,
    termination_log: str | None,
    kubeconfig: str | None,
    server: str | None,
    token_file: str | None,
    ca_file: str | None,
    insecure: bool,
    report_interval: float,
    engine_cmd: str | None,
    tokenizer_dir: str | None,
    grace_seconds: float,
    gpu_interval: float,
) -> None:
    """Launch the engine for this attempt, report progress, record the last complete state."""
    run_spec, env = _load(run_file, termination_log)
    tlog = termination.termination_log_path(termination_log)
    cmd: list[str] | None = None
    if engine_cmd:
        try:
            parsed = json.loads(engine_cmd)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--engine-cmd") from exc
        if not isinstance(parsed, list) or not parsed or not all(isinstance(x, str) for x in parsed):
            raise click.BadParameter("must be a non-empty JSON list of strings", param_hint="--engine-cmd")
        cmd = parsed
    reporter = _reporter(
        run_spec,
        report_interval,
        kubeconfig=kubeconfig,
        server=server,
        token_file=token_file,
        ca_file=ca_file,
        insecure=insecure,
    )
    opts = RuntimeOptions(
        engine_cmd=cmd,
        tokenizer_dir=tokenizer_dir,
        grace_seconds=grace_seconds,
        gpu_interval=gpu_interval,
        passthrough_out=sys.stdout.buffer,
        passthrough_err=sys.stderr.buffer,
    )
    try:
        outcome = Runtime(run_spec, env, reporter, options=opts).execute()
    except Exception as exc:
        msg = termination.one_line(f"runtime failed: {type(exc).__name__}: {exc}")
        log.exception("%s", msg)
        termination.write_termination(msg, tlog)
        sys.exit(termination.EXIT_INTERNAL)
    log.info("%s", outcome.message)
    termination.write_termination(outcome.message, tlog)
    sys.exit(outcome.exit_code)


@main.command()
@click.option(
    "--reference",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Images of the person (a dataset): those with exactly one face are the reference.",
)
@click.option(
    "--samples",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Images to score (a checkpoint's samples).",
)
@click.option(
    "--threshold",
    default=DEFAULT_THRESHOLD,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Likeness under which a face is not the person.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def likeness(reference: Path, samples: Path, threshold: float, as_json: bool) -> None:
    """Likeness of the faces in --samples to the faces in --reference: the scorer a run uses at each checkpoint.

    Exit 0 with a score (or "no face" when no sample has one); 3 when no reference image has exactly
    one face; 4 when the face scorer cannot run (dlib-bin or face-recognition-models missing).
    """
    try:
        report = score_folders(reference, samples, threshold)
    except FaceModelUnavailable as exc:
        click.echo(f"fluxlora-trainer likeness: {exc}", err=True)
        sys.exit(EXIT_SCORER_UNAVAILABLE)
    click.echo(json.dumps(report, indent=1) if as_json else report_text(report), nl=as_json)
    if report["reference"]["problem"]:
        sys.exit(EXIT_NO_REFERENCE_FACE)


if __name__ == "__main__":  # pragma: no cover
    main()
