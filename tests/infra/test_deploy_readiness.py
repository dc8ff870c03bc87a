"""Deploy readiness: the synthesized template (cdk.json's default, serverless A/B) and its instance-mode variant
checked against the AWS limits the local cloud does not enforce. Each test names the AWS document it encodes."""
from __future__ import annotations

import copy
import json

import pytest

from infra import express_budget

EXPRESS_LIMIT = express_budget.EXPRESS_MAX_SECONDS


def _definition(synth) -> dict:
    return json.loads(synth.props("InferenceStateMachine", "AWS::StepFunctions::StateMachine")["DefinitionString"])


def _task_function_timeouts(synth) -> dict[str, int]:
    return {f: synth.function(f)["Timeout"] for f in express_budget.TASK_FUNCTIONS.values()}


# -- Step Functions: the Express 5-minute budget ---------------------------------------------------------------
def test_every_task_state_has_a_timeout(synth):
    """AWS Step Functions Developer Guide, "Task workflow state" (TimeoutSeconds; default 99999999 s,
    https://docs.aws.amazon.com/step-functions/latest/dg/state-task.html): without it one stuck attempt could use the
    whole Express execution."""
    tasks = {n: s for n, s in _definition(synth)["States"].items() if s["Type"] == "Task"}
    assert set(tasks) == {"InvokeModel", "StorePredictions", "RecordCost", "Quarantine"}
    assert all(isinstance(s.get("TimeoutSeconds"), int) and s["TimeoutSeconds"] > 0 for s in tasks.values())


def test_express_worst_case_is_under_five_minutes(synth):
    """AWS Step Functions Developer Guide, "Step Functions service quotas"
    (https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html): an Express execution lasts at most 5
    minutes, and a timed-out one runs no Catch (its batch would be neither stored nor quarantined). Worst case per
    state = attempts (1 + every retrier's MaxAttempts) x the longest attempt (TimeoutSeconds, or the function's
    Timeout from the template + 10 s of Lambda init, "Lambda execution environment lifecycle",
    https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html) + backoff (IntervalSeconds x
    BackoffRate^n, capped by MaxDelaySeconds; "Handling errors in Step Functions workflows",
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html), summed along the longest
    path through Next and Catch (Quarantine included)."""
    seconds, path = express_budget.worst_case(_definition(synth), _task_function_timeouts(synth))
    breakdown = ", ".join(f"{b.name} {b.attempts} x {b.attempt_seconds:.0f} s + {b.backoff_seconds:.0f} s"
                          for b in path if b.seconds)
    assert seconds < EXPRESS_LIMIT, f"worst case {seconds:.0f} s >= {EXPRESS_LIMIT} s: {breakdown}"
    # the numbers as designed (statemachines/inference.asl.json, cdk.json functions): 283 s
    assert [b.name for b in path] == ["InvokeModel", "StorePredictions", "RecordCost", "Done"]
    assert seconds == 2 * 80 + 1 + 2 * 40 + 1 + 2 * 20 + 1 == 283
    # the quarantine path is shorter: InvokeModel + StorePredictions + Quarantine (4 attempts x 5 s + 1 + 2 + 4 s)
    quarantine = express_budget.state_budget("Quarantine", _definition(synth)["States"]["Quarantine"])
    assert quarantine.seconds == 27 and 2 * 80 + 1 + 2 * 40 + 1 + quarantine.seconds < seconds


def test_each_task_function_fits_in_its_state_timeout(synth):
    """A state timeout shorter than the function's timeout plus its init phase (10 s, "Lambda execution environment
    lifecycle", https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html) would cut a healthy
    cold invocation short; config validation refuses it (infra/config.py)."""
    assert express_budget.function_timeout_problems(_definition(synth), _task_function_timeouts(synth)) == []
    states = _definition(synth)["States"]
    for state, function in express_budget.TASK_FUNCTIONS.items():
        assert states[state]["TimeoutSeconds"] == synth.function(function)["Timeout"] + 10, state


def test_the_budget_catches_the_old_definition(synth):
    """Evidence: the definition before this budget (model and Lambda retriers of 3 attempts each, 120 s functions,
    no TimeoutSeconds) had no finite worst case, and with a 130 s state timeout it would have been 17 minutes."""
    old = copy.deepcopy(_definition(synth))
    invoke = old["States"]["InvokeModel"]
    invoke["Retry"] = [{"ErrorEquals": ["ModelThrottledError", "ModelUnavailableError"], "IntervalSeconds": 1,
                        "BackoffRate": 2, "MaxAttempts": 3, "MaxDelaySeconds": 8, "JitterStrategy": "FULL"},
                       {"ErrorEquals": ["Lambda.ServiceException"], "IntervalSeconds": 1, "BackoffRate": 2,
                        "MaxAttempts": 3}]
    del invoke["TimeoutSeconds"]
    with pytest.raises(ValueError, match="InvokeModel has no TimeoutSeconds"):
        express_budget.worst_case(old)
    invoke["TimeoutSeconds"] = 130
    seconds, _ = express_budget.worst_case(old, {"InvokeModelFunction": 120, "StorePredictionsFunction": 60,
                                                 "RecordCostFunction": 30})
    assert seconds > EXPRESS_LIMIT and 7 * 130 <= seconds


def test_retry_delays_follow_backoff_and_max_delay():
    assert express_budget.retry_delays({"IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 5,
                                        "MaxDelaySeconds": 4}) == [1, 2, 4, 4, 4]
    assert express_budget.retry_delays({"IntervalSeconds": 2, "BackoffRate": 1.5, "MaxAttempts": 3}) == [2, 3, 4.5]


def test_one_model_call_fits_in_the_invoke_model_function(synth):
    """One InvokeEndpoint call may take up to 60 s (SageMaker Runtime API Reference, "InvokeEndpoint",
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html); the client's read
    timeout is just above that and boto3 makes one attempt, so a slow model surfaces as ModelUnavailableError (retried
    by the state machine) before the function itself times out (Sandbox.Timedout, which goes to quarantine)."""
    import sys

    sys.path.insert(0, str(express_budget.ROOT / "functions"))
    from pipeline import model_client

    timeout = synth.function("InvokeModelFunction")["Timeout"]
    assert model_client.RUNTIME_CONFIG.retries == {"mode": "standard", "total_max_attempts": 1}
    assert 60 < model_client.READ_TIMEOUT_SECONDS
    assert model_client.READ_TIMEOUT_SECONDS + model_client.CONNECT_TIMEOUT_SECONDS < timeout
