"""`s3://bucket/prefix` URIs: what the spec accepts and what the trainer fetches, parsed once."""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3 bucket names (lowercase letters, digits, dots, hyphens; 3-63), then an optional key prefix.
BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
URI_PATTERN = rf"^s3://{BUCKET}(/[A-Za-z0-9!_.*'()/ -]*)?$"
_URI = re.compile(URI_PATTERN)
_SEGMENT_BAD = {"", ".", ".."}


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str  # without leading or trailing '/'; "" for the whole bucket

    @classmethod
    def parse(cls, text: str) -> S3Uri:
        if not _URI.match(text):
            raise ValueError(f"{text!r} is not an s3://bucket/prefix URI")
        rest = text[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        if prefix and any(segment in _SEGMENT_BAD for segment in prefix.split("/")):
            raise ValueError(f"{text!r}: its prefix has an empty, '.' or '..' segment")
        return cls(bucket, prefix)

    @property
    def key_prefix(self) -> str:
        """What every key below it starts with ('' or 'prefix/')."""
        return f"{self.prefix}/" if self.prefix else ""

    def child(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self.key_prefix}{relative}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @staticmethod
    def safe_relative(relative: str) -> bool:
        """A key below the prefix that is a path inside a directory (no '..', not absolute)."""
        return (
            bool(relative)
            and not relative.startswith("/")
            and all(segment not in _SEGMENT_BAD for segment in relative.split("/"))
        )
