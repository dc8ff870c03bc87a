"""Behaviour of the query routes: history pages with a next token, POST /predict scores on the current features
without changing them, the single-feature route, the model registry routes (GET /models, GET /model/status)."""
import json
import tarfile
from pathlib import Path

import boto3
import pytest
import xgboost
from lambdakit import event, http_event, kinesis_event

from pipeline import model_client, queries, store
from pipeline.settings import settings

MODEL = Path(__file__).resolve().parents[2] / "model" / "artifacts" / "model.tar.gz"


def call(request, context):
    from api import handler
    response = handler.handler(request, context)
    return response["statusCode"], json.loads(response["body"]) if response.get("body") else None


def history(context, user="u1", **query):
    request = http_event("GET", f"/users/{user}/history", query={k: str(v) for k, v in query.items()} or None,
                         path_parameters={"user_id": user}, route_key="GET /users/{user_id}/history")
    return call(request, context)


def _predictions(user: str, count: int, start: float = 1000.0) -> None:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("predictions")
    with table.batch_writer() as batch:
        for n in range(count):
            batch.put_item(Item=store.to_item({"event_id": f"{user}-{n:05d}", "user_id": user, "ts": start + n,
                                               "score": 0.5, "variant": "primary"}))


def test_history_pages_follow_next_token_to_the_end_in_order(aws, lambda_context):
    _predictions("u1", 250)
    _predictions("u2", 30)
    status, first = history(lambda_context)
    assert status == 200 and first["page_size"] == queries.HISTORY_PAGE_SIZE == 100
    assert len(first["history"]) == 100 and first["next_token"]
    seen, page = list(first["history"]), first
    while page["next_token"]:
        status, page = history(lambda_context, next_token=page["next_token"])
        assert status == 200 and len(page["history"]) <= 100
        seen += page["history"]
    assert [h["event_id"] for h in seen] == [f"u1-{n:05d}" for n in range(250)]   # each once, oldest first


def test_history_has_no_silent_cap_at_1000_rows(aws, lambda_context):
    _predictions("u1", 1200)
    status, first = history(lambda_context, limit=1000)
    assert status == 200 and len(first["history"]) == 1000 and first["next_token"]
    status, rest = history(lambda_context, limit=1000, next_token=first["next_token"])
    assert len(rest["history"]) == 200 and rest["history"][-1]["event_id"] == "u1-01199"


def test_history_pages_keep_the_time_range(aws, lambda_context):
    _predictions("u1", 50)                          # ts 1000 .. 1049
    status, page = history(lambda_context, since=1010, until=1029, limit=15)
    status, rest = history(lambda_context, since=1010, until=1029, limit=15, next_token=page["next_token"])
    assert [h["timestamp"] for h in page["history"] + rest["history"]] == list(range(1010, 1030))


def test_history_refuses_bad_limits_and_tokens(aws, lambda_context):
    _predictions("u1", 3)
    _predictions("u2", 3)
    for limit in ("0", "1001", "ten"):
        status, body = history(lambda_context, limit=limit)
        assert status == 400 and body["error"] == "bad_query" and "limit" in body["message"]
    status, body = history(lambda_context, next_token="not-a-token")
    assert status == 400 and body["error"] == "bad_query"
    other_user_token = history(lambda_context, user="u2", limit=1)[1]["next_token"]
    status, body = history(lambda_context, next_token=other_user_token)
    assert status == 400 and "another query" in body["message"]


@pytest.fixture
def real_model(monkeypatch):
    """The SageMaker endpoint played by the project's XGBoost artifact; every row it was sent is kept."""
    with tarfile.open(MODEL) as archive:
        booster = xgboost.Booster(model_file=bytearray(archive.extractfile("xgboost-model").read()))
    sent: list[list[float]] = []

    def invoke(endpoint, rows, chunk, target_variant=None):
        sent.extend(rows)
        scores = booster.predict(xgboost.DMatrix(rows))
        return model_client.Scored([float(s) for s in scores], ["primary"] * len(rows), 0.01, 1)

    monkeypatch.setattr(model_client, "invoke", invoke)
    return booster, sent


def _process(events, context, first_seq=100):
    from process_stream import handler
    assert handler.handler(kinesis_event(events, first_seq=first_seq), context) == {"batchItemFailures": []}


def test_predict_scores_on_current_features_and_changes_nothing(aws, lambda_context, real_model):
    booster, sent = real_model
    _process([event(1), event(2, event_type="purchase", amount=20.0), event(3, event_type="click")], lambda_context)
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("features")
    before = table.scan()["Items"]
    features_before = queries.user_features(settings(), "u1")

    new = event(4, event_type="add_to_cart", amount=5.0)
    status, body = call(http_event("POST", "/predict", {"instances": [new, event(1, user="newcomer")]}),
                        lambda_context)
    assert status == 200
    [scored, first_timer] = body["predictions"]
    assert (scored["event_id"], scored["user_id"], scored["feature_set"]) == ("e4", "u1", "v1")
    expected = float(booster.predict(xgboost.DMatrix([sent[0]]))[0])
    assert scored["score"] == pytest.approx(expected, abs=1e-6)
    # nothing written: the stored state and the features route are as before
    assert table.scan()["Items"] == before and queries.user_features(settings(), "u1") == features_before
    assert first_timer["user_id"] == "newcomer" and table.get_item(
        Key={"user_id": "newcomer", "feature_set": "v1"}).get("Item") is None
    # the row it scored is the one the pipeline computes when the event really arrives (current features + it)
    _process([new], lambda_context, first_seq=200)   # later records of the shard
    assert sent[0] == list(queries.user_features(settings(), "u1")["features"].values())
    assert queries.user_features(settings(), "u1")["features"]["events_24h"] == \
        features_before["features"]["events_24h"] + 1


