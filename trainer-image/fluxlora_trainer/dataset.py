"""Dataset check, per-run snapshot and content hash.

The check sees the dataset the way the engine will (kohya-ss sd-scripts at the pinned commit,
observed by running it), so that a dataset it would skip, crash on or silently mistrain is a
DatasetError naming the file, before any GPU time is spent:

* Images are the files directly in the directory whose extension is one of
  `train_util.IMAGE_EXTENSIONS`, matched case-sensitively (`.png` and `.PNG` but not `.Png`):
  a name it would not see is refused, not skipped (the engine logs "No data found" and exits 0).
* With bucket_no_upscale, an image smaller than bucket_reso_steps in a side has a 0-pixel bucket
  and the engine dies with ZeroDivisionError (train_util.py:336-345).
* Captions (`<stem><caption_extension>`) must be UTF-8 (else the engine raises) and not empty
  (it asserts); the engine reads only the first line, so a blank first line trains on "".
* Only regular files inside the dataset directory are read: a symbolic link is followed only
  when it stays inside the directory; file names must be UTF-8; sizes are bounded.

That set of files is what gets copied into the snapshot and hashed. Engine cache files
(`*_flux.npz`, `*_flux_te.npz`) are never copied or hashed: the engine writes them next to
the snapshot's images during training.

Hash: sha256 over, for each file in sorted relative-path order, the UTF-8 path, a NUL, the
size in decimal, a NUL and the file's own sha256 digest. Any changed byte, rename, added or
removed file changes it. Written as `sha256:<hex>`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# train_util.IMAGE_EXTENSIONS at the pinned commit, defined once with the engine contract.
from fluxlora.contract.engine import ENGINE_IMAGE_EXTENSIONS as ENGINE_IMAGE_EXTENSIONS
from fluxlora.contract.engine import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS

from . import engine, termination
from .files import PARTIAL, copy_atomic

# Image types a user may expect to be trained but the engine's loader does not take.
UNSUPPORTED_IMAGE_EXTENSIONS = frozenset(
    {".gif", ".tif", ".tiff", ".heic", ".heif", ".avif", ".jxl", ".svg", ".raw", ".cr2", ".nef", ".psd"}
)
# Bounds: a training image is megabytes; a caption is a line of text.
MAX_IMAGE_BYTES = 256 << 20
MAX_CAPTION_BYTES = 64 << 10
MAX_DATASET_BYTES = 64 << 30
MAX_DATASET_FILES = 100_000
_CHUNK = 1 << 20


class DatasetError(Exception):
    """A dataset problem with its exit code and one-line reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Bucketing:
    """The dataset settings that decide whether the engine can bucket an image."""

    resolution: int = 1024
    enable_bucket: bool = True
    bucket_reso_steps: int = 64
    bucket_no_upscale: bool = True


@dataclass(frozen=True)
class DatasetReport:
    images: list[str]  # relative names, sorted
    captions: list[str]  # caption files that belong to an image, sorted
    uncaptioned: list[str]  # images without a caption file (the trigger word is used)
    ignored: list[str] = field(default_factory=list)  # other files and sub-directories
    sources: dict[str, Path] = field(default_factory=dict, repr=False)  # name -> the regular file to copy

    @property
    def files(self) -> list[str]:
        return sorted([*self.images, *self.captions])


def is_cache_file(name: str) -> bool:
    return name.endswith(engine.CACHE_SUFFIXES)


