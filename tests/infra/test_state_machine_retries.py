"""The inference state machine's Retry and Catch fields, asserted in full (every field a mutation of the ASL could
change). Step Functions' documented defaults, which is why a field left out is not "no retry": IntervalSeconds 1,
MaxAttempts 3, BackoffRate 2.0; MaxDelaySeconds caps the backoff and JitterStrategy FULL randomises each wait in
[0, interval] (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ASL_FILE = Path(__file__).resolve().parents[2] / "statemachines" / "inference.asl.json"
LAMBDA_ERRORS = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                 "Lambda.TooManyRequestsException"]


@pytest.fixture(scope="module")
def states() -> dict:
    return json.loads(ASL_FILE.read_text())["States"]


def test_the_model_retrier_backs_off_with_full_jitter_up_to_4_seconds(states):
    assert states["InvokeModel"]["Retry"] == [{
        "ErrorEquals": ["ModelThrottledError", "ModelUnavailableError"] + LAMBDA_ERRORS,
        "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 1, "MaxDelaySeconds": 4, "JitterStrategy": "FULL"}]


@pytest.mark.parametrize("name", ["StorePredictions", "RecordCost"])
def test_the_other_lambda_tasks_retry_transient_lambda_errors_once(states, name):
    assert states[name]["Retry"] == [{"ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 1, "BackoffRate": 2,
                                      "MaxAttempts": 1}]


def test_quarantine_retries_every_error_three_times_and_catches_nothing(states):
    """Sending the batch to the quarantine queue is the last resort: any error is retried (3 attempts after the
    first, 1 s then 2 s then 4 s); if it still fails the execution fails (no Catch), which the alarms report."""
    quarantine = states["Quarantine"]
    assert quarantine["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "BackoffRate": 2,
                                    "MaxAttempts": 3}]
    assert "Catch" not in quarantine and quarantine["Next"] == "Quarantined"


@pytest.mark.parametrize("name, target", [("InvokeModel", "Quarantine"), ("StorePredictions", "Quarantine"),
                                          ("RecordCost", "CostNotRecorded")])
def test_every_error_of_a_lambda_task_is_caught_with_the_input_kept(states, name, target):
    assert states[name]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": target}]


def test_the_quarantine_retries_wait_1_2_and_4_seconds(states):
    """(The Express 5-minute budget of the whole path is tests/infra/test_deploy_readiness.py's.)"""
    retrier = states["Quarantine"]["Retry"][0]
    waits = [min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** k, retrier.get("MaxDelaySeconds", 1e9))
             for k in range(retrier["MaxAttempts"])]
    assert waits == [1, 2, 4]
