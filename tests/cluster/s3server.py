"""A real S3 server for the tests: SeaweedFS (`weed server -s3`), built from the Go module proxy.

SeaweedFS, not MinIO: it is Apache-2.0 (MinIO's server is AGPL) and the module proxy serves it; it
builds with CGO off like the other components (tests/cluster/build-tools.sh). One process runs
its master, a volume server, the filer and the S3 gateway, all on 127.0.0.1, with its data in a
temporary directory. The S3 gateway knows two identities: ``ACCESS_KEY``/``SECRET_KEY`` (every
action) and nothing else, so a wrong key is refused as by any S3 store.

    python tests/cluster/s3server.py   # start one in the foreground, print its endpoint
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.cluster.processes import die_with_parent, free_port

HERE = Path(__file__).resolve().parent
GO_MOD = HERE / "tools" / "seaweedfs" / "go.mod"
MODULE = "github.com/seaweedfs/seaweedfs"
START_TIMEOUT = 90.0


class S3ServerError(RuntimeError):
    pass


def version() -> str:
    for line in GO_MOD.read_text().splitlines():
        parts = line.split()
        if MODULE in parts:
            return parts[parts.index(MODULE) + 1]
    raise S3ServerError(f"{GO_MOD} requires no {MODULE}")


def binary() -> Path:
    """The weed binary build-tools.sh built (cached by version)."""
    from tests.cluster.controlplane import cache_dir

    path = cache_dir() / f"seaweedfs-{version()}" / "bin" / "weed"
    if not path.is_file():
        raise S3ServerError(f"SeaweedFS is not built ({path}); run: bash tests/cluster/build-tools.sh")
    return path


class S3Server:
    """One running SeaweedFS with its S3 gateway; ``client()`` is a boto3 client logged in to it."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: Path, port: int, access_key: str, secret_key: str):
        self.proc, self.workdir, self.port = proc, workdir, port
        self.access_key, self.secret_key = access_key, secret_key

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> S3Server:
        weed = binary()
        workdir = Path(tempfile.mkdtemp(prefix="fluxlora-s3-"))
        access_key = "fluxlora-" + secrets.token_hex(4)
        secret_key = secrets.token_urlsafe(24)
        config = {
            "identities": [
                {
                    "name": "fluxlora-tests",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (workdir / "s3.json").write_text(json.dumps(config))
        (workdir / "data").mkdir()
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        argv = [
            str(weed), "server",
            f"-dir={workdir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            "-master.volumeSizeLimitMB=256",
            # Each bucket is a collection that takes volumes of its own (64 ran out after a dozen
            # buckets); a cap, not an allocation: a volume is a file that grows as it fills.
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}", "-volume.max=2000",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}", f"-s3.config={workdir / 's3.json'}",
        ]  # fmt: skip
        log = (workdir / "weed.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        server = cls(proc, workdir, ports["s3"], access_key, secret_key)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": 3}),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client()
        bucket = "fluxlora-ready-" + secrets.token_hex(3)
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise S3ServerError(f"weed exited {self.proc.returncode}: {self.log_tail()}")
            try:
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="ready", Body=b"ok")  # a volume is writable
                client.delete_object(Bucket=bucket, Key="ready")
                client.delete_bucket(Bucket=bucket)
                return
            except Exception as exc:  # not up yet: connection refused, no volume, 5xx
                last = exc
                time.sleep(0.5)
        raise S3ServerError(f"the S3 gateway did not answer in {START_TIMEOUT:.0f} s: {last}; {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.workdir / "weed.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":
    server = S3Server.start()
    print(f"S3 endpoint {server.endpoint}, access key {server.access_key} (Ctrl-C stops it)", file=sys.stderr)
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        server.stop()
