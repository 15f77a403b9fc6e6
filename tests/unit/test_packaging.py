"""pyproject.toml: what `pip install .` would otherwise warn about (setuptools' deprecations of a
license table, data directories absent from `packages`) stays fixed."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_the_license_is_an_spdx_expression_which_setuptools_77_reads() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (requirement,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=(\d+)", requirement)
    assert match and int(match.group(1)) >= 77, requirement


def _package_dir(package: str) -> Path:
    top, *rest = package.split(".")
    return ROOT / SETUPTOOLS["package-dir"][top] / Path(*rest)


def _dirs_with_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):  # follows the configs symlink
        if path.is_dir() and "__pycache__" not in path.parts and any(p.is_file() for p in path.iterdir()):
            found.append(path)
    return [root, *found]


def test_every_directory_installed_is_a_listed_package_and_every_data_file_is_package_data() -> None:
    """setuptools warns ("Package 'fluxlora.configs' is absent from the `packages` configuration")
    for a directory of data files that is not a listed package."""
    packages = SETUPTOOLS["packages"]
    data = SETUPTOOLS["package-data"]
    for top in SETUPTOOLS["package-dir"]:
        for directory in _dirs_with_files(_package_dir(top)):
            package = ".".join([top, *directory.relative_to(_package_dir(top)).parts])
            assert package in packages, f"{directory} holds files but {package} is not in packages"
            for file in directory.iterdir():
                if file.is_file() and file.suffix != ".py":
                    patterns = data.get(package, [])
                    assert any(fnmatch.fnmatch(file.name, p) for p in patterns), f"{file} is not package data"


def test_ci_installs_exactly_the_floor_pyproject_allows() -> None:
    """constraints/floor.txt (what `make test-floor` installs) pins each runtime dependency (the core
    and the operator extra) at the lower bound pyproject.toml declares, and nothing else."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["operator"]]:
        match = re.match(r"^([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", requirement)
        assert match, f"{requirement}: every runtime dependency has a lower bound"
        floors[match[1].lower().replace("_", "-")] = match[2]
    pinned = {}
    for line in (ROOT / "constraints" / "floor.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip().lower().replace("_", "-")] = version.strip()
    normal = {name: ".".join(v.split(".") + ["0"] * (3 - len(v.split(".")))) for name, v in floors.items()}
    assert pinned == normal


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


OPERATOR_ONLY = {"kopf", "kubernetes", "aiohttp", "prometheus-client"}


def test_each_image_installs_only_what_it_runs() -> None:
    """The core (what the trainer installs of fluxlora) has none of the controller's packages; the
    `operator` extra has them, and the operator's Dockerfile installs it."""
    core = _names(PYPROJECT["project"]["dependencies"])
    assert not core & OPERATOR_ONLY, core
    assert _names(PYPROJECT["project"]["optional-dependencies"]["operator"]) == OPERATOR_ONLY
    trainer = tomllib.loads((ROOT / "trainer-image" / "pyproject.toml").read_text())
    assert _names(trainer["project"]["dependencies"]) & OPERATOR_ONLY == {"kubernetes"}  # its status reports
    assert "'fluxlora[operator]'" in (ROOT / "Dockerfile").read_text()
    assert "pip install /src /src/trainer-image" in (ROOT / "trainer-image" / "Dockerfile").read_text()


def test_the_operator_command_without_its_packages_says_how_to_install_them() -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['kopf'] = None\n"  # as if kopf were not installed
        "from fluxlora.cli import main\n"
        "main(['operator', '--all-namespaces'])\n"
    )
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 1, got
    assert "`fluxlora operator` needs the operator's packages (kopf is not installed" in got.stderr
    assert "pip install 'fluxlora[operator]'" in got.stderr and "Traceback" not in got.stderr
