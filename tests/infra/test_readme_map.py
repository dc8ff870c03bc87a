"""The README's "Where things are" table: every path it names exists, and every module of the runtime library and
of the local cloud is in it (a module added without a line there fails here), so a newcomer finds any piece in one
guess (issue 14)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNLISTED = {"functions/pipeline/__init__.py", "functions/pipeline/optimizer/__init__.py", "localcloud/__init__.py",
            "localcloud/__main__.py", "localcloud/_worker.py", "localcloud/errors.py",
            "localcloud/naming.py"}  # plumbing, found from the rest


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("### Where things are")
    return readme[start:readme.index("\n#", start + 1)]


def _paths() -> set[str]:
    found = set()
    for code in re.findall(r"`([^`\s]+)`", _section()):
        path = code.split("<")[0].rstrip("/")  # functions/<name>/handler.py -> functions
        if "/" in code or code.endswith((".py", ".json", ".md")):
            found.add(path)
    return found


def test_every_named_path_exists():
    missing = sorted(p for p in _paths() if p and not (ROOT / p).exists())
    assert not missing, missing


def test_every_library_and_local_cloud_module_is_named():
    # rglob: the modules of a package (functions/pipeline/optimizer/) are named one by one too
    modules = {str(p.relative_to(ROOT)) for d in ("functions/pipeline", "localcloud") for p in (ROOT / d).rglob("*.py")
               if "__pycache__" not in p.parts}
    unnamed = sorted(modules - UNLISTED - _paths())
    assert not unnamed, f"add these to README.md's 'Where things are': {unnamed}"
