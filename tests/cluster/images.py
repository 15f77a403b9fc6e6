#!/usr/bin/env python3
"""`make images`: build the operator and trainer images from the repository's Dockerfiles.

The same Dockerfiles a user builds with ``docker build``, built here with buildah (no Docker
engine and no registry on these machines):

* base: Debian bookworm with Python and its venv module, made by ``mmdebstrap`` from Debian's
  packages and passed to both Dockerfiles as their base image (PYTHON_IMAGE, CUDA_IMAGE);
* the engine's source: the archive ``make engine`` uses (trainer-image/local/);
* the tokenizers: the tiny FLUX's, so these images train the tiny FLUX of the tests and the demo.

Each image is tagged with the name the chart uses by default (ghcr.io/fluxlora/operator:0.1.0,
ghcr.io/fluxlora/trainer:0.1.0) and saved as a docker archive under ``~/.cache/fluxlora/images/``
named by a content key (a hash of everything its build reads), for the test node's containerd to
import. An image whose key is unchanged is not built again; buildah's layer cache makes a
changed one rebuild only from the first step whose input changed. Prints progress, at
least every 20 s, and as its last lines the archives, one per line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a file (make images): `tests.` imports from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.engine import engine_env  # the engine archive and the cache, as `make engine` finds them

ROOT = Path(__file__).resolve().parents[2]

KEY_LABEL = "dev.fluxlora.content-key"
BASE_SUITE = "bookworm"
# What both Dockerfiles need of their base: Python >= 3.11 with venv, and certificates for PyPI.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_NAME = "localhost/fluxlora-debian-python"
# The build context's ignore file decides what COPY sees; the key hashes the same trees.
IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def say(text: str) -> None:
    print(f"images: {text}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return engine_env.cache_root() / "images"


def run(argv: Sequence[str], what: str, capture: bool = False) -> str:
    """Run a command, stream (or capture) its output, and say something at least every 20 s."""
    return engine_env.run_with_heartbeat(argv, what, speaker=say, capture=capture, done_line=False, label="images")


def digest_paths(paths: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """Hash of file names, modes and contents under `paths`, plus `extra` strings."""
    h = hashlib.sha256()
    for text in extra:
        h.update(text.encode() + b"\0")
    for top in paths:
        files = [top] if top.is_file() or top.is_symlink() else sorted(p for p in top.rglob("*"))
        for f in files:
            if IGNORED_PARTS.intersection(f.parts) or (f.is_dir() and not f.is_symlink()):
                continue
            h.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f).encode() + b"\0")
            if f.is_symlink():
                h.update(b"link:" + os.readlink(f).encode())
            else:
                h.update(oct(f.stat().st_mode & 0o111).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def image_id(name: str) -> str | None:
    proc = subprocess.run(
        ["buildah", "images", "--quiet", "--no-trunc", name], capture_output=True, text=True, check=False
    )
    return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout.split() else None


def image_key(name: str) -> str | None:
    """The content key an image in buildah's store carries, or None if there is no such image."""
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    labels = json.loads(proc.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}
    key = labels.get(KEY_LABEL)
    return str(key) if key is not None else None


def base_key() -> str:
    return digest_paths([Path("/etc/apt/sources.list.d")], [BASE_SUITE, *BASE_PACKAGES])


def base_image() -> str:
    """Debian with Python, from Debian's packages (mmdebstrap), imported into buildah's store."""
    key = base_key()
    name = f"{BASE_NAME}:{BASE_SUITE}-{key}"
    if image_key(name) == key:
        say(f"base image {name} cached")
        return name
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    rootfs = out / f"base-{key}.tar"
    say(f"base image: Debian {BASE_SUITE} with {', '.join(BASE_PACKAGES)} (mmdebstrap, about 20 s)")
    run(
        ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(rootfs)],
        "mmdebstrap",
    )
    container = run(["buildah", "from", "scratch"], "buildah from", capture=True).strip()
    try:
        run(["buildah", "add", "--quiet", container, str(rootfs), "/"], "buildah add")
        run(
            [
                "buildah",
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "/bin/bash",
                "--label",
                f"{KEY_LABEL}={key}",
                container,
            ],
            "buildah config",
        )
        run(["buildah", "commit", "--quiet", container, name], "buildah commit")
    finally:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        rootfs.unlink(missing_ok=True)
    say(f"base image {name} built")
    return name


def copied_sources(dockerfile: Path) -> list[Path]:
    """The repository paths a Dockerfile's COPY lines take from the build context (not --from)."""
    sources: list[Path] = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [ROOT / w for w in words[1:-1] if not w.startswith("--")]
    return sources


@dataclass(frozen=True)
class Image:
    """One image of the project: its tag, its Dockerfile, the build argument naming its base."""

    name: str
    dockerfile: str
    base_arg: str

    def key(self, base: str, build_args: dict[str, str]) -> str:
        """A hash of the Dockerfile, exactly what its COPY lines read, the base and the arguments:
        what else lies in the tree (an egg-info, a cache) does not rebuild the image."""
        extra = [base, *(f"{k}={v}" for k, v in sorted(build_args.items()))]
        dockerfile = ROOT / self.dockerfile
        return digest_paths([dockerfile, *copied_sources(dockerfile)], extra)

    def archive(self, key: str) -> Path:
        return cache_dir() / f"{self.name.rsplit('/', 1)[-1].replace(':', '-')}-{key}.tar"


