"""scripts/demo.py's accounting of the queues (`make run` exits 1 when an accepted event is unaccounted for).

SQS behaviour encoded here (and moto's): a receive returns at most 10 messages; with a visibility timeout of 0 the
same messages come back on the next receive, so peeking never sees past the first 10. A quarantine message is a
failed batch's Step Functions state (statemachines/inference.asl.json, Quarantine: MessageBody.$ = $): rows inline
or `rows_s3_uri` (the batch journal, {"rows": [...]}) when InvokeModel failed, predictions inline or
`predictions_s3_uri` (a JSON list) when StorePredictions failed. A stream DLQ message is Lambda's on-failure record
for a Kinesis batch: KinesisBatchInfo names the shard, the sequence range and the batchSize, not the records.
"""
import json
import os
import types

import boto3

from scripts import demo

REGION = "us-east-1"


def _batch(n: int, size: int = 4) -> list[dict]:
    return [{"event_id": f"b{n}-e{i}", "user_id": f"u{i}", "ts": 1_700_000_000 + i, "ingest_ts": 1_700_000_000.5,
             "features": [0.0] * 3} for i in range(size)]


def _state(n: int, s3) -> dict:
    """Batch n's state as the Quarantine state sends it; the four shapes in turn."""
    rows = _batch(n)
    state = {"batch_id": f"shard-{n}", "created_at": 1_700_000_000.0, "feature_set": "v1", "stages": [],
             "error": {"Error": "ModelError", "Cause": "{}"}}
    shape = n % 4
    if shape == 0:                       # InvokeModel failed, rows inline
        state.update(rows=rows, rows_s3_uri=None)
    elif shape == 1:                     # InvokeModel failed, rows in the batch journal
        key = f"journal/2026112915/shardId-000000000000/shard-{n}.json"
        s3.put_object(Bucket="artifacts", Key=key, Body=json.dumps({"batch_id": f"shard-{n}", "rows": rows}))
        state.update(rows=[], rows_s3_uri=f"s3://artifacts/{key}")
    elif shape == 2:                     # StorePredictions failed, predictions inline
        state.update(predictions=[dict(r, score=0.5) for r in rows], predictions_s3_uri=None)
    else:                                # StorePredictions failed, predictions on S3
        key = f"predictions/shard-{n}.json"
        s3.put_object(Bucket="artifacts", Key=key, Body=json.dumps([dict(r, score=0.5) for r in rows]))
        state.update(predictions=[], predictions_s3_uri=f"s3://artifacts/{key}")
    return state


def _on_failure_record(n: int, size: int) -> dict:
    return {"requestContext": {"requestId": f"r{n}", "condition": "RetryAttemptsExhausted",
                               "approximateInvokeCount": 3},
            "version": "1.0", "timestamp": "2026-11-29T15:00:00.000Z",
            "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": str(100 * n),
                                 "endSequenceNumber": str(100 * n + size - 1), "batchSize": size,
                                 "streamArn": f"arn:aws:kinesis:{REGION}:123456789012:stream/events"}}


def _pipeline() -> demo.Pipeline:
    """demo.Pipeline as the demo builds it: names from the API function's environment (here: the moto account)."""
    env = {name: os.environ[name] for name in ("QUARANTINE_QUEUE_URL", "STREAM_DLQ_URL", "PREDICTIONS_TABLE",
                                               "STATE_TABLE")}
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="api", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="Stack-ApiFunction-ABC", Runtime="python3.12", Role=role, Handler="index.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18}, Environment={"Variables": env})
    return demo.Pipeline(types.SimpleNamespace(endpoint_url=None))


def _visible(sqs, url) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_more_than_10_quarantined_batches_and_dlq_records_are_all_counted(aws):
    sqs, s3 = aws["sqs"], boto3.client("s3", region_name=REGION)
    quarantine, dlq = os.environ["QUARANTINE_QUEUE_URL"], os.environ["STREAM_DLQ_URL"]
    expected: set[str] = set()
    for n in range(25):
        sqs.send_message(QueueUrl=quarantine, MessageBody=json.dumps(_state(n, s3)))
        expected |= {r["event_id"] for r in _batch(n)}
    for n in range(12):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(_on_failure_record(n, 3)))
    pipeline = _pipeline()

    assert len(expected) == 100
    assert pipeline.quarantined_event_ids() == expected
    assert pipeline.dlq_records() == 36
    # counting leaves every message in its queue, visible (the next count, or an operator, sees them all)
    assert _visible(sqs, quarantine) == (25, 0) and _visible(sqs, dlq) == (12, 0)
    assert pipeline.quarantined_event_ids() == expected and pipeline.dlq_records() == 36

    # a batch quarantined later is counted at the next look
    sqs.send_message(QueueUrl=quarantine, MessageBody=json.dumps(_state(25, s3)))
    assert pipeline.quarantined_event_ids() == expected | {r["event_id"] for r in _batch(25)}
    assert _visible(sqs, quarantine) == (26, 0)


def test_read_queue_sees_each_message_once_and_leaves_them_visible(aws):
    sqs = aws["sqs"]
    url = sqs.create_queue(QueueName="many")["QueueUrl"]
    for n in range(57):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    messages = demo.read_queue(sqs, url)
    assert sorted(int(m["Body"]) for m in messages) == list(range(57))
    assert demo.queue_depth(sqs, url) == 57 and _visible(sqs, url) == (57, 0)
    assert demo.read_queue(sqs, sqs.create_queue(QueueName="empty")["QueueUrl"]) == []
