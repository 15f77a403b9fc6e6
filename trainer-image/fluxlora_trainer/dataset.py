"""Dataset check, per-run snapshot and content hash.

What is trained: the image files directly in the dataset directory (the engine does not
recurse into sub-directories) and, for each, its caption file `<stem><caption_extension>`.
That set is what gets copied into the snapshot and hashed. Engine cache files
(`*_flux.npz`, `*_flux_te.npz`) are never copied or hashed: the engine writes them next to
the snapshot's images during training.

Hash: sha256 over, for each file in sorted relative-path order, the UTF-8 path, a NUL, the
size in decimal, a NUL and the file's own sha256 digest. Any changed byte, rename, added or
removed file changes it. Written as `sha256:<hex>`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import engine, termination

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp"})
# Image types a user may expect to be trained but the engine's loader does not take.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".svg", ".raw", ".cr2", ".nef", ".psd"}
)
_CHUNK = 1 << 20


class DatasetError(Exception):
    """A dataset problem with its exit code and one-line reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class DatasetReport:
    images: list[str]  # relative names, sorted
    captions: list[str]  # caption files that belong to an image, sorted
    uncaptioned: list[str]  # images without a non-empty caption (trigger word used)
    ignored: list[str] = field(default_factory=list)  # other files and sub-directories

    @property
    def files(self) -> list[str]:
        return sorted([*self.images, *self.captions])


def is_cache_file(name: str) -> bool:
    return name.endswith(engine.CACHE_SUFFIXES)


def _list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_dataset(source: Path, caption_extension: str = ".txt", trigger_word: str | None = None) -> DatasetReport:
    """Check the dataset directory; raise DatasetError with a specific code and reason."""
    if not source.exists():
        raise DatasetError(termination.EXIT_DATASET_MISSING, f"dataset directory {source} does not exist")
    if not source.is_dir():
        raise DatasetError(termination.EXIT_DATASET_MISSING, f"dataset path {source} is not a directory")
    try:
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(
            termination.EXIT_DATASET_UNREADABLE, f"cannot list dataset directory {source}: {exc.strerror}"
        ) from exc

    cap_ext = caption_extension if caption_extension.startswith(".") else "." + caption_extension
    files = {e.name: e for e in entries if e.is_file(follow_symlinks=True)}
    images: list[str] = []
    unsupported: list[str] = []
    ignored: list[str] = [e.name + "/" for e in entries if e.is_dir(follow_symlinks=True)]
    for name in files:
        if name.startswith(".") or is_cache_file(name):
            continue
        ext = os.path.splitext(name)[1].lower()
        if ext in IMAGE_EXTENSIONS:
            images.append(name)
        elif ext in UNSUPPORTED_IMAGE_EXTENSIONS:
            unsupported.append(name)
    if unsupported:
        raise DatasetError(
            termination.EXIT_DATASET_UNSUPPORTED,
            f"unsupported image type in {source}: {_list(unsupported)} "
            f"(supported: {', '.join(sorted(IMAGE_EXTENSIONS))})",
        )
    if not images:
        raise DatasetError(
            termination.EXIT_DATASET_EMPTY,
            f"no images in {source} (supported: {', '.join(sorted(IMAGE_EXTENSIONS))}; sub-directories are not read)",
        )
    empty = [n for n in images if files[n].stat().st_size == 0]
    if empty:
        raise DatasetError(termination.EXIT_DATASET_UNREADABLE, f"empty image file(s): {_list(empty)}")
    unreadable = [n for n in images if not os.access(files[n].path, os.R_OK)]
    if unreadable:
        raise DatasetError(termination.EXIT_DATASET_UNREADABLE, f"unreadable image file(s): {_list(unreadable)}")

    captions: list[str] = []
    uncaptioned: list[str] = []
    for name in images:
        cap = os.path.splitext(name)[0] + cap_ext
        entry = files.get(cap)
        if entry is None:
            uncaptioned.append(name)
            continue
        captions.append(cap)
        try:
            text = Path(entry.path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise DatasetError(
                termination.EXIT_DATASET_UNREADABLE, f"unreadable caption {cap}: {exc.strerror}"
            ) from exc
        if not text.strip():
            uncaptioned.append(name)
    if uncaptioned and not (trigger_word and trigger_word.strip()):
        raise DatasetError(
            termination.EXIT_DATASET_CAPTIONS,
            f"{len(uncaptioned)} of {len(images)} images have no caption ({cap_ext}) and no triggerWord "
            f"is set: {_list(uncaptioned)}",
        )
    used = set(images) | set(captions)
    ignored += [n for n in files if n not in used and not is_cache_file(n)]
    return DatasetReport(
        images=sorted(images),
        captions=sorted(captions),
        uncaptioned=sorted(uncaptioned),
        ignored=sorted(ignored),
    )


def file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def hash_files(root: Path, relative_names: list[str]) -> str:
    """The dataset hash of the given files under root (see the module docstring)."""
    h = hashlib.sha256()
    for rel in sorted(relative_names):
        p = root / rel
        h.update(rel.encode("utf-8"))
        h.update(b"\0")
        h.update(str(p.stat().st_size).encode("ascii"))
        h.update(b"\0")
        h.update(file_digest(p))
    return "sha256:" + h.hexdigest()


def trained_files(directory: Path) -> list[str]:
    """Files of a directory that belong to the hash: regular top-level files, not caches."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    return sorted(
        e.name
        for e in entries
        if e.is_file(follow_symlinks=True)
        and not e.name.startswith(".")
        and not is_cache_file(e.name)
        and not e.name.endswith(".partial")
    )


def dataset_hash(directory: Path) -> str:
    """Hash of a snapshot directory (all its trained files)."""
    return hash_files(directory, trained_files(directory))


def snapshot(source: Path, report: DatasetReport, destination: Path) -> str:
    """Copy the checked files into destination and return the snapshot's hash.

    Existing snapshot files that are not part of the dataset (except engine caches) are removed,
    so the snapshot holds exactly what is hashed. Copies go through `<name>.partial` + rename.
    """
    try:
        destination.mkdir(parents=True, exist_ok=True)
        wanted = set(report.files)
        for name in trained_files(destination):
            if name not in wanted:
                (destination / name).unlink()
        for name in report.files:
            src, dst = source / name, destination / name
            if dst.exists() and dst.stat().st_size == src.stat().st_size and file_digest(dst) == file_digest(src):
                continue
            tmp = destination / (name + ".partial")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    except OSError as exc:
        raise DatasetError(
            termination.EXIT_SNAPSHOT, f"cannot copy the dataset into {destination}: {exc.strerror or exc}"
        ) from exc
    digest = hash_files(destination, report.files)
    source_digest = hash_files(source, report.files)
    if digest != source_digest:
        raise DatasetError(
            termination.EXIT_SNAPSHOT_MISMATCH,
            f"snapshot {destination} differs from {source} after copying (was the dataset changing?)",
        )
    return digest
