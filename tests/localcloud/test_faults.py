"""Fault injection (localcloud/faults.py): each fault reaches the caller as AWS would answer, hits only the calls
it matches, counts down and disarms; the crash and timeout faults act on the Lambda worker that made the call."""
import json
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from cloudkit import ROOT, FakeCdkOut, aws_client, wait_for
from localcloud import LocalCloud
from localcloud.faults import KINDS

HANDLERS = '''
import os
import boto3


def write(event, context):
    """Four items in one BatchWriteItem to the features table, then a marker item (proves it got past)."""
    client = boto3.client("dynamodb")
    client.batch_write_item(RequestItems={os.environ["TABLE"]: [
        {"PutRequest": {"Item": {"pk": {"S": f"{event['prefix']}-{i}"}}}} for i in range(4)]})
    client.put_item(TableName=os.environ["OTHER"], Item={"pk": {"S": event["prefix"] + "-done"}})
    return "written"
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    out = FakeCdkOut(tmp_path_factory.mktemp("faults") / "cdk.out", stack="FaultTestStack")
    code = out.code_asset({"app/__init__.py": "", "app/handlers.py": HANDLERS})
    key = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
           "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"}
    out.add("FeaturesTable", "AWS::DynamoDB::Table", key)
    out.add("StateTable", "AWS::DynamoDB::Table", key)
    out.add("Events", "AWS::Kinesis::Stream", {"ShardCount": 1})
    out.add("Bucket", "AWS::S3::Bucket")
    env = {"TABLE": {"Ref": "FeaturesTable"}, "OTHER": {"Ref": "StateTable"}}
    out.function("WriterFunction", "app.handlers.write", code, env, timeout=2)
    with LocalCloud(cdk_out=out.write(), state_dir=tmp_path_factory.mktemp("state"), api_port=0,
                    run_schedules=False) as c:
        c.deploy()
        yield c


@pytest.fixture(autouse=True)
def clear(cloud):
    cloud.clear_faults()
    yield
    cloud.clear_faults()


def _items(cloud, table: str, prefix: str) -> set[str]:
    items = aws_client(cloud, "dynamodb").scan(TableName=cloud.resources[table])["Items"]
    return {i["pk"]["S"] for i in items if i["pk"]["S"].startswith(prefix)}


def _code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_throttling_hits_the_next_matching_calls_then_disarms(cloud):
    dynamodb, table = aws_client(cloud, "dynamodb"), cloud.resources["StateTable"]
    cloud.inject_fault("dynamodb-throttle", count=2, table="StateTable")
    dynamodb.put_item(TableName=cloud.resources["FeaturesTable"], Item={"pk": {"S": "t-other"}})  # not matched
    for _ in range(2):
        assert _code(lambda: dynamodb.put_item(TableName=table, Item={"pk": {"S": "t-1"}})) == \
            "ProvisionedThroughputExceededException"
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "t-1"}})  # count used up: disarmed
    assert cloud.faults.hits("dynamodb-throttle") == 2 and cloud.faults.armed() == []


def test_botocore_retries_a_throttle_shorter_than_its_attempts(cloud):
    dynamodb = aws_client(cloud, "dynamodb", retries=5)
    cloud.inject_fault("dynamodb-throttle", count=2, table="StateTable")
    dynamodb.put_item(TableName=cloud.resources["StateTable"], Item={"pk": {"S": "retried"}})
    assert _items(cloud, "StateTable", "retried") == {"retried"}


def test_conditional_check_failure_only_on_conditional_counter_updates(cloud):
    dynamodb, table = aws_client(cloud, "dynamodb"), cloud.resources["StateTable"]
    cloud.inject_fault("counters-conflict")
    update = dict(TableName=table, UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "1"}})
    dynamodb.update_item(Key={"pk": {"S": "stream#a"}}, **update)                 # no condition: passes
    dynamodb.update_item(Key={"pk": {"S": "stats"}}, ConditionExpression="attribute_not_exists(mark)", **update)
    assert _code(lambda: dynamodb.update_item(Key={"pk": {"S": "stream#a"}},
                                              ConditionExpression="attribute_not_exists(mark)", **update)) == \
        "ConditionalCheckFailedException"


def test_unprocessed_items_are_returned_and_not_written(cloud):
    dynamodb, table = aws_client(cloud, "dynamodb"), cloud.resources["FeaturesTable"]
    cloud.inject_fault("dynamodb-unprocessed")
    response = dynamodb.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {"pk": {"S": f"u-{i}"}}}} for i in range(5)]})
    unprocessed = [r["PutRequest"]["Item"]["pk"]["S"] for r in response["UnprocessedItems"][table]]
    assert unprocessed == ["u-2", "u-3", "u-4"] and _items(cloud, "FeaturesTable", "u-") == {"u-0", "u-1"}


def test_kinesis_put_records_fails_whole_after_a_partial_write(cloud):
    kinesis, stream = aws_client(cloud, "kinesis"), cloud.resources["Events"]
    cloud.inject_fault("kinesis-partial-put")
    records = [{"Data": f"r{i}".encode(), "PartitionKey": "k"} for i in range(4)]
    assert _code(lambda: kinesis.put_records(StreamName=stream, Records=records)) == "InternalFailure"
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"]] == [b"r0", b"r1"]


def test_s3_error_on_a_key_prefix(cloud):
    s3, bucket = aws_client(cloud, "s3"), cloud.resources["Bucket"]
    cloud.inject_fault("s3-error", count=1, key_prefix="journal/")
    s3.put_object(Bucket=bucket, Key="other/a.json", Body=b"{}")
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="journal/a.json", Body=b"{}")) == "InternalError"
    s3.put_object(Bucket=bucket, Key="journal/a.json", Body=b"{}")


def test_crash_before_the_write_kills_the_calling_worker(cloud):
    cloud.inject_fault("crash-before-state", table="FeaturesTable")
    result = cloud.invoke_raw("WriterFunction", {"prefix": "c1"})
    assert result.function_error and json.loads(result.payload)["errorType"] == "Runtime.ExitError"
    assert _items(cloud, "FeaturesTable", "c1") == set() and _items(cloud, "StateTable", "c1") == set()
    assert cloud.faults.history[-1]["function"] == "WriterFunction"
    assert cloud.invoke("WriterFunction", {"prefix": "c1"}) == "written"  # a new worker replaces the dead one


def test_crash_inside_a_batch_write_leaves_half_of_it(cloud):
    cloud.inject_fault("crash-in-batch-write", table="FeaturesTable")
    result = cloud.invoke_raw("WriterFunction", {"prefix": "c2"})
    assert json.loads(result.payload)["errorType"] == "Runtime.ExitError"
    assert _items(cloud, "FeaturesTable", "c2") == {"c2-0", "c2-1"} and _items(cloud, "StateTable", "c2") == set()


def test_a_call_from_another_function_or_a_client_is_not_hit(cloud):
    hits = cloud.faults.hits("crash-before-state")
    cloud.inject_fault("crash-before-state", table="FeaturesTable", function="OtherFunction")
    assert cloud.invoke("WriterFunction", {"prefix": "c3"}) == "written"
    cloud.inject_fault("crash-before-state", table="FeaturesTable")   # a caller that is no Lambda worker
    aws_client(cloud, "dynamodb").batch_write_item(RequestItems={cloud.resources["FeaturesTable"]: [
        {"PutRequest": {"Item": {"pk": {"S": "c3-client"}}}}]})
    assert "c3-client" in _items(cloud, "FeaturesTable", "c3") and cloud.faults.hits("crash-before-state") == hits


def test_timeout_then_the_held_write_lands_late(cloud):
    cloud.inject_fault("stream-timeout", table="FeaturesTable")
    started = time.monotonic()
    result = cloud.invoke_raw("WriterFunction", {"prefix": "c4"})
    assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout" and time.monotonic() - started >= 2
    wait_for(lambda: _items(cloud, "FeaturesTable", "c4") == {f"c4-{i}" for i in range(4)}, what="the late write")
    assert _items(cloud, "StateTable", "c4") == set()  # the function itself never got past the write


def test_control_api_and_cli_list_and_arm_faults(cloud):
    help_text = subprocess.run([sys.executable, "-m", "localcloud", "fault", "--help"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    assert all(name in help_text for name in KINDS)
    armed = subprocess.run([sys.executable, "-m", "localcloud", "fault", "dynamodb-throttle", "--count", "3",
                            "--table", "StateTable", "--endpoint-url", cloud.endpoint_url], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert json.loads(armed)["faults"] == [{"name": "dynamodb-throttle", "remaining": 3, "hits": 0,
                                            "table": "StateTable"}]
    subprocess.run([sys.executable, "-m", "localcloud", "clear-faults", "--endpoint-url", cloud.endpoint_url],
                   cwd=ROOT, capture_output=True, check=True)
    assert cloud.faults.armed() == []
    with pytest.raises(ValueError, match="unknown fault"):
        cloud.inject_fault("no-such-fault")
