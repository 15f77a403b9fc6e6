"""The engine's identity: the repository, the pinned commit and the training script of sd-scripts.

The operator renders the command from its parser at this commit (spec/sdscripts.py); the trainer
image installs this commit and the trainer finds the script in the rendered argv."""

from __future__ import annotations

ENGINE_REPO = "https://github.com/kohya-ss/sd-scripts"
ENGINE_COMMIT = "48d368fa557731ad0488c07304dfeba8c07910eb"
ENGINE_SCRIPT = "flux_train_network.py"

# train_util.IMAGE_EXTENSIONS at ENGINE_COMMIT (tests/engine checks it): the engine globs each,
# case-sensitively. The trainer's dataset check and the caption-extension rule share it.
ENGINE_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".PNG", ".JPG", ".JPEG", ".WEBP", ".BMP")
IMAGE_EXTENSIONS = frozenset(e.lower() for e in ENGINE_IMAGE_EXTENSIONS)
