"""scripts/client.py: how a target (local cloud, LocalStack, AWS) becomes a base URL, credentials and a region, and
that what it signs for AWS verifies with botocore's own recomputation (localcloud/sigv4.py).

AWS behaviour encoded here:
- AWS General Reference "Signature Version 4 signing process" / "Elements of an AWS API request signature": the
  credential scope names the date, the region of the API and the service (execute-api for API Gateway), and
  temporary credentials send their session token (X-Amz-Security-Token).
- "Invoking a REST/HTTP API" (the default endpoint is https://{api-id}.execute-api.{region}.amazonaws.com): the
  region of an API can be read from its default URL.
- LocalStack API Gateway docs: an API is served at http://<apiId>.execute-api.localhost.localstack.cloud:4566/
  (or under <edge>/_aws/execute-api/<apiId>/).
"""
from __future__ import annotations

import pytest
from botocore.credentials import Credentials

from localcloud.sigv4 import SigV4Verifier
from scripts import client
from scripts.client import ClientError, is_local, localstack_url, region_from_url, resolve

API_URL = "https://abc123defg.execute-api.eu-central-1.amazonaws.com/"


class FakeCloudFormation:
    def __init__(self, outputs: dict | None, error: Exception | None = None):
        self.outputs, self.error, self.calls = outputs, error, []

    def describe_stacks(self, StackName):  # noqa: N803 (boto3's parameter name)
        self.calls.append(StackName)
        if self.error:
            raise self.error
        return {"Stacks": [{"StackName": StackName, "Outputs": [{"OutputKey": k, "OutputValue": v}
                                                                  for k, v in (self.outputs or {}).items()]}]}


class FakeSession:
    """boto3.session.Session's surface the client uses: region_name, client(), get_credentials()."""

    def __init__(self, outputs=None, credentials=None, region="us-west-2", error=None):
        self.cfn = FakeCloudFormation({"ApiUrl": API_URL} if outputs is None else outputs, error)
        self.credentials = Credentials("AKIDEXAMPLE", "SECRETEXAMPLE", "SESSIONTOKEN") \
            if credentials is None else credentials
        self.region = region
        self.kwargs = None

    def __call__(self, **kwargs):  # used as the session factory
        self.kwargs = kwargs
        self.region_name = kwargs.get("region_name") or self.region
        return self

    def client(self, name):
        assert name == "cloudformation"
        return self.cfn

    def get_credentials(self):
        return self.credentials or None


def test_aws_target_reads_the_stack_output_and_signs_for_the_apis_region():
    session = FakeSession()
    api = resolve(stack="RealtimeInference", profile="prod", session_factory=session)
    assert session.kwargs == {"profile_name": "prod", "region_name": None} and session.cfn.calls == ["RealtimeInference"]
    assert api.base_url == API_URL and api.signer.region == "eu-central-1"   # the URL's region, not the session's
    url = api.url("/users/u%201/median", {"window_seconds": 300})
    headers = api.signer.sign("GET", url, {}, b"")
    assert headers["X-Amz-Security-Token"] == "SESSIONTOKEN"
    assert "Credential=AKIDEXAMPLE/" in headers["Authorization"] and "/eu-central-1/execute-api/aws4_request" in \
        headers["Authorization"]
    verifier = SigV4Verifier({"AKIDEXAMPLE": "SECRETEXAMPLE"}, region="eu-central-1", account_id="111122223333")
    sent = list(headers.items()) + [("Host", "abc123defg.execute-api.eu-central-1.amazonaws.com")]
    assert verifier.verify("GET", url, sent, b"").ok
    assert not verifier.verify("GET", url.replace("300", "301"), sent, b"").ok


def test_a_remote_url_is_always_signed():
    session = FakeSession()
    api = resolve(url="https://api.example.com/prod", region="ap-south-1", session_factory=session)
    assert api.signer is not None and api.signer.region == "ap-south-1"
    with pytest.raises(ClientError, match="always SigV4-signed"):
        resolve(url=API_URL, sign=False, session_factory=FakeSession())
    with pytest.raises(ClientError, match="needs a URL on this machine"):
        resolve(target="local", url=API_URL)
    with pytest.raises(ClientError, match="no region"):
        resolve(url="https://api.example.com/", session_factory=FakeSession(region=None))


