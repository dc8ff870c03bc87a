"""What a synth was made from, recorded in cdk.out, so a stale or mismatched cdk.out is refused instead of run.

app.py writes ``cdk.out/synth-inputs.json`` after every synth: the effective CDK context, the overrides (``-c``
values that differ from cdk.json), and the sha256 of every input file (cdk.json, app.py, infra/, functions/,
statemachines/, the model artifacts the context names). ``check(cdk_out, overrides)`` compares that record with
the working tree now and with the overrides the caller asks for (``None``: any), and raises ``StaleCdkOut`` with a
message that says what changed and what to run. No CDK import: the demo and the benches use it before starting.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent
RECORD = "synth-inputs.json"
SOURCE_DIRS = ("infra", "functions", "statemachines")
SOURCE_SUFFIXES = (".py", ".json", ".txt", ".yaml", ".yml", "Dockerfile")
ARTIFACT_KEYS = ("modelArtifact", "pytorchModelArtifact")


class StaleCdkOut(Exception):
    pass


def parse_context_args(text: str | list[str] | None) -> dict[str, str]:
    """``-c key=value`` pairs (as the CDK CLI takes them; values stay strings, infra/config.py parses them) from a
    string such as make's ``CDK_CONTEXT="-c batchSize=200 -c featureSet=v2"`` or an argv list."""
    words = shlex.split(text) if isinstance(text, str) else list(text or [])
    pairs: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-c", "--context"):
            if i + 1 >= len(words):
                raise ValueError(f"{word} needs key=value")
            word, i = words[i + 1], i + 1
        elif word.startswith("--context="):
            word = word.split("=", 1)[1]
        else:
            raise ValueError(f"expected -c key=value, got {word!r}")
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value after -c, got {word!r}")
        pairs[key] = value
        i += 1
    return pairs


def format_overrides(overrides: Mapping[str, Any]) -> str:
    return " ".join(f"-c {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(overrides.items())) \
        or "(none)"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_files(context: Mapping[str, Any], root: Path = ROOT) -> dict[str, str]:
    """relative path -> sha256 of every file a synth reads."""
    paths = [root / "cdk.json", root / "app.py"]
    for folder in SOURCE_DIRS:
        paths += [p for p in sorted((root / folder).rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                  and p.name.endswith(SOURCE_SUFFIXES)]
    artifacts = [context.get(k) for k in ARTIFACT_KEYS]
    artifacts += [v.get("modelArtifact") for v in _variants(context) if isinstance(v, dict)]
    paths += [root / a for a in artifacts if isinstance(a, str) and a and (root / a).is_file()]
    return {str(p.relative_to(root)): _sha256(p) for p in dict.fromkeys(paths) if p.is_file()}


def _variants(context: Mapping[str, Any]) -> list:
    raw = context.get("variants")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return raw if isinstance(raw, list) else []


def _cdk_json(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "cdk.json").read_text()).get("context", {}))


def record(outdir: str | Path, context: Mapping[str, Any], root: Path = ROOT) -> dict:
    """Write the record of a synth into ``outdir`` (``context``: the effective context the stack was built from)."""
    base = _cdk_json(root)
    context = {k: v for k, v in context.items() if v is not None}
    data = {"context": context, "overrides": {k: v for k, v in context.items() if base.get(k) != v},
            "files": input_files(context, root)}
    Path(outdir, RECORD).write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    return data


def check(cdk_out: str | Path, overrides: Mapping[str, Any] | None = None, root: Path = ROOT) -> dict:
    """The record of ``cdk_out`` if it matches the working tree (and ``overrides``, when given); else StaleCdkOut."""
    path = Path(cdk_out, RECORD)
    fix = "run `make synth` (with the same CDK_CONTEXT=\"-c key=value ...\" you mean to run with)"
    if not path.is_file():
        raise StaleCdkOut(f"{cdk_out} has no {RECORD}: it was not synthesized by this app.py (or by an older "
                          f"one): {fix}")
    data = json.loads(path.read_text())
    recorded = data["overrides"]
    if overrides is not None:
        wanted = {k: str(v) for k, v in overrides.items()}
        if {k: str(v) for k, v in recorded.items()} != wanted:
            raise StaleCdkOut(f"{cdk_out} was synthesized with {format_overrides(recorded)}, but this run asks for "
                              f"{format_overrides(overrides)}: {fix}")
    now = _cdk_json(root) | recorded
    changed_keys = sorted(k for k in set(now) | set(data["context"]) if now.get(k) != data["context"].get(k))
    if changed_keys:
        raise StaleCdkOut(f"cdk.json changed since {cdk_out} was synthesized ({', '.join(changed_keys)}): {fix}")
    files = input_files(now, root)
    changed = sorted(p for p in set(files) | set(data["files"]) if files.get(p) != data["files"].get(p))
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise StaleCdkOut(f"{cdk_out} is stale: {shown} changed since it was synthesized: {fix}")
    return data
