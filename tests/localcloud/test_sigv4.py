"""The HTTP API with SigV4 required (``LocalCloud(require_sigv4=True)``): signed requests pass, unsigned, tampered,
expired and badly scoped ones are refused with 403 before the function runs; the client scripts (send_events,
query, loadgen, plot_costs) sign correctly through scripts/client.py.

AWS behaviour encoded here (Amazon API Gateway Developer Guide and AWS knowledge center):
- "Control access to HTTP APIs with IAM authorization" (http-api-access-control-iam): with IAM authorization on a
  route, clients must sign requests with SigV4; a route without it accepts unsigned requests.
- Knowledge center "How do I troubleshoot HTTP 403 errors from API Gateway?" (api-gateway-troubleshoot-403-forbidden):
  the causes and their x-amzn-ErrorType: MissingAuthenticationTokenException ("Missing Authentication Token", no
  signature), InvalidSignatureException ("Signature expired", and a signature mismatch), AccessDeniedException ("The
  security token included in the request is invalid.", an unknown access key).
- Knowledge center "How do I troubleshoot signature mismatch errors ... with IAM authentication to API Gateway?"
  (api-gateway-iam-sigv4-mismatch): API Gateway recomputes the signature from the request it received; any change
  to the signed parts (method, path, query, signed headers, body) is a mismatch.
- "Create routes for HTTP APIs" (http-api-develop-routes): the route is selected first; with no route matching and no
  $default route the answer is {"message":"Not Found"} (404), signed or not.
The body of every refusal is {"message": "Forbidden"}: the HTTP API answer (the per-cause texts above are REST API
texts; here they travel in x-localcloud-auth-error and the log).
"""
from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request

import botocore.auth
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from cloudkit import FakeCdkOut, http_call as raw
from localcloud import LocalCloud
from localcloud.httpapi import HttpApiServer
from localcloud.sigv4 import SigV4Verifier
from localcloud.specs import HttpApiInfo, IntegrationInfo, RouteInfo
from scripts import loadgen, plot_costs, query, send_events
from scripts.client import ApiClient, Signer, local_client

HANDLER = '''
import json


def api(event, context):
    ctx = event["requestContext"]
    route, path = event["routeKey"], event["rawPath"]

    def reply(status, body):
        return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}

    if route == "POST /events":
        events = json.loads(event.get("body") or "{}").get("events", [])
        rejected = [{"index": i, "event_id": e.get("event_id"), "errors": ["user_id: missing"]}
                    for i, e in enumerate(events) if "user_id" not in e]
        return reply(202, {"accepted": len(events) - len(rejected), "rejected": rejected})
    if route == "$default":
        return reply(404, {"error": "route_not_found", "message": f"no route for {ctx['http']['method']} {path}"})
    return reply(200, {"route": route, "path": path, "pathParameters": event.get("pathParameters"),
                       "query": event.get("queryStringParameters"), "authorizer": ctx.get("authorizer"),
                       "body": event.get("body"), "batches": [{"events": 10, "cost_per_event_usd": 1e-6}],
                       "optimizer": {"history": [], "batch_size": 100, "status": "waiting"}})
'''

