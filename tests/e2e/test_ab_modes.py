"""A/B in both endpoint modes, end to end on the local cloud: the synthesized stack deployed, events in over HTTP.

- serverless (cdk.json's default): SageMaker Serverless Inference does not support multiple production variants
  (SageMaker Developer Guide, "Deploy models with Amazon SageMaker Serverless Inference", feature exclusions,
  https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html), so each variant has its own serverless
  endpoint and the sticky per-user assignment chooses the endpoint;
- instance: one real-time endpoint whose production variants are the variants, chosen with TargetVariant.

In each: users land on their sticky variant (and only that variant's endpoint/production variant is invoked for
them), GET /variants/stats counts them per variant and model version, a promotion of the challenger changes only what
serves the challenger, and a rollback restores it. Each mode gets its own deployment so the counters are exact.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from e2ekit import MODEL, ROOT, TORCH_MODEL, Api, wait_for

from pipeline import variants as variant_assignment

INSTANCE = {"mode": "instance", "instanceType": "ml.m5.large", "instanceCount": 1, "serverlessMemoryMb": 2048,
            "serverlessMaxConcurrency": 5}


@pytest.fixture(scope="module", params=["serverless", "instance"])
def ab(request, tmp_path_factory):
    """(mode, cloud, api, model variants) for one endpoint mode, deployed from its own synthesized template under a
    stack name of its own: the session's cloud (tests/e2e/conftest.py) may be deployed in the same process, and
    the local cloud refuses a stack name twice (moto's state is shared)."""
    from localcloud import LocalCloud

    if not (MODEL.exists() and TORCH_MODEL.exists()):
        request.getfixturevalue("cdk_out")  # trains them
    mode = request.param
    context = {"stackName": f"AbModes{mode.title()}"}
    if mode == "instance":   # the same app with endpoint.mode overridden the way `cdk -c` passes it
        context["endpoint"] = INSTANCE
    out = tmp_path_factory.mktemp(f"cdk.out.{mode}")
    env = dict(os.environ, CDK_OUTDIR=str(out), JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
               CDK_CONTEXT_JSON=json.dumps(context))
    subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, check=True, capture_output=True)
    with LocalCloud(cdk_out=str(out), state_dir=str(tmp_path_factory.mktemp(f"state-{mode}")), api_port=0,
                    run_schedules=False) as cloud:
        cloud.deploy()
        yield mode, cloud, Api(cloud.api_url), json.loads(cloud.outputs["ModelVariants"])


def _send(api: Api, users: list[str], prefix: str) -> list[str]:
    now = time.time()
    events = [{"event_id": f"{prefix}-{i}", "user_id": user, "event_type": "purchase" if i % 3 == 0 else "view",
               "timestamp": now - 1, "amount": 5.0 + i, "device_type": "desktop"} for i, user in enumerate(users)]
    status, body = api.request("POST", "/events", {"events": events})
    assert status == 202 and body["accepted"] == len(events), body
    return [e["event_id"] for e in events]


def _predictions(api: Api, ids: list[str], timeout: float = 120) -> dict[str, dict]:
    found: dict[str, dict] = {}

    def done():
        for event_id in ids:
            if event_id not in found:
                status, body = api.request("GET", f"/predictions/{event_id}")
                if status == 200:
                    found[event_id] = body
        return len(found) == len(ids)

    wait_for(done, timeout=timeout, interval=1.0, what=f"{len(ids)} predictions")
    return found


def _counts(cloud) -> dict[tuple[str, str], int]:
    """(endpoint, production variant) -> invocations served by the SageMaker stand-in."""
    return {(name, v["name"]): v["invocations"] for name, e in cloud.sagemaker.status().items() for v in e["variants"]}


def _stats(api: Api) -> dict[tuple[str, str], int]:
    status, body = api.request("GET", "/variants/stats")
    assert status == 200
    return {(row["variant"], row["model_version"]): row["predictions"] for row in body["stats"]}


def test_endpoint_layout_follows_the_mode(ab):
    mode, cloud, _, model_variants = ab
    layout = {name: [v["name"] for v in e["variants"]] for name, e in cloud.sagemaker.status().items()}
    by_variant = {v["name"]: v["endpoint"] for v in model_variants}
    assert set(by_variant) == {"primary", "challenger"}
    if mode == "serverless":   # one serverless endpoint per variant, its one production variant named after it
        assert by_variant["primary"] != by_variant["challenger"]
        assert layout == {by_variant["primary"]: ["primary"], by_variant["challenger"]: ["challenger"]}
    else:                      # one endpoint, the variants are its production variants
        assert by_variant["primary"] == by_variant["challenger"]
        assert layout == {by_variant["primary"]: ["primary", "challenger"]}
    assert cloud.outputs["EndpointName"] == by_variant["primary"]


