"""Files written whole or not at all: written (or copied) to ``<name>.partial`` beside the target, then
renamed over it, so a reader (the engine, a later attempt, the operator's user) never sees half a file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# The suffix of a file being written; whatever lists a directory skips such names.
PARTIAL = ".partial"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``<path>.partial``."""
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy ``src``'s bytes to ``dst`` through ``<dst>.partial``."""
    tmp = dst.with_name(dst.name + PARTIAL)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
