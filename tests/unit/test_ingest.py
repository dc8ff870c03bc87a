"""POST /events write side (pipeline/ingest.py): request limits on both sides and PutRecords partial failures.

PutRecords takes up to 500 records per request, and answers per record: a failed record carries ErrorCode and
ErrorMessage, in request order (https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html).
"""
import base64
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


def test_an_event_id_twice_in_one_request_is_sent_once_and_reported_and_the_rest_still_go(aws, sleeps):
    """The first of an event_id wins (as in the stream's dedupe); what follows a duplicate is still sent; an
    ingest_ts sent by the client is not taken (the API stamps it)."""
    raws = [event(1, user="alice"), event(2), event(1, user="mallory"), event(3) | {"ingest_ts": 1.0}]
    body = ingest.ingest(raws, Settings.from_env()).body()
    assert body == {"accepted": 3, "rejected": [], "duplicates": [{"index": 2, "event_id": "e1", "duplicate_of": 0}]}
    records = _stream_records(aws)
    sent = [json.loads(r["Data"]) for r in records]
    assert (sent[0]["event_id"], records[0]["PartitionKey"]) == ("e1", "alice")
    assert sorted(e["event_id"] for e in sent) == ["e1", "e2", "e3"]
    assert all(e["ingest_ts"] > 1.7e9 for e in sent)


@pytest.mark.parametrize("content_type,expected", [
    (None, "json"), ("application/json", "json"), ("Application/JSON ; charset=UTF-8", "json"),
    ('application/json; charset="utf8"', "json"), ("application/json;foo=bar; charset=utf-8", "json"),
    ("application/x-ndjson", "ndjson"), ("application/ndjson", "ndjson"), ("application/jsonl", "ndjson"),
    ("APPLICATION/X-JSONLINES;charset=utf-8", "ndjson"), ("application/json; charset=utf-8;foo=bar", "json")])
def test_body_format_from_the_content_type(content_type, expected):
    assert ingest.body_format(content_type) == expected


@pytest.mark.parametrize("content_type,message", [
    ("text/plain", "content type 'text/plain' is not supported: send application/json or application/x-ndjson"),
    ("application/json; charset=latin-1", "charset 'latin-1' is not supported: send UTF-8"),
    ('application/x-ndjson; charset="UTF-16"', "charset 'utf-16' is not supported: send UTF-8"),
    ("application/json; charset=" + "x" * 50, "charset '" + "x" * 40 + "' is not supported: send UTF-8"),
    ("application/json; charset=utf-8=x", "charset 'utf-8=x' is not supported: send UTF-8"),
    ("application/" + "x" * 100, "content type '" + ("application/" + "x" * 100)[:80] + "' is not supported: send "
                                 "application/json or application/x-ndjson")])
def test_an_unsupported_content_type_or_charset_is_415(content_type, message):
    with pytest.raises(BadRequest) as info:
        ingest.body_format(content_type)
    assert (info.value.code, info.value.status, info.value.args[0]) == ("unsupported_media_type", 415, message)


def test_body_text_decodes_base64_and_utf8_and_names_each_failure():
    assert ingest.body_text(base64.b64encode("é{}".encode()).decode(), True) == "é{}"
    assert ingest.body_text("é{}", False) == "é{}"
    cases = [((None, False), ("empty_body", 400, "request body is empty")),
             (("", True), ("empty_body", 400, "request body is empty")),
             (("x" * (4 * MAX_BODY_BYTES + 1), False), ("body_too_large", 413,
                                                          f"request body is larger than {MAX_BODY_BYTES} bytes")),
             (("not base64!", True), ("malformed_body", 400, "body is marked base64-encoded but is not valid base64")),
             (("e30=!", True), ("malformed_body", 400, "body is marked base64-encoded but is not valid base64")),
             ((base64.b64encode(b"a" * (MAX_BODY_BYTES + 1)).decode(), True),
              ("body_too_large", 413, f"request body is larger than {MAX_BODY_BYTES} bytes")),
             ((base64.b64encode(b'{"a": "\xff"}').decode(), True),
              ("malformed_body", 400, "body is not UTF-8 (byte 7)"))]
    for args, expected in cases:
        with pytest.raises(BadRequest) as info:
            ingest.body_text(*args)
        assert (info.value.code, info.value.status, info.value.args[0]) == expected, args


@pytest.mark.parametrize("text,message", [
    ("{oops", "body is not valid JSON: Expecting property name enclosed in double quotes at character 1"),
    ('{"a": NaN}', "body is not valid JSON: NaN is not a JSON number"),
    ('{"a": -Infinity}', "body is not valid JSON: -Infinity is not a JSON number"),
    ("[" * 100_000 + "]" * 100_000, "body is nested too deeply")])
def test_loads_turns_every_json_failure_into_a_400(text, message):
    with pytest.raises(BadRequest) as info:
        ingest.loads(text)
    assert (info.value.code, info.value.status, info.value.args[0]) == ("malformed_body", 400, message)


def test_an_integer_too_long_for_python_is_a_400_with_the_reason_cut_to_120_characters():
    with pytest.raises(BadRequest) as info:
        ingest.loads("1" * 5000, "line 3")
    prefix = "line 3 is not valid JSON: "
    assert (info.value.code, info.value.status) == ("malformed_body", 400)
    assert info.value.args[0].startswith(prefix + "Exceeds the limit (4300 digits) for integer string conversion")
    assert len(info.value.args[0]) == len(prefix) + 120


def test_parse_body_errors_have_their_codes_and_statuses():
    for text, fmt, expected in [
            ('{"events": {"a": 1}}', "json", ("malformed_body", 400, '"events" must be a list')),
            ("[1, 2]", "json", ("malformed_body", 400, 'body must be an event object or {"events": [...]}')),
            ('{"events": []}', "json", ("no_events", 400, "no events in the request")),
            ("\n \r\n", "ndjson", ("no_events", 400, "no events in the request")),
            ('{"a": 1}\n{oops', "ndjson", ("malformed_body", 400,
                                            "line 2 is not valid JSON: Expecting property name enclosed in double "
                                            "quotes at character 1")),
            (json.dumps({"events": [{}] * (MAX_EVENTS_PER_REQUEST + 1)}), "json",
             ("too_many_events", 413, f"at most {MAX_EVENTS_PER_REQUEST} events per request"))]:
        with pytest.raises(BadRequest) as info:
            parse_body(text, fmt)
        assert (info.value.code, info.value.status, info.value.args[0]) == expected, text[:40]
    assert parse_body('{"a": 1}\r\n\n{"b": 2}', "ndjson") == [{"a": 1}, {"b": 2}]
    assert parse_body('{"a": "x\u2028y"}', "ndjson") == [{"a": "x\u2028y"}]
    assert parse_body('{"user_id": "u"}', "json") == [{"user_id": "u"}]