def _list(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _shown(name: str) -> str:
    """A file name as it can be printed (undecodable bytes escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")[:120]


def no_upscale_bucket(width: int, height: int, resolution: int, steps: int) -> tuple[int, int]:
    """The bucket the engine gives an image with bucket_no_upscale (BucketManager.select_bucket).

    A side of 0 means the engine fails on the image (ZeroDivisionError, there or later)."""

    def round_to_steps(x: float) -> int:
        return int(x + 0.5) // steps * steps

    max_area = resolution * resolution
    aspect = width / height
    if width * height > max_area:  # shrunk to the area first, sides rounded to the steps
        resized_width = (max_area * aspect) ** 0.5
        b_width = round_to_steps(resized_width)
        b_height_in_w = round_to_steps(b_width / aspect)
        b_height = round_to_steps(max_area / resized_width)
        b_width_in_h = round_to_steps(b_height * aspect)
        if b_height_in_w == 0 or b_height == 0:
            return (0, 0)  # the engine divides by it
        if abs(b_width / b_height_in_w - aspect) < abs(b_width_in_h / b_height - aspect):
            width, height = b_width, int(b_width / aspect + 0.5)
        else:
            width, height = int(b_height * aspect + 0.5), b_height
    return width - width % steps, height - height % steps


def _regular_file(root: Path, entry: os.DirEntry[str]) -> Path | None:
    """The regular file an entry stands for, or None for a directory or anything else.

    A symbolic link counts only when its target is a regular file inside `root`."""
    path = Path(entry.path)
    try:
        if not entry.is_symlink():
            return path if entry.is_file(follow_symlinks=False) else None
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # a loop, a dangling link, a permission problem
        raise DatasetError(
            termination.EXIT_DATASET_UNREADABLE, f"cannot follow {_shown(entry.name)} in {root}: {exc}"
        ) from exc
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(
            termination.EXIT_DATASET_UNSUPPORTED,
            f"{_shown(entry.name)} in {root} is a symbolic link to a file outside the dataset directory; "
            "only files inside it are trained",
        )
    return target if target.is_file() else None


def _entries(source: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(
            termination.EXIT_DATASET_UNREADABLE, f"cannot list dataset directory {source}: {exc.strerror}"
        ) from exc
    if len(entries) > MAX_DATASET_FILES:
        raise DatasetError(
            termination.EXIT_DATASET_UNSUPPORTED,
            f"dataset directory {source} holds {len(entries)} entries; at most {MAX_DATASET_FILES} are supported",
        )
    for entry in entries:
        try:
            entry.name.encode("utf-8")
        except UnicodeEncodeError:
            raise DatasetError(
                termination.EXIT_DATASET_UNSUPPORTED,
                f"file name {_shown(entry.name)} in {source} is not valid UTF-8; rename it",
            ) from None
        yield entry


def _image_size(name: str, path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DatasetError(
            termination.EXIT_DATASET_UNREADABLE, f"{name} is not an image the engine can read: {exc}"
        ) from exc


def _check_image(name: str, path: Path, bucketing: Bucketing) -> int:
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(termination.EXIT_DATASET_UNREADABLE, f"empty image file: {name}")
    if size > MAX_IMAGE_BYTES:
        raise DatasetError(
            termination.EXIT_DATASET_UNSUPPORTED,
            f"{name} is {size} bytes; an image may be at most {MAX_IMAGE_BYTES} bytes",
        )
    width, height = _image_size(name, path)
    if bucketing.enable_bucket and bucketing.bucket_no_upscale:
        bucket = no_upscale_bucket(width, height, bucketing.resolution, bucketing.bucket_reso_steps)
        if min(bucket) <= 0:
            raise DatasetError(
                termination.EXIT_DATASET_UNSUPPORTED,
                f"{name} is {width}x{height} px: with bucketNoUpscale the engine gives it a {bucket[0]}x{bucket[1]} "
                f"bucket and fails (ZeroDivisionError); each side must be at least bucketResoSteps "
                f"({bucketing.bucket_reso_steps})",
            )
    return size


def _check_caption(name: str, path: Path) -> int:
    size = path.stat().st_size
    if size > MAX_CAPTION_BYTES:
        raise DatasetError(
            termination.EXIT_DATASET_CAPTIONS, f"caption {name} is {size} bytes; at most {MAX_CAPTION_BYTES} are read"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            termination.EXIT_DATASET_CAPTIONS,
            f"caption {name} is not UTF-8 (byte {exc.start}); the engine refuses it",
        ) from None
    if not text:
        raise DatasetError(
            termination.EXIT_DATASET_CAPTIONS,
            f"caption {name} is empty; the engine refuses empty caption files (delete it to use the trigger word)",
        )
    if not text.splitlines()[0].strip():
        raise DatasetError(
            termination.EXIT_DATASET_CAPTIONS,
            f"caption {name} has a blank first line; the engine reads only the first line and would train "
            "on an empty caption",
        )
    return size


def _dataset_files(source: Path) -> tuple[dict[str, Path], list[str]]:
    """The regular files the engine can read (name -> the file to copy), and the entries it cannot."""
    files: dict[str, Path] = {}
    ignored: list[str] = []
    for entry in _entries(source):
        regular = _regular_file(source, entry)
        if regular is None:
            ignored.append(entry.name + ("/" if entry.is_dir() else ""))
        else:
            files[entry.name] = regular
    return files, ignored


def _engine_images(source: Path, files: dict[str, Path]) -> list[str]:
    """The images the engine will see; an image it would not see, or could not load, is refused."""
    images: list[str] = []
    miscased: list[str] = []
    unsupported: list[str] = []
    for name in files:
        if name.startswith(".") or is_cache_file(name):
            continue
        ext = os.path.splitext(name)[1]
        if ext in ENGINE_IMAGE_EXTENSIONS:
            images.append(name)
        elif ext.lower() in IMAGE_EXTENSIONS:
            miscased.append(name)
        elif ext.lower() in UNSUPPORTED_IMAGE_EXTENSIONS:
            unsupported.append(name)
    if miscased:
        raise DatasetError(
            termination.EXIT_DATASET_UNSUPPORTED,
            f"the engine matches image extensions case-sensitively and would not see {_list(miscased)} in {source} "
            f"(it reads {', '.join(ENGINE_IMAGE_EXTENSIONS)}): rename them",
        )
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
    return images


def _check_images_and_captions(
    source: Path, files: dict[str, Path], images: list[str], cap_ext: str, bucketing: Bucketing
) -> tuple[list[str], list[str]]:
    """Each image and its caption as the engine reads them, the whole bounded in size:
    (captions, images without one)."""
    captions: list[str] = []
    uncaptioned: list[str] = []
    total = 0
    for name in images:
        try:
            total += _check_image(name, files[name], bucketing)
            cap = os.path.splitext(name)[0] + cap_ext
            if cap not in files:
                uncaptioned.append(name)
                continue
            captions.append(cap)
            total += _check_caption(cap, files[cap])
        except OSError as exc:
            raise DatasetError(
                termination.EXIT_DATASET_UNREADABLE, f"cannot read {exc.filename or name}: {exc.strerror or exc}"
            ) from exc
        if total > MAX_DATASET_BYTES:
            raise DatasetError(
                termination.EXIT_DATASET_UNSUPPORTED,
                f"dataset {source} is larger than {MAX_DATASET_BYTES} bytes (at {name})",
            )
    return captions, uncaptioned


def check_dataset(
    source: Path,
    caption_extension: str = ".txt",
    trigger_word: str | None = None,
    bucketing: Bucketing | None = None,
) -> DatasetReport:
    """Check the dataset directory; raise DatasetError with a specific code and reason."""
    bucketing = bucketing or Bucketing()
    if not source.exists():
        raise DatasetError(termination.EXIT_DATASET_MISSING, f"dataset directory {source} does not exist")
    if not source.is_dir():
        raise DatasetError(termination.EXIT_DATASET_MISSING, f"dataset path {source} is not a directory")

    cap_ext = caption_extension if caption_extension.startswith(".") else "." + caption_extension
    files, ignored = _dataset_files(source)
    images = _engine_images(source, files)
    captions, uncaptioned = _check_images_and_captions(source, files, images, cap_ext, bucketing)
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
        sources={name: files[name] for name in used},
    )


def file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def hash_files(root: Path, relative_names: list[str], sources: dict[str, Path] | None = None) -> str:
    """The dataset hash of the given files under root (see the module docstring)."""
    h = hashlib.sha256()
    for rel in sorted(relative_names):
        p = (sources or {}).get(rel, root / rel)
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
        if e.is_file(follow_symlinks=False)
        and not e.name.startswith(".")
        and not is_cache_file(e.name)
        and not e.name.endswith(PARTIAL)
    )


def dataset_hash(directory: Path) -> str:
    """Hash of a snapshot directory (all its trained files)."""
    return hash_files(directory, trained_files(directory))


def snapshot(source: Path, report: DatasetReport, destination: Path) -> str:
    """Copy the checked files into destination and return the snapshot's hash.

    Existing snapshot files that are not part of the dataset (except engine caches) are removed,
    so the snapshot holds exactly what is hashed. Copies go through `<name>.partial` + rename.
    The destination must be a real directory: through a symbolic link, the removal would reach
    another directory's files.
    """
    if destination.is_symlink():
        raise DatasetError(
            termination.EXIT_SNAPSHOT_WRITE,
            f"snapshot directory {destination} is a symbolic link; it must be a directory of the run's own",
        )
    try:
        destination.mkdir(parents=True, exist_ok=True)
        wanted = set(report.files)
        for entry in os.scandir(destination):
            if entry.is_symlink() or (entry.name in wanted and not entry.is_file(follow_symlinks=False)):
                raise DatasetError(
                    termination.EXIT_SNAPSHOT_WRITE,
                    f"snapshot {destination} holds {entry.name}, which is not a regular file",
                )
        for name in trained_files(destination):
            if name not in wanted:
                (destination / name).unlink()
        for name in report.files:
            src, dst = report.sources.get(name, source / name), destination / name
            if dst.exists() and dst.stat().st_size == src.stat().st_size and file_digest(dst) == file_digest(src):
                continue
            copy_atomic(src, dst)
    except OSError as exc:
        raise DatasetError(
            termination.EXIT_SNAPSHOT_WRITE, f"cannot copy the dataset into {destination}: {exc.strerror or exc}"
        ) from exc
    digest = hash_files(destination, report.files)
    source_digest = hash_files(source, report.files, report.sources)
    if digest != source_digest:
        raise DatasetError(
            termination.EXIT_DATASET_CHANGED,
            f"snapshot {destination} differs from {source} after copying (was the dataset changing?)",
        )
    return digest
