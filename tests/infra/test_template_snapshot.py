"""The synthesized template against a reviewed snapshot (tests/infra/snapshots/): a refactoring of the stack must
leave it identical, any other change shows up in review as a diff of the snapshot (issue 14). Asset hashes are masked
(they change with every edit under functions/). After a deliberate change:

    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/infra/test_template_snapshot.py    # then review `git diff`
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "RealtimeInference.template.json"
HASH = re.compile(r"\b[0-9a-f]{64}\b")


def normalized(template: dict) -> str:
    return HASH.sub("<asset hash>", json.dumps(template, indent=1, sort_keys=True)) + "\n"


def _changed(before: dict, after: dict) -> list[str]:
    """Which resources (logical ids) and top-level sections differ: the failure message, not the diff itself."""
    names = sorted(set(before.get("Resources", {})) | set(after.get("Resources", {})))
    changed = [n for n in names if before.get("Resources", {}).get(n) != after.get("Resources", {}).get(n)]
    sections = [k for k in sorted(set(before) | set(after)) if k != "Resources" and before.get(k) != after.get(k)]
    return changed + sections


def test_the_template_is_the_reviewed_snapshot(synth):
    current = normalized(synth.template)
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(current)
    recorded = SNAPSHOT.read_text()
    assert current == recorded, (
        f"the synthesized template differs from {SNAPSHOT.name} in {_changed(json.loads(recorded), json.loads(current))}"
        ": if the change is meant, rerun with UPDATE_SNAPSHOT=1 and commit the snapshot with the change")
