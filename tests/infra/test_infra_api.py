"""The HTTP API: routes of the contract (DESIGN.md), the $default route, IAM authorization, the Lambda integration,
the stage.

AWS behaviour these encode (Amazon API Gateway Developer Guide):
- "Create routes for HTTP APIs in API Gateway" (http-api-develop-routes): the ``$default`` route catches requests
  that match no other route; with no route matching and no ``$default`` route API Gateway itself answers
  ``{"message":"Not Found"}``, which is not the project's error shape.
- "Control access to HTTP APIs with IAM authorization in API Gateway" (http-api-access-control-iam): IAM
  authorization is set per route; a route without it is open to unsigned callers.
"""
from __future__ import annotations

import json

import pytest

CONTRACT = {"POST /events", "GET /users/{user_id}/features", "GET /users/{user_id}/features/{name}",
            "GET /users/{user_id}/median", "GET /users/{user_id}/history", "GET /predictions/{event_id}",
            "POST /predict", "GET /stats", "GET /batches/recent", "GET /model/status", "GET /health",
            "GET /openapi.json", "GET /variants/stats", "GET /models"}


def test_routes_match_the_contract_with_iam_auth(synth):
    api = synth.logical_id("HttpApi", "AWS::ApiGatewayV2::Api")
    [integration] = synth.of_type("AWS::ApiGatewayV2::Integration")
    routes = [r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()]
    assert {r["RouteKey"] for r in routes} == CONTRACT | {"$default"} and len(routes) == len(CONTRACT) + 1
    for route in routes:
        assert route["ApiId"] == {"Ref": api}
        assert route["AuthorizationType"] == "AWS_IAM", route["RouteKey"]
        assert route["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration}]]}


def test_integration_is_the_api_function_with_payload_v2(synth):
    [integration] = synth.of_type("AWS::ApiGatewayV2::Integration").values()
    props = integration["Properties"]
    assert props["IntegrationType"] == "AWS_PROXY"
    assert props["PayloadFormatVersion"] == "2.0"
    assert props["IntegrationUri"] == {"Fn::GetAtt": [synth.logical_id("ApiFunction", "AWS::Lambda::Function"),
                                                      "Arn"]}
    permissions = [p["Properties"] for p in synth.of_type("AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    # one per route: a contract route's is scoped to its path (<api>/*/*/events); the $default route's to the API
    # (<api>/*/*: how the CDK scopes the catch-all, whose requests arrive on any method and path)
    api = synth.logical_id("HttpApi", "AWS::ApiGatewayV2::Api")
    assert all(p["SourceArn"]["Fn::Join"][1][-2] == {"Ref": api} for p in permissions)
    scopes = sorted(p["SourceArn"]["Fn::Join"][1][-1] for p in permissions)
    assert scopes == sorted(["/*/*"] + ["/*/*" + key.split(" ", 1)[1] for key in CONTRACT])


def test_default_route_sends_unmatched_requests_to_the_api_function_with_iam_auth(synth):
    """Unknown paths (and known paths with another method) reach ApiFunction, which answers 404
    {"error": "route_not_found", ...}; unsigned callers are still refused by API Gateway."""
    [default] = [r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()
                 if r["Properties"]["RouteKey"] == "$default"]
    [integration] = synth.of_type("AWS::ApiGatewayV2::Integration")
    assert default["AuthorizationType"] == "AWS_IAM"
    assert default["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration}]]}
    assert synth.logical_id("ApiDefaultRoute", "AWS::ApiGatewayV2::Route")


def test_default_stage_access_logs_and_throttling(synth):
    [stage] = synth.of_type("AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == "$default" and props["AutoDeploy"] is True
    assert props["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": [synth.logical_id("ApiAccessLogs", "AWS::Logs::LogGroup"), "Arn"]}
    log_format = json.loads(props["AccessLogSettings"]["Format"])
    assert log_format["requestId"] == "$context.requestId" and log_format["routeKey"] == "$context.routeKey"
    throttle = synth.config.api_throttle
    assert props["DefaultRouteSettings"] == {"ThrottlingBurstLimit": throttle.burst_limit,
                                             "ThrottlingRateLimit": throttle.rate_limit}
    # https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html: route-level limits
    # (RouteSettings, keyed by route key) apply per route within the stage's; POST /predict, which shares the model
    # endpoints with the pipeline, is held lower than the stage
    route = props["RouteSettings"]["POST /predict"]
    assert route == {"ThrottlingRateLimit": throttle.predict_rate_limit,
                     "ThrottlingBurstLimit": throttle.predict_burst_limit}
    assert route["ThrottlingRateLimit"] < throttle.rate_limit and route["ThrottlingBurstLimit"] < throttle.burst_limit
    routes = {r["Properties"]["RouteKey"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()}
    assert set(props["RouteSettings"]) <= routes   # keys name real routes


def test_predict_throttle_cannot_exceed_the_stage(cdk_json):
    from infra.config import Config, ConfigError

    context = dict(cdk_json["context"], apiThrottle={**cdk_json["context"]["apiThrottle"], "predictBurstLimit": 500})
    with pytest.raises(ConfigError, match="predictBurstLimit"):
        Config.from_mapping(context)
