import json

import boto3

from conftest import event, kinesis_event
from pipeline import store


def _handler():
    from process_stream import handler
    return handler.handler


def _state(aws_fixture):
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    return {name: sorted(store.from_item(dynamodb.Table(name).scan()["Items"]), key=json.dumps)
            for name in ("events", "features")}


def test_batch_is_featurised_and_one_inference_started(aws, lambda_context):
    records = kinesis_event([event(1), event(2, event_type="purchase", amount=5.0), event(3, user="u2")])
    assert _handler()(records, lambda_context) == {"batchItemFailures": []}
    features = store.get_item("features", {"user_id": "u1", "feature_set": "v1"})
    assert features["features"]["events_24h"] == 2 and features["features"]["purchases_24h"] == 1
    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    assert len(executions) == 1
    detail = json.loads(aws["sfn"].describe_execution(executionArn=executions[0]["executionArn"])["input"])
    assert [r["event_id"] for r in detail["rows"]] == ["e1", "e2", "e3"]
    assert len(detail["rows"][0]["features"]) == 15


def test_bad_records_are_rejected_with_reasons_and_kept(aws, lambda_context):
    records = kinesis_event([event(1), b"not json", {"event_id": "x", "user_id": "u1"}])
    assert _handler()(records, lambda_context) == {"batchItemFailures": []}
    rejected = [i for i in _state(aws)["events"] if i["status"] == "rejected"]
    assert len(rejected) == 2
    assert any("not valid JSON" in e for r in rejected for e in r["errors"])
    assert any(r["event_id"].startswith("rejected#x#") and any("event_type" in e for e in r["errors"])
               for r in rejected)


def test_client_duplicates_are_skipped(aws, lambda_context):
    _handler()(kinesis_event([event(1), event(1)], first_seq=100), lambda_context)
    _handler()(kinesis_event([event(1)], first_seq=200), lambda_context)  # a retry by the client
    features = store.get_item("features", {"user_id": "u1", "feature_set": "v1"})
    assert features["total_events"] == 1
    from pipeline import queries
    from pipeline.settings import settings
    assert queries.stats(settings())["events_duplicate"] == 2


def test_redelivered_batch_leaves_identical_state(aws, lambda_context):
    batch = kinesis_event([event(n, user=f"u{n % 3}") for n in range(12)])
    _handler()(batch, lambda_context)
    before = _state(aws)
    _handler()(batch, lambda_context)  # Lambda redelivers the same records (e.g. after a timeout)
    after = _state(aws)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("updated_at", "expires_at")} for r in rows]  # noqa
    assert strip(after["features"]) == strip(before["features"])
    assert strip(after["events"]) == strip(before["events"])
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]) == 1


def test_crash_before_inference_starts_is_repaired_by_the_redelivery(aws, lambda_context, monkeypatch):
    from pipeline import stream

    batch = kinesis_event([event(n, user=f"u{n % 3}") for n in range(6)])
    real_start = stream.start_inference
    monkeypatch.setattr(stream, "start_inference", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("crash")))
    try:
        _handler()(batch, lambda_context)
    except TimeoutError:
        pass
    crashed = _state(aws)
    monkeypatch.setattr(stream, "start_inference", real_start)
    _handler()(batch, lambda_context)  # Lambda retries the whole batch
    assert _state(aws)["features"] == crashed["features"]  # nothing applied twice
    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    rows = json.loads(aws["sfn"].describe_execution(executionArn=executions[0]["executionArn"])["input"])["rows"]
    ledger = {i["event_id"]: json.loads(i["features"]) for i in crashed["events"]}
    assert {r["event_id"]: r["features"] for r in rows} == ledger  # scored with the features stored first


def test_a_record_that_cannot_be_handled_fails_alone_and_later_records_wait(aws, lambda_context):
    records = kinesis_event([event(1), event(2), event(3)])
    del records["Records"][1]["kinesis"]["data"]  # a malformed Lambda record: decode raises KeyError
    response = _handler()(records, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    ledger = {i["event_id"] for i in _state(aws)["events"]}
    assert ledger == {"e1"}  # e3 is redelivered with e2, so it is not processed now
