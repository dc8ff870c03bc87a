import base64
import json

from conftest import event, http_event
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
