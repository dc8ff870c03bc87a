"""Unit tests run the handlers in-process against moto (mock_aws), with events built the way Lambda builds them
(tests/unit/lambdakit.py)."""
import json
import os
import uuid

import boto3
import pytest
from lambdakit import REGION, LambdaContext
from moto import mock_aws

from pipeline import contract

# the stack's tables (pipeline/contract.py), each under a short name: "events", "predictions", ...
TABLES = {construct_id.removesuffix("Table").lower(): table for construct_id, table in contract.TABLES.items()}
PASS_STATE_MACHINE = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


def pytest_collection_modifyitems(config, items):
    """In a mutation run only (mutmut sets MUTANT_UNDER_TEST; scripts/mutate.py): the tests that need no mocked
    account first, then the others fastest first by the durations mutmut recorded (mutants/mutmut-stats.json).
    mutmut stops a mutant's run at its first failing test (-x) and passes its tests in no set order, so a mutant a
    quick test kills would otherwise often go through the slow end-to-end tests first. The tests and what they
    check are unchanged; outside mutmut the order is pytest's."""
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    try:
        with open("mutmut-stats.json") as f:  # mutmut runs the tests from the staging tree's mutants/
            durations = json.load(f)["duration_by_test"]
    except (OSError, ValueError, KeyError):
        durations = {}
    items.sort(key=lambda item: ("aws" in getattr(item, "fixturenames", ()), durations.get(item.nodeid, 0.0)))


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
