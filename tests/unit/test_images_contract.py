"""What the Dockerfiles copy is what the packages they install need, and the operator image gets
nothing of the trainer's. (The images themselves are built by `make images` and run on the test
cluster's real node: tests/cluster/test_real_node.py, tests/engine/test_real_node_training.py.)"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from tests.cluster import images

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_DOCKERFILE = ROOT / "Dockerfile"
TRAINER_DOCKERFILE = ROOT / "trainer-image" / "Dockerfile"
# The distributions each Dockerfile installs (directories holding a pyproject.toml).
INSTALLS = {OPERATOR_DOCKERFILE: [ROOT], TRAINER_DOCKERFILE: [ROOT, ROOT / "trainer-image"]}


copied = images.copied_sources  # what the image builder hashes is what these tests check


def is_copied(path: Path, sources: list[Path]) -> bool:
    return any(path == s or s in path.parents for s in sources)


def needed(project_dir: Path) -> list[Path]:
    """What `pip install <project_dir>` reads: its pyproject, readme, and package directories."""
    project = tomllib.loads((project_dir / "pyproject.toml").read_text())
    paths = [project_dir / "pyproject.toml", project_dir / project["project"]["readme"]]
    setuptools = project["tool"]["setuptools"]
    dirs = setuptools.get("package-dir") or {p: p for p in setuptools["packages"] if "." not in p}
    return paths + [project_dir / d for d in dirs.values()]


@pytest.mark.parametrize("dockerfile", list(INSTALLS), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_dockerfile_copies_everything_the_packages_it_installs_read(dockerfile: Path) -> None:
    sources = copied(dockerfile)
    for project_dir in INSTALLS[dockerfile]:
        for path in needed(project_dir):
            assert is_copied(path, sources), f"{dockerfile.name} installs {project_dir.name} but does not copy {path}"
            # A link inside a copied tree must point into a copied tree too, or it dangles in the
            # build (operator/fluxlora/configs links to configs/).
            for link in [p for p in [path, *path.rglob("*")] if p.is_symlink()] if path.is_dir() else []:
                target = link.resolve()
                assert is_copied(target, sources), f"{link} -> {target} is not copied by {dockerfile.name}"


def test_the_operator_image_copies_nothing_of_the_trainer() -> None:
    assert not [s for s in copied(OPERATOR_DOCKERFILE) if (ROOT / "trainer-image") in [s, *s.parents]]


def test_the_build_context_keeps_what_the_dockerfiles_copy() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    for dockerfile in INSTALLS:
        for source in copied(dockerfile):
            relative = str(source.relative_to(ROOT))
            assert not any(fnmatch.fnmatch(relative, pattern) for pattern in ignored), relative


def test_the_trainer_command_is_installed_only_with_its_packages() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    trainer = tomllib.loads((ROOT / "trainer-image" / "pyproject.toml").read_text())["project"]
    assert "fluxlora-trainer" not in root["scripts"]
    assert trainer["scripts"] == {"fluxlora-trainer": "fluxlora_trainer.cli:main"}
    names = {re.split(r"[<>=~! \[]", r, maxsplit=1)[0].lower() for r in root["dependencies"]}
    assert not names & {"pillow", "numpy", "dlib-bin", "face-recognition-models", "nvidia-ml-py", "torch"}
    # The runtime needs the operator's package at the same version (the pod contract it shares).
    assert f"fluxlora=={root['version']}" in [r.split()[0] for r in trainer["dependencies"]]
