"""Sticky A/B assignment: split within tolerance of the weights, stickiness, TargetVariant per user in invoke_model,
variant and model version on every prediction, per-variant stats through the API."""
import io
import json
import math

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from lambdakit import http_event

from pipeline import aws as pipeline_aws, inference, store, variants
from pipeline.settings import settings

AB = [variants.VariantSpec("primary", 0.8, "xgboost", "xgb-1"),
      variants.VariantSpec("challenger", 0.2, "pytorch", "torch-1")]
MODEL_VARIANTS = json.dumps([{"name": "primary", "weight": 0.8, "kind": "xgboost", "model_version": "xgb-1"},
                             {"name": "challenger", "weight": 0.2, "kind": "pytorch", "model_version": "torch-1"}])


@pytest.mark.parametrize("weights", [(0.8, 0.2), (0.5, 0.5), (3, 1, 1)])
def test_split_is_within_tolerance_of_the_weights(weights):
    specs = [variants.VariantSpec(f"v{i}", w) for i, w in enumerate(weights)]
    users = 20_000
    counts = {s.name: 0 for s in specs}
    for i in range(users):
        counts[variants.assign(f"user-{i:05d}", specs).name] += 1
    total = sum(weights)
    for spec in specs:
        p = spec.weight / total
        tolerance = 4 * math.sqrt(p * (1 - p) / users)     # 4 standard errors of a binomial share
        assert abs(counts[spec.name] / users - p) < tolerance, (spec.name, counts)


def test_assignment_is_sticky_and_zero_weight_gets_nobody():
    first = {f"u{i}": variants.assign(f"u{i}", AB).name for i in range(2000)}
    again = {f"u{i}": variants.assign(f"u{i}", list(AB)).name for i in range(2000)}
    assert first == again                                   # deterministic: same user, same variant
    assert set(first.values()) == {"primary", "challenger"}
    shadow = [AB[0], variants.VariantSpec("shadow", 0.0)]
    assert {variants.assign(f"u{i}", shadow).name for i in range(2000)} == {"primary"}
    # raising the challenger's weight only moves users onto it (nobody moves from challenger to primary)
    wider = [variants.VariantSpec("primary", 0.6), variants.VariantSpec("challenger", 0.4)]
    moved = {u for u, v in first.items() if variants.assign(u, wider).name != v}
    assert moved and all(first[u] == "primary" for u in moved)


def _body(text: str) -> StreamingBody:
    return StreamingBody(io.BytesIO(text.encode()), len(text))


def _batch(users: list[str]) -> dict:
    return {"batch_id": "b-1", "created_at": 1000.0, "feature_set": "v1", "model_version": "xgb-1",
            "stages": [{"stage": "process_stream", "seconds": 0.01, "memory_mb": 512, "events": len(users),
                        "bytes": 200, "ddb_rru": 1, "ddb_wru": 1}],
            "rows": [{"event_id": f"e{i}", "user_id": u, "ts": 1000.0 + i, "ingest_ts": 1000.0 + i,
                      "features": [float(i)] * 15} for i, u in enumerate(users)], "rows_s3_uri": None}


def test_invoke_model_targets_each_users_variant_and_records_it(aws, monkeypatch, lambda_context):
    monkeypatch.setenv("MODEL_VARIANTS", MODEL_VARIANTS)
    monkeypatch.setenv("INVOKE_CHUNK_SIZE", "2")
    users = [f"user-{i}" for i in range(12)]
    expected = {u: variants.assign(u, AB) for u in users}
    groups: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        groups.setdefault(expected[u].name, []).append(i)
    assert len(groups) == 2                                 # both variants are exercised by these users
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        for name, indexes in groups.items():                # first-seen order of the variants, chunks of 2
            for start in range(0, len(indexes), 2):
                chunk = indexes[start:start + 2]
                stub.add_response(
                    "invoke_endpoint",
                    {"Body": _body("\n".join(f"0.{i + 1:02d}" for i in chunk)), "InvokedProductionVariant": name},
                    {"EndpointName": ANY, "ContentType": "text/csv", "Accept": "text/csv", "Body": ANY,
                     "TargetVariant": name})
        scored = inference.invoke_model(_batch(users), settings())
        stub.assert_no_pending_responses()
    assert [p["event_id"] for p in scored["predictions"]] == [f"e{i}" for i in range(12)]   # the rows' order
    for i, p in enumerate(scored["predictions"]):
        assert p["score"] == float(f"0.{i + 1:02d}")
        assert (p["variant"], p["model_version"]) == (expected[p["user_id"]].name, expected[p["user_id"]].model_version)
    inference.store_predictions(scored, settings())
    item = store.get_item("predictions", {"event_id": "e0"})
    assert (item["variant"], item["model_version"]) == (expected["user-0"].name, expected["user-0"].model_version)

    from api import handler
    response = handler.handler(http_event("GET", "/variants/stats"), lambda_context)
    body = json.loads(response["body"])
    assert response["statusCode"] == 200 and body["predictions"] == 12
    assert [v["name"] for v in body["variants"]] == ["primary", "challenger"]
    for row in body["stats"]:
        indexes = groups[row["variant"]]
        assert row["predictions"] == len(indexes)
        assert row["mean_score"] == pytest.approx(sum((i + 1) / 100 for i in indexes) / len(indexes))
        assert row["model_version"] == {"primary": "xgb-1", "challenger": "torch-1"}[row["variant"]]
    spec = json.loads(handler.handler(http_event("GET", "/openapi.json"), lambda_context)["body"])
    assert "/variants/stats" in spec["paths"]


