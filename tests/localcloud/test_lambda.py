"""The local Lambda host behind the gateway: invoke, error shape, timeout, crash, environment, logs."""
import json
import os
import threading
import time

import pytest
from botocore.exceptions import ClientError

from cloudkit import FakeCdkOut, aws_client, wait_for
from localcloud import LocalCloud
from localcloud.errors import FunctionError

HANDLERS = '''
import json, os, sys, time
import boto3


class ModelThrottledError(Exception):
    pass


def echo(event, context):
    print("echo got", json.dumps(event))
    return {"event": event, "env": dict(os.environ), "cwd": os.getcwd(), "path0": sys.path[0],
            "modules": sorted(m for m in sys.modules
                              if m.split(".")[0] in ("localcloud", "moto", "cloudkit", "conftest")),
            "context": {"function_name": context.function_name, "memory": context.memory_limit_in_mb,
                        "arn": context.invoked_function_arn, "request_id": context.aws_request_id,
                        "remaining": context.get_remaining_time_in_millis(), "log_group": context.log_group_name}}


def fail(event, context):
    raise ModelThrottledError("endpoint throttled")


def slow(event, context):
    time.sleep(event.get("sleep", 5))
    return "done"


def crash(event, context):
    os._exit(3)


def put_item(event, context):
    table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
    table.put_item(Item={"pk": event["pk"], "v": event["v"]})
    return table.get_item(Key={"pk": event["pk"]})["Item"]["v"]


def to_queue(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps(event))
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    out = FakeCdkOut(tmp_path_factory.mktemp("lambda") / "cdk.out", stack="LambdaTestStack")
    code = out.code_asset({"app/__init__.py": "", "app/handlers.py": HANDLERS})
    out.add("Table", "AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"})
    out.add("Queue", "AWS::SQS::Queue")
    env = {"TABLE": {"Ref": "Table"}, "QUEUE_URL": {"Ref": "Queue"}, "LITERAL": "x", "NUMBER": 5}
    out.function("EchoFunctionAB12CD34", "app.handlers.echo", code, env, memory=256)
    out.function("FailFunction", "app.handlers.fail", code, env)
    out.function("SlowFunction", "app.handlers.slow", code, env, timeout=1)
    out.function("CrashFunction", "app.handlers.crash", code, env)
    out.function("PutItemFunction", "app.handlers.put_item", code, env)
    out.function("ToQueueFunction", "app.handlers.to_queue", code, env)
    out.function("BrokenFunction", "app.missing.handler", code, env)
    os.environ["LOCALCLOUD_TEST_HOST_SECRET"] = "must-not-leak"
    try:
        with LocalCloud(cdk_out=out.write(), state_dir=tmp_path_factory.mktemp("state"), api_port=0,
                        run_schedules=False) as c:
            c.deploy()
            yield c
    finally:
        os.environ.pop("LOCALCLOUD_TEST_HOST_SECRET", None)


def name(cloud, logical_id):
    return cloud.resources[logical_id]


def test_invoke_through_the_gateway_with_the_function_environment(cloud):
    client = aws_client(cloud, "lambda")
    response = client.invoke(FunctionName=name(cloud, "EchoFunctionAB12CD34"), Payload=json.dumps({"a": 1}))
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    body = json.loads(response["Payload"].read())
    assert body["event"] == {"a": 1}
    env = body["env"]
    assert env["TABLE"] == cloud.resources["Table"] and env["QUEUE_URL"] == cloud.resources["Queue"]
    assert env["LITERAL"] == "x" and env["NUMBER"] == "5"
    assert env["AWS_ENDPOINT_URL"] == cloud.endpoint_url
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name(cloud, "EchoFunctionAB12CD34")
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256" and env["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "LOCALCLOUD_TEST_HOST_SECRET" not in env  # exactly the function's environment, nothing of the host
    spec = cloud.lambda_host.spec("EchoFunctionAB12CD34")
    assert body["cwd"] == body["path0"] == str(spec.code_dir)
    assert body["modules"] == []  # nothing of the parent process is imported into the sandbox
    context = body["context"]
    assert context["function_name"] == spec.name and context["memory"] == "256"
    assert context["arn"] == spec.arn and 0 < context["remaining"] <= 10000 and context["request_id"]
    assert context["log_group"] == f"/aws/lambda/{spec.name}"


def test_invoke_by_arn_logical_id_and_construct_id(cloud):
    spec = cloud.lambda_host.spec("EchoFunctionAB12CD34")
    client = aws_client(cloud, "lambda")
    assert json.loads(client.invoke(FunctionName=spec.arn, Payload=b'{"b":2}')["Payload"].read())["event"] == {"b": 2}
    assert cloud.invoke("EchoFunction", {"c": 3})["event"] == {"c": 3}  # construct id without the hash suffix


def test_function_error_shape(cloud):
    response = aws_client(cloud, "lambda").invoke(FunctionName=name(cloud, "FailFunction"), Payload=b"{}")
    assert response["StatusCode"] == 200 and response["FunctionError"] == "Unhandled"
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "ModelThrottledError" and payload["errorMessage"] == "endpoint throttled"
    assert isinstance(payload["stackTrace"], list) and "handlers.py" in "".join(payload["stackTrace"])
    with pytest.raises(FunctionError) as caught:
        cloud.invoke("FailFunction", {})
    assert caught.value.error_type == "ModelThrottledError"


def test_timeout_kills_the_worker_and_the_next_call_gets_a_fresh_one(cloud):
    started = time.monotonic()
    result = cloud.invoke_raw("SlowFunction", {"sleep": 30})
    assert time.monotonic() - started < 5
    assert result.function_error == "Unhandled" and result.json()["errorType"] == "Sandbox.Timedout"
    assert "timed out after 1.00 seconds" in result.json()["errorMessage"]
    assert cloud.invoke("SlowFunction", {"sleep": 0}) == "done"


def test_a_crashed_worker_is_replaced(cloud):
    result = cloud.invoke_raw("CrashFunction", {})
    assert result.function_error and result.json()["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in result.json()["errorMessage"]
    assert cloud.invoke_raw("CrashFunction", {}).json()["errorType"] == "Runtime.ExitError"
    assert cloud.lambda_host.pools[name(cloud, "CrashFunction")]._total == 0  # nothing leaked


def test_import_error_is_reported_like_lambda(cloud):
    result = cloud.invoke_raw("BrokenFunction", {})
    assert result.json()["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app.missing'" in result.json()["errorMessage"]


def test_handler_reaches_aws_services_through_the_endpoint(cloud):
    assert cloud.invoke("PutItemFunction", {"pk": "k1", "v": 5}) == 5  # a DynamoDB Decimal marshals as a number
    item = aws_client(cloud, "dynamodb").get_item(TableName=cloud.resources["Table"], Key={"pk": {"S": "k1"}})
    assert item["Item"]["v"] == {"N": "5"}


def test_async_invoke_runs_in_the_background(cloud):
    response = aws_client(cloud, "lambda").invoke(FunctionName=name(cloud, "ToQueueFunction"),
                                                  InvocationType="Event", Payload=b'{"async": true}')
    assert response["StatusCode"] == 202
    sqs = aws_client(cloud, "sqs")
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=cloud.resources["Queue"]).get("Messages"),
                        what="the async invocation's message")
    assert json.loads(messages[0]["Body"]) == {"async": True}


def test_functions_are_registered_in_moto_control_plane(cloud):
    client = aws_client(cloud, "lambda")
    config = client.get_function_configuration(FunctionName=name(cloud, "EchoFunctionAB12CD34"))
    assert config["Environment"]["Variables"]["TABLE"] == cloud.resources["Table"]
    assert config["Handler"] == "app.handlers.echo" and config["MemorySize"] == 256
    assert {f["FunctionName"] for f in client.list_functions()["Functions"]} >= {
        name(cloud, "EchoFunctionAB12CD34"), name(cloud, "FailFunction")}
    with pytest.raises(ClientError) as caught:
        client.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_two_workers_serve_in_parallel(cloud):
    def call(sleep, out):
        out.append(cloud.invoke("SlowFunction", {"sleep": sleep}))

    warm: list = []
    threads = [threading.Thread(target=call, args=(0.3, warm)) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    results: list = []
    threads = [threading.Thread(target=call, args=(0.7, results)) for _ in range(2)]
    started = time.monotonic()
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == ["done", "done"] and time.monotonic() - started < 1.3


def test_function_logs_go_to_a_file_per_function(cloud):
    cloud.invoke("EchoFunctionAB12CD34", {"log": "me"})
    text = cloud.function_log("EchoFunctionAB12CD34")
    assert 'echo got {"log": "me"}' in text and "START RequestId:" in text and "REPORT RequestId:" in text
    assert (cloud.log_dir / "EchoFunctionAB12CD34.log").is_file()
