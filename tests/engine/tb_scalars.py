"""Print one scalar of the engine's TensorBoard logs as JSON, one list per engine process.

    <engine>/venv/bin/python tests/engine/tb_scalars.py LOGGING_DIR TAG

The engine writes `<LOGGING_DIR>/<start time>/network_train/events.out.tfevents.*` per process,
with its own step numbers (a resumed attempt counts from 0 again). Output, oldest process
first: `[[[step, value], ...], ...]`, read with TensorBoard's own reader; a later value for a
step replaces an earlier one (the engine logs once per micro-batch, the step's last is kept).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(logging_dir: str, tag: str) -> int:
    runs = []
    for events in sorted(Path(logging_dir).rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        values: dict[int, float] = {}
        if tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                values[event.step] = event.value
        runs.append(sorted(values.items()))
    print(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
