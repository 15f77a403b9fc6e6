"""How long the standby operator takes to take over when the active one dies mid-batch.

Two replicas of `fluxlora operator` share a Lease on the local control plane;
a batch of runs is applied, the active replica exits right after creating the
batch's first Job (as if killed), and the benchmark measures, per trial:
the time until the standby holds the Lease, and until every run has its Job.
Prints a table; --json FILE for machines. `make bench-takeover`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from tests.cluster.controlplane import session_control_plane  # noqa: E402
from tests.operator.operator_helpers import Runs  # noqa: E402
from tests.operator.takeover import kill_active_mid_batch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="runs applied at once in each trial")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    trials: list[dict[str, Any]] = []
    with session_control_plane() as cp, tempfile.TemporaryDirectory() as tmp:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        for trial in range(args.trials):
            ns = f"takeover-{secrets.token_hex(3)}"
            cp.kubectl("create", "namespace", ns)
            cp.wait_for(
                "sa default", lambda ns=ns: cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0
            )
            for claim in ("flux-models", "datasets", "outputs"):
                cp.bound_claim(ns, claim)
            result, _, standby = kill_active_mid_batch(cp, Runs(cp, ns), Path(tmp) / str(trial), args.runs)
            standby.stop()
            twice = [n for n, jobs in result.jobs.items() if len(jobs) != 1]
            trials.append(
                {
                    "runs": len(result.runs),
                    "takeover_s": round(result.takeover_s, 2),
                    "death_to_all_jobs_s": round(result.death_to_all_jobs_s, 2),
                    "runs_without_exactly_one_job": len(twice),
                }
            )
            print(json.dumps(trials[-1]), flush=True)
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    takeover = [t["takeover_s"] for t in trials]
    all_jobs = [t["death_to_all_jobs_s"] for t in trials]
    print(f"\n{'trials':>8} {'runs':>5} {'takeover s (median / max)':>27} {'every Job s (median / max)':>28}")
    print(
        f"{len(trials):>8} {args.runs:>5} {statistics.median(takeover):>16.1f} / {max(takeover):<8.1f}"
        f" {statistics.median(all_jobs):>17.1f} / {max(all_jobs):<8.1f}"
    )
    print(
        "(the Lease lasts 15 s: a standby may take it 15 s after the last renewal, which is up to 5 s before the death)"
    )
    if args.json:
        args.json.write_text(json.dumps({"trials": trials}, indent=1))
    return 0 if all(t["runs_without_exactly_one_job"] == 0 for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
