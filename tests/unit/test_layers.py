"""The layers of the code, as folders, and the directions imports may take between them.

From the bottom: the pod contract (what the trainer imports of the operator's package), the API
(the resource's types, engine settings, CRD, document decoding), the spec core (from a document
to what runs), the planner (status from what the API says), then the controller (kopf handlers,
dispatch, kube client) and the dashboard side by side, and the CLI on top. A module may import
its own layer and the layers below it, never above; the controller and the dashboard never
import each other; the trainer (fluxlora_trainer) imports nothing of the operator but the
contract. Checked on the source (every import statement, lazy ones inside functions too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "fluxlora"
TRAINER = ROOT / "trainer-image" / "fluxlora_trainer"

# Layer of each package of fluxlora, from the bottom; the same rank: neither imports the other.
RANK = {"contract": 0, "api": 1, "spec": 2, "planner": 3, "controller": 4, "dashboard": 4, "cli": 5}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of fluxlora (None: not fluxlora's, or the package itself)."""
    parts = module.split(".")
    if parts[0] != "fluxlora" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def imported_modules(source: str, module: str) -> list[list[str]]:
    """The modules each import statement of ``source`` names (``from a import b``: a and a.b)."""
    out = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.append([alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            out.append([base, *(f"{base}.{alias.name}" for alias in node.names)])
    return out


def violations(modules: Iterable[tuple[str, str]]) -> list[str]:
    """One line per import statement against the layers, for (module, source) pairs."""
    found = []
    for module, source in modules:
        mine = layer_of(module)
        trainer = module.startswith("fluxlora_trainer")
        for statement in imported_modules(source, module):
            for target in statement:
                theirs = layer_of(target)
                if theirs is None:
                    continue
                if trainer and theirs != "contract":
                    found.append(f"{module} imports {target}: the trainer imports only fluxlora.contract")
                    break
                if mine is not None and mine != theirs and RANK[theirs] >= RANK[mine]:
                    found.append(f"{module} ({mine}) imports {target} ({theirs}): not a lower layer")
                    break
    return found


def _sources() -> list[tuple[str, str]]:
    out = []
    for root, name in ((OPERATOR, "fluxlora"), (TRAINER, "fluxlora_trainer")):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            dotted = ".".join((name, *parts)).removesuffix(".__init__")
            out.append((dotted, path.read_text(encoding="utf-8")))
    return out


def test_the_folders_are_the_layers() -> None:
    folders = {p.name for p in OPERATOR.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(RANK) - {"cli"}, folders
    loose = {p.stem for p in OPERATOR.glob("*.py")} - {"__init__"}
    assert loose == {"cli"}, f"modules outside a layer's folder: {loose}"


def test_no_import_goes_up_a_layer_and_the_trainer_imports_only_the_contract() -> None:
    assert violations(_sources()) == []


def test_an_upward_import_is_found() -> None:
    """The check fails on what it must refuse (and not on what is allowed)."""
    upward = [
        ("fluxlora.contract.layout", "from fluxlora.controller import kube\n"),
        ("fluxlora.spec.rules", "def f():\n    from fluxlora.planner.status import plan\n"),
        ("fluxlora.controller.handlers", "import fluxlora.dashboard.app\n"),
        ("fluxlora_trainer.cli", "from fluxlora.api.settings import EngineSettings\n"),
        ("fluxlora.api.crd", "from ..spec import profiles\n"),
    ]
    assert len(violations(upward)) == len(upward), violations(upward)
    allowed = [
        ("fluxlora.planner.status", "from fluxlora.spec import manifests\nfrom fluxlora.planner import model\n"),
        ("fluxlora_trainer.cli", "from fluxlora.contract.model import LIKENESS_THRESHOLD\nimport json\n"),
        ("fluxlora.cli", "from fluxlora.controller import handlers\nfrom fluxlora.dashboard import app\n"),
    ]
    assert violations(allowed) == []


def test_no_module_is_over_600_lines() -> None:
    long = {name: len(src.splitlines()) for name, src in _sources() if len(src.splitlines()) > 600}
    assert long == {}, long
