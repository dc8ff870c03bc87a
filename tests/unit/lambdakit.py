"""Lambda events and context for the unit tests, built the way Lambda builds them (imported by name: a module of its
own, not conftest, since several test directories have a conftest.py)."""
import base64
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

REGION = "us-east-1"


@contextmanager
def local_time_zone(zone: str):
    """The process's local time zone is ``zone`` (TZ, then time.tzset) inside the block, and what it was after:
    for tests that code computing UTC dates and hours gives the same answer on a machine set to another zone."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


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


def event_source_mapping(monkeypatch, batch_size: int, window: int) -> tuple:
    """A real (moto) event source mapping Kinesis "events" -> a stub function, like the stack's EventsStreamMapping,
    named to the optimizer by EVENT_SOURCE_MAPPING_ID: (the Lambda client, the mapping's UUID). Needs the ``aws``
    fixture's account."""
    import io
    import zipfile

    import boto3

    role = boto3.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "def handler(e, c):\n    return None\n")
    lam.create_function(FunctionName="process", Runtime="python3.11", Role=role, Handler="handler.handler",
                        Code={"ZipFile": buffer.getvalue()})
    stream = boto3.client("kinesis").describe_stream(StreamName="events")["StreamDescription"]["StreamARN"]
    uuid = lam.create_event_source_mapping(EventSourceArn=stream, FunctionName="process", BatchSize=batch_size,
                                           MaximumBatchingWindowInSeconds=window,
                                           StartingPosition="TRIM_HORIZON")["UUID"]
    monkeypatch.setenv("EVENT_SOURCE_MAPPING_ID", uuid)
    return lam, uuid