def test_promoted_variants_in_the_state_table_take_precedence(aws, monkeypatch):
    monkeypatch.setenv("MODEL_VARIANTS", MODEL_VARIANTS)
    assert [v.model_version for v in variants.live_variants(settings())] == ["xgb-1", "torch-1"]
    store.put_item("state", {"pk": "model", "variants": [
        {"name": "primary", "weight": 0.8, "kind": "xgboost", "model_version": "xgb-2"},
        {"name": "challenger", "weight": 0.2, "kind": "pytorch", "model_version": "torch-1"}]})
    assert [v.model_version for v in variants.live_variants(settings())] == ["xgb-2", "torch-1"]


def test_targets_choose_the_endpoint_in_serverless_mode_and_the_variant_in_instance_mode():
    serverless = [variants.VariantSpec("primary", 0.8, endpoint="ep-primary"),
                  variants.VariantSpec("challenger", 0.2, endpoint="ep-challenger")]
    assert variants.targets(serverless, "ep-primary") == {
        "primary": variants.Target("ep-primary", None), "challenger": variants.Target("ep-challenger", None)}
    instance = [variants.VariantSpec("primary", 0.8, endpoint="ep"), variants.VariantSpec("challenger", 0.2,
                                                                                         endpoint="ep")]
    assert variants.targets(instance, "ep") == {
        "primary": variants.Target("ep", "primary"), "challenger": variants.Target("ep", "challenger")}
    # no endpoint recorded (an older STATE_TABLE "model" item): the stack's endpoint, addressed by variant name
    assert variants.targets(AB, "ep") == {"primary": variants.Target("ep", "primary"),
                                          "challenger": variants.Target("ep", "challenger")}
    assert variants.targets([variants.VariantSpec("only", 1.0)], "ep") == {"only": variants.Target("ep", None)}


def test_serverless_ab_sends_each_user_to_their_variants_endpoint_without_target_variant(aws, monkeypatch):
    """Serverless Inference: one endpoint per variant (no multiple production variants on a serverless endpoint)."""
    monkeypatch.setenv("MODEL_VARIANTS", json.dumps([
        {"name": "primary", "weight": 0.8, "kind": "xgboost", "model_version": "xgb-1", "endpoint": "ep-primary"},
        {"name": "challenger", "weight": 0.2, "kind": "pytorch", "model_version": "torch-1",
         "endpoint": "ep-challenger"}]))
    monkeypatch.setenv("SAGEMAKER_ENDPOINT_NAME", "ep-primary")
    monkeypatch.setenv("INVOKE_CHUNK_SIZE", "100")
    users = [f"user-{i}" for i in range(12)]
    expected = {u: variants.assign(u, AB).name for u in users}
    order = list(dict.fromkeys(expected[u] for u in users))
    runtime = pipeline_aws.client("sagemaker-runtime")
    with Stubber(runtime) as stub:
        for name in order:
            count = sum(1 for u in users if expected[u] == name)
            stub.add_response("invoke_endpoint", {"Body": _body("\n".join(["0.5"] * count)),
                                                  "InvokedProductionVariant": name},
                              {"EndpointName": f"ep-{name}", "ContentType": "text/csv", "Accept": "text/csv",
                               "Body": ANY})                 # no TargetVariant
        scored = inference.invoke_model(_batch(users), settings())
        stub.assert_no_pending_responses()
    assert [p["variant"] for p in scored["predictions"]] == [expected[u] for u in users]
    assert {p["model_version"] for p in scored["predictions"] if p["variant"] == "challenger"} == {"torch-1"}


def test_assignment_at_the_exact_edge_goes_to_the_variant_after_it(monkeypatch):
    """A user's point on a boundary between two variants belongs to the second (the ranges are [lo, hi))."""
    a, b = variants.VariantSpec("a", 1.0), variants.VariantSpec("b", 1.0)
    monkeypatch.setattr(variants, "user_point", lambda user_id: 0.5)       # 0.5 x 2 = 1.0: a's upper edge
    assert variants.assign("u", [a, b]) is b


def test_a_point_of_exactly_one_goes_to_the_last_variant_with_a_weight(monkeypatch):
    """user_point is 1.0 for the top 2**10 hash values ((2**64 - 1) / 2**64 rounds up), past every slice."""
    assert (2 ** 64 - 1) / 2.0 ** 64 == 1.0
    a, b, c = variants.VariantSpec("a", 1.0), variants.VariantSpec("b", 2.0), variants.VariantSpec("c", 0.0)
    monkeypatch.setattr(variants, "user_point", lambda user_id: 1.0)
    assert variants.assign("u", [a, b, c]) is b
    assert variants.assign("u", [b, a]) is a
    assert variants.assign("u", [variants.VariantSpec("z", 0.0), variants.VariantSpec("y", 0.0)]).name == "y"


@pytest.mark.parametrize("weight", ["NaN", "Infinity", -0.5])
def test_a_weight_that_is_not_a_finite_number_at_least_zero_is_refused(weight):
    raw = [{"name": "primary", "weight": 1.0}, {"name": "odd", "weight": weight}]
    with pytest.raises(ValueError, match=r"^variant 'odd': weight must be a finite number >= 0, got "):
        variants.parse(raw)
    assert [v.weight for v in variants.parse([{"name": "p", "weight": 0}, {"name": "q"}])] == [0.0, 1.0]
