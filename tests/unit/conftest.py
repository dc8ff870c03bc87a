"""Unit tests run the handlers in-process against moto (mock_aws), with events built the way Lambda builds them."""
import base64
import json
import os
import time
import uuid
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from pipeline import contract

REGION = "us-east-1"
# the stack's tables (pipeline/contract.py), each under a short name: "events", "predictions", ...
TABLES = {construct_id.removesuffix("Table").lower(): table for construct_id, table in contract.TABLES.items()}
PASS_STATE_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


@dataclass
class LambdaContext:
    function_name: str = "test-function"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:test-function"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def lambda_context():
    return LambdaContext(aws_request_id=str(uuid.uuid4()))


@pytest.fixture
def aws(monkeypatch):
    """A mocked account with the stack's tables, stream, queues, bucket and a pass-through state machine."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "test")
    from pipeline import aws as pipeline_aws

    pipeline_aws.client.cache_clear()
    pipeline_aws.resource.cache_clear()
    from pipeline.warm import WARM

    WARM.clear()  # a fresh account: no execution environment has run a batch in it yet
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        for name, table in TABLES.items():
            dynamodb.create_table(**contract.create_table_args(table, name))
            monkeypatch.setenv(table.env, name)
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="events", ShardCount=1)
        monkeypatch.setenv("EVENTS_STREAM_NAME", "events")
        sqs = boto3.client("sqs", region_name=REGION)
        monkeypatch.setenv("QUARANTINE_QUEUE_URL", sqs.create_queue(QueueName="quarantine")["QueueUrl"])
        monkeypatch.setenv("STREAM_DLQ_URL", sqs.create_queue(QueueName="dlq")["QueueUrl"])
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="artifacts")
        monkeypatch.setenv("ARTIFACTS_BUCKET", "artifacts")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(name="inference", definition=PASS_STATE_MACHINE, type="EXPRESS",
                                       roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]
        monkeypatch.setenv("STATE_MACHINE_ARN", arn)
        monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", "model-endpoint")
        monkeypatch.setenv("MODEL_VERSION", "xgb-1")
        monkeypatch.setenv("FEATURE_SET", "v1")
        yield {"dynamodb": dynamodb, "kinesis": kinesis, "sqs": sqs, "sfn": sfn, "state_machine_arn": arn}
    pipeline_aws.client.cache_clear()
    pipeline_aws.resource.cache_clear()


# Event times must be recent: the input contract takes events up to 30 days old (pipeline/events.py).
T0 = float(int(time.time()) // 3600 * 3600 - 86400)


def event(n: int, user: str = "u1", **fields) -> dict:
    base = {"event_id": f"e{n}", "user_id": user, "event_type": "view", "timestamp": T0 + n * 10}
    return base | fields


def kinesis_event(payloads: list, shard: str = "shardId-000000000000", first_seq: int = 100) -> dict:
    """A Kinesis event as Lambda's event source mapping builds it."""
    records = []
    for i, payload in enumerate(payloads):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        seq = str(first_seq + i)
        user = payload.get("user_id") if isinstance(payload, dict) else None
        records.append({   # partition key = user_id, as the API writes them (stream.decode rejects any other)
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": user if isinstance(user, str) and user else "pk",
                        "sequenceNumber": seq,
                        "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": time.time()},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{seq}",
            "eventName": "aws:kinesis:record", "awsRegion": REGION,
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/process-stream",
            "eventSourceARN": f"arn:aws:kinesis:{REGION}:123456789012:stream/events"})
    return {"Records": records}


def http_event(method: str, path: str, body=None, query: dict | None = None, headers: dict | None = None,
               path_parameters: dict | None = None, route_key: str | None = None) -> dict:
    """An API Gateway HTTP API payload format 2.0 event."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    return {
        "version": "2.0", "routeKey": route_key or f"{method} {path}", "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": {"content-type": "application/json"} | (headers or {}),
        "queryStringParameters": query, "pathParameters": path_parameters,
        "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "localhost",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "pytest"},
                           "requestId": str(uuid.uuid4()), "routeKey": f"{method} {path}", "stage": "$default",
                           "time": "22/Nov/2026:00:00:00 +0000", "timeEpoch": int(time.time() * 1000)},
        "body": text, "isBase64Encoded": False}
