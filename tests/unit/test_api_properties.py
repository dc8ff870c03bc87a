"""Property: for any body, headers and query string, the API function answers 2xx or 4xx with a strict JSON body,
and every error body names the problem ({"error": code, "message": text}). Never an exception (a 500 in AWS)."""
import json
from urllib.parse import quote

from contract_strategies import HOSTILE_PAYLOADS, b64, events, ids, json_values, payloads
from hypothesis import HealthCheck, given, settings, strategies as st
from lambdakit import http_event

CONTENT_TYPES = st.one_of(st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
    "application/x-ndjson", "APPLICATION/JSON", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", ""]), st.text(max_size=30))


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in a response body is not JSON")
    return json.loads(text, parse_constant=refuse)


def _call(request, context):
    from api import handler
    response = handler.handler(request, context)
    status = response["statusCode"]
    assert 200 <= status < 500 and not 300 <= status < 400, response
    body = _strict_json(response["body"])
    if status >= 400:
        assert isinstance(body["error"], str) and body["error"]
        assert isinstance(body["message"], str) and body["message"]
    return status, body


bodies = st.one_of(
    events.map(json.dumps), st.lists(events, max_size=5).map(lambda e: json.dumps({"events": e})),
    st.lists(events, max_size=4).map(lambda e: "\n".join(map(json.dumps, e))),
    json_values.map(json.dumps), st.text(max_size=40), st.sampled_from([p.decode("latin-1") for p in HOSTILE_PAYLOADS]))

SLOW = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SLOW
@given(body=bodies, content_type=CONTENT_TYPES, encoded=st.sampled_from(["no", "yes", "invalid"]),
       raw=payloads, headers=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=3))
def test_post_events_answers_json_for_any_body(aws, lambda_context, body, content_type, encoded, raw, headers):
    request = http_event("POST", "/events", body, headers=headers | {"content-type": content_type})
    if encoded == "yes":
        request.update(body=b64(raw), isBase64Encoded=True)
    elif encoded == "invalid":
        request.update(isBase64Encoded=True)  # the text body is most likely not base64
    status, answer = _call(request, lambda_context)
    if status == 202:
        assert answer["accepted"] >= 0 and all(r["errors"] for r in answer["rejected"])


@SLOW
@given(user_id=ids.filter(lambda i: isinstance(i, str)), route=st.sampled_from(["features", "features/amount_sum_24h",
                                                                                "median", "history"]),
       query=st.dictionaries(st.sampled_from(["since", "until", "window_seconds", "limit"]),
                             st.one_of(st.text(max_size=12), st.sampled_from(["²", "1e400", "1e-200", "99999999999",
                                                                              "-1", "0", "10", "9" * 400]))))
def test_user_routes_answer_json_for_any_id_and_query(aws, lambda_context, user_id, route, query):
    from pipeline.events import check_id

    path = f"/users/{user_id}/{route}"  # API Gateway passes the path decoded
    request = http_event("GET", path, query=query, path_parameters={"user_id": user_id},
                         route_key="GET /users/{user_id}/" + route.replace("amount_sum_24h", "{name}"))
    request["rawQueryString"] = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    status, body = _call(request, lambda_context)
    assert status in (200, 400, 404)
    if status == 400 and body["error"] == "bad_path":
        try:
            check_id(user_id)
            assert not 1 <= len(user_id) <= 128, body
        except ValueError:
            pass


@SLOW
@given(event_id=ids.filter(lambda i: isinstance(i, str)), limit=st.text(max_size=6))
def test_prediction_and_batches_answer_json(aws, lambda_context, event_id, limit):
    _call(http_event("GET", f"/predictions/{event_id}", path_parameters={"event_id": event_id},
                     route_key="GET /predictions/{event_id}"), lambda_context)
    _call(http_event("GET", "/batches/recent", query={"limit": limit}), lambda_context)
