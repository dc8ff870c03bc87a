"""The client scripts against the deployed stack with SigV4 required, and the $default route, on the local cloud.

The stack's routes all use IAM authorization; in AWS every request must be SigV4-signed for execute-api ("Control
access to HTTP APIs with IAM authorization in API Gateway"). Here the running local cloud is switched to verify
signatures (``cloud.set_require_sigv4``) and the scripts sign with scripts/client.py, the same code path that signs
for a deployed stack. Unknown paths reach ApiFunction through the $default route ("Create routes for HTTP APIs":
the $default route catches requests that match no other route) and answer in the project's error shape.
"""
import json
import urllib.error
import urllib.request

import pytest
from e2ekit import wait_for

from scripts import loadgen, query, send_events
from scripts.client import local_client


@pytest.fixture
def sigv4(cloud):
    cloud.set_require_sigv4(True)
    try:
        yield cloud
    finally:
        cloud.set_require_sigv4(False)


def test_unknown_paths_and_methods_answer_in_the_project_error_shape(api):
    for method, path in (("GET", "/nope"), ("POST", "/stats"), ("DELETE", "/events"), ("GET", "/users/u1")):
        assert api.request(method, path) == (
            404, {"error": "route_not_found", "message": f"no route for {method} {path}"}), (method, path)


def test_scripts_sign_for_the_deployed_api(sigv4, capsys):
    url = sigv4.api_url
    assert send_events.main(["--count", "6", "--user", "sigv4-user", "--seed", "41", "--url", url, "--sign"]) == 0
    out = capsys.readouterr().out
    assert "accepted 6 of 6" in out
    first = out.rsplit("first event_id ", 1)[1].strip()

    def predicted():
        code = query.main(["prediction", first, "--url", url, "--sign"])
        answer = json.loads(capsys.readouterr().out)
        return answer if code == 0 else None

    prediction = wait_for(predicted, what="the prediction of a signed event")
    assert prediction["event_id"] == first and 0.0 <= prediction["score"] <= 1.0
    assert query.main(["median", "sigv4-user", "--url", url, "--sign"]) == 0
    assert json.loads(capsys.readouterr().out)["user_id"] == "sigv4-user"
    assert query.main(["stats", "--state-dir", str(sigv4.state_dir)]) == 0   # found and signed via the state file
    assert json.loads(capsys.readouterr().out)["events_ingested"] >= 6

    load = loadgen.run(local_client(url, sign=True), events=120, rate=600, seed=41, users=12)
    assert load.failed == 0 and load.accepted + load.rejected == load.sent == 120


def test_unsigned_and_tampered_requests_are_refused_and_unknown_signed_paths_are_404(sigv4):
    def status(request):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert status(urllib.request.Request(sigv4.api_url + "/stats")) == (403, {"message": "Forbidden"})
    api = local_client(sigv4.api_url, sign=True)
    url = api.url("/events")
    body = json.dumps({"events": []}).encode()
    headers = api.signer.sign("POST", url, {"content-type": "application/json"}, body)
    assert status(urllib.request.Request(url, data=body, headers=headers, method="POST"))[0] == 400  # signed: in
    tampered = json.dumps({"events": [{"event_id": "x"}]}).encode()
    assert status(urllib.request.Request(url, data=tampered, headers=headers, method="POST")) == (
        403, {"message": "Forbidden"})
    response = api.get("/no/such/route")
    assert (response.status, response.json()["error"]) == (404, "route_not_found")
