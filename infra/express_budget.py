"""Worst-case duration of an Express execution of statemachines/inference.asl.json.

An Express workflow execution runs for at most 5 minutes, and one that times out runs no Catch: its batch is neither
stored nor quarantined (AWS Step Functions Developer Guide, "Step Functions service quotas", Express workflows:
maximum execution duration 5 minutes, https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html). So
the state machine must be unable to run that long, whatever fails:

- a Task attempt lasts at most its TimeoutSeconds (then States.Timeout), and a Lambda task attempt at most the
  function's timeout plus its cold-start init (Lambda allows 10 s for the init phase of an on-demand function,
  AWS Lambda Developer Guide, "Lambda execution environment lifecycle",
  https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html);
- each retrier counts its own attempts, so a state makes at most 1 + the sum of its retriers' MaxAttempts attempts;
- the n-th retry of a retrier waits IntervalSeconds * BackoffRate ** (n - 1), at most MaxDelaySeconds when set (full
  jitter only shortens it) (Step Functions Developer Guide, "Handling errors in Step Functions workflows",
  https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html);
- a state reached through Catch has used up its retries first, so every path through Next and Catch edges is
  bounded by the sum of its states' worst cases; the budget is the longest path.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASL_FILE = ROOT / "statemachines" / "inference.asl.json"
EXPRESS_MAX_SECONDS = 300
LAMBDA_INIT_SECONDS = 10
# Task state -> the function it invokes (definition substitution -> construct id)
TASK_FUNCTIONS = {"InvokeModel": "InvokeModelFunction", "StorePredictions": "StorePredictionsFunction",
                  "RecordCost": "RecordCostFunction"}


@dataclass(frozen=True)
class StateBudget:
    name: str
    attempts: int
    attempt_seconds: float
    backoff_seconds: float

    @property
    def seconds(self) -> float:
        return self.attempts * self.attempt_seconds + self.backoff_seconds


def load(path: Path = ASL_FILE) -> dict:
    return json.loads(path.read_text())


def retry_delays(retrier: dict) -> list[float]:
    """The waits before each retry of one retrier (worst case: no jitter reduction)."""
    interval = float(retrier.get("IntervalSeconds", 1))
    rate = float(retrier.get("BackoffRate", 2.0))
    cap = retrier.get("MaxDelaySeconds")
    delays = []
    for n in range(int(retrier.get("MaxAttempts", 3))):
        delay = interval * rate ** n
        delays.append(min(delay, float(cap)) if cap is not None else delay)
    return delays


def state_budget(name: str, state: dict, function_timeouts: dict[str, int] | None = None) -> StateBudget:
    """Worst case of one state. ``function_timeouts``: construct id -> Timeout of the synthesized functions."""
    if state.get("Type") != "Task":
        return StateBudget(name, 1, 0.0, 0.0)
    if "TimeoutSeconds" not in state:
        raise ValueError(f"Task {name} has no TimeoutSeconds: an attempt could last as long as the execution")
    attempt = float(state["TimeoutSeconds"])
    function = TASK_FUNCTIONS.get(name)
    if function and function_timeouts and function in function_timeouts:
        attempt = min(attempt, function_timeouts[function] + LAMBDA_INIT_SECONDS)
    retriers = state.get("Retry", [])
    attempts = 1 + sum(int(r.get("MaxAttempts", 3)) for r in retriers)
    backoff = sum(sum(retry_delays(r)) for r in retriers)
    return StateBudget(name, attempts, attempt, backoff)


def worst_case(asl: dict, function_timeouts: dict[str, int] | None = None) -> tuple[float, list[StateBudget]]:
    """(seconds, the states of the longest path) over every path from StartAt through Next and Catch edges."""
    budgets = {name: state_budget(name, state, function_timeouts) for name, state in asl["States"].items()}
    best: dict[str, tuple[float, list[StateBudget]]] = {}

    def longest(name: str, seen: frozenset) -> tuple[float, list[StateBudget]]:
        if name in seen:
            raise ValueError(f"the state machine loops through {name}: no finite worst case")
        if name in best:
            return best[name]
        state = asl["States"][name]
        successors = ([state["Next"]] if "Next" in state else []) + [c["Next"] for c in state.get("Catch", [])]
        tail = max((longest(s, seen | {name}) for s in successors), key=lambda t: t[0], default=(0.0, []))
        best[name] = (budgets[name].seconds + tail[0], [budgets[name]] + tail[1])
        return best[name]

    return longest(asl["StartAt"], frozenset())


def function_timeout_problems(asl: dict, function_timeouts: dict[str, int]) -> list[str]:
    """Task functions whose timeout plus cold-start init does not fit in their state's TimeoutSeconds (the state
    would cut a healthy invocation short with States.Timeout)."""
    problems = []
    for state_name, function in TASK_FUNCTIONS.items():
        state = asl["States"].get(state_name, {})
        limit = state.get("TimeoutSeconds")
        timeout = function_timeouts.get(function)
        if limit is not None and timeout is not None and timeout + LAMBDA_INIT_SECONDS > limit:
            problems.append(
                f"functions.{function}.timeoutSeconds: {timeout} s + {LAMBDA_INIT_SECONDS} s of cold-start init "
                f"exceeds the {state_name} state's TimeoutSeconds ({limit}) in {ASL_FILE.relative_to(ROOT)}. "
                f"Lower it to at most {limit - LAMBDA_INIT_SECONDS}, or raise TimeoutSeconds as far as the 5-minute "
                f"Express budget allows (tests/infra/test_deploy_readiness.py)")
    return problems
