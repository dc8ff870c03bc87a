"""State machines from the template run in moto and call the local Lambda host: Retry, Catch, SQS tasks."""
import json

import pytest

from cloudkit import FakeCdkOut, aws_client, wait_for
from localcloud import LocalCloud

HANDLERS = '''
import os


class ModelThrottledError(Exception):
    pass


class ModelError(Exception):
    pass


def flaky(event, context):
    """Fails with ModelThrottledError on the first two attempts of each execution id."""
    marker = os.path.join(os.environ["COUNTER_DIR"], event["id"])
    attempts = int(open(marker).read()) if os.path.exists(marker) else 0
    with open(marker, "w") as fh:
        fh.write(str(attempts + 1))
    if attempts < 2:
        raise ModelThrottledError(f"throttled (attempt {attempts + 1})")
    return {"id": event["id"], "attempts": attempts + 1, "poison": event.get("poison", False)}


def score(event, context):
    if event.get("poison"):
        raise ModelError("the container rejected the input")
    return {"id": event["id"], "score": 0.5}
'''

DEFINITION = json.dumps({
    "StartAt": "InvokeModel",
    "States": {
        "InvokeModel": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "${FlakyFunctionArn}", "Payload.$": "$"}, "OutputPath": "$.Payload",
            "Retry": [{"ErrorEquals": ["ModelThrottledError"], "IntervalSeconds": 1, "MaxAttempts": 3,
                       "BackoffRate": 1.0}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Quarantine"}],
            "Next": "Score"},
        "Score": {
            "Type": "Task", "Resource": "${ScoreFunctionArn}",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Quarantine"}],
            "Next": "Done"},
        "Quarantine": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                       "Parameters": {"QueueUrl": "${QuarantineQueueUrl}", "MessageBody.$": "$"},
                       "Next": "Quarantined"},
        "Quarantined": {"Type": "Fail", "Error": "Quarantined"},
        "Done": {"Type": "Succeed"}}})


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("sfn")
    counters = root / "counters"
    counters.mkdir()
    out = FakeCdkOut(root / "cdk.out", stack="StatesTestStack")
    code = out.code_asset({"steps.py": HANDLERS})
    out.add("QuarantineQueue", "AWS::SQS::Queue")
    out.function("FlakyFunction", "steps.flaky", code, {"COUNTER_DIR": str(counters)})
    out.function("ScoreFunction", "steps.score", code)
    out.add("MachineRole", "AWS::IAM::Role", {"AssumeRolePolicyDocument": {}})
    out.add("InferenceStateMachine", "AWS::StepFunctions::StateMachine", {
        "DefinitionString": DEFINITION, "StateMachineType": "EXPRESS",
        "RoleArn": {"Fn::GetAtt": ["MachineRole", "Arn"]},
        "DefinitionSubstitutions": {"FlakyFunctionArn": {"Fn::GetAtt": ["FlakyFunction", "Arn"]},
                                    "ScoreFunctionArn": {"Fn::GetAtt": ["ScoreFunction", "Arn"]},
                                    "QuarantineQueueUrl": {"Ref": "QuarantineQueue"}}})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False) as c:
        c.deploy()
        yield c


def run(cloud, payload: dict) -> dict:
    sfn = aws_client(cloud, "stepfunctions")
    arn = sfn.start_execution(stateMachineArn=cloud.resources["InferenceStateMachine"],
                              input=json.dumps(payload))["executionArn"]
    return wait_for(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
        sfn.describe_execution(executionArn=arn)), timeout=30, what="the execution to finish")


def test_retry_on_a_custom_error_type_then_success(cloud):
    execution = run(cloud, {"id": "ok-1"})
    assert execution["status"] == "SUCCEEDED", execution
    assert json.loads(execution["output"]) == {"id": "ok-1", "score": 0.5}
    history = aws_client(cloud, "stepfunctions").get_execution_history(
        executionArn=execution["executionArn"])["events"]
    failed = [e for e in history if e["type"] == "TaskFailed"]
    assert len(failed) == 2 and all(e["taskFailedEventDetails"]["error"] == "ModelThrottledError" for e in failed)
    assert cloud.stepfunctions_in_flight() == 0


def test_catch_sends_the_state_to_sqs_and_fails(cloud):
    execution = run(cloud, {"id": "bad-1", "poison": True})
    assert execution["status"] == "FAILED" and execution.get("error") == "Quarantined"
    sqs = aws_client(cloud, "sqs")
    messages = sqs.receive_message(QueueUrl=cloud.resources["QuarantineQueue"], MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    [body] = [b for b in bodies if b.get("id") == "bad-1"]
    assert body["error"]["Error"] == "ModelError"
    assert json.loads(body["error"]["Cause"])["errorMessage"] == "the container rejected the input"
    assert cloud.wait_idle(10)
