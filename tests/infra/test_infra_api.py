"""The HTTP API: routes of the contract (DESIGN.md), IAM authorization, the Lambda integration, the stage."""
from __future__ import annotations

import json

CONTRACT = {"POST /events", "GET /users/{user_id}/features", "GET /users/{user_id}/features/{name}",
            "GET /users/{user_id}/median", "GET /users/{user_id}/history", "GET /predictions/{event_id}",
            "POST /predict", "GET /stats", "GET /batches/recent", "GET /model/status", "GET /health",
            "GET /openapi.json", "GET /variants/stats"}


def test_routes_match_the_contract_with_iam_auth(synth):
    api = synth.logical_id("HttpApi", "AWS::ApiGatewayV2::Api")
    [integration] = synth.of_type("AWS::ApiGatewayV2::Integration")
    routes = [r["Properties"] for r in synth.of_type("AWS::ApiGatewayV2::Route").values()]
    assert {r["RouteKey"] for r in routes} == CONTRACT and len(routes) == len(CONTRACT)
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
    assert len(permissions) == len(CONTRACT)   # one per route, each scoped to its route's ARN


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
