"""Fetch a model or a dataset from an S3-compatible store into a directory: verified, resumable, once.

boto3's transfer manager does the work (parallel ranged GETs, its own retries). Around it:

* **Listing** under ``s3://bucket/prefix``; each object's path below the prefix is its path in the
  directory. Its ETag and size are the object's identity, and all of them together (with the URI)
  the *content key*.
* **Once per directory**: ``.fluxlora-source.json`` in the directory records the objects already
  fetched. A fetch whose content key is recorded as complete, with every file still of its size,
  downloads nothing. Fetches of one directory take turns (``flock`` on ``.fluxlora-source.lock``):
  two runs starting together download once, the second finds the first one's record.
* **Resumable**: an object is written to ``<name>.fluxlora-part`` and renamed when verified; the
  record is updated after each one, so an interrupted fetch continues with the objects not yet done.
* **Verified**: the size; the MD5 where the ETag is one (an object uploaded in one part); every
  ranged GET of a large object carries ``If-Match`` with the listed ETag, so an object that changes
  during the download fails it; a ``.safetensors`` file must hold all the bytes its header declares.

Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), which the
pod takes from the run's Secret in this container only. They never appear in a message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError
from s3transfer.subscribers import BaseSubscriber

from fluxlora.contract import exitcodes
from fluxlora.contract.objectstore import S3Uri

log = logging.getLogger(__name__)

RECORD = ".fluxlora-source.json"
LOCK = ".fluxlora-source.lock"
PART = ".fluxlora-part"
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
# The AWS error codes of refused credentials; anything else 403 is also a refusal.
_DENIED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
_MISSING_BUCKET = {"NoSuchBucket"}
MULTIPART_CHUNK = 16 << 20
_HASH_CHUNK = 1 << 20

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


class SourceError(Exception):
    """A source that cannot be fetched: its exit code and a one-line reason naming the field."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Store:
    """Where the store is and who we are to it (the keys are never printed)."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str

    def __repr__(self) -> str:
        return f"Store(endpoint={self.endpoint!r}, region={self.region!r})"

    @classmethod
    def from_env(cls, endpoint: str, region: str, env: dict[str, str] | None = None) -> Store:
        values = os.environ if env is None else env
        return cls(
            endpoint=endpoint,
            region=region,
            access_key=values.get("AWS_ACCESS_KEY_ID", ""),
            secret_key=values.get("AWS_SECRET_ACCESS_KEY", ""),
        )

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key or None,
            aws_secret_access_key=self.secret_key or None,
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                s3={"addressing_style": "path"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )


@dataclass(frozen=True)
class RemoteObject:
    key: str
    relative: str  # its path below the prefix: its path in the directory
    size: int
    etag: str


def content_key(uri: S3Uri, objects: list[RemoteObject]) -> str:
    """What the directory holds once fetched: the URI and each object's path, size and ETag."""
    listing = [[o.relative, o.size, o.etag] for o in sorted(objects, key=lambda o: o.relative)]
    text = json.dumps({"uri": str(uri), "objects": listing}, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _client_error(exc: ClientError, what: str, field: str, uri: S3Uri) -> SourceError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _MISSING_BUCKET:
        return SourceError(
            exitcodes.EXIT_SOURCE_MISSING, f"{field}: bucket {uri.bucket!r} does not exist ({what} {uri})"
        )
    if code in _DENIED or status == 403:
        return SourceError(
            exitcodes.EXIT_SOURCE_DENIED,
            f"{field}: the store refused the credentials ({code or status}) when asked to {what} {uri}; "
            "check the Secret's AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if code in {"PreconditionFailed", "412"} or status == 412:
        return SourceError(
            exitcodes.EXIT_SOURCE_CHANGED,
            f"{field}: an object changed during the download ({what} {uri}): write the source before the run starts",
        )
    return SourceError(exitcodes.EXIT_SOURCE_UNAVAILABLE, f"{field}: cannot {what} {uri}: {code or status}")


def list_objects(client: Any, uri: S3Uri, field: str) -> list[RemoteObject]:
    """Every object under the prefix (a key ending in '/' is a folder marker, not a file)."""
    objects: list[RemoteObject] = []
    prefix = uri.key_prefix
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/"):
                    continue
                relative = key[len(prefix) :]
                if not S3Uri.safe_relative(relative):
                    raise SourceError(
                        exitcodes.EXIT_SOURCE_MISSING,
                        f"{field}: object {key!r} has a path that cannot be a file under the prefix",
                    )
                objects.append(RemoteObject(key, relative, int(item["Size"]), str(item["ETag"]).strip('"')))
    except ClientError as exc:
        raise _client_error(exc, "list", field, uri) from exc
    except BotoCoreError as exc:
        raise SourceError(exitcodes.EXIT_SOURCE_UNAVAILABLE, f"{field}: cannot list {uri}: {exc}") from exc
    if not objects:
        raise SourceError(exitcodes.EXIT_SOURCE_MISSING, f"{field}: no object under {uri}")
    return objects


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole .safetensors file (None: it is): its header names every byte it holds."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            return f"its header says {header_len} bytes of header, the file has {size}"
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            return "its header is not JSON"
    end = max(
        (int(t["data_offsets"][1]) for name, t in header.items() if name != "__metadata__" and isinstance(t, dict)),
        default=0,
    )
    if 8 + header_len + end > size:
        return f"truncated: its tensors end at byte {8 + header_len + end}, the file has {size}"
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(part: Path, obj: RemoteObject, field: str, uri: S3Uri) -> None:
    size = part.stat().st_size
    if size != obj.size:
        raise SourceError(
            exitcodes.EXIT_SOURCE_CHANGED,
            f"{field}: {obj.key} came as {size} bytes, listed as {obj.size} ({uri} changed during the download?)",
        )
    if _MD5_ETAG.match(obj.etag) and _md5(part) != obj.etag:
        raise SourceError(
            exitcodes.EXIT_SOURCE_CHANGED,
            f"{field}: {obj.key} does not match its listed checksum (ETag {obj.etag}): "
            "it changed during the download; write the source before the run starts",
        )
    if part.name.endswith(".safetensors" + PART):
        problem = safetensors_problem(part)
        if problem:
            raise SourceError(
                exitcodes.EXIT_SOURCE_CORRUPT, f"{field}: {obj.key} is not a whole safetensors file: {problem}"
            )


@contextlib.contextmanager
def _turn(directory: Path, waiting: Callable[[], None]) -> Iterator[None]:
    """One fetch of ``directory`` at a time (across pods of one node, and across nodes where the
    volume's file system carries flock, as NFSv4 does)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_record(directory: Path) -> dict[str, Any]:
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    tmp = directory / (RECORD + PART)
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, directory / RECORD)


def _in_place(directory: Path, obj: RemoteObject, record: dict[str, Any]) -> bool:
    done = (record.get("objects") or {}).get(obj.relative)
    path = directory / obj.relative
    return bool(done == {"etag": obj.etag, "size": obj.size} and path.is_file() and path.stat().st_size == obj.size)


class _Bytes(BaseSubscriber):  # type: ignore[misc]
    """Counts what the transfers wrote and gives each its listed size and ETag (If-Match on parts)."""

    def __init__(self, obj: RemoteObject, tally: _Tally) -> None:
        self.obj, self.tally = obj, tally

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.obj.size)
        future.meta.provide_object_etag(f'"{self.obj.etag}"')

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.tally.add(bytes_transferred)


class _Tally:
    def __init__(self, total: int, progress: Progress | None, every: float) -> None:
        self.done, self.total, self.progress, self.every = 0, total, progress, every
        self.lock = threading.Lock()
        self.last = 0.0

    def add(self, n: int, force: bool = False) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if self.progress is None or (not force and now - self.last < self.every):
                return
            self.last = now
            done = self.done
        self.progress(done, self.total)


@dataclass(frozen=True)
class FetchResult:
    key: str
    objects: int
    bytes_total: int
    bytes_fetched: int  # 0: everything was already there
    seconds: float


def fetch(
    store: Store,
    uri: S3Uri,
    directory: Path,
    field: str,
    *,
    progress: Progress | None = None,
    waiting: Callable[[], None] = lambda: None,
    check: Callable[[list[RemoteObject]], None] = lambda objects: None,
    progress_every: float = 2.0,
    concurrency: int = 8,
    prune: bool = False,
) -> FetchResult:
    """Make ``directory`` hold the objects under ``uri``; download only what it does not hold yet.

    ``check`` sees the listing before any download (a model's files must be there, a dataset must
    have images) and raises SourceError; ``waiting`` is called when another fetch has the turn.
    ``prune``: remove files the listing does not have (a directory of the run's own, never a claim).
    """
    started = time.monotonic()
    client = store.client()
    with _turn(directory, waiting):
        objects = list_objects(client, uri, field)
        check(objects)
        key = content_key(uri, objects)
        total = sum(o.size for o in objects)
        record = _read_record(directory)
        if record.get("uri") != str(uri):
            record = {"uri": str(uri), "objects": {}}
        if prune:
            _prune(directory, {o.relative for o in objects}, record)
        todo = [o for o in objects if not _in_place(directory, o, record)]
        if record.get("complete") == key and not todo:
            log.info(
                "%s: %s already fetched (%d objects, %d bytes); nothing to download", field, uri, len(objects), total
            )
            return FetchResult(key, len(objects), total, 0, time.monotonic() - started)
        record["complete"] = None
        _write_record(directory, record)
        tally = _Tally(total, progress, progress_every)
        tally.add(total - sum(o.size for o in todo), force=True)
        fetched = _download(client, todo, directory, record, tally, field, uri, concurrency)
        record["complete"] = key
        _write_record(directory, record)
        tally.add(0, force=True)
    seconds = time.monotonic() - started
    log.info(
        "%s: fetched %d of %d objects (%d bytes) from %s in %.1f s",
        field,
        len(todo),
        len(objects),
        fetched,
        uri,
        seconds,
    )
    return FetchResult(key, len(objects), total, fetched, seconds)


def _prune(directory: Path, wanted: set[str], record: dict[str, Any]) -> None:
    """Remove what the listing does not hold (deepest first, so emptied folders go too)."""
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        relative = path.relative_to(directory).as_posix()
        if relative in (RECORD, LOCK) or relative in wanted:
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
            continue
        path.unlink()
        (record.get("objects") or {}).pop(relative, None)


def _download(
    client: Any,
    todo: list[RemoteObject],
    directory: Path,
    record: dict[str, Any],
    tally: _Tally,
    field: str,
    uri: S3Uri,
    concurrency: int,
) -> int:
    config = TransferConfig(
        multipart_threshold=MULTIPART_CHUNK, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=concurrency
    )
    fetched = 0
    with create_transfer_manager(client, config) as manager:
        futures = []
        for obj in todo:
            path = directory / obj.relative
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + PART)
            future = manager.download(uri.bucket, obj.key, str(part), subscribers=[_Bytes(obj, tally)])
            futures.append((obj, path, part, future))
        # An exception leaving this block cancels the transfers still running (the manager's __exit__).
        for obj, path, part, future in futures:
            try:
                future.result()
            except ClientError as exc:
                raise _client_error(exc, "download", field, uri) from exc
            except S3DownloadFailedError as exc:  # a part's If-Match failed: the object changed meanwhile
                raise SourceError(
                    exitcodes.EXIT_SOURCE_CHANGED,
                    f"{field}: {obj.key} changed during the download (its ETag is no longer {obj.etag}); "
                    "write the source before the run starts",
                ) from exc
            except (BotoCoreError, RetriesExceededError) as exc:
                raise SourceError(
                    exitcodes.EXIT_SOURCE_UNAVAILABLE, f"{field}: cannot download {obj.key}: {exc}"
                ) from exc
            _verify(part, obj, field, uri)
            os.replace(part, path)
            record["objects"][obj.relative] = {"etag": obj.etag, "size": obj.size}
            _write_record(directory, record)
            fetched += obj.size
    return fetched


@dataclass(frozen=True)
class Uploaded:
    uris: list[str]
    bytes_total: int
    seconds: float


def upload(
    store: Store,
    uri: S3Uri,
    files: list[tuple[Path, str]],
    field: str,
    *,
    concurrency: int = 8,
) -> Uploaded:
    """Put each (file, relative key) under ``uri``, in parallel (multipart above 16 MiB), by boto3's
    transfer manager with its retries; the store's ETag of each is checked against the file's MD5
    where it is one (a single-part upload)."""
    started = time.monotonic()
    client = store.client()
    config = TransferConfig(
        multipart_threshold=MULTIPART_CHUNK, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=concurrency
    )
    uris: list[str] = []
    try:
        try:
            client.head_bucket(Bucket=uri.bucket)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:  # a HEAD has no error code
                raise SourceError(
                    exitcodes.EXIT_SOURCE_MISSING, f"{field}: bucket {uri.bucket!r} does not exist (write to {uri})"
                ) from exc
            raise
        with create_transfer_manager(client, config) as manager:
            futures = [
                (path, relative, manager.upload(str(path), uri.bucket, uri.key_prefix + relative))
                for path, relative in files
            ]
            for path, relative, future in futures:
                future.result()
                key = uri.key_prefix + relative
                etag = str(client.head_object(Bucket=uri.bucket, Key=key)["ETag"]).strip('"')
                if _MD5_ETAG.match(etag) and etag != _md5(path):
                    raise SourceError(
                        exitcodes.EXIT_SOURCE_CHANGED, f"{field}: {key} was stored with another checksum than {path}'s"
                    )
                uris.append(uri.child(relative))
    except ClientError as exc:
        raise _client_error(exc, "write to", field, uri) from exc
    except BotoCoreError as exc:
        raise SourceError(exitcodes.EXIT_SOURCE_UNAVAILABLE, f"{field}: cannot write to {uri}: {exc}") from exc
    return Uploaded(uris, sum(p.stat().st_size for p, _ in files), time.monotonic() - started)