def test_sticky_assignment_stats_promotion_and_rollback(ab):
    mode, cloud, api, model_variants = ab
    specs = variant_assignment.parse(model_variants)
    endpoint_of = {v.name: v.endpoint for v in specs}
    users = [f"ab-{mode}-user-{i}" for i in range(30)]
    expected = {u: variant_assignment.assign(u, specs).name for u in users}
    assert set(expected.values()) == {"primary", "challenger"}          # both variants have users here
    challengers = [u for u in users if expected[u] == "challenger"]

    # 1. sticky: every event of a user is scored by that user's variant, on that variant's endpoint
    before = _counts(cloud)
    first = _predictions(api, _send(api, users, f"ab-{mode}-a"))
    second = _predictions(api, _send(api, users, f"ab-{mode}-b"))
    for prediction in list(first.values()) + list(second.values()):
        variant = expected[prediction["user_id"]]
        assert prediction["variant"] == variant
        assert prediction["model_version"] == {"primary": "xgb-1", "challenger": "torch-1"}[variant]
    served = {k: n - before.get(k, 0) for k, n in _counts(cloud).items() if n - before.get(k, 0)}
    assert {variant for _, variant in served} == {"primary", "challenger"}
    for (endpoint, variant) in served:
        assert endpoint == endpoint_of[variant]            # each variant's rows went to its own endpoint

    # 2. per-variant stats: exactly these predictions
    assert _stats(api) == {("primary", "xgb-1"): 2 * (len(users) - len(challengers)),
                           ("challenger", "torch-1"): 2 * len(challengers)}

    # 3. promote a new version of the challenger: only the challenger's endpoint (or production variant) changes
    from model import registry

    sm, s3, ddb = (cloud.client(s) for s in ("sagemaker", "s3", "dynamodb"))
    bucket, table = cloud.outputs["ArtifactsBucketName"], cloud.outputs["StateTableName"]
    configs = {v.name: sm.describe_endpoint(EndpointName=v.endpoint)["EndpointConfigName"] for v in specs}
    registry.upload(s3, bucket, TORCH_MODEL, "torch-2")
    promoted = registry.promote(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=cloud.outputs["EndpointName"],
                                version="torch-2", variant="challenger", state_table=table, wait=False,
                                variants=model_variants)
    assert promoted["endpoint"] == endpoint_of["challenger"]
    after = {v.name: sm.describe_endpoint(EndpointName=v.endpoint)["EndpointConfigName"] for v in specs}
    assert after["challenger"] == promoted["endpoint_config"] != configs["challenger"]
    if mode == "serverless":
        assert after["primary"] == configs["primary"]     # the primary's endpoint was not touched
    live = {v["name"]: v for v in promoted["live"]}
    assert (live["challenger"]["model_version"], live["primary"]["model_version"]) == ("torch-2", "xgb-1")
    assert {v["name"]: v["weight"] for v in promoted["live"]} == {"primary": 0.8, "challenger": 0.2}
    assert {v["name"]: v["endpoint"] for v in promoted["live"]} == endpoint_of
    third = _predictions(api, _send(api, users, f"ab-{mode}-c"))
    for prediction in third.values():
        variant = expected[prediction["user_id"]]
        assert prediction["variant"] == variant             # the assignment did not move anybody
        assert prediction["model_version"] == {"primary": "xgb-1", "challenger": "torch-2"}[variant]
    assert _stats(api)[("challenger", "torch-2")] == len(challengers)

    # 4. roll back: the challenger's endpoint serves its previous config and version again
    rolled = registry.rollback(sm=sm, s3=s3, ddb=ddb, bucket=bucket, endpoint=cloud.outputs["EndpointName"],
                               state_table=table, wait=False, variants=model_variants)
    assert rolled["endpoint"] == endpoint_of["challenger"] and rolled["endpoint_config"] == configs["challenger"]
    assert {v.name: sm.describe_endpoint(EndpointName=v.endpoint)["EndpointConfigName"] for v in specs} == configs
    fourth = _predictions(api, _send(api, challengers, f"ab-{mode}-d"))
    assert {(p["variant"], p["model_version"]) for p in fourth.values()} == {("challenger", "torch-1")}
    assert _stats(api) == {("primary", "xgb-1"): 3 * (len(users) - len(challengers)),
                           ("challenger", "torch-1"): 3 * len(challengers),
                           ("challenger", "torch-2"): len(challengers)}


def test_the_cost_profile_follows_the_mode(ab):
    """COST_PROFILE (pipeline/costs.Deployment): serverless prices each variant's endpoint by use (GB-s), instance
    mode prices instance-hours for every production variant."""
    mode, cloud, _, _ = ab
    functions = cloud.client("lambda").list_functions()["Functions"]
    env = next(f for f in functions if f["FunctionName"].startswith(f"{cloud.stack.stack_name}-")
               and "RecordCostFunction" in f["FunctionName"])["Environment"]["Variables"]
    profile = json.loads(env["COST_PROFILE"])
    assert (profile["endpoint_mode"], profile["variants"]) == (mode, 2)
