"""`fluxlora-trainer prepare`: repro files, status.repro, failures with exit code and reason."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fluxlora_trainer import termination
from fluxlora_trainer.cli import main
from fluxlora_trainer.dataset import DatasetError, dataset_hash
from fluxlora_trainer.gpu import Nvml
from fluxlora_trainer.prepare import prepare
from fluxlora_trainer.report import Reporter
from fluxlora_trainer.repro import REPRO_FILES
from fluxlora_trainer.runspec import AttemptEnv, load_run

from tests.trainer.trainer_helpers import RecordingSink, RunFixture

ENV1 = AttemptEnv(attempt=1, resume_checkpoint="", resume_step=0, image="registry.example/fluxlora-trainer:0.1.0")


class NoGpu:
    def nvmlInit(self) -> None:
        raise RuntimeError("no driver")


def test_repro_files_complete_and_correct(make_run, sink: RecordingSink) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run()
    run = fx.spec
    rep = Reporter(sink, "team-a", "demo")
    res = prepare(run, ENV1, reporter=rep, nvml=Nvml(NoGpu()), freeze="click==8.1\n", wall=1767225600.0)
    d = run.layout.repro_dir
    assert sorted(p.name for p in d.iterdir()) == sorted(REPRO_FILES)
    assert shlex.split((d / "command.txt").read_text()) == run.argv
    assert json.loads((d / "effective_config.json").read_text()) == run.effective_config
    assert (d / "pip_freeze.txt").read_text() == "click==8.1\n"
    assert (d / "dataset_hash.txt").read_text().strip() == res.dataset_hash == dataset_hash(run.layout.dataset_snapshot)
    rec = json.loads((d / "repro.json").read_text())
    assert rec["image"] == ENV1.image and rec["engineCommit"] == run.engine_commit
    assert rec["configHash"] == run.config_hash and rec["datasetHash"] == res.dataset_hash
    assert rec["gpu"] == {"available": False, "reason": "NVML unavailable: RuntimeError: no driver"}
    assert rec["software"]["python"].count(".") == 2 and "torch" in rec["software"]
    assert rec["startedAt"] == "2026-01-01T00:00:00Z" and rec["datasetImages"] == 4
    assert rec["argv"] == run.argv
    assert sink.of("repro") == [
        {
            "command": shlex.join(run.argv),
            "configHash": run.config_hash,
            "datasetHash": res.dataset_hash,
            "image": ENV1.image,
            "engineCommit": run.engine_commit,
        }
    ]
    assert sorted(p.name for p in run.layout.dataset_snapshot.iterdir()) == sorted(p.name for p in fx.source.iterdir())


def test_later_attempt_reuses_the_snapshot_and_keeps_the_record(make_run) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run()
    run = fx.spec
    first = prepare(run, ENV1, nvml=Nvml(NoGpu()), freeze="")
    (run.layout.dataset_snapshot / "img000_flux_te.npz").write_bytes(b"engine cache")
    before = (run.layout.repro_dir / "repro.json").read_text()
    env2 = AttemptEnv(attempt=2, resume_checkpoint="", resume_step=0, image=ENV1.image)
    second = prepare(run, env2, nvml=Nvml(NoGpu()), freeze="")
    assert second.reused_snapshot and second.dataset_hash == first.dataset_hash
    assert (run.layout.repro_dir / "repro.json").read_text() == before
    assert json.loads((run.layout.repro_dir / "attempt-2.json").read_text())["attempt"] == 2
    # the source changed and the snapshot is gone: a resumed run must not silently train other data
    (fx.source / "img000.txt").write_text("changed")
    for p in run.layout.dataset_snapshot.iterdir():
        p.unlink()
    with pytest.raises(DatasetError) as err:
        prepare(run, env2, nvml=Nvml(NoGpu()), freeze="")
    assert err.value.code == termination.EXIT_DATASET_CHANGED and "changed since the run started" in err.value.reason


@pytest.mark.parametrize(
    ("mutate", "code", "needle"),
    [
        ("nocaptions", termination.EXIT_DATASET_CAPTIONS, "have no caption"),
        ("nodata", termination.EXIT_DATASET_MISSING, "does not exist"),
        ("badrun", termination.EXIT_CONFIG, "bad run configuration"),
    ],
)
def test_cli_failures_write_the_reason(
    make_run,
    tmp_path: Path,
    mutate: str,
    code: int,  # type: ignore[no-untyped-def]
    needle: str,
) -> None:
    fx: RunFixture = make_run(captions=mutate != "nocaptions")
    if mutate == "nodata":
        fx.data["layout"]["datasetSource"] = str(tmp_path / "nowhere")
        fx.write()
    if mutate == "badrun":
        del fx.data["maxTrainSteps"]
        fx.write()
    tlog = tmp_path / "termination-log"
    result = CliRunner().invoke(
        main,
        ["prepare", "--run", str(fx.run_file), "--termination-log", str(tlog)],
        env={"FLUXLORA_ATTEMPT": "1", "KUBERNETES_SERVICE_HOST": ""},
    )
    assert result.exit_code == code, result.output
    msg = tlog.read_text()
    assert needle in msg and "\n" not in msg


def test_cli_prepare_subprocess_ok(make_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fx: RunFixture = make_run(captions=False, trigger="ohwx person")
    tlog = tmp_path / "tlog"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxlora_trainer.cli",
            "prepare",
            "--run",
            str(fx.run_file),
            "--termination-log",
            str(tlog),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "FLUXLORA_IMAGE": "img:1", "FLUXLORA_ATTEMPT": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    run = load_run(fx.run_file)
    assert out["images"] == 4 and out["datasetHash"] == dataset_hash(run.layout.dataset_snapshot)
    assert "prepared: 4 images" in tlog.read_text()
    assert (
        "pip" in (run.layout.repro_dir / "pip_freeze.txt").read_text()
        or (run.layout.repro_dir / "pip_freeze.txt").read_text().strip()
    )


def test_json_logs_name_the_run_and_attempt(make_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # FLUXLORA_LOG_FORMAT=json is what the operator sets on trainer pods under --log-format json.
    fx: RunFixture = make_run(captions=False, trigger="ohwx person")
    proc = subprocess.run(
        [sys.executable, "-m", "fluxlora_trainer.cli", "prepare", "--run", str(fx.run_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "FLUXLORA_ATTEMPT": "3", "FLUXLORA_LOG_FORMAT": "json", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    run = load_run(fx.run_file)
    assert lines and all(
        (line["namespace"], line["run"], line["attempt"]) == (run.run.namespace, run.run.name, 3) for line in lines
    )
