"""`fluxlora` command line: render, validate, crd, operator.

Whatever the input, the command ends with one line per problem, never a
traceback: files are read within document.py's limits, each error names the
field (or the line and column of the YAML), and a bug that escapes anyway is
reported as one "internal error" line with exit code 2.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from fluxlora import api
from fluxlora.api import crd as crd_module
from fluxlora.api import document
from fluxlora.contract import logs
from fluxlora.spec import sdscripts
from fluxlora.spec.policy import Policy, PolicyError
from fluxlora.spec.profiles import ProfileError, ProfileSet
from fluxlora.spec.render import DEFAULT_TRAINER_IMAGE, RenderedRun, render
from fluxlora.spec.rules import Evaluation, Finding, evaluate

profiles_dir_option = click.option(
    "--profiles-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of extra profiles (flux_<name>.toml) beside the built-in ones.",
)
policy_option = click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The operator's policy file (the chart's `policy:` values); default: the chart's default policy.",
)


@dataclass(frozen=True)
class Source:
    """One document of a file, and how messages name it."""

    label: str
    data: Any


def _is_run(data: Any) -> bool:
    """Documents fluxlora checks: FluxLoraRuns, and anything that does not say what else it is."""
    if not isinstance(data, dict):
        return True
    kind, version = data.get("kind"), data.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(version, str) or not kind or not version or kind == api.KIND:
        return True  # validation names the malformed field
    return version.split("/")[0] == api.GROUP


class FileError(click.ClickException):
    """A file that cannot be read as run documents: `<path>: error: <why>`."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: error: {why}")

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(document.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise FileError(path, f"cannot read it: {exc.strerror or exc}") from None


def _documents(path: Path) -> list[Source]:
    """The file's run documents; a file that cannot be read raises FileError (one line)."""
    try:
        docs = list(document.load_documents(_read(path)))
    except document.DocumentError as exc:
        raise FileError(path, str(exc)) from None
    runs = [(i, d) for i, d in enumerate(docs, 1) if _is_run(d)]
    if not runs:
        raise FileError(path, "no FluxLoraRun document found")
    return [Source(f"{path} (document {n})" if len(docs) > 1 else str(path), data) for n, data in runs]


def _profiles(profiles_dir: Path | None) -> ProfileSet:
    try:
        return ProfileSet.load(profiles_dir)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


def _policy(policy_file: Path | None) -> Policy:
    try:
        return Policy.load(policy_file) if policy_file else Policy()
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None


class _Main(click.Group):
    """The command group; an unexpected exception is one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except MemoryError:
            click.echo("fluxlora: error: out of memory", err=True)
            sys.exit(2)
        except Exception as exc:  # the last guard: say what broke in one line
            text = " ".join(str(exc).split())[:200]
            click.echo(f"fluxlora: internal error: {type(exc).__name__}: {text}", err=True)
            sys.exit(2)


@click.group(cls=_Main)
@click.version_option(package_name="fluxlora")
def main() -> None:
    """Run FLUX.1 LoRA fine-tuning (kohya-ss sd-scripts) as Kubernetes GPU Jobs."""


def _render_output(rendered: RenderedRun) -> dict[str, Any]:
    return {
        "argv": rendered.argv,
        "datasetConfig": rendered.dataset_toml,
        "manifests": rendered.children(1, rendered.first_resume),
        "effectiveConfig": rendered.config.model_dump(mode="json"),
        "configHash": rendered.config_hash,
        "warnings": [w.as_dict() for w in rendered.warnings],
    }


def _say(label: str, severity: str, finding: Finding) -> None:
    click.echo(f"{label}: {severity}: {finding.message}", err=True)


@main.command("render")
@click.argument("run_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "fmt", type=click.Choice(["json", "yaml", "command"]), default="yaml", show_default=True
)
@click.option("--image", default=DEFAULT_TRAINER_IMAGE, show_default=True, help="Trainer image for the Job.")
@profiles_dir_option
@policy_option
def render_command(run_file: Path, fmt: str, image: str, profiles_dir: Path | None, policy_file: Path | None) -> None:
    """Print the engine command, dataset config and Kubernetes objects of a run (offline)."""
    profiles = _profiles(profiles_dir)
    policy = _policy(policy_file)
    outputs = []
    for source in _documents(run_file):
        evaluation = evaluate(source.data, profiles, policy, image)
        if not evaluation.ok or evaluation.run is None or evaluation.config is None:
            for error in evaluation.errors:
                _say(source.label, "error", error)
            sys.exit(1)
        outputs.append((source, render(evaluation.run, evaluation.config, evaluation.warnings, image, policy)))
    for source, rendered in outputs:
        for warning in rendered.warnings:
            _say(source.label, "warning", warning)
        if fmt == "json":
            click.echo(json.dumps(_render_output(rendered), indent=2))
        elif fmt == "yaml":
            click.echo(yaml.safe_dump(_render_output(rendered), sort_keys=False, width=120), nl=False)
        else:
            click.echo(sdscripts.shell_command(rendered.argv))


@main.command("validate")
@click.argument("run_files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--image", default=DEFAULT_TRAINER_IMAGE, show_default=True, help="The operator's trainer image.")
@profiles_dir_option
@policy_option
def validate_command(
    run_files: tuple[Path, ...], image: str, profiles_dir: Path | None, policy_file: Path | None
) -> None:
    """Exit 0 when every run is valid (warnings printed), 1 with one line per error.

    A run is checked as the API server stores it and as the operator reads it
    with its policy (`--policy`, `--image`): types, bounds, names, profiles and
    the rules across fields.
    """
    profiles = _profiles(profiles_dir)
    policy = _policy(policy_file)
    failed = False
    for path in run_files:
        try:
            sources = _documents(path)
        except FileError as exc:
            exc.show()
            failed = True
            continue
        for source in sources:
            evaluation: Evaluation = evaluate(source.data, profiles, policy, image)
            for warning in evaluation.warnings:
                _say(source.label, "warning", warning)
            if evaluation.ok:
                click.echo(f"{source.label}: valid")
            else:
                failed = True
                for error in evaluation.errors:
                    _say(source.label, "error", error)
    sys.exit(1 if failed else 0)


@main.command("crd")
@click.option(
    "--kind",
    type=click.Choice(["FluxLoraRun", "FluxLoraSampleSet"]),
    default="FluxLoraRun",
    show_default=True,
    help="Which of the two CRDs to print.",
)
def crd_command(kind: str) -> None:
    """Print a CustomResourceDefinition generated from the models."""
    click.echo(crd_module.crd_yaml() if kind == "FluxLoraRun" else crd_module.sampleset_crd_yaml(), nl=False)


@main.command("reference")
def reference_command() -> None:
    """Print the field reference (Markdown) generated from the schema."""
    click.echo(crd_module.field_reference(), nl=False)


@main.command("profiles")
@profiles_dir_option
def profiles_command(profiles_dir: Path | None) -> None:
    """List the profiles a run can name, with their source file."""
    for name, profile in sorted(_profiles(profiles_dir).profiles.items()):
        click.echo(f"{name}\t{profile.source}")


# What `fluxlora operator` and `fluxlora dashboard` import beyond the core (the `operator` extra).
OPERATOR_PACKAGES = ("kopf", "kubernetes", "aiohttp", "prometheus_client")


def _operator_packages(command: str) -> None:
    """Say which package is missing, and how to install it, instead of an ImportError's traceback."""
    import importlib

    for name in OPERATOR_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise click.ClickException(
                f"`fluxlora {command}` needs the operator's packages ({name} is not installed: {exc}); "
                "install them with: pip install 'fluxlora[operator]'"
            ) from exc


def _lease(value: str, identity: str) -> Any:
    from fluxlora.controller.handlers import LeaseConfig

    if not value:
        return None
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise click.BadParameter(f"{value!r}: give NAMESPACE/NAME", param_hint="--lease")
    return LeaseConfig(namespace, name, identity)


@main.command("operator")
@click.option("--namespace", "namespaces", multiple=True, help="Namespace to watch (repeatable).")
@click.option("--all-namespaces", is_flag=True, help="Watch every namespace.")
@click.option("--trainer-image", default=DEFAULT_TRAINER_IMAGE, show_default=True, help="Default trainer image.")
@profiles_dir_option
@policy_option
@click.option(
    "--liveness",
    default="http://0.0.0.0:8080/healthz",
    show_default=True,
    help="Liveness endpoint URL (kopf's: 200 while the operator's event loop runs); empty to disable.",
)
@click.option(
    "--readiness",
    default="",
    help=(
        "Readiness endpoint URL, e.g. http://0.0.0.0:8081/readyz: 503 until kopf's startup handlers have "
        "finished (configuration loaded, workers running), 200 after; empty (the default) to disable."
    ),
)
@click.option(
    "--resync-interval",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds between re-reads of unfinished runs (safety net for missed events); 0 disables.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9090",
    show_default=True,
    help="HOST:PORT to serve Prometheus /metrics on; empty to disable.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object a line, with namespace, run and attempt where a line is about one.",
)
@click.option(
    "--lease",
    default="",
    help=(
        "NAMESPACE/NAME of a coordination.k8s.io Lease: run as one of several replicas, active only while "
        "holding it. Empty: the only replica, always active."
    ),
)
@click.option(
    "--identity",
    default=lambda: os.environ.get("POD_NAME") or socket.gethostname(),
    show_default="$POD_NAME, else the host name",
    help="This replica's name in the Lease.",
)
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator_command(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    trainer_image: str,
    profiles_dir: Path | None,
    policy_file: Path | None,
    liveness: str,
    readiness: str,
    resync_interval: float,
    metrics_address: str,
    log_format: str,
    lease: str,
    identity: str,
    verbose: bool,
) -> None:
    """Run the operator (kopf): reconcile FluxLoraRuns into GPU Jobs. Kubeconfig or in-cluster login."""
    _operator_packages("operator")
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace (one or more) or --all-namespaces")
    import threading

    import kopf

    from fluxlora.controller import handlers, probes

    ready = threading.Event()  # kopf raises it once every startup handler has finished
    try:
        readiness_server = probes.ReadinessServer(readiness, ready) if readiness else None
    except (ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--readiness") from exc
    handlers.configure(
        _profiles(profiles_dir),
        trainer_image,
        list(namespaces) or None,
        resync_interval,
        _policy(policy_file),
        log_format,
        _lease(lease, identity),
    )
    kopf.configure(verbose=verbose)
    if log_format == "json":
        logs.use_json()
    if metrics_address:
        from fluxlora.controller import metrics

        try:
            metrics.serve(metrics_address)
        except (OSError, ValueError) as exc:
            raise click.ClickException(
                f"cannot serve metrics on {metrics_address!r} (--metrics-address): {exc}"
            ) from exc
    if readiness_server is not None:
        readiness_server.start()
    kopf.run(
        standalone=True,
        clusterwide=all_namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness or None,
        ready_flag=ready,
    )


@main.command("dashboard")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port (0: any free).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 in a pod).")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Namespace whose runs to show (repeatable). Default: every namespace (needs cluster-wide read access).",
)
@click.option("--kubeconfig", default=None, help="Kubeconfig file. Default: in-cluster, else $KUBECONFIG or ~/.kube.")
@click.option("--context", default=None, help="Kubeconfig context. Default: the current one.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def dashboard_command(
    port: int, host: str, namespaces: tuple[str, ...], kubeconfig: str | None, context: str | None, verbose: bool
) -> None:
    """Serve a read-only web page of the runs: progress, loss curve, GPU, samples (live, from watches)."""
    _operator_packages("dashboard")
    import logging
    import threading

    from fluxlora.dashboard import app, watch
    from fluxlora.dashboard.store import Store

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="fluxlora-dashboard %(message)s")
    try:
        client = watch.load_client(kubeconfig, context)
    except Exception as exc:
        raise click.ClickException(f"cannot reach a cluster: {exc}") from exc
    store = Store()
    watch.start(client, list(namespaces) or None, store, threading.Event())
    scope = ", ".join(namespaces) if namespaces else "every namespace"

    def announce(url: str) -> None:
        click.echo(f"fluxlora dashboard: {url} (runs in {scope}; read-only)", err=False)
        sys.stdout.flush()

    app.serve(store, host, port, announce)


if __name__ == "__main__":
    main()
