"""Where things are inside the trainer pod: mounts, the run's directories.

Shared by the rendered command (sdscripts.py), the Job (manifests.py) and the
in-pod runtime (fluxlora_trainer), so a path is defined once.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

# Mount points of the trainer pod.
RUN_MOUNT = "/fluxlora/run"  # ConfigMap with the rendered run (read-only)
MODELS_MOUNT = "/fluxlora/models"  # model claim (read-only)
DATASET_MOUNT = "/fluxlora/dataset"  # dataset claim (read-only)
OUTPUT_MOUNT = "/fluxlora/output"  # output claim (read-write)
SHM_MOUNT = "/dev/shm"  # noqa: S108 - a mount point in the pod, not a temp file
TMP_MOUNT = "/tmp"  # noqa: S108 - a writable emptyDir in the pod

RUN_FILE = f"{RUN_MOUNT}/run.json"
DATASET_CONFIG = f"{RUN_MOUNT}/dataset.toml"
SAMPLE_PROMPTS = f"{RUN_MOUNT}/sample_prompts.json"  # the engine picks the format by the extension

# Inside the trainer image (trainer-image/Dockerfile).
SD_SCRIPTS_DIR = "/opt/sd-scripts"
TOKENIZER_CACHE_DIR = "/opt/fluxlora/tokenizers"

# Where an s3:// dataset is fetched to, inside the run's output directory (then snapshotted as a claim's).
FETCHED_DATASET = "fetched-dataset"

# Keys of the run ConfigMap.
RUN_JSON_KEY = "run.json"
DATASET_TOML_KEY = "dataset.toml"
SAMPLE_PROMPTS_KEY = "sample_prompts.json"


def _join(root: str, relative: str) -> str:
    joined = posixpath.normpath(posixpath.join(root, relative))
    # Paths are checked to be relative without '..' (rules.py); this is the last guard.
    if joined != root and not joined.startswith(root + "/"):
        raise ValueError(f"{relative!r} escapes {root}")
    return joined


@dataclass(frozen=True)
class RunLayout:
    """Directories of one run inside the pod."""

    output_dir: str
    dataset_source: str

    @classmethod
    def of(cls, output_path: str, dataset_path: str | None) -> RunLayout:
        """From the run's paths inside the output and dataset claims (no dataset path: an s3:// dataset,
        fetched into the run's directory)."""
        output_dir = _join(OUTPUT_MOUNT, output_path)
        source = _join(DATASET_MOUNT, dataset_path) if dataset_path is not None else f"{output_dir}/{FETCHED_DATASET}"
        return cls(output_dir=output_dir, dataset_source=source)

    @property
    def checkpoint_dir(self) -> str:
        return f"{self.output_dir}/checkpoints"

    @property
    def repro_dir(self) -> str:
        return f"{self.output_dir}/repro"

    @property
    def logging_dir(self) -> str:
        return f"{self.output_dir}/logs"

    @property
    def dataset_snapshot(self) -> str:
        return f"{self.output_dir}/dataset"

    @staticmethod
    def model_file(relative: str) -> str:
        return _join(MODELS_MOUNT, relative)

    def as_dict(self) -> dict[str, str]:
        return {
            "outputClaimRoot": OUTPUT_MOUNT,
            "outputDir": self.output_dir,
            "checkpointDir": self.checkpoint_dir,
            "reproDir": self.repro_dir,
            "loggingDir": self.logging_dir,
            "datasetSource": self.dataset_source,
            "datasetSnapshot": self.dataset_snapshot,
        }