ROUTES = {  # logical id: (route key, authorization type)
    "Events": ("POST /events", "AWS_IAM"), "Stats": ("GET /stats", "AWS_IAM"),
    "Prediction": ("GET /predictions/{event_id}", "AWS_IAM"), "History": ("GET /users/{user_id}/history", "AWS_IAM"),
    "Batches": ("GET /batches/recent", "AWS_IAM"), "Model": ("GET /model/status", "AWS_IAM"),
    "Echo": ("ANY /echo/{proxy+}", "AWS_IAM"), "Open": ("GET /open", "NONE"), "Default": ("$default", "AWS_IAM"),
}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigv4")
    out = FakeCdkOut(root / "cdk.out", stack="SigV4TestStack")
    out.function("ApiFunction", "api.api", out.code_asset({"api.py": HANDLER}))
    out.add("HttpApi", "AWS::ApiGatewayV2::Api", {"Name": "HttpApi", "ProtocolType": "HTTP"})
    out.add("HttpApiStage", "AWS::ApiGatewayV2::Stage", {"ApiId": {"Ref": "HttpApi"}, "StageName": "$default",
                                                         "AutoDeploy": True})
    out.add("ApiIntegration", "AWS::ApiGatewayV2::Integration", {
        "ApiId": {"Ref": "HttpApi"}, "IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0",
        "IntegrationUri": {"Fn::GetAtt": ["ApiFunction", "Arn"]}})
    for key, (route_key, authorization) in ROUTES.items():
        out.add(f"{key}Route", "AWS::ApiGatewayV2::Route", {
            "ApiId": {"Ref": "HttpApi"}, "RouteKey": route_key, "AuthorizationType": authorization,
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "ApiIntegration"}]]}})
    with LocalCloud(cdk_out=out.write(), state_dir=root / "state", api_port=0, run_schedules=False,
                    require_sigv4=True) as c:
        c.deploy()
        yield c


@pytest.fixture(scope="module")
def api(cloud):
    return local_client(cloud.api_url, sign=True)


def invocations(cloud) -> int:
    return cloud.lambda_host.stats()["ApiFunction"]["invocations"]



def signed_headers(method, url, body=b"", headers=None, *, access_key="localcloud", secret="localcloud",
                   region="us-east-1", service="execute-api") -> dict:
    signer = Signer.static(access_key, secret, region)
    signer.service = service
    return signer.sign(method, url, headers or {}, body)


def assert_refused(response, error_type, text=None):
    status, headers, body = response
    assert status == 403 and json.loads(body) == {"message": "Forbidden"}
    assert headers["x-amzn-errortype"] == error_type
    if text:
        assert text in headers["x-localcloud-auth-error"]


# -- signed requests ------------------------------------------------------------------------------------------------
def test_signed_requests_pass_with_the_caller_in_the_event(cloud, api):
    response = api.get("/echo/u%201%2Fx/%C3%A9t%C3%A9", {"b": "2 3", "a": "x+y/z", "since": "2026-11-01T00:00:00+00:00"})
    assert response.status == 200, response.body
    event = response.json()
    assert event["route"] == "ANY /echo/{proxy+}" and event["pathParameters"] == {"proxy": "u 1/x/été"}
    assert event["query"] == {"b": "2 3", "a": "x+y/z", "since": "2026-11-01T00:00:00+00:00"}
    iam = event["authorizer"]["iam"]
    assert iam["accessKey"] == "localcloud" and iam["accountId"] == "123456789012"
    assert iam["userArn"] == "arn:aws:iam::123456789012:user/localcloud"
    body = json.dumps({"events": [{"event_id": "e1", "user_id": "u1"}]}).encode()
    response = api.request("PUT", "/echo/body", body=body, headers={"content-type": "application/json",
                                                                      "x-custom": "yes"})
    assert response.status == 200 and response.json()["body"] == body.decode()


def test_open_route_needs_no_signature(cloud):
    status, _, body = raw(cloud, "GET", "/open")
    assert status == 200 and json.loads(body)["authorizer"] is None


# -- refusals -------------------------------------------------------------------------------------------------------
def test_unsigned_request_is_refused_before_the_function_runs(cloud):
    before = invocations(cloud)
    assert_refused(raw(cloud, "GET", "/stats"), "MissingAuthenticationTokenException", "Missing Authentication Token")
    assert_refused(raw(cloud, "POST", "/events", b'{"events": []}', {"content-type": "application/json"}),
                   "MissingAuthenticationTokenException")
    # the $default route has IAM auth too: an unsigned request to an unknown path is refused, not answered 404
    assert_refused(raw(cloud, "GET", "/no/such/path"), "MissingAuthenticationTokenException")
    assert invocations(cloud) == before


