"""Kinesis event source mappings polled locally: batch size, partial failures, bisect + on-failure, live updates."""
import base64
import json

import pytest

from cloudkit import FakeCdkOut, aws_client, wait_for
from localcloud import LocalCloud

HANDLERS = '''
import base64, json, os


def _log(event):
    with open(os.environ["LOG_FILE"], "a") as fh:
        fh.write(json.dumps({"seqs": [r["kinesis"]["sequenceNumber"] for r in event["Records"]],
                             "first": event["Records"][0]}) + "\\n")


def _data(record):
    return json.loads(base64.b64decode(record["kinesis"]["data"]))


def recorder(event, context):
    _log(event)
    failures = []
    for record in event["Records"]:
        if _data(record).get("fail_once"):
            marker = os.path.join(os.environ["STATE_DIR"], "failed-" + record["kinesis"]["sequenceNumber"])
            if not os.path.exists(marker):
                open(marker, "w").close()
                failures.append({"itemIdentifier": record["kinesis"]["sequenceNumber"]})
    return {"batchItemFailures": failures}


def always_fails(event, context):
    _log(event)
    raise RuntimeError("downstream is down")


def poison(event, context):
    _log(event)
    if any(_data(record).get("poison") for record in event["Records"]):
        raise ValueError("poison record")
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinesis")
    out = FakeCdkOut(root / "cdk.out", stack="KinesisTestStack")
    code = out.code_asset({"streams.py": HANDLERS})
    out.add("StreamA", "AWS::Kinesis::Stream", {"ShardCount": 1})
    out.add("StreamB", "AWS::Kinesis::Stream", {"ShardCount": 1})
    out.add("StreamDlq", "AWS::SQS::Queue")
    out.function("RecorderFunction", "streams.recorder", code,
                 {"LOG_FILE": str(root / "recorder.log"), "STATE_DIR": str(root)})
    out.function("PoisonFunction", "streams.poison", code, {"LOG_FILE": str(root / "poison.log")})
    out.add("RecorderMapping", "AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": "RecorderFunction"}, "EventSourceArn": {"Fn::GetAtt": ["StreamA", "Arn"]},
        "BatchSize": 5, "MaximumBatchingWindowInSeconds": 0, "StartingPosition": "TRIM_HORIZON",
        "FunctionResponseTypes": ["ReportBatchItemFailures"]})
    out.add("PoisonMapping", "AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": "PoisonFunction"}, "EventSourceArn": {"Fn::GetAtt": ["StreamB", "Arn"]},
        "BatchSize": 8, "MaximumBatchingWindowInSeconds": 0, "StartingPosition": "TRIM_HORIZON",
        "BisectBatchOnFunctionError": True, "MaximumRetryAttempts": 1, "MaximumRecordAgeInSeconds": 3600,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["StreamDlq", "Arn"]}}}})
    out.add("StreamC", "AWS::Kinesis::Stream", {"ShardCount": 1})
    out.add("AgeDlq", "AWS::SQS::Queue")
    out.function("AgeFunction", "streams.always_fails", code, {"LOG_FILE": str(root / "age.log")})
    out.add("AgeMapping", "AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": "AgeFunction"}, "EventSourceArn": {"Fn::GetAtt": ["StreamC", "Arn"]},
        "BatchSize": 10, "StartingPosition": "TRIM_HORIZON", "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": 3,   # > the 1 s idle poll: the first read comes before expiry
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["AgeDlq", "Arn"]}}}})
    out.add("StreamD", "AWS::Kinesis::Stream", {"ShardCount": 1})
    out.add("DeletedMapping", "AWS::Lambda::EventSourceMapping", {   # test_a_deleted_mapping_stops_its_pollers
        "FunctionName": {"Ref": "RecorderFunction"}, "EventSourceArn": {"Fn::GetAtt": ["StreamD", "Arn"]},
        "BatchSize": 5, "StartingPosition": "TRIM_HORIZON"})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False,
                    retry_base=0.02) as c:
        c.deploy()
        c.test_root = root
        yield c


def put(cloud, stream: str, items: list[dict]) -> list[str]:
    """One PutRecords call (atomic in the local cloud), returns the sequence numbers."""
    response = aws_client(cloud, "kinesis").put_records(
        StreamName=cloud.resources[stream],
        Records=[{"Data": json.dumps(item).encode(), "PartitionKey": "k"} for item in items])
    assert response.get("FailedRecordCount", 0) == 0
    return [r["SequenceNumber"] for r in response["Records"]]


def invocations(cloud, log_name: str, since: set[str] | None = None) -> list[list[str]]:
    path = cloud.test_root / log_name
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line["seqs"] for line in lines if since is None or set(line["seqs"]) & since]


def test_batches_respect_batch_size_and_order(cloud):
    seqs = put(cloud, "StreamA", [{"n": n} for n in range(12)])
    assert cloud.wait_idle(20)
    batches = invocations(cloud, "recorder.log", set(seqs))
    assert batches == [seqs[0:5], seqs[5:10], seqs[10:12]]


def test_event_shape_is_the_lambda_kinesis_event(cloud):
    seqs = put(cloud, "StreamA", [{"shape": True}])
    assert cloud.wait_idle(20)
    path = cloud.test_root / "recorder.log"
    record = [json.loads(line)["first"] for line in path.read_text().splitlines()
              if json.loads(line)["seqs"] == seqs][0]
    stream_arn = cloud.deployer.resources["StreamA"].attributes["Arn"]
    assert record["eventSource"] == "aws:kinesis" and record["eventName"] == "aws:kinesis:record"
    assert record["eventVersion"] == "1.0" and record["awsRegion"] == "us-east-1"
    assert record["eventID"] == f"shardId-000000000000:{seqs[0]}" and record["eventSourceARN"] == stream_arn
    assert record["invokeIdentityArn"] == cloud.lambda_host.spec("RecorderFunction").role_arn
    kinesis = record["kinesis"]
    assert kinesis["kinesisSchemaVersion"] == "1.0" and kinesis["partitionKey"] == "k"
    assert kinesis["sequenceNumber"] == seqs[0] and json.loads(base64.b64decode(kinesis["data"])) == {"shape": True}
    assert isinstance(kinesis["approximateArrivalTimestamp"], float)


def test_partial_batch_failure_retries_from_the_lowest_failed_record(cloud):
    seqs = put(cloud, "StreamA", [{"n": 0}, {"n": 1}, {"n": 2, "fail_once": True}, {"n": 3}, {"n": 4}, {"n": 5}])
    assert cloud.wait_idle(20)
    assert invocations(cloud, "recorder.log", set(seqs)) == [seqs[0:5], seqs[2:5], seqs[5:6]]


def test_bisect_isolates_a_poison_record_into_the_on_failure_queue(cloud):
    items = [{"n": n} for n in range(8)]
    items[5]["poison"] = True
    seqs = put(cloud, "StreamB", items)
    assert cloud.wait_idle(30)
    batches = invocations(cloud, "poison.log", set(seqs))
    assert batches == [seqs[0:8], seqs[0:4], seqs[4:8], seqs[4:6], seqs[4:5], seqs[5:6], seqs[5:6], seqs[6:8]]
    sqs = aws_client(cloud, "sqs")
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=cloud.resources["StreamDlq"],
                                                    MaxNumberOfMessages=10).get("Messages"), what="the DLQ record")
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    info = body["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000" and info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == seqs[5]
    assert info["streamArn"] == cloud.deployer.resources["StreamB"].attributes["Arn"]
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert body["requestContext"]["approximateInvokeCount"] == 2
    assert body["requestContext"]["functionArn"] == cloud.lambda_host.spec("PoisonFunction").arn
    assert body["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert body["version"] == "1.0" and body["timestamp"].endswith("Z")


def test_update_event_source_mapping_batch_size_takes_effect(cloud):
    client = aws_client(cloud, "lambda")
    uuid = cloud.resources["RecorderMapping"]
    client.update_event_source_mapping(UUID=uuid, BatchSize=2)
    try:
        seqs = put(cloud, "StreamA", [{"n": n} for n in range(5)])
        assert cloud.wait_idle(20)
        assert invocations(cloud, "recorder.log", set(seqs)) == [seqs[0:2], seqs[2:4], seqs[4:5]]
    finally:
        client.update_event_source_mapping(UUID=uuid, BatchSize=5)


def test_a_disabled_mapping_holds_records_until_enabled(cloud):
    client = aws_client(cloud, "lambda")
    uuid = cloud.resources["RecorderMapping"]
    client.update_event_source_mapping(UUID=uuid, Enabled=False)
    try:
        cloud.wait_idle(5)
        seqs = put(cloud, "StreamA", [{"held": True}])
        with pytest.raises(AssertionError):
            wait_for(lambda: invocations(cloud, "recorder.log", set(seqs)), timeout=1.5)
    finally:
        client.update_event_source_mapping(UUID=uuid, Enabled=True)
    wait_for(lambda: invocations(cloud, "recorder.log", set(seqs)), timeout=10, what="delivery after enabling")


def test_records_older_than_the_maximum_age_are_discarded_to_the_destination(cloud):
    seqs = put(cloud, "StreamC", [{"n": 0}, {"n": 1}])
    sqs = aws_client(cloud, "sqs")
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=cloud.resources["AgeDlq"]).get("Messages"),
                        timeout=15, what="the expired batch in the on-failure queue")
    body = json.loads(messages[0]["Body"])
    assert body["requestContext"]["condition"] == "RecordAgeExceeded"
    assert body["requestContext"]["approximateInvokeCount"] >= 1  # retried (infinitely) until the records expired
    assert (body["KinesisBatchInfo"]["startSequenceNumber"], body["KinesisBatchInfo"]["endSequenceNumber"]) == (
        seqs[0], seqs[1])
    assert cloud.wait_idle(10)


def test_a_deleted_mapping_stops_its_pollers(cloud):
    """As in AWS, a deleted event source mapping delivers nothing more: its pollers end, quietly (they used to
    log a ResourceNotFoundException warning every time moto was reset under a running cloud)."""
    uuid = cloud.resources["DeletedMapping"]
    pollers = [p for p in cloud.pollers.pollers if p.mapping.uuid == uuid]
    assert pollers and all(p.thread.is_alive() for p in pollers)
    aws_client(cloud, "lambda").delete_event_source_mapping(UUID=uuid)
    wait_for(lambda: not any(p.thread.is_alive() for p in pollers), timeout=10, what="the pollers to stop")
    log = [line for line in (cloud.log_dir / "localcloud.log").read_text().splitlines()
           if "DeletedMapping" in line]
    assert [line for line in log if " INFO " in line and "event source mapping is gone" in line]
    assert not [line for line in log if " WARNING " in line]
