"""What a merge can leave behind without any other test noticing: conflict markers in a tracked file (a README once
shipped with them), and a tracked .venv or node_modules (a worktree's symlinks, committed by `git add -A`; a merge
that brings them in replaces the developer's real directories with them)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def _tracked() -> list[str]:
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in result.stdout.decode().split("\0") if p]


def test_no_environment_directories_are_tracked():
    tracked = _tracked()
    assert tracked, "not a git checkout?"
    for name in (".venv", "node_modules", "cdk.out", ".localcloud", "model/artifacts"):
        assert not [p for p in tracked if p == name or p.startswith(name + "/")], name


def test_no_merge_conflict_markers_in_tracked_text():
    found = []
    for path in _tracked():
        file = ROOT / path
        if file.is_symlink() or not file.is_file() or file.suffix in (".png", ".gz", ".ico"):
            continue
        text = file.read_bytes()
        if b"\0" in text[:4096]:
            continue
        found += [f"{path}: {m.group(0).strip()}" for m in MARKER.finditer(text.decode("utf-8", "replace"))]
    assert found == []