def chart_image(field: str) -> str:
    """The image the chart's values.yaml names by default (field: image or trainerImage)."""
    values = (ROOT / "charts" / "fluxlora" / "values.yaml").read_text(encoding="utf-8")
    chart = (ROOT / "charts" / "fluxlora" / "Chart.yaml").read_text(encoding="utf-8")
    app_version = next(
        line.split(":", 1)[1].strip().strip('"') for line in chart.splitlines() if line.startswith("appVersion:")
    )
    if field == "trainerImage":
        return next(line.split(":", 1)[1].strip() for line in values.splitlines() if line.startswith("trainerImage:"))
    lines = values.splitlines()
    start = lines.index("image:")
    repository = next(line.split(":", 1)[1].strip() for line in lines[start:] if line.strip().startswith("repository:"))
    return f"{repository}:{app_version}"


OPERATOR = Image(chart_image("image"), "Dockerfile", "PYTHON_IMAGE")
TRAINER = Image(chart_image("trainerImage"), "trainer-image/Dockerfile", "CUDA_IMAGE")


def stage_trainer_sources() -> None:
    """Put the engine archive and the tiny FLUX's tokenizers in trainer-image/local/."""
    local = ROOT / "trainer-image" / "local"
    commit = engine_env.engine_commit()
    name = f"sd-scripts-{commit}.tar.gz"
    archive = next((d / name for d in engine_env.ARCHIVE_DIRS if (d / name).is_file()), None)
    if archive is None:
        say(f"no {name} here: the build fetches the engine with git")
    else:
        shutil.copyfile(archive, local / name)
        sums = archive.parent / "SHA256SUMS"
        if sums.is_file():
            shutil.copyfile(sums, local / "SHA256SUMS")
        else:
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            (local / "SHA256SUMS").write_text(f"{digest}  {name}\n", encoding="utf-8")
    from tests.engine import realengine  # the tiny FLUX (built on first use) and its tokenizers

    tiny = realengine.ensure_tiny_flux(realengine.ensure_engine())
    target = local / "tokenizers"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(tiny.tokenizers, target)


def host_trust_volumes() -> list[str]:
    """`buildah bud -v` arguments that let pip in a RUN step trust what the host trusts.

    Where the host reaches PyPI through a TLS proxy, its CA is only in the host's bundle (named by
    PIP_CERT or SSL_CERT_FILE); the bundle and a pip.conf naming it are mounted into RUN steps
    only, never committed into an image."""
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    if not bundle or not Path(bundle).is_file():
        return []
    conf = cache_dir() / "build-pip.conf"
    conf.write_text("[global]\ncert = /run/fluxlora-build/ca.crt\n", encoding="utf-8")
    return ["-v", f"{bundle}:/run/fluxlora-build/ca.crt:ro", "-v", f"{conf}:/etc/pip.conf:ro"]


def build(image: Image, base: str) -> Path:
    build_args = {image.base_arg: base}
    key = image.key(base, build_args)
    archive = image.archive(key)
    if archive.is_file():
        say(f"{image.name} cached (key {key}): {archive}")
        return archive
    say(f"building {image.name} from {image.dockerfile} (key {key})")
    replaced = image_id(image.name)
    started = time.monotonic()
    argv = ["buildah", "bud", "--layers", "--network", "host", "--format", "docker", "-f", image.dockerfile]
    argv += host_trust_volumes()
    for k, v in build_args.items():
        argv += ["--build-arg", f"{k}={v}"]
    # No --label here: buildah puts labels in every step's cache key, so a new key would rebuild
    # every layer. The archive's name carries the key instead.
    argv += ["-t", image.name, str(ROOT)]
    run(argv, f"build {image.name}")
    say(f"built {image.name} in {time.monotonic() - started:.0f} s; saving it for containerd")
    if replaced and replaced != image_id(image.name):
        # The image this build replaced: gigabytes on a small disk. Its layers that the new one
        # shares (and buildah's cache of each step) stay.
        subprocess.run(["buildah", "rmi", replaced], capture_output=True, check=False)
    for old in archive.parent.glob(archive.name.rsplit("-", 1)[0] + "-*.tar"):
        old.unlink()
    tmp = archive.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    run(["buildah", "push", "--quiet", image.name, f"docker-archive:{tmp}:{image.name}"], f"save {image.name}")
    tmp.rename(archive)
    return archive


def image_size(archive: Path) -> int:
    """Uncompressed size of an image's layers in a docker archive."""
    with tarfile.open(archive) as tar:
        return sum(m.size for m in tar.getmembers() if m.name.endswith((".tar", "/layer.tar")))


def built() -> list[Path] | None:
    """The archives of both images as the sources are now, if both are built; else None."""
    base = f"{BASE_NAME}:{BASE_SUITE}-{base_key()}"
    archives = [image.archive(image.key(base, {image.base_arg: base})) for image in (OPERATOR, TRAINER)]
    return archives if all(a.is_file() for a in archives) else None


def build_images(which: Sequence[str] = ("operator", "trainer")) -> list[Path]:
    """Build (or find cached) the images named in `which`; their docker archives."""
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise SystemExit(f"images: '{tool}' is not on PATH (Debian: apt-get install buildah mmdebstrap)")
    started = time.monotonic()
    base = base_image()
    archives = []
    if "operator" in which:
        archives.append(build(OPERATOR, base))
    if "trainer" in which:
        stage_trainer_sources()
        archives.append(build(TRAINER, base))
    say(f"images ready in {time.monotonic() - started:.0f} s")
    return archives


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No `choices`: argparse refuses an empty list against them (Python 3.11).
    parser.add_argument("which", nargs="*", help="operator and/or trainer (default: both)")
    args = parser.parse_args(argv)
    unknown = set(args.which) - {"operator", "trainer"}
    if unknown:
        parser.error(f"unknown image {', '.join(sorted(unknown))}: choose operator and/or trainer")
    archives = build_images(args.which or ["operator", "trainer"])
    for archive in archives:
        say(f"{archive.name}: {image_size(archive) / 2**20:.0f} MiB uncompressed")
        print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
