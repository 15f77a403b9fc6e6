"""A long-lived `fluxlora validate` for the fuzz test, under a memory cap.

Reads one request per line on stdin ({"content": base64}), runs the real CLI
entry point (fluxlora.cli.main, as the console script does) on a file with
those bytes, and answers one line: {"code", "stdout", "stderr", "crash"}.
"crash" is a traceback that escaped the CLI, which the test forbids.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import resource
import sys
import tempfile
import traceback
from pathlib import Path

from fluxlora.cli import main

MEMORY_CAP = int(sys.argv[1]) if len(sys.argv) > 1 else 1024 * 1024 * 1024


def run(path: Path) -> dict[str, object]:
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    crash = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["validate", str(path)], prog_name="fluxlora")
        except SystemExit as exc:
            code = exc.code
        except BaseException:  # what must never happen
            crash = traceback.format_exc()
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "crash": crash}


def serve() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "run.yaml"
        for line in sys.stdin:
            path.write_bytes(base64.b64decode(json.loads(line)["content"]))
            sys.stdout.write(json.dumps(run(path)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    serve()