def test_credentials_come_from_the_session_and_are_read_per_request():
    calls = []

    class Refreshable(Credentials):
        def get_frozen_credentials(self):
            calls.append(1)
            return super().get_frozen_credentials()

    api = resolve(url=API_URL, session_factory=FakeSession(credentials=Refreshable("A", "S")))
    for _ in range(3):
        api.signer.sign("GET", API_URL + "stats", {}, b"")
    assert len(calls) == 3
    with pytest.raises(ClientError, match="no AWS credentials found"):
        resolve(url=API_URL, session_factory=FakeSession(credentials=False))


def test_stack_errors_say_what_is_wrong():
    with pytest.raises(ClientError, match="has no ApiUrl output .outputs: EndpointName"):
        resolve(stack="S", session_factory=FakeSession(outputs={"EndpointName": "e"}))
    with pytest.raises(ClientError, match="cannot read stack 'S': Stack with id S does not exist"):
        resolve(stack="S", session_factory=FakeSession(error=RuntimeError("Stack with id S does not exist")))
    with pytest.raises(ClientError, match="--stack reads a deployed stack"):
        resolve(target="local", stack="S")
    with pytest.raises(ClientError, match="needs --stack"):
        resolve(target="aws", session_factory=FakeSession())


def test_localstack_target_uses_localstack_client(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "LOCALSTACK_HOST", "USE_SSL"):
        monkeypatch.delenv(name, raising=False)
    session = FakeSession()
    api = resolve(target="localstack", stack="RealtimeInference", localstack_factory=session)
    assert session.kwargs == {"region_name": "us-east-1"}
    assert api.base_url == "http://abc123defg.execute-api.localhost.localstack.cloud:4566/"
    assert api.signer.region == "us-east-1"
    # the real localstack-client session (its endpoint configuration and its fixed test credentials)
    api = resolve(target="localstack", url="http://abc.execute-api.localhost.localstack.cloud:4566/")
    headers = api.signer.sign("GET", api.url("/stats"), {}, b"")
    assert "Credential=accesskey/" in headers["Authorization"] and headers["X-Amz-Security-Token"] == "token"
    monkeypatch.setenv("LOCALSTACK_HOST", "build-box:4566")
    api = resolve(target="localstack", stack="RealtimeInference", localstack_factory=FakeSession())
    assert api.base_url == "http://build-box:4566/_aws/execute-api/abc123defg/"


def test_localstack_url_mapping():
    edge = "http://localhost:4566"
    assert localstack_url(API_URL, edge) == "http://abc123defg.execute-api.localhost.localstack.cloud:4566/"
    assert localstack_url("https://x1.execute-api.localhost.localstack.cloud:4566/", edge) == \
        "https://x1.execute-api.localhost.localstack.cloud:4566/"
    with pytest.raises(ClientError, match="not an execute-api URL"):
        localstack_url("https://example.com/", edge)


def test_local_target_follows_the_running_local_cloud(tmp_path):
    (tmp_path / "localcloud.json").write_text(
        '{"api_url": "http://127.0.0.1:8123", "api_auth": {"require_sigv4": true, "region": "us-east-1", '
        '"access_key_id": "k", "secret_access_key": "s"}}')
    api = resolve(state_dir=tmp_path)
    assert api.base_url == "http://127.0.0.1:8123" and api.signer is not None
    assert "Credential=k/" in api.signer.sign("GET", api.url("/stats"), {}, b"")["Authorization"]
    assert resolve(state_dir=tmp_path, sign=False).signer is None
    other = resolve(url="http://127.0.0.1:9000", state_dir=tmp_path)   # another cloud: not the state file's
    assert other.signer is None
    assert resolve(state_dir=tmp_path / "missing").base_url == client.DEFAULT_LOCAL_URL


def test_url_helpers():
    assert region_from_url(API_URL) == "eu-central-1"
    assert region_from_url("https://abc.execute-api.cn-north-1.amazonaws.com.cn/") == "cn-north-1"
    assert region_from_url("https://api.example.com/") is None
    assert all(is_local(u) for u in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80/",
                                     "http://api.localhost/"))
    assert not any(is_local(u) for u in (API_URL, "http://10.0.0.1/", "http://localstack.cloud/"))
