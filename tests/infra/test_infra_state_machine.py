"""statemachines/inference.asl.json and the state machine resource that loads it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASL_FILE = ROOT / "statemachines" / "inference.asl.json"
SUBSTITUTIONS = {"InvokeModelFunctionArn", "StorePredictionsFunctionArn", "RecordCostFunctionArn",
                 "QuarantineQueueUrl"}
LAMBDA_ERRORS = ["Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                 "Lambda.TooManyRequestsException"]


@pytest.fixture(scope="module")
def asl() -> dict:
    return json.loads(ASL_FILE.read_text())


def test_state_machine_resource(synth):
    props = synth.props("InferenceStateMachine", "AWS::StepFunctions::StateMachine")
    assert props["StateMachineType"] == "EXPRESS"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ERROR" and logging["IncludeExecutionData"] is False
    assert logging["Destinations"] == [{"CloudWatchLogsLogGroup": {"LogGroupArn": {
        "Fn::GetAtt": [synth.logical_id("InferenceLogs", "AWS::Logs::LogGroup"), "Arn"]}}}]
    # The definition is the file, verbatim (DefinitionBody.from_string): the local cloud and tests read it here.
    assert json.loads(props["DefinitionString"]) == json.loads(ASL_FILE.read_text())


def test_definition_substitutions(synth):
    props = synth.props("InferenceStateMachine", "AWS::StepFunctions::StateMachine")
    substitutions = props["DefinitionSubstitutions"]
    assert set(substitutions) == SUBSTITUTIONS
    for key, function_id in (("InvokeModelFunctionArn", "InvokeModelFunction"),
                             ("StorePredictionsFunctionArn", "StorePredictionsFunction"),
                             ("RecordCostFunctionArn", "RecordCostFunction")):
        assert substitutions[key] == {"Fn::GetAtt": [synth.logical_id(function_id, "AWS::Lambda::Function"), "Arn"]}
    assert substitutions["QuarantineQueueUrl"] == {"Ref": synth.logical_id("QuarantineQueue", "AWS::SQS::Queue")}
    # every placeholder in the file has a substitution, and every substitution is used
    assert set(re.findall(r"\$\{(\w+)\}", ASL_FILE.read_text())) == SUBSTITUTIONS


def test_state_machine_role(synth):
    statements = synth.policy_statements("InferenceStateMachineRole")
    [invoke] = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert sorted(r["Fn::GetAtt"][0] for r in invoke["Resource"]) == sorted(
        synth.logical_id(f, "AWS::Lambda::Function")
        for f in ("InvokeModelFunction", "StorePredictionsFunction", "RecordCostFunction"))
    [send] = [s for s in statements if s["Action"] == "sqs:SendMessage"]
    assert send["Resource"] == {"Fn::GetAtt": [synth.logical_id("QuarantineQueue", "AWS::SQS::Queue"), "Arn"]}


def test_flow(asl):
    states = asl["States"]
    assert asl["StartAt"] == "InvokeModel"
    assert states["InvokeModel"]["Next"] == "StorePredictions"
    assert states["StorePredictions"]["Next"] == "RecordCost"
    assert states["RecordCost"]["Next"] == "Done"
    assert states["Done"]["Type"] == "Succeed"
    assert states["Quarantine"]["Next"] == "Quarantined"
    assert states["Quarantined"] == {"Type": "Fail", "Error": "BatchQuarantined", "Cause": states["Quarantined"]["Cause"]}
    assert states["CostNotRecorded"] == {"Type": "Pass", "Comment": states["CostNotRecorded"]["Comment"],
                                         "Next": "Done"}


def _reachable(asl: dict) -> set[str]:
    seen, todo = set(), [asl["StartAt"]]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = asl["States"][name]
        todo += [state["Next"]] if "Next" in state else []
        todo += [c["Next"] for c in state.get("Catch", [])]
    return seen


def test_every_state_reachable_and_every_target_exists(asl):
    assert _reachable(asl) == set(asl["States"])


@pytest.mark.parametrize("name,function", [("InvokeModel", "InvokeModelFunctionArn"),
                                           ("StorePredictions", "StorePredictionsFunctionArn"),
                                           ("RecordCost", "RecordCostFunctionArn")])
def test_lambda_tasks(asl, name, function):
    state = asl["States"][name]
    assert state["Type"] == "Task"
    assert state["Resource"] == "arn:aws:states:::lambda:invoke"
    assert state["Parameters"] == {"FunctionName": "${" + function + "}", "Payload.$": "$"}
    assert state["OutputPath"] == "$.Payload"
    # transient Lambda errors are retried (once: the 5-minute Express budget, tests/infra/test_deploy_readiness.py)
    [retrier] = state["Retry"]
    assert retrier["ErrorEquals"][-len(LAMBDA_ERRORS):] == LAMBDA_ERRORS and retrier["MaxAttempts"] == 1
    assert state["TimeoutSeconds"] >= 1
    [catch] = state["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error"
    assert catch["Next"] == ("CostNotRecorded" if name == "RecordCost" else "Quarantine")


def test_invoke_model_retries_model_errors_with_backoff(asl):
    retriers = asl["States"]["InvokeModel"]["Retry"]
    [model] = retriers     # one retrier: model and Lambda errors share its attempt count (the Express budget)
    assert model["ErrorEquals"] == ["ModelThrottledError", "ModelUnavailableError"] + LAMBDA_ERRORS
    assert (model["IntervalSeconds"], model["BackoffRate"], model["MaxAttempts"]) == (1, 2, 1)
    assert (model["MaxDelaySeconds"], model["JitterStrategy"]) == (4, "FULL")
    # ModelError (the container rejected the input) is not retried anywhere: it goes straight to quarantine
    assert not [r for r in retriers if "ModelError" in r["ErrorEquals"] or "States.ALL" in r["ErrorEquals"]]
    # small intervals: the local cloud (moto) sleeps for real
    for state in asl["States"].values():
        for retrier in state.get("Retry", []):
            assert retrier["IntervalSeconds"] <= 1 and retrier["MaxAttempts"] <= 3


def test_quarantine_sends_the_whole_state(asl):
    state = asl["States"]["Quarantine"]
    assert state["Resource"] == "arn:aws:states:::sqs:sendMessage"
    assert state["Parameters"] == {"QueueUrl": "${QuarantineQueueUrl}", "MessageBody.$": "$"}
    assert "InputPath" not in state   # $ is the failed state with $.error, i.e. the batch (rows or predictions)


def test_moto_parses_the_definition(asl):
    """The local cloud executes the state machine with moto's ASL interpreter: it must accept every field used
    (JitterStrategy and MaxDelaySeconds included)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    text = ASL_FILE.read_text()
    for key in SUBSTITUTIONS:
        value = "https://sqs.us-east-1.amazonaws.com/123456789012/q" if key == "QuarantineQueueUrl" else \
            f"arn:aws:lambda:us-east-1:123456789012:function:{key}"
        text = text.replace("${" + key + "}", value)
    program, _ = AmazonStateLanguageParser.parse(text)
    assert set(program.states.states) == set(asl["States"])
