"""POST /events write side (pipeline/ingest.py): request limits on both sides and PutRecords partial failures.

PutRecords takes up to 500 records per request, and answers per record: a failed record carries ErrorCode and
ErrorMessage, in request order (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).
"""
import json

import pytest
from lambdakit import event

from pipeline import aws as pipeline_aws, ingest, store
from pipeline.ingest import MAX_BODY_BYTES, MAX_EVENTS_PER_REQUEST, BadRequest, parse_body
from pipeline.settings import Settings


def _stream_records(aws) -> list[dict]:
    kinesis = aws["kinesis"]
    shard = kinesis.describe_stream(StreamName="events")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="events", ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return kinesis.get_records(ShardIterator=iterator)["Records"]


def _parse(body, content_type="application/json") -> list:
    """The API's path for a body: text (size, UTF-8), format from the Content-Type, then the events."""
    return parse_body(ingest.body_text(body, False), ingest.body_format(content_type))


def _bad_request(body, content_type="application/json") -> BadRequest:
    with pytest.raises(BadRequest) as info:
        _parse(body, content_type)
    return info.value


def test_500_events_pass_and_501_are_refused():
    assert MAX_EVENTS_PER_REQUEST == 500  # the PutRecords limit: one request per POST
    assert len(_parse(json.dumps({"events": [event(n) for n in range(500)]}))) == 500
    error = _bad_request(json.dumps({"events": [event(n) for n in range(501)]}))
    assert (error.code, error.status) == ("too_many_events", 413)


def test_body_size_limit_is_inclusive():
    assert MAX_BODY_BYTES == 1_048_576
    one = json.dumps(event(1))
    padded = one[:-1] + ', "pad": "' + "x" * (MAX_BODY_BYTES - len(one) - 11) + '"}'
    assert len(padded.encode()) == MAX_BODY_BYTES
    assert parse_body(ingest.body_text(padded, False), "json")[0]["event_id"] == "e1"
    with pytest.raises(BadRequest) as info:
        ingest.body_text(padded[:-2] + 'x"}', False)      # one byte over
    assert (info.value.code, info.value.status) == ("body_too_large", 413)


def test_body_shapes_and_their_errors():
    assert _parse(json.dumps(event(1)), "application/json") == [event(1)]
    ndjson = json.dumps(event(1)) + "\n\n  \n" + json.dumps(event(2)) + "\n"
    assert _parse(ndjson, "application/x-ndjson") == [event(1), event(2)]
    assert _parse(ndjson, "application/x-jsonlines") == [event(1), event(2)]
    error = _bad_request(json.dumps(event(1)) + "\n{oops", "application/x-ndjson")
    assert (error.code, error.status) == ("malformed_body", 400) and error.args[0].startswith("line 2 ")
    for body, code in ((None, "empty_body"), ("", "empty_body"), ("{oops", "malformed_body"),
                       ('{"events": {"a": 1}}', "malformed_body"), ("[1, 2]", "malformed_body"),
                       ('{"events": []}', "no_events"), ("\n\n", "no_events")):
        error = _bad_request(body, "application/x-ndjson" if body == "\n\n" else "application/json")
        assert (error.code, error.status) == (code, 400), body


@pytest.fixture
def sleeps(monkeypatch):
    waited = []
    monkeypatch.setattr(ingest.time, "sleep", waited.append)
    return waited


def _fail_entries(monkeypatch, fail: dict[str, int]):
    """PutRecords answers ErrorCode for the records whose event id is in ``fail``, that many times each."""
    kinesis = pipeline_aws.client("kinesis")
    real = kinesis.put_records
    calls = []

    def put_records(StreamName, Records):
        calls.append([json.loads(r["Data"])["event_id"] for r in Records])
        passing = [r for r in Records if fail.get(json.loads(r["Data"])["event_id"], 0) <= 0]
        answers = iter(real(StreamName=StreamName, Records=passing)["Records"]) if passing else iter(())
        out = []
        for r in Records:
            event_id = json.loads(r["Data"])["event_id"]
            if fail.get(event_id, 0) > 0:
                fail[event_id] -= 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                out.append(next(answers))
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}

    monkeypatch.setattr(kinesis, "put_records", put_records)
    return calls


def test_a_failed_putrecords_entry_is_retried_alone_and_then_accepted(aws, monkeypatch, sleeps):
    calls = _fail_entries(monkeypatch, {"e2": 2})
    result = ingest.ingest([event(1), event(2), event(3)], Settings.from_env())
    assert calls == [["e1", "e2", "e3"], ["e2"], ["e2"]]
    assert sleeps == [0.1, 0.2]                       # backoff 0.05 x 2^attempt
    assert result.body() == {"accepted": 3, "rejected": []}
    assert sorted(json.loads(r["Data"])["event_id"] for r in _stream_records(aws)) == ["e1", "e2", "e3"]
    assert store.get_item("state", {"pk": "stats"})["events_ingested"] == 3


def test_an_entry_that_keeps_failing_is_reported_for_the_client_to_retry(aws, monkeypatch, sleeps):
    calls = _fail_entries(monkeypatch, {"e2": 99})
    raws = [event(1), {"event_id": "bad", "user_id": "u1", "event_type": "nope", "timestamp": 1}, event(2)]
    result = ingest.ingest(raws, Settings.from_env())
    assert len(calls) == ingest.PUT_ATTEMPTS == 4 and calls[1:] == [["e2"]] * 3
    assert sleeps == [0.1, 0.2, 0.4]
    body = result.body()
    assert body["accepted"] == 1
    assert body["failed"] == [{"index": 2, "event_id": "e2", "error": "ProvisionedThroughputExceededException"}]
    assert body["rejected"][0]["index"] == 1 and body["rejected"][0]["event_id"] == "bad"
    stats = store.get_item("state", {"pk": "stats"})
    assert stats["events_ingested"] == 1 and stats["events_rejected_at_api"] == 1


def test_records_carry_the_event_keyed_by_user_without_empty_fields(aws, sleeps):
    result = ingest.ingest([event(1, user="alice", amount=2.5), {"event_id": 7}], Settings.from_env())
    assert result.body()["accepted"] == 1 and "failed" not in result.body()
    # a claimed id is echoed back only when it is a string (input contract)
    assert result.rejected[0]["event_id"] is None and result.rejected[0]["errors"]
    [record] = _stream_records(aws)
    assert record["PartitionKey"] == "alice"
    data = json.loads(record["Data"])
    assert {k: data[k] for k in ("event_id", "user_id", "amount", "priority")} == {
        "event_id": "e1", "user_id": "alice", "amount": 2.5, "priority": "medium"}
    assert "device_type" not in data and data["ingest_ts"] > 1.7e9
    assert sleeps == []


def test_non_objects_and_future_events_are_rejected_and_records_are_compact_json(aws, sleeps):
    import time
    future = event(2, timestamp=time.time() + 3600)
    result = ingest.ingest([5, future, event(3)], Settings.from_env())
    assert [(r["index"], r["event_id"]) for r in result.rejected] == [(0, None), (1, "e2")]
    assert "future" in result.rejected[1]["errors"][0] and result.accepted == 1
    [record] = _stream_records(aws)
    assert b" " not in record["Data"]            # compact: fewer bytes per record, fewer 25 KB payload units
