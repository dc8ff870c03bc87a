"""Mutation testing of the state machines' Retry and Catch fields (statemachines/*.asl.json): mutmut mutates Python
only. Each mutant is one changed field (a retrier or catcher dropped, a number moved by one, the jitter or the max
delay removed, an error dropped from ErrorEquals, a Catch sent elsewhere or its ResultPath changed), written into a
staging copy (.mutation/asl/) and run against the tests that read the ASL. A field removed where its value is the
documented default (IntervalSeconds 1, MaxAttempts 3, BackoffRate 2.0: https://docs.aws.amazon.com/step-functions/
latest/dg/concepts-error-handling.html) changes nothing and is not generated."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".mutation" / "asl"
DEFAULTS = {"IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2}
# (test directory, pytest arguments): the tests that read the ASL file, without the ones that synthesize the app
TEST_RUNS = [
    ["tests/infra/test_infra_state_machine.py", "tests/infra/test_state_machine_retries.py",
     "-k", "not state_machine_resource and not definition_substitutions and not state_machine_role"],
    ["tests/unit/test_model_client.py", "-k", "state_machine"],
]


def _editor(definition: dict, name: str, field: str, i: int):
    """edit(change, what): a copy of ``definition`` with ``change(entry, state)`` applied to state ``name``'s
    ``field``[i] (a Retry or Catch entry), described as "<state>.<field>[i] <what>"."""
    def edit(change, what):
        mutated = copy.deepcopy(definition)
        change(mutated["States"][name][field][i], mutated["States"][name])
        return f"{name}.{field}[{i}] {what}", mutated
    return edit


def mutants(definition: dict):
    """(description, mutated definition) for every Retry/Catch mutation of every state."""
    names = list(definition["States"])
    for name, state in definition["States"].items():
        for i, retrier in enumerate(state.get("Retry", [])):
            edit = _editor(definition, name, "Retry", i)
            yield edit(lambda r, s: s["Retry"].pop(i), "dropped")
            for field in ("IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds"):
                if field not in retrier:
                    continue
                value = retrier[field]
                yield edit(lambda r, s, f=field: r.__setitem__(f, r[f] + 1), f"{field} +1")
                if value - 1 >= (0 if field == "MaxAttempts" else 1):
                    yield edit(lambda r, s, f=field: r.__setitem__(f, r[f] - 1), f"{field} -1")
                if DEFAULTS.get(field) != value:
                    yield edit(lambda r, s, f=field: r.pop(f), f"{field} removed")
            if "JitterStrategy" in retrier:
                yield edit(lambda r, s: r.__setitem__("JitterStrategy", "NONE"), "JitterStrategy NONE")
                yield edit(lambda r, s: r.pop("JitterStrategy"), "JitterStrategy removed")
            for error in retrier["ErrorEquals"] if len(retrier["ErrorEquals"]) > 1 else []:
                yield edit(lambda r, s, e=error: r["ErrorEquals"].remove(e), f"ErrorEquals without {error}")
            if retrier["ErrorEquals"] != ["States.ALL"]:
                yield edit(lambda r, s: r.__setitem__("ErrorEquals", ["States.ALL"]), "ErrorEquals States.ALL")
        for i, catcher in enumerate(state.get("Catch", [])):
            edit = _editor(definition, name, "Catch", i)
            yield edit(lambda c, s: s["Catch"].pop(i), "dropped")
            yield edit(lambda c, s: c.__setitem__("ErrorEquals", ["States.TaskFailed"]), "ErrorEquals TaskFailed")
            yield edit(lambda c, s: c.__setitem__("ResultPath", "$"), "ResultPath $")
            yield edit(lambda c, s: c.pop("ResultPath"), "ResultPath removed")
            other = next(n for n in names if n not in (catcher["Next"], name))
            yield edit(lambda c, s, o=other: c.__setitem__("Next", o), f"Next {other}")


def stage() -> None:
    shutil.rmtree(TREE, ignore_errors=True)
    TREE.mkdir(parents=True)
    for name in ("tests", "statemachines"):
        shutil.copytree(ROOT / name, TREE / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", TREE / "pyproject.toml")
    for name in ("infra", "functions", "app.py", "cdk.json", "model", "scripts"):
        (TREE / name).symlink_to(ROOT / name)


def killed() -> bool:
    for args in TEST_RUNS:
        run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider", *args], cwd=TREE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if run.returncode == 1:
            return True
        if run.returncode not in (0, 5):
            raise RuntimeError(f"pytest {args} exited {run.returncode}")
    return False


def run() -> dict:
    started = time.monotonic()
    stage()
    results = {}
    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        original = path.read_text()
        target = TREE / "statemachines" / path.name
        if killed():
            raise RuntimeError("the tests fail on the unmutated ASL")
        for description, mutated in mutants(json.loads(original)):
            target.write_text(json.dumps(mutated, indent=2))
            results[f"{path.name}: {description}"] = killed()
        target.write_text(original)
    run_ = len(results)
    kills = sum(results.values())
    summary = {"module": "asl", "mutants": run_, "run": run_, "killed": kills, "score": kills / run_ if run_ else 0.0,
               "survivors": sorted(k for k, v in results.items() if not v),
               "seconds": round(time.monotonic() - started)}
    (ROOT / ".mutation" / "asl.json").write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    result = run()
    print(f"asl {result['killed']}/{result['run']} killed ({100 * result['score']:.1f} %)")
    print("\n".join(result["survivors"]))
