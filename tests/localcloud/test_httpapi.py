"""HTTP API routes from the template, payload format 2.0 round trip."""
import base64
import json

import pytest

from cloudkit import FakeCdkOut, http_call as call
from localcloud import LocalCloud
from localcloud.httpapi import HttpApiServer, Route

HANDLERS = '''
import json


def echo(event, context):
    return {"statusCode": 201, "headers": {"content-type": "application/json", "x-route": event["routeKey"]},
            "cookies": ["session=abc; Path=/"], "body": json.dumps(event)}


def bare(event, context):
    return {"hello": event.get("pathParameters", {}).get("proxy")}


def text(event, context):
    return "plain words"


def binary(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
            "body": event["body"], "isBase64Encoded": True}


def boom(event, context):
    raise RuntimeError("boom")
'''


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("httpapi")
    out = FakeCdkOut(root / "cdk.out", stack="ApiTestStack")
    code = out.code_asset({"api.py": HANDLERS})
    for name in ("Echo", "Bare", "Text", "Binary", "Boom"):
        out.function(f"{name}Function", f"api.{name.lower()}", code)
    out.add("HttpApi", "AWS::ApiGatewayV2::Api", {"Name": "HttpApi", "ProtocolType": "HTTP"})
    out.add("HttpApiDefaultStage", "AWS::ApiGatewayV2::Stage", {"ApiId": {"Ref": "HttpApi"}, "StageName": "$default",
                                                                 "AutoDeploy": True})
    routes = {"Events": ("POST /events", "Echo"), "Median": ("GET /users/{user_id}/median", "Echo"),
              "Files": ("ANY /files/{proxy+}", "Bare"), "Text": ("GET /text", "Text"),
              "Blob": ("POST /blob", "Binary"), "Boom": ("GET /boom", "Boom")}
    for key, (route_key, function) in routes.items():
        out.add(f"{key}Integration", "AWS::ApiGatewayV2::Integration", {
            "ApiId": {"Ref": "HttpApi"}, "IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0",
            "IntegrationUri": {"Fn::GetAtt": [f"{function}Function", "Arn"]}})
        out.add(f"{key}Route", "AWS::ApiGatewayV2::Route", {
            "ApiId": {"Ref": "HttpApi"}, "RouteKey": route_key, "AuthorizationType": "AWS_IAM",
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": f"{key}Integration"}]]}})
    out.output("ApiUrl", {"Fn::Join": ["", ["https://", {"Ref": "HttpApi"}, ".execute-api.", {"Ref": "AWS::Region"},
                                            ".", {"Ref": "AWS::URLSuffix"}, "/"]]})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False) as c:
        c.deploy()
        yield c



def test_path_parameters_query_strings_and_headers(cloud):
    status, headers, body = call(cloud, "GET", "/users/u%201/median?window=300&a=1&a=2",
                                 headers={"X-Custom": "Yes", "Cookie": "c1=v1; c2=v2"})
    assert status == 201 and headers["x-route"] == "GET /users/{user_id}/median"
    assert headers["set-cookie"] == "session=abc; Path=/" and headers["apigw-requestid"]
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "GET /users/{user_id}/median"
    # HTTP APIs deliver the path URL-decoded (rawPath and http.path alike), unlike REST APIs
    assert event["rawPath"] == "/users/u 1/median" and event["rawQueryString"] == "window=300&a=1&a=2"
    assert event["pathParameters"] == {"user_id": "u 1"}
    assert event["queryStringParameters"] == {"window": "300", "a": "1,2"}
    assert event["headers"]["x-custom"] == "Yes" and "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    context = event["requestContext"]
    assert context["http"]["method"] == "GET" and context["http"]["path"] == "/users/u 1/median"
    assert context["stage"] == "$default" and context["apiId"] == cloud.resources["HttpApi"]
    assert context["accountId"] == "123456789012" and context["requestId"] and context["timeEpoch"] > 0
    assert context["routeKey"] == event["routeKey"] and context["http"]["sourceIp"] == "127.0.0.1"
    assert event["isBase64Encoded"] is False and "body" not in event


def test_json_body_is_text_and_binary_body_is_base64(cloud):
    status, _, body = call(cloud, "POST", "/events", json.dumps({"events": [1]}).encode(),
                           {"Content-Type": "application/json"})
    event = json.loads(body)
    assert status == 201 and event["body"] == '{"events": [1]}' and event["isBase64Encoded"] is False
    raw = bytes(range(256))
    status, headers, body = call(cloud, "POST", "/blob", raw, {"Content-Type": "application/octet-stream"})
    assert status == 200 and body == raw and headers["content-type"] == "application/octet-stream"


def test_greedy_route_bare_dict_and_string_responses(cloud):
    status, headers, body = call(cloud, "DELETE", "/files/a/b/c.txt")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"hello": "a/b/c.txt"}
    status, _, body = call(cloud, "GET", "/text")
    assert status == 200 and body == b"plain words"


