"""IAM enforced by the local cloud (localcloud/iam.py): each function's calls are checked against its role's policies.

AWS behaviour encoded here:
- IAM User Guide, "Policy evaluation logic" (reference_policies_evaluation-logic.html): an explicit Deny overrides
  any Allow; without an Allow the request is implicitly denied.
- "IAM JSON policy elements: Resource" (reference_policies_elements_resource.html): ``*`` and ``?`` match within an
  ARN segment (the parts separated by colons); a ``*`` that is the last character of a segment can match past the
  colon; ``*`` also replaces characters such as ``/``.
- "IAM JSON policy elements: Condition operators" (reference_policies_elements_condition_operators.html): a key
  missing from the request context fails the condition, except for negated operators (StringNotLike ...: true),
  ...IfExists and Null.
- Service Authorization Reference ("Actions, resources, and condition keys for ..."): the action each API operation
  authorizes and the ARN format of each resource type: list_amazondynamodb (``table/${TableName}``,
  ``table/${TableName}/index/${IndexName}``), list_amazonkinesis (``stream/${StreamName}``),
  list_awsstepfunctions (``stateMachine:${StateMachineName}``), list_amazonsqs (``${QueueName}``), list_amazons3
  (``arn:aws:s3:::${BucketName}/${ObjectName}``; s3:ListBucket on the bucket with the ``s3:prefix`` key),
  list_amazonsagemaker (``endpoint/${EndpointName}``), list_awslambda (``function:${FunctionName}``,
  ``event-source-mapping:${UUID}``), list_amazoncloudwatch (PutMetricData: no resource type, key
  ``cloudwatch:namespace``; CloudWatch User Guide "Using condition keys to limit access to CloudWatch namespaces").
- SQS Developer Guide, "Amazon SQS batch actions": SendMessageBatch/DeleteMessageBatch/ChangeMessageVisibilityBatch
  are authorized by SendMessage/DeleteMessage/ChangeMessageVisibility.
- Lambda Developer Guide, "Process Amazon Kinesis Data Streams records with Lambda" and "Retain discarded batch
  records for a Kinesis Data Streams event source": the event source mapping reads the stream (kinesis:GetRecords,
  GetShardIterator, ...) and sends on-failure records (sqs:SendMessage) with the function's execution role.
- AccessDenied messages name the principal (``arn:aws:sts::<account>:assumed-role/<role>/<session>``), the action and
  the resource: "User: ... is not authorized to perform: <action> on resource: <resource> because no identity-based
  policy allows the <action> action" (IAM User Guide, "Troubleshoot access denied error messages").
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import boto3
import pytest
from cloudkit import FakeCdkOut, http_call, wait_for

from localcloud import LocalCloud
from localcloud.iam import Iam, IamRequest, describe, evaluate, resource_matches

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT, REGION = "123456789012", "us-east-1"


# -- evaluation ---------------------------------------------------------------------------------------------------
def _allow(action, resource, **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_explicit_deny_wins_and_an_allow_is_needed():
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/T"
    put = IamRequest.of("dynamodb:PutItem", table)
    assert evaluate([], put) == "ImplicitDeny"
    assert evaluate([_allow("dynamodb:GetItem", table)], put) == "ImplicitDeny"
    assert evaluate([_allow("dynamodb:PutItem", table)], put) == "Allow"
    assert evaluate([_allow("dynamodb:*", "*"), {"Effect": "Deny", "Action": "dynamodb:Put*", "Resource": table}],
                    put) == "Deny"
    assert evaluate([_allow("DynamoDB:putitem", table)], put) == "Allow"          # actions: case-insensitive
    assert evaluate([{"Effect": "Allow", "NotAction": "dynamodb:Delete*", "Resource": "*"}], put) == "Allow"
    assert evaluate([{"Effect": "Allow", "Action": "*", "NotResource": table}], put) == "ImplicitDeny"


def test_resource_wildcards_match_within_segments_and_past_the_last_colon():
    assert resource_matches("arn:aws:s3:::bucket/journal/*", "arn:aws:s3:::bucket/journal/2026/x.json")
    assert not resource_matches("arn:aws:s3:::bucket/journal/*", "arn:aws:s3:::bucket/batches/x.json")
    assert resource_matches("arn:aws:dynamodb:*:123456789012:table/T",
                            "arn:aws:dynamodb:us-east-1:123456789012:table/T")
    assert not resource_matches("arn:aws:dynamodb:*:123456789012:table/T",
                                "arn:aws:dynamodb:us-east-1:123456789012:table/T/index/by_user")
    assert resource_matches("arn:aws:lambda:us-east-1:123456789012:function:f*",
                            "arn:aws:lambda:us-east-1:123456789012:function:fn:live")
    assert resource_matches("arn:aws:sqs:us-east-1:123456789012:q?", "arn:aws:sqs:us-east-1:123456789012:q1")
    assert not resource_matches("arn:aws:sqs:us-east-1:123456789012:Q1", "arn:aws:sqs:us-east-1:123456789012:q1")


def test_conditions_as_the_stack_uses_them():
    bucket = "arn:aws:s3:::b"
    list_journal = _allow("s3:ListBucket", bucket, Condition={"StringLike": {"s3:prefix": ["journal/*"]}})
    assert evaluate([list_journal], IamRequest.of("s3:ListBucket", bucket, {"s3:prefix": "journal/2026"})) == "Allow"
    assert evaluate([list_journal], IamRequest.of("s3:ListBucket", bucket, {"s3:prefix": "models/"})) \
        == "ImplicitDeny"
    assert evaluate([list_journal], IamRequest.of("s3:ListBucket", bucket)) == "ImplicitDeny"   # key missing
    metrics = _allow("cloudwatch:PutMetricData", "*",
                     Condition={"StringEquals": {"cloudwatch:namespace": "RealtimeInference"}})
    assert evaluate([metrics], IamRequest.of("cloudwatch:PutMetricData", "*",
                                             {"cloudwatch:namespace": "RealtimeInference"})) == "Allow"
    assert evaluate([metrics], IamRequest.of("cloudwatch:PutMetricData", "*",
                                             {"cloudwatch:namespace": "Other"})) == "ImplicitDeny"
    put = IamRequest.of("s3:PutObject", "arn:aws:s3:::b/k")
    assert evaluate([_allow("s3:*", "*", Condition={"StringNotLike": {"s3:prefix": "x*"}})], put) == "Allow"
    assert evaluate([_allow("s3:*", "*", Condition={"StringEqualsIfExists": {"s3:prefix": "x"}})], put) == "Allow"
    assert evaluate([_allow("s3:*", "*", Condition={"Null": {"s3:prefix": "true"}})], put) == "Allow"
    assert evaluate([_allow("s3:*", "*", Condition={"Null": {"s3:prefix": "false"}})], put) == "ImplicitDeny"
    secure = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
              "Condition": {"Bool": {"aws:SecureTransport": False}}}
    assert evaluate([_allow("s3:*", "*"), secure], put, {"aws:SecureTransport": ("true",)}) == "Allow"


# -- requests as botocore sends them -> actions and resources -----------------------------------------------------
class _Sent(Exception):
    pass


def _wire(service: str, operation: str, **params) -> dict:
    """The WSGI environ of the request botocore would send (captured before it leaves)."""
    client = boto3.session.Session(aws_access_key_id="ASIAEXAMPLE", aws_secret_access_key="x",
                                   region_name=REGION).client(service, endpoint_url="http://127.0.0.1:9")
    captured = {}

    def before_send(request, **_):
        captured["request"] = request
        raise _Sent()

    client.meta.events.register("before-send", before_send)
    with pytest.raises(_Sent):
        getattr(client, operation)(**params)
    request = captured["request"]
    url = urllib.parse.urlsplit(request.url)
    body = request.body or b""
    body = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else body.read()
    environ = {"REQUEST_METHOD": request.method, "PATH_INFO": urllib.parse.unquote(url.path),
               "QUERY_STRING": url.query, "CONTENT_LENGTH": str(len(body))}
    for name, value in request.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = value
    environ["_body"] = body
    return environ


def _described(service: str, operation: str, **params) -> list[tuple]:
    environ = _wire(service, operation, **params)
    return [(r.action, r.resource, dict(r.context)) for r in describe(environ, environ["_body"], REGION, ACCOUNT)]


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


def test_dynamodb_operations_name_tables_and_indexes():
    key = {"pk": {"S": "a"}}
    assert _described("dynamodb", "get_item", TableName="T", Key=key) == [
        ("dynamodb:GetItem", _arn("dynamodb", "table/T"), {})]
    assert _described("dynamodb", "query", TableName="P", IndexName="by_user", KeyConditionExpression="u = :u",
                      ExpressionAttributeValues={":u": {"S": "x"}})[0][:2] == (
        "dynamodb:Query", _arn("dynamodb", "table/P/index/by_user"))
    batch = _described("dynamodb", "batch_write_item", RequestItems={
        "A": [{"PutRequest": {"Item": key}}], "B": [{"DeleteRequest": {"Key": key}}]})
    assert [(a, r) for a, r, _ in batch] == [("dynamodb:BatchWriteItem", _arn("dynamodb", "table/A")),
                                             ("dynamodb:BatchWriteItem", _arn("dynamodb", "table/B"))]
    assert _described("dynamodb", "batch_get_item", RequestItems={"F": {"Keys": [key]}})[0][:2] == (
        "dynamodb:BatchGetItem", _arn("dynamodb", "table/F"))
    assert _described("dynamodb", "update_item", TableName="S", Key=key, UpdateExpression="SET a = :a",
                      ExpressionAttributeValues={":a": {"N": "1"}})[0][0] == "dynamodb:UpdateItem"


def test_stream_state_machine_queue_endpoint_and_metrics_operations():
    assert _described("kinesis", "put_records", StreamName="S", Records=[{"Data": b"x", "PartitionKey": "u"}]) == [
        ("kinesis:PutRecords", _arn("kinesis", "stream/S"), {})]
    iterator = "UmVhbHRpbWUtU3RyZWFtOnNoYXJkSWQtMDAwMDAwMDAwMDAwOjE="   # moto's: base64("<stream>:<shard>:...")
    assert _described("kinesis", "get_records", ShardIterator=iterator)[0][:2] == (
        "kinesis:GetRecords", _arn("kinesis", "stream/Realtime-Stream"))
    machine = _arn("states", "stateMachine:M")
    assert _described("stepfunctions", "start_execution", stateMachineArn=machine, input="{}")[0][:2] == (
        "states:StartExecution", machine)
    url = f"http://127.0.0.1:9/{ACCOUNT}/Quarantine"
    assert _described("sqs", "send_message", QueueUrl=url, MessageBody="x")[0][:2] == (
        "sqs:SendMessage", _arn("sqs", "Quarantine"))
    assert _described("sqs", "send_message_batch", QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])[0][:2] \
        == ("sqs:SendMessage", _arn("sqs", "Quarantine"))
    assert _described("sqs", "get_queue_attributes", QueueUrl=url, AttributeNames=["All"])[0][0] \
        == "sqs:GetQueueAttributes"
    assert _described("sagemaker-runtime", "invoke_endpoint", EndpointName="RealtimeInference-Endpoint-ABC",
                      Body=b"1,2", ContentType="text/csv") == [
        ("sagemaker:InvokeEndpoint", _arn("sagemaker", "endpoint/realtimeinference-endpoint-abc"), {})]
    assert _described("cloudwatch", "put_metric_data", Namespace="RealtimeInference",
                      MetricData=[{"MetricName": "m", "Value": 1.0}]) == [
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": ("RealtimeInference",)})]


def test_s3_and_lambda_operations():
    assert _described("s3", "put_object", Bucket="b", Key="journal/2026/x.json", Body=b"{}") == [
        ("s3:PutObject", "arn:aws:s3:::b/journal/2026/x.json", {})]
    assert _described("s3", "get_object", Bucket="b", Key="predictions/p.json")[0][:2] == (
        "s3:GetObject", "arn:aws:s3:::b/predictions/p.json")
    assert _described("s3", "list_objects_v2", Bucket="b", Prefix="journal/2026") == [
        ("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": ("journal/2026",)})]
    function = _arn("lambda", "function:F")
    assert _described("lambda", "invoke", FunctionName=function, Payload=b"{}")[0][:2] == (
        "lambda:InvokeFunction", function)
    mapping = "3714ac2e-0000-4000-8000-000000000000"
    assert _described("lambda", "update_event_source_mapping", UUID=mapping, BatchSize=50)[0][:2] == (
        "lambda:UpdateEventSourceMapping", _arn("lambda", f"event-source-mapping:{mapping}"))
    assert _described("lambda", "get_event_source_mapping", UUID=mapping)[0][0] == "lambda:GetEventSourceMapping"


def test_the_gateway_hook_answers_access_denied_like_the_service():
    iam = Iam("enforce", region=REGION, account_id=ACCOUNT)
    role = f"arn:aws:iam::{ACCOUNT}:role/StoreRole"
    iam.policies[role] = [_allow("dynamodb:PutItem", _arn("dynamodb", "table/Predictions"))]
    principal = iam.credentials(role, "store-fn")
    assert principal.access_key_id.startswith("ASIA") and iam.credentials(role, "store-fn") is principal

    def call(table, mode="enforce"):
        iam.mode = mode
        environ = _wire("dynamodb", "batch_write_item", RequestItems={table: [{"PutRequest": {"Item": {}}}]})
        environ["HTTP_AUTHORIZATION"] = environ["HTTP_AUTHORIZATION"].replace("ASIAEXAMPLE", principal.access_key_id)
        environ["wsgi.input"] = io.BytesIO(environ.pop("_body"))
        return iam.check(environ)

    response = call("Predictions")
    assert response.status_code == 400
    body = json.loads(response.get_data())
    assert body["__type"] == "AccessDeniedException"
    assert body["message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/StoreRole/store-fn is not authorized to perform: "
        f"dynamodb:BatchWriteItem on resource: {_arn('dynamodb', 'table/Predictions')} because no identity-based "
        "policy allows the dynamodb:BatchWriteItem action")
    assert call("Predictions", mode="report") is None and len(iam.denials) == 2 and not iam.denials[-1].enforced
    iam.policies[role].append(_allow("dynamodb:BatchWriteItem", _arn("dynamodb", "table/Predictions")))
    iam.forget_decisions()
    assert call("Predictions") is None


# -- a small stack: each function's own role, enforced through the gateway ----------------------------------------
HANDLERS = '''
import os, boto3
def handler(event, context):
    table = boto3.client("dynamodb").put_item(TableName=os.environ[event["table"]], Item={"pk": {"S": "x"}})
    return "ok"
'''


def test_each_function_runs_with_its_own_role(fake_cdk_out: FakeCdkOut, tmp_path):
    out = fake_cdk_out
    out.allow_unpoliced_roles = False
    for name in ("A", "B"):
        out.add(f"Table{name}", "AWS::DynamoDB::Table", {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}], "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    code = out.code_asset({"app.py": HANDLERS})
    env = {"TABLE_A": {"Ref": "TableA"}, "TABLE_B": {"Ref": "TableB"}}
    out.function("WriterA", "app.handler", code, env)
    out.function("WriterB", "app.handler", code, env)
    for name in ("A", "B"):   # each writer may write its own table only
        out.add(f"Writer{name}Policy", "AWS::IAM::Policy", {
            "PolicyName": f"Writer{name}Policy", "Roles": [{"Ref": f"Writer{name}ServiceRole"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                _allow("dynamodb:PutItem", {"Fn::GetAtt": [f"Table{name}", "Arn"]})]}})
    with LocalCloud(cdk_out=out.write(), state_dir=tmp_path / "state", api_port=0, run_schedules=False,
                    iam="enforce") as cloud:
        cloud.deploy()
        assert cloud.invoke("WriterA", {"table": "TABLE_A"}) == "ok"
        assert cloud.invoke("WriterB", {"table": "TABLE_B"}) == "ok"
        denied = cloud.invoke_raw("WriterA", {"table": "TABLE_B"}).json()
        table_b = cloud.deployer.resources["TableB"].attributes["Arn"]
        assert denied["errorType"] == "ClientError"
        assert "AccessDeniedException" in denied["errorMessage"]
        assert f"is not authorized to perform: dynamodb:PutItem on resource: {table_b}" in denied["errorMessage"]
        assert "assumed-role/" in denied["errorMessage"]
        assert cloud.iam.status()["denials"][-1]["resource"] == table_b
        # the local cloud's own keys (tests, scripts) are the account's administrator: not checked
        cloud.client("dynamodb").put_item(TableName=cloud.resources["TableB"], Item={"pk": {"S": "admin"}})


# -- the real stack with one grant removed: the pipeline fails with AccessDenied ----------------------------------
def _synth(tmp_path: Path) -> Path:
    if not (ROOT / "model" / "artifacts" / "model.tar.gz").exists() or \
            not (ROOT / "model" / "artifacts" / "pytorch" / "model.tar.gz").exists():
        subprocess.run([sys.executable, "model/train.py", "--users", "100", "--hours", "6"], cwd=ROOT, check=True)
    out = tmp_path / "cdk.out"
    # a stack name of its own: in one pytest process the e2e tests' local cloud may still hold RealtimeInference
    env = dict(os.environ, CDK_OUTDIR=str(out), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
               CDK_CONTEXT_JSON=json.dumps({"stackName": "IamDroppedGrant"}))
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    return out


def _drop_grant(template: dict, role_prefix: str, action: str) -> str:
    """Removes ``action`` from the role's policy; returns the logical id of the table it was granted on."""
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or \
                not any(r.get("Ref", "").startswith(role_prefix) for r in resource["Properties"]["Roles"]):
            continue
        statements = resource["Properties"]["PolicyDocument"]["Statement"]
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if action in actions and "PredictionsTable" in json.dumps(statement["Resource"]):
                statement["Action"] = [a for a in actions if a != action]
                if not statement["Action"]:
                    statements.remove(statement)
                return statement["Resource"]["Fn::GetAtt"][0]
    raise AssertionError(f"no {action} grant on the predictions table for {role_prefix}")