def test_predict_refuses_invalid_instances(aws, lambda_context, real_model):
    status, body = call(http_event("POST", "/predict", {"instances": [{"event_id": "x"}]}), lambda_context)
    assert status == 400 and body["error"] == "invalid_instance" and body["message"].startswith("instance 0")
    status, body = call(http_event("POST", "/predict", {"instances": []}), lambda_context)
    assert status == 400 and body["error"] == "malformed_body"
    status, body = call(http_event("POST", "/predict", {"instances": [event(n) for n in range(501)]}),
                        lambda_context)
    assert status == 413 and body["error"] == "too_many_events"
    assert real_model[1] == []                     # nothing reached the model


def feature(context, user, name):
    return call(http_event("GET", f"/users/{user}/features/{name}", path_parameters={"user_id": user, "name": name},
                           route_key="GET /users/{user_id}/features/{name}"), context)


def test_single_feature_route_answers_the_value_of_the_latest_vector(aws, lambda_context):
    _process([event(1), event(2, event_type="purchase", amount=20.0), event(3, event_type="purchase", amount=4.0)],
             lambda_context)
    features = queries.user_features(settings(), "u1")["features"]
    for name in ("events_24h", "purchases_24h", "amount_sum_24h", "seconds_since_prev"):
        status, body = feature(lambda_context, "u1", name)
        assert status == 200 and body == {"user_id": "u1", "feature_set": "v1", "name": name,
                                          "value": features[name]}
    assert feature(lambda_context, "u1", "purchases_24h")[1]["value"] == 2
    assert feature(lambda_context, "u1", "amount_sum_24h")[1]["value"] == 24.0
    status, body = feature(lambda_context, "u1", "nope")
    assert status == 404 and body["error"] == "unknown_feature" and "events_24h" in body["message"]
    status, body = feature(lambda_context, "ghost", "events_24h")
    assert status == 404 and body["error"] == "user_not_found"


def _manifest(s3, versions: dict, live: dict) -> None:
    s3.put_object(Bucket="artifacts", Key="models/manifest.json",
                  Body=json.dumps({"versions": versions, "live": live, "history": []}).encode())


def test_models_and_model_status_show_the_stack_version_until_a_promotion(aws, lambda_context, monkeypatch):
    monkeypatch.setenv("MODEL_VARIANTS", json.dumps([{"name": "primary", "weight": 1, "kind": "xgboost",
                                                      "model_version": "xgb-1", "endpoint": "model-endpoint"}]))
    status, body = call(http_event("GET", "/models"), lambda_context)
    assert status == 200 and body["live"]["source"] == "stack"
    assert [(v["version"], v["source"], v["live"], v["variants"]) for v in body["versions"]] == [
        ("xgb-1", "stack", True, ["primary"])]
    status, model = call(http_event("GET", "/model/status"), lambda_context)
    assert model["model_version"] == "xgb-1" and model["live"]["source"] == "stack"

    # what model/registry.py writes on a promotion: the manifest, and the live variants in the state table
    _manifest(boto3.client("s3", region_name="us-east-1"), {
        "xgb-2": {"kind": "xgboost", "feature_set": "v1", "metrics": {"holdout_auc": 0.71}, "created_at": 1.7e9,
                  "sha256": "a" * 64, "size": 10},
        "torch-2": {"kind": "pytorch", "feature_set": "v1", "metrics": {"holdout_auc": 0.70}, "created_at": 1.8e9,
                    "sha256": "b" * 64, "size": 20}}, {"primary": "torch-2"})
    store.put_item("state", {"pk": "model", "updated_at": 1.8e9 + 60, "variants": [
        {"name": "primary", "weight": 1.0, "kind": "pytorch", "model_version": "torch-2", "endpoint": "model-endpoint"}]})
    status, body = call(http_event("GET", "/models"), lambda_context)
    rows = {v["version"]: v for v in body["versions"]}
    assert list(rows) == ["xgb-2", "torch-2"]                       # oldest first; xgb-1 no longer serves
    assert rows["torch-2"]["live"] and rows["torch-2"]["variants"] == ["primary"] and not rows["xgb-2"]["live"]
    assert rows["torch-2"]["kind"] == "pytorch" and rows["torch-2"]["metrics"] == {"holdout_auc": 0.70}
    assert rows["xgb-2"]["created_at"] == "2023-11-14T22:13:20+00:00"
    status, model = call(http_event("GET", "/model/status"), lambda_context)
    assert model["model_version"] == "torch-2" and model["configured_model_version"] == "xgb-1"
    assert model["live"]["source"] == "promotion" and model["live"]["variants"][0]["kind"] == "pytorch"


def test_registry_and_api_read_the_same_manifest_key():
    from model import registry
    from pipeline import models

    assert registry.MANIFEST_KEY == models.MANIFEST_KEY
