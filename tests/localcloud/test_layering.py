"""The local cloud's layers (issue 14): the runtime emulators run from the records in localcloud/specs.py and never
import the deployer (which fills those records, with its provisioners) or the LocalCloud that wires them together;
only the wiring and the command line import the deployer. Read from the source, so no import order hides a
dependency."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "localcloud"
NOT_EMULATORS = {"cloud.py", "__main__.py", "__init__.py", "deployer.py", "provisioners.py"}  # wiring and deploying
# modules that import the LocalCloud type for annotations only (they are given the cloud they drive)
CLOUD_USERS = {"control.py"}


def _local_imports(path: Path) -> dict[str, bool]:
    """localcloud modules imported by ``path`` -> whether only for type checking."""
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for node in ast.walk(block)}
    found: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [alias.name for alias in node.names]
            for name in names:
                found[name] = found.get(name, True) and id(node) in typing_only
    return found


def test_no_runtime_emulator_imports_the_deployer_or_the_cloud():
    offenders = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name in NOT_EMULATORS:
            continue
        imports = _local_imports(path)
        bad = {name for name in ("deployer", "cloud") if name in imports}
        if path.name in CLOUD_USERS and imports.get("cloud"):
            bad.discard("cloud")
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, offenders
