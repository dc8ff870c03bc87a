"""The HTTP API: IAM-authorized routes to ApiFunction (and a $default route answering 404 in the project's error
shape), the stage with its throttles and JSON access logs. Built from explicit inputs into the stack's scope.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

import jsii
from aws_cdk import (
    RemovalPolicy,
    Stack,
    aws_apigateway as apigw,
    aws_apigatewayv2 as apigwv2,
    aws_apigatewayv2_authorizers as authorizers,
    aws_apigatewayv2_integrations as integrations,
    aws_lambda as lambda_,
    aws_logs as logs,
)
from constructs import Construct

from .config import Config

# The HTTP API contract (README "HTTP API"); every route is served by ApiFunction.
ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/events"),
    ("GET", "/users/{user_id}/features"),
    ("GET", "/users/{user_id}/features/{name}"),
    ("GET", "/users/{user_id}/median"),
    ("GET", "/users/{user_id}/history"),
    ("GET", "/predictions/{event_id}"),
    ("POST", "/predict"),
    ("GET", "/stats"),
    ("GET", "/variants/stats"),
    ("GET", "/batches/recent"),
    ("GET", "/model/status"),
    ("GET", "/models"),
    ("GET", "/health"),
    ("GET", "/openapi.json"),
)

ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId", "requestTime": "$context.requestTime", "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.userArn", "httpMethod": "$context.httpMethod", "routeKey": "$context.routeKey",
    "path": "$context.path", "status": "$context.status", "protocol": "$context.protocol",
    "responseLength": "$context.responseLength", "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integration.latency", "integrationError": "$context.integrationErrorMessage",
}


@jsii.implements(apigwv2.IAccessLogSettings)
class AccessLogSettings:
    """HTTP API stage access-log settings (an interface in CDK: Python needs a small implementing class)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat):
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format


@dataclass
class HttpApi:
    http_api: apigwv2.HttpApi
    default_route: apigwv2.HttpRoute
    access_logs: logs.LogGroup
    stage: apigwv2.HttpStage


def build_http_api(scope: Construct, cfg: Config, api_function: lambda_.IFunction, retention: logs.RetentionDays,
                   removal: RemovalPolicy) -> HttpApi:
    http_api = apigwv2.HttpApi(   # API names need not be unique; this one reads well
        scope, "HttpApi", api_name=f"{Stack.of(scope).stack_name}-api",
        description="Real-time inference: ingest events, query features and predictions",
        create_default_stage=False, default_authorizer=authorizers.HttpIamAuthorizer())
    integration = integrations.HttpLambdaIntegration(
        "ApiIntegration", api_function,
        payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0)
    for method, path in ROUTES:
        http_api.add_routes(path=path, methods=[apigwv2.HttpMethod(method)], integration=integration)
    # $default: every request no route above matches (unknown path, or a known path with another method) goes to
    # ApiFunction too, which answers 404 in the project's error shape {"error", "message"} instead of API
    # Gateway's own {"message": "Not Found"}. Same IAM authorization as every other route (the API's default
    # authorizer), so an unsigned request to an unknown path is still refused by API Gateway (403).
    default_route = apigwv2.HttpRoute(
        scope, "ApiDefaultRoute", http_api=http_api, route_key=apigwv2.HttpRouteKey.DEFAULT,
        integration=integration, authorizer=authorizers.HttpIamAuthorizer())
    access_logs = logs.LogGroup(scope, "ApiAccessLogs", retention=retention, removal_policy=removal)
    stage = apigwv2.HttpStage(
        http_api, "DefaultStage", http_api=http_api, stage_name="$default", auto_deploy=True,
        throttle=apigwv2.ThrottleSettings(rate_limit=cfg.api_throttle.rate_limit,
                                          burst_limit=cfg.api_throttle.burst_limit),
        access_log_settings=AccessLogSettings(
            destination=apigwv2.LogGroupLogDestination(access_logs),
            log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")))))
    # per-route throttling (the L2 stage has no property for it): POST /predict gets its own, lower limit
    # (config.ApiThrottle) so a burst of synchronous scoring cannot take the endpoints from the pipeline
    cast(apigwv2.CfnStage, stage.node.default_child).route_settings = {"POST /predict": {
        "ThrottlingRateLimit": cfg.api_throttle.predict_rate_limit,
        "ThrottlingBurstLimit": cfg.api_throttle.predict_burst_limit}}
    return HttpApi(http_api, default_route, access_logs, stage)