def test_unknown_route_and_function_error_look_like_api_gateway(cloud):
    assert call(cloud, "GET", "/nope")[0::2] == (404, b'{"message": "Not Found"}')
    assert call(cloud, "POST", "/users/x/median")[0] == 404  # method does not match
    status, _, body = call(cloud, "GET", "/boom")
    assert status == 500 and json.loads(body) == {"message": "Internal Server Error"}


def test_api_url_output_points_at_the_local_server(cloud):
    assert cloud.outputs["ApiUrl"] == cloud.api_url + "/"


def test_route_selection_prefers_the_most_specific_match():
    routes = [Route.parse(key, None) for key in ("$default", "ANY /{proxy+}", "GET /users/{id}", "GET /users/me",
                                                  "ANY /users/{id}")]
    server = HttpApiServer(None, None, region="us-east-1", account_id="1")
    server.routes = sorted(routes, key=lambda r: r.specificity(), reverse=True)
    assert server.select("GET", "/users/me")[0].route_key == "GET /users/me"
    assert server.select("GET", "/users/42") == (server.routes[1], {"id": "42"})
    assert server.select("PUT", "/users/42")[0].route_key == "ANY /users/{id}"
    assert server.select("GET", "/a/b")[0].route_key == "ANY /{proxy+}"
    assert server.select("GET", "/")[0].route_key == "$default"


def test_every_route_answers_503_until_the_deploy_is_done(tmp_path, monkeypatch):
    """`make up` binds the API port before it deploys: until the deploy is done every request, /health and unknown
    paths included, gets 503 with a JSON body that says why, not a 404 that looks like a missing route."""
    import localcloud.cloud

    out = FakeCdkOut(tmp_path / "cdk.out", stack="NotReadyStack")
    code = out.code_asset({"api.py": HANDLERS})
    out.function("EchoFunction", "api.echo", code)
    out.add("HttpApi", "AWS::ApiGatewayV2::Api", {"Name": "HttpApi", "ProtocolType": "HTTP"})
    out.add("HttpApiDefaultStage", "AWS::ApiGatewayV2::Stage", {"ApiId": {"Ref": "HttpApi"}, "StageName": "$default"})
    out.add("EchoIntegration", "AWS::ApiGatewayV2::Integration", {
        "ApiId": {"Ref": "HttpApi"}, "IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0",
        "IntegrationUri": {"Fn::GetAtt": ["EchoFunction", "Arn"]}})
    out.add("HealthRoute", "AWS::ApiGatewayV2::Route", {
        "ApiId": {"Ref": "HttpApi"}, "RouteKey": "GET /health",
        "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "EchoIntegration"}]]}})
    during_deploy = []
    start_schedules = localcloud.cloud.Scheduler.start

    def start_and_probe(scheduler):  # the routes are configured by now, the deploy is not finished
        during_deploy.append(call(cloud, "GET", "/health")[0])
        start_schedules(scheduler)

    monkeypatch.setattr(localcloud.cloud.Scheduler, "start", start_and_probe)
    with LocalCloud(cdk_out=out.write(), state_dir=tmp_path / "state", api_port=0, run_schedules=False) as cloud:
        for method, path in (("GET", "/health"), ("POST", "/events"), ("GET", "/nope")):
            status, headers, body = call(cloud, method, path)
            assert status == 503, (method, path)
            assert json.loads(body)["error"] == "deploying" and "local cloud up" in json.loads(body)["message"]
            assert headers["content-type"] == "application/json" and headers["retry-after"]
        cloud.deploy()
        assert during_deploy == [503]
        assert call(cloud, "GET", "/health")[0] == 201   # the echo handler's own answer
        assert call(cloud, "GET", "/nope")[0] == 404


def test_path_is_decoded_once_before_routing(cloud):
    """API Gateway decodes URL-encoded request parameters before passing them to the integration
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html), once: an encoded
    "%" stays a "%", non-ASCII text arrives as text, and an encoded "/" splits the path before routing."""
    status, headers, body = call(cloud, "GET", "/users/caf%C3%A9%2541/median")
    event = json.loads(body)
    assert status == 201 and event["pathParameters"] == {"user_id": "café%41"}
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/users/café%41/median"
    status, headers, body = call(cloud, "GET", "/users/a%2Fb/median")
    assert headers.get("x-route") != "GET /users/{user_id}/median"