@pytest.mark.parametrize("tamper", ["body", "path", "query", "method", "signed header", "signature"])
def test_tampered_requests_are_refused(cloud, tamper):
    url = cloud.api_url + "/echo/a?x=1"
    body = b'{"events": [{"event_id": "e1"}]}'
    headers = signed_headers("POST", url, body, {"content-type": "application/json"})
    method = "POST"
    if tamper == "body":
        body = b'{"events": [{"event_id": "e2"}]}'
    elif tamper == "path":
        url = cloud.api_url + "/echo/b?x=1"
    elif tamper == "query":
        url = cloud.api_url + "/echo/a?x=2"
    elif tamper == "method":
        method = "PUT"
    elif tamper == "signed header":
        headers["content-type"] = "text/plain"
    else:
        headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    before = invocations(cloud)
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("a tampered request was accepted")
    except urllib.error.HTTPError as exc:
        assert_refused((exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()),
                       "InvalidSignatureException", "The request signature we calculated does not match")
    assert invocations(cloud) == before


@pytest.mark.parametrize("case, error_type, text", [
    ({"secret": "not-the-secret"}, "InvalidSignatureException", "does not match"),
    ({"access_key": "AKIAUNKNOWN", "secret": "x"}, "AccessDeniedException",
     "The security token included in the request is invalid."),
    ({"service": "s3"}, "InvalidSignatureException", "Credential should be scoped to correct service: 'execute-api'"),
    ({"region": "eu-west-1"}, "InvalidSignatureException", "Credential should be scoped to a valid region"),
])
def test_wrong_credentials_or_scope_are_refused(cloud, case, error_type, text):
    url = cloud.api_url + "/stats"
    response = raw(cloud, "GET", "/stats", headers=signed_headers("GET", url, **case))
    assert_refused(response, error_type, text)


def test_expired_and_future_signatures_are_refused(cloud, monkeypatch):
    url = cloud.api_url + "/stats"
    for minutes, text in ((-6, "Signature expired"), (6, "Signature not yet current")):
        when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda when=when: when)
        assert_refused(raw(cloud, "GET", "/stats", headers=signed_headers("GET", url)), "InvalidSignatureException",
                       text)
    when = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=4)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    assert raw(cloud, "GET", "/stats", headers=signed_headers("GET", url))[0] == 200  # within the 5 minutes


def test_malformed_authorization_is_an_incomplete_signature(cloud):
    assert_refused(raw(cloud, "GET", "/stats", headers={"Authorization": "Bearer abc"}),
                   "IncompleteSignatureException")
    assert_refused(raw(cloud, "GET", "/stats", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=a/b"}),
                   "IncompleteSignatureException", "Authorization header requires 'Signature' parameter.")


def test_unmatched_route_is_404_before_authorization():
    """No route matches and no $default route: API Gateway's own 404, signed or not (route selection first)."""
    integration = IntegrationInfo("I", "api", "i1", "AWS_PROXY", "fn", "2.0", 30000)
    info = HttpApiInfo("Api", "api", "Api", "HTTP", routes=[RouteInfo("R", "api", "GET /stats", "i1", "AWS_IAM")],
                       integrations={"i1": integration})
    server = HttpApiServer(info, None, region="us-east-1", account_id="1",
                           verifier=SigV4Verifier(region="us-east-1", account_id="1"))
    response = server.handle(Request(EnvironBuilder(method="GET", path="/nope").get_environ()))
    assert response.status_code == 404 and json.loads(response.get_data()) == {"message": "Not Found"}
    response = server.handle(Request(EnvironBuilder(method="GET", path="/stats").get_environ()))
    assert response.status_code == 403


# -- the client scripts ---------------------------------------------------------------------------------------------
def test_send_events_signs_and_unsigned_is_refused(cloud, capsys):
    assert send_events.main(["--count", "7", "--url", cloud.api_url, "--sign"]) == 0
    assert "accepted 7 of 7" in capsys.readouterr().out
    assert send_events.main(["--count", "7", "--url", cloud.api_url, "--no-sign"]) == 1
    assert "HTTP 403" in capsys.readouterr().err


def test_send_events_file_of_more_than_one_request(cloud, tmp_path, capsys):
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps({"event_id": f"f{i}", "user_id": "u"} if i != 3 else {"event_id": "f3"})
                              for i in range(1200)))
    assert send_events.main([str(path), "--url", cloud.api_url, "--sign"]) == 0
    captured = capsys.readouterr()
    assert "accepted 1199 of 1200" in captured.out and "rejected #3 f3" in captured.out
    assert "sent 1200/1200" in captured.err