def test_dropping_the_predictions_write_grant_fails_the_pipeline_with_access_denied(tmp_path):
    cdk_out = _synth(tmp_path)
    template_path = cdk_out / "IamDroppedGrant.template.json"
    template = json.loads(template_path.read_text())
    table_id = _drop_grant(template, "StorePredictionsRole", "dynamodb:BatchWriteItem")
    template_path.write_text(json.dumps(template))
    with LocalCloud(cdk_out=cdk_out, state_dir=tmp_path / "state", api_port=0, run_schedules=False,
                    iam="enforce") as cloud:
        cloud.deploy()
        now = time.time()
        events = [{"event_id": f"iam-{n}", "user_id": "iam-user", "event_type": "view", "timestamp": now - n}
                  for n in range(3)]
        status, _, body = http_call(cloud, "POST", "/events", json.dumps({"events": events}).encode(),
                                    {"content-type": "application/json"})
        assert status == 202 and json.loads(body)["accepted"] == 3
        sqs = cloud.client("sqs")
        queue = cloud.outputs["QuarantineQueueUrl"]

        def quarantined():
            return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages")

        message = json.loads(wait_for(quarantined, timeout=120, what="the batch in quarantine")[0]["Body"])
        table_arn = cloud.deployer.resources[table_id].attributes["Arn"]
        cause = json.dumps(message["error"])
        assert "AccessDeniedException" in cause
        assert f"dynamodb:BatchWriteItem on resource: {table_arn}" in cause
        denial = cloud.iam.denials[0]
        assert (denial.action, denial.resource, denial.enforced) == ("dynamodb:BatchWriteItem", table_arn, True)
        assert "assumed-role/" in denial.principal and "StorePredictions" in denial.principal
        assert "Item" not in cloud.client("dynamodb").get_item(   # nothing reached the table
            TableName=cloud.outputs["PredictionsTableName"], Key={"event_id": {"S": "iam-0"}})
