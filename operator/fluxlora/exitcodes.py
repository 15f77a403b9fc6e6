"""Exit codes of the trainer pod's containers: the contract between the trainer
(fluxlora_trainer, which exits with them) and the operator (status.py, which
decides from them whether a retry can help).

0 success; 1 unexpected error; 2 bad run.json / environment; 10-19 dataset
problems (prepare); 20-29 training problems (run); 143 terminated by SIGTERM.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_DATASET_MISSING = 10
EXIT_DATASET_EMPTY = 11
EXIT_DATASET_UNSUPPORTED = 12
EXIT_DATASET_CAPTIONS = 13
EXIT_DATASET_UNREADABLE = 14
EXIT_SNAPSHOT = 15
EXIT_SNAPSHOT_MISMATCH = 16
EXIT_REPRO = 17
EXIT_ENGINE_FAILED = 20
EXIT_ENGINE_START = 21
EXIT_RESUME_STATE = 22
EXIT_ENGINE_INCOMPLETE = 23  # the engine exited 0 short of maxTrainSteps or without the final LoRA
EXIT_TERMINATED = 143

# Failures no retry can fix, by the reason the run reports.
NOT_RETRYABLE: dict[range, str] = {
    range(EXIT_CONFIG, EXIT_CONFIG + 1): "ConfigError",  # bad run.json / environment
    range(10, 20): "DataError",  # dataset missing, empty, unreadable, changed
    range(EXIT_RESUME_STATE, EXIT_RESUME_STATE + 1): "ResumeError",  # the resume state is unusable
    # The engine ran to its end without training the run (it saw no images, or printed help):
    # the same inputs end the same way again.
    range(EXIT_ENGINE_INCOMPLETE, EXIT_ENGINE_INCOMPLETE + 1): "IncompleteTraining",
}