def test_query_signs_ids_and_query_strings(cloud, capsys):
    assert query.main(["prediction", "evt 1:ü", "--url", cloud.api_url, "--sign"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["route"] == "GET /predictions/{event_id}" and answer["pathParameters"] == {"event_id": "evt 1:ü"}
    assert query.main(["history", "u+1", "--since", "2026-11-01T00:00:00+01:00", "--until", "1767225600",
                       "--url", cloud.api_url, "--sign"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["pathParameters"] == {"user_id": "u+1"}
    assert answer["query"] == {"since": "2026-11-01T00:00:00+01:00", "until": "1767225600"}
    assert query.main(["stats", "--url", cloud.api_url, "--no-sign"]) == 1
    assert json.loads(capsys.readouterr().out) == {"message": "Forbidden"}


def test_scripts_find_the_running_local_cloud_and_sign_when_it_requires_it(cloud, capsys):
    """No --url, no --sign: the state file names the URL and says SigV4 is required."""
    state = json.loads((cloud.state_dir / "localcloud.json").read_text())
    assert state["api_url"] == cloud.api_url and state["api_auth"]["require_sigv4"] is True
    assert query.main(["stats", "--state-dir", str(cloud.state_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["authorizer"]["iam"]["accessKey"] == "localcloud"


def test_loadgen_signs_every_request(cloud, capsys):
    result = loadgen.run(local_client(cloud.api_url, sign=True), events=300, rate=3000, seed=3, per_request=25,
                         history_hours=0, users=20)
    assert result.failed == 0 and result.request_errors == [] and result.requests == 12
    # the stand-in handler rejects only the invalid events that lack a user_id
    assert result.accepted + result.rejected == 300 and 0 < result.rejected <= result.bad_sent
    assert loadgen.main(["--events", "100", "--rate", "2000", "--history-hours", "0", "--users", "10",
                         "--url", cloud.api_url, "--sign"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["failed"] == 0 and "SigV4 execute-api/us-east-1" in captured.err
    unsigned = loadgen.run(cloud.api_url, events=50, rate=5000, seed=3, history_hours=0, users=5)
    assert unsigned.failed == 50 and unsigned.request_errors[0].startswith("HTTP 403")


def test_plot_costs_reads_the_live_api_signed(cloud, tmp_path):
    out = tmp_path / "costs.png"
    assert plot_costs.main(["--url", cloud.api_url, "--sign", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_the_client_is_one_code_path(cloud):
    """Local, LocalStack and AWS clients differ only in base URL, credentials and region: the same ApiClient."""
    signed = local_client(cloud.api_url, sign=True)
    assert type(signed) is ApiClient and signed.signer.service == "execute-api"
    assert local_client(cloud.api_url).signer is None


def test_up_command_has_the_require_sigv4_option(monkeypatch, capsys, tmp_path):
    import localcloud.cloud
    from localcloud.__main__ import main
    from localcloud.errors import LocalCloudError

    seen = {}

    class Refuses:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def start(self):
            raise LocalCloudError("not starting in this test")

    monkeypatch.setattr(localcloud.cloud, "LocalCloud", Refuses)
    # a cdk.out of its own (no synth record, so not checked for staleness): the repository's may be stale
    assert main(["up", "--require-sigv4", "--api-port", "0", "--cdk-out", str(tmp_path)]) == 2
    assert seen["require_sigv4"] is True and "not starting" in capsys.readouterr().err
    assert main(["up", "--api-port", "0", "--cdk-out", str(tmp_path)]) == 2 and seen["require_sigv4"] is False
