import base64
import json

import pytest
from lambdakit import event, http_event

from pipeline import store


def call(request, context):
    from api import handler
    response = handler.handler(request, context)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def _records(aws):
    kinesis = aws["kinesis"]
    shard = kinesis.describe_stream(StreamName="events")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="events", ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [json.loads(r["Data"]) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]


def test_post_events_accepts_valid_and_reports_rejected(aws, lambda_context):
    body = {"events": [event(1), {"event_id": "bad", "user_id": "u1", "event_type": "nope", "timestamp": 1},
                       event(2)]}
    status, result = call(http_event("POST", "/events", body), lambda_context)
    assert status == 202
    assert result["accepted"] == 2
    assert result["rejected"][0]["index"] == 1 and result["rejected"][0]["event_id"] == "bad"
    records = _records(aws)
    assert [r["event_id"] for r in records] == ["e1", "e2"] and all("ingest_ts" in r for r in records)
    assert store.get_item("state", {"pk": "stats"})["events_ingested"] == 2


def test_single_event_and_ndjson_bodies(aws, lambda_context):
    assert call(http_event("POST", "/events", event(1)), lambda_context)[1]["accepted"] == 1
    ndjson = "\n".join(json.dumps(event(n)) for n in range(2, 5)) + "\n"
    request = http_event("POST", "/events", ndjson, headers={"content-type": "application/x-ndjson"})
    assert call(request, lambda_context)[1]["accepted"] == 3


def test_base64_body_is_decoded(aws, lambda_context):
    request = http_event("POST", "/events")
    request.update(body=base64.b64encode(json.dumps(event(1)).encode()).decode(), isBase64Encoded=True)
    assert call(request, lambda_context) == (202, {"accepted": 1, "rejected": []})


def test_malformed_and_oversized_bodies(aws, lambda_context):
    status, body = call(http_event("POST", "/events", "{not json"), lambda_context)
    assert status == 400 and body["error"] == "malformed_body" and body["message"]
    status, body = call(http_event("POST", "/events", {"events": [event(n) for n in range(501)]}), lambda_context)
    assert status == 413 and body["error"] == "too_many_events"
    assert call(http_event("POST", "/events", ""), lambda_context)[0] == 400


def test_unknown_user_event_and_route_are_404_with_json_errors(aws, lambda_context):
    request = http_event("GET", "/users/nobody/features", path_parameters={"user_id": "nobody"},
                         route_key="GET /users/{user_id}/features")
    assert call(request, lambda_context) == (404, {"error": "user_not_found",
                                                   "message": "no features for user 'nobody'"})
    status, body = call(http_event("GET", "/predictions/nope"), lambda_context)
    assert status == 404 and body["error"] == "prediction_not_found"
    status, body = call(http_event("GET", "/nowhere"), lambda_context)
    assert status == 404 and body["error"] == "route_not_found"


def test_default_route_events_answer_404_in_the_project_error_shape(aws, lambda_context):
    """What the stack's $default route delivers (routeKey "$default", the request's own method and path): unknown
    paths and known paths with another method are 404 {"error": "route_not_found", "message"}, not API Gateway's
    {"message": "Not Found"}."""
    for method, path in (("GET", "/nowhere"), ("POST", "/stats"), ("DELETE", "/events"), ("GET", "/"),
                         ("PUT", "/users/u1/median/extra")):
        status, body = call(http_event(method, path, route_key="$default"), lambda_context)
        assert (status, body) == (404, {"error": "route_not_found", "message": f"no route for {method} {path}"})


def test_queries_over_stored_predictions(aws, lambda_context):
    for n, (ts, score) in enumerate([(1000.0, 0.1), (1100.0, 0.5), (1250.0, 0.9), (2000.0, 0.3)]):
        store.put_item("predictions", {"event_id": f"e{n}", "user_id": "u1", "ts": ts, "score": score,
                                       "variant": "primary"})
    assert call(http_event("GET", "/predictions/e1"), lambda_context)[1]["score"] == 0.5
    status, body = call(http_event("GET", "/users/u1/history", query={"since": "1050", "until": "1300"}),
                        lambda_context)
    assert status == 200 and [h["event_id"] for h in body["history"]] == ["e1", "e2"]
    status, body = call(http_event("GET", "/users/u1/median"), lambda_context)
    assert body == {"user_id": "u1", "median": 0.3, "window_seconds": 300, "count": 1, "window_end": 2000}
    status, body = call(http_event("GET", "/users/u1/history", query={"since": "soon"}), lambda_context)
    assert status == 400 and body["error"] == "bad_query"


def test_stats_health_and_openapi(aws, lambda_context):
    assert call(http_event("GET", "/health"), lambda_context) == (200, {"status": "ok"})
    status, stats = call(http_event("GET", "/stats"), lambda_context)
    assert status == 200 and stats["events_ingested"] == 0 and stats["current_batch_size"] == 100
    status, spec = call(http_event("GET", "/openapi.json"), lambda_context)
    assert status == 200 and "/events" in spec["paths"] and "/users/{user_id}/median" in spec["paths"]


def _error(request, lambda_context):
    status, body = call(request, lambda_context)
    return status, body["error"], body["message"]


