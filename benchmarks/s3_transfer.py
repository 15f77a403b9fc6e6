#!/usr/bin/env python3
"""Fetch and publish throughput against the tests' real S3 server (SeaweedFS on 127.0.0.1).

A model-like source (one large .safetensors and three small ones, SIZE_MB in all) is uploaded
once, then fetched into an empty directory as the fetch container does (fluxlora_trainer.
objectstore.fetch: listing, parallel ranged GETs with If-Match, size and MD5 checks, the record),
then fetched again into the same directory (what a second run on the claim pays), then published
back (objectstore.upload). Prints one JSON object:

  bytes               the source's size
  fetch_s, fetch_MBps a cold fetch
  refetch_s           the second fetch into the same directory (downloads nothing)
  saved_s             fetch_s - refetch_s: what the second run on a claim saves
  upload_s, upload_MBps  publishing the same files

Usage:  python benchmarks/s3_transfer.py [SIZE_MB]   (default 1024; needs `make tools` for SeaweedFS)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file: `tests.` imports from the repository root

from fluxlora.contract.objectstore import S3Uri  # noqa: E402
from fluxlora_trainer.objectstore import Store, fetch, upload  # noqa: E402

from tests.cluster.s3server import S3Server  # noqa: E402
from tests.trainer.test_objectstore import safetensors_bytes  # noqa: E402

CHUNK = 64 << 20


def write_model(directory: Path, size: int) -> list[tuple[Path, str]]:
    directory.mkdir(parents=True)
    files = []
    for name in ("clip_l.safetensors", "t5xxl_fp16.safetensors", "ae.safetensors"):
        (directory / name).write_bytes(safetensors_bytes(1 << 18))
        files.append((directory / name, name))
    big = directory / "flux1-dev.safetensors"
    floats = max(1, (size - sum(p.stat().st_size for p, _ in files)) // 4)
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    header += b" " * (-len(header) % 8)
    with big.open("wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        left = 4 * floats
        while left:  # random bytes: nothing on the way compresses them
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n
    files.append((big, "flux1-dev.safetensors"))
    return files


def main() -> None:
    size = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 1 << 30
    server = S3Server.start()
    try:
        store = Store(server.endpoint, "us-east-1", server.access_key, server.secret_key)
        client = server.client()
        bucket = "bench-" + secrets.token_hex(4)
        client.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="fluxlora-s3-bench-") as tmp:
            files = write_model(Path(tmp) / "source", size)
            total = sum(p.stat().st_size for p, _ in files)
            started = time.monotonic()
            upload(store, S3Uri.parse(f"s3://{bucket}/flux"), files, "bench")
            upload_s = time.monotonic() - started
            claim = Path(tmp) / "claim"
            cold = fetch(store, S3Uri.parse(f"s3://{bucket}/flux"), claim, "bench")
            warm = fetch(store, S3Uri.parse(f"s3://{bucket}/flux"), claim, "bench")
        print(
            json.dumps(
                {
                    "bytes": total,
                    "fetch_s": round(cold.seconds, 2),
                    "fetch_MBps": round(total / 1e6 / cold.seconds, 1),
                    "refetch_s": round(warm.seconds, 3),
                    "refetch_bytes": warm.bytes_fetched,
                    "saved_s": round(cold.seconds - warm.seconds, 2),
                    "upload_s": round(upload_s, 2),
                    "upload_MBps": round(total / 1e6 / upload_s, 1),
                },
                indent=1,
            )
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
