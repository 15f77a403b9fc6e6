"""`fluxlora validate` on every document of the hostile-input corpus, one process each: prints numbers.

    .venv/bin/python benchmarks/validate_corpus.py [--memory-cap-mib 1024]

For each document (tests/cases.py, hostile_documents) it runs the real CLI in
its own process under an address-space cap and reports: documents tried,
rejected with a message naming the field, rejected as a file that is not a
readable run document (the message says why, with the line and column),
valid, wrongly accepted (the table says the API server refuses it, the CLI
said valid; tests/cluster/test_corpus_admission.py checks the table against
the real API server), disagreements with the table, tracebacks, and the
worst wall time and peak memory (max RSS) of one document, beside those of
the valid example (interpreter start-up included in both).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from tests.cases import Doc, hostile_documents  # noqa: E402

ERROR = re.compile(r"^.*?: error: (.+)$")
# What a file that cannot be read as documents is told (document.py, cli.py); anything else names a field.
FILE_LEVEL = re.compile(r"^(is |has |nests |expands |contains |uses |no FluxLoraRun|cannot read)")


def run_one(path: Path, cap: int) -> tuple[int, str, float, int, float]:
    """Exit code, output, wall seconds, max RSS (KiB), CPU seconds of `fluxlora validate path`."""

    def limit() -> None:  # runs in the child
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fluxlora.cli", "validate", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=limit,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource usage
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, out, time.perf_counter() - start, usage.ru_maxrss, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-cap-mib", type=int, default=1024)
    args = parser.parse_args()
    cap = args.memory_cap_mib * 1024 * 1024
    docs = hostile_documents()
    counts = dict.fromkeys(
        ("tried", "valid", "named a field", "file-level", "wrongly accepted", "disagree", "tracebacks"), 0
    )
    worst_time: tuple[float, str] = (0.0, "")
    worst_cpu: tuple[float, str] = (0.0, "")
    worst_rss: tuple[int, str] = (0, "")
    with tempfile.TemporaryDirectory() as directory:
        for doc in docs:
            path = Path(directory) / f"{doc.name}.yaml"
            path.write_bytes(doc.content)
            code, out, wall, rss, cpu = run_one(path, cap)
            counts["tried"] += 1
            if "Traceback" in out or "internal error" in out or code not in (0, 1):
                counts["tracebacks"] += 1
            errors = [m[1] for line in out.splitlines() if (m := ERROR.match(line))]
            if code == 0:
                counts["valid"] += 1
                if doc.admission:
                    counts["wrongly accepted"] += 1
            elif errors and not any(FILE_LEVEL.match(e) for e in errors):
                counts["named a field"] += 1
            elif errors:
                counts["file-level"] += 1
            if (code == 0) != doc.valid:
                counts["disagree"] += 1
                print(f"  disagrees with the table: {doc.name}: {out.strip()[:200]}")
            if wall > worst_time[0]:
                worst_time = (wall, doc.name)
            if cpu > worst_cpu[0]:
                worst_cpu = (cpu, doc.name)
            if rss > worst_rss[0]:
                worst_rss = (rss, doc.name)
        example = Path(directory) / "example.yaml"
        example.write_bytes(_valid(docs).content)
        _, _, example_time, example_rss, example_cpu = run_one(example, cap)
    for key, value in counts.items():
        print(f"{key:>18}: {value}")
    print(f"{'worst wall time':>18}: {worst_time[0]:.2f} s ({worst_time[1]}); the valid example: {example_time:.2f} s")
    print(f"{'worst CPU time':>18}: {worst_cpu[0]:.2f} s ({worst_cpu[1]}); the valid example: {example_cpu:.2f} s")
    print(
        f"{'worst max RSS':>18}: {worst_rss[0] / 1024:.0f} MiB ({worst_rss[1]}) under a {args.memory_cap_mib} MiB cap; "
        f"the valid example: {example_rss / 1024:.0f} MiB"
    )
    return 0


def _valid(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d.name == "example-fast")


if __name__ == "__main__":
    sys.exit(main())