def test_hostile_bodies_are_4xx_that_name_the_problem(aws, lambda_context):
    """Each of these escaped the handler before (a 500 in AWS) or was answered with non-JSON."""
    cases = [
        ("[" * 100_000, 400, "malformed_body", "nested too deeply"),
        ('{"event_id": "e", "amount": ' + "9" * 5000 + "}", 400, "malformed_body", "digits"),
        ('{"events": [{"amount": NaN}]}', 400, "malformed_body", "NaN is not a JSON number"),
        ("x" * (1_048_576 + 1), 413, "body_too_large", "larger than 1048576 bytes"),
    ]
    for body, status, code, text in cases:
        got_status, got_code, message = _error(http_event("POST", "/events", body), lambda_context)
        assert (got_status, got_code) == (status, code) and text in message, message
    request = http_event("POST", "/events")
    request.update(body="not base64!", isBase64Encoded=True)
    assert _error(request, lambda_context)[:2] == (400, "malformed_body")
    request.update(body=base64.b64encode(b'{"event_id": "\xff"}').decode())
    assert _error(request, lambda_context) == (400, "malformed_body", "body is not UTF-8 (byte 14)")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml",
                                          "application/json; charset=latin-1"])
def test_unsupported_content_types_are_415(aws, lambda_context, content_type):
    request = http_event("POST", "/events", event(1), headers={"content-type": content_type})
    status, code, message = _error(request, lambda_context)
    assert (status, code) == (415, "unsupported_media_type") and message
    request = http_event("POST", "/predict", {"instances": [event(1)]}, headers={"content-type": content_type})
    assert _error(request, lambda_context)[0] == 415


def test_ndjson_is_split_on_newlines_only(aws, lambda_context):
    """U+2028 is a line break to str.splitlines() but a plain character inside a JSON string."""
    ndjson = json.dumps(event(1, merchant_category="a\u2028b"), ensure_ascii=False) + "\r\n" + \
        json.dumps(event(2), ensure_ascii=False) + "\n\n"
    status, body = call(http_event("POST", "/events", ndjson, headers={"content-type": "application/x-ndjson"}),
                        lambda_context)
    assert status == 202 and body["accepted"] == 1  # one line, rejected for its category; not a JSON error
    assert body["rejected"][0]["errors"] == [
        "merchant_category: character U+2028 (LINE SEPARATOR) is not allowed: ids are letters, digits, spaces and "
        "-._~()'!*:@,;=+&$<>[]{}|^"]


def test_duplicates_within_a_request_are_sent_once(aws, lambda_context):
    body = {"events": [event(1), event(2), event(1, event_type="click"), event(2)]}
    status, result = call(http_event("POST", "/events", body), lambda_context)
    assert status == 202 and result["accepted"] == 2 and result["rejected"] == []
    assert result["duplicates"] == [{"index": 2, "event_id": "e1", "duplicate_of": 0},
                                    {"index": 3, "event_id": "e2", "duplicate_of": 1}]
    assert [(r["event_id"], r["event_type"]) for r in _records(aws)] == [("e1", "view"), ("e2", "view")]


def test_client_ingest_ts_is_ignored_and_rejected_ids_are_echoed_only_as_text(aws, lambda_context):
    status, result = call(http_event("POST", "/events", {"events": [
        event(1, ingest_ts=1e300), {"event_id": {"nested": [1]}, "user_id": "u"}]}), lambda_context)
    assert status == 202 and result["accepted"] == 1 and result["rejected"][0]["event_id"] is None
    assert _records(aws)[0]["ingest_ts"] < 1e11


@pytest.mark.parametrize("query, message", [
    ({"since": "1e400"}, "since: must be a finite epoch time"),
    ({"until": "9" * 400}, "until: must be a finite epoch time"),
    ({"since": "-5"}, "since: must be a finite epoch time"),
    ({"since": "2000", "until": "1000"}, "since must not be after until"),
    ({"since": "9999-12-31T23:59:59-23:59"}, "since: must be a finite epoch time"),
])
def test_history_query_times_are_validated(aws, lambda_context, query, message):
    request = http_event("GET", "/users/u1/history", query=query)
    status, code, text = _error(request, lambda_context)
    assert (status, code) == (400, "bad_query") and text.startswith(message), text


@pytest.mark.parametrize("value", ["²", "١٢", "1e3", "-1", " 5", "10000000000", "0"])
def test_integer_query_parameters_are_ascii_digits_in_range(aws, lambda_context, value):
    status, code, _ = _error(http_event("GET", "/batches/recent", query={"limit": value}), lambda_context)
    assert (status, code) == (400, "bad_query")


@pytest.mark.parametrize("user_id", ["café", "a b", "Ωmega:1"])
def test_ids_that_need_percent_encoding_are_read_back(aws, lambda_context, user_id):
    """API Gateway passes path parameters decoded; so does the route's rawPath in HTTP APIs. Either way (an encoded
    rawPath decodes to the same id, since ids hold no "%") the user is found."""
    from urllib.parse import quote
    store.put_item("predictions", {"event_id": "p1", "user_id": user_id, "ts": 1000.0, "score": 0.5,
                                   "variant": "primary"})
    for raw_path in (f"/users/{user_id}/history", f"/users/{quote(user_id)}/history"):
        request = http_event("GET", raw_path, path_parameters={"user_id": user_id},
                             route_key="GET /users/{user_id}/history")
        status, body = call(request, lambda_context)
        assert status == 200 and body["user_id"] == user_id and len(body["history"]) == 1


def test_ids_that_cannot_be_routed_are_rejected_at_ingest_and_in_paths(aws, lambda_context):
    status, body = call(http_event("POST", "/events", event(1, user="a/b")), lambda_context)
    assert status == 202 and body["accepted"] == 0 and "U+002F" in body["rejected"][0]["errors"][0]
    status, code, message = _error(http_event("GET", "/predictions/" + "x" * 3000), lambda_context)
    assert (status, code) == (400, "bad_path") and "event_id: must be 1 to 128 characters" in message
