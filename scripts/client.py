"""One HTTP client for every script (send_events, query, loadgen, plot_costs, demo), whatever runs the API:

    --target local        the embedded local cloud (default): --url, else the running `make up`
                          (<--state-dir>/localcloud.json), else http://127.0.0.1:8000
    --target localstack   a stack deployed into LocalStack with cdklocal: LocalStack's endpoint and credentials from
                          the `localstack-client` package, the API id from the stack's ApiUrl output (--stack)
    --target aws          a deployed stack: --stack NAME reads the ApiUrl output with CloudFormation, or --url;
                          credentials from the standard boto3 chain (env, ~/.aws profiles with --profile, SSO,
                          instance/task roles), region from --region, the URL or the session

One code path: the target only decides the base URL, the credentials and the region; every request then goes
through ``ApiClient.request``, which SigV4-signs it for service ``execute-api`` with botocore's signer
(``botocore.auth.SigV4Auth`` on a ``botocore.awsrequest.AWSRequest``) when signing is on. Signing is on for every
URL that is not on this machine (requests are never sent unsigned to a remote API), for LocalStack, and for the
local cloud when it requires SigV4 (its state file says so; `python -m localcloud up --require-sigv4`) or with
``--sign``. The local cloud's credentials are the fake local pair from its state file (default
``localcloud``/``localcloud``), not your AWS credentials.

    from scripts.client import add_target_arguments, client_from_args
    api = client_from_args(args)                 # after parser.parse_args() with add_target_arguments(parser)
    response = api.get("/stats"); response.status, response.json()
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_URL = "http://127.0.0.1:8000"
SERVICE = "execute-api"
TARGETS = ("local", "localstack", "aws")
LOCAL_REGION = "us-east-1"
# The local cloud's fake credential pair (localcloud/sigv4.py); used when its state file does not name one.
LOCAL_ACCESS_KEY_ID = LOCAL_SECRET_ACCESS_KEY = "localcloud"
_EXECUTE_API_HOST = re.compile(r"^(?P<api>[a-z0-9]+)\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class ClientError(Exception):
    """The API could not be reached or the target could not be resolved (a message for the user)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        """The JSON body; a non-JSON body (a proxy's HTML error page, say) as {"message": text}."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            return {"message": self.body.decode("utf-8", "replace")}


class Signer:
    """SigV4 for ``execute-api`` with botocore's signer. ``credentials`` is called per request, so refreshable
    credentials (SSO, assumed roles, instance roles) stay valid through a long load run."""

    def __init__(self, credentials: Callable[[], Any], region: str, service: str = SERVICE):
        self.credentials = credentials
        self.region = region
        self.service = service

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(self.credentials(), self.service, self.region).add_auth(request)
        return dict(request.headers.items())

    @classmethod
    def static(cls, access_key: str, secret_key: str, region: str, token: str | None = None) -> "Signer":
        from botocore.credentials import Credentials

        credentials = Credentials(access_key, secret_key, token)
        return cls(credentials.get_frozen_credentials, region)

    @classmethod
    def from_session(cls, session, region: str) -> "Signer":
        """Credentials from a boto3 session (the standard chain) or a localstack-client session."""
        credentials = session.get_credentials()
        if credentials is None:
            raise ClientError("no AWS credentials found (standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                              "~/.aws/credentials or config profiles (--profile), SSO, container or instance role)")
        frozen = getattr(credentials, "get_frozen_credentials", None)
        return cls(frozen if frozen is not None else (lambda: credentials), region)


@dataclass
class ApiClient:
    """Requests to the HTTP API at ``base_url`` (a stage path prefix, if any, included), signed by ``signer``."""
    base_url: str
    signer: Signer | None = None
    timeout: float = 30.0
    description: str = ""

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        """``path`` is sent as given (quote path parameters with ``quote_segment``); ``query`` is encoded the
        way SigV4 canonicalizes it (RFC 3986, spaces as %20), so the signature covers exactly what is sent."""
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        if query:
            pairs = [(k, str(v)) for k, v in query.items() if v is not None]
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, safe="-_.~")
        return url

    def request(self, method: str, path: str, *, body: bytes | None = None, json_body: Any = None,
                query: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Response:
        """One request; HTTP error statuses are returned (not raised); an unreachable API raises ClientError."""
        method = method.upper()
        send_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            send_headers.setdefault("content-type", "application/json")
        url = self.url(path, query)
        if self.signer is not None:
            send_headers = self.signer.sign(method, url, send_headers, body)
        request = urllib.request.Request(url, data=body, method=method, headers=send_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Response(response.status, {k.lower(): v for k, v in response.headers.items()},
                                response.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            hint = "; is `make up` running?" if is_local(self.base_url) else ""
            raise ClientError(f"cannot reach {self.base_url} ({reason}){hint}") from None

    def get(self, path: str, query: dict[str, Any] | None = None) -> Response:
        return self.request("GET", path, query=query)

    def post_json(self, path: str, payload: Any) -> Response:
        return self.request("POST", path, json_body=payload)

    def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        """GET and return the JSON body; an error status raises ClientError with the API's answer."""
        response = self.get(path, query)
        if not response.ok:
            raise ClientError(f"GET {path}: HTTP {response.status} {response.body.decode('utf-8', 'replace')}")
        return response.json()

    def __str__(self) -> str:
        signing = f"SigV4 {self.signer.service}/{self.signer.region}" if self.signer else "unsigned"
        return f"{self.description or self.base_url} ({signing})"


def quote_segment(value: str) -> str:
    """One path segment (a user id, an event id) percent-encoded, '/' included."""
    return urllib.parse.quote(value, safe="")


def is_local(url: str) -> bool:
    """True for URLs on this machine (loopback addresses, localhost names)."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_from_url(url: str) -> str | None:
    """The region of an execute-api URL (https://<api>.execute-api.<region>.amazonaws.com/...)."""
    found = _EXECUTE_API_HOST.match((urllib.parse.urlsplit(url).hostname or "").lower())
    return found.group("region") if found else None


# -- targets ------------------------------------------------------------------------------------------------------
def add_target_arguments(parser: argparse.ArgumentParser, *, default_url: str | None = None) -> None:
    group = parser.add_argument_group("where the API is (one client for local, LocalStack and AWS)")
    group.add_argument("--target", choices=TARGETS,
                       help="local (embedded local cloud, the default), localstack, or aws (the default with --stack "
                            "or a non-local --url)")
    group.add_argument("--url", default=default_url,
                       help="API base URL (local default: the running local cloud, else http://127.0.0.1:8000)")
    group.add_argument("--stack", help="CloudFormation stack whose ApiUrl output is the base URL (aws, localstack)")
    group.add_argument("--region", help="region (aws: else from the URL or the session; localstack: us-east-1)")
    group.add_argument("--profile", help="AWS profile for credentials and CloudFormation (aws)")
    group.add_argument("--state-dir", default=str(ROOT / ".localcloud"),
                       help="the local cloud's state directory (its URL and whether it requires SigV4)")
    sign = group.add_mutually_exclusive_group()
    sign.add_argument("--sign", dest="sign", action="store_true", default=None,
                      help="SigV4-sign requests to a local URL too (always on for remote URLs and LocalStack)")
    sign.add_argument("--no-sign", dest="sign", action="store_false",
                      help="do not sign requests to a local URL (refused for remote URLs)")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per request")


def client_from_args(args: argparse.Namespace, *, session_factory: Callable[..., Any] | None = None,
                     localstack_factory: Callable[..., Any] | None = None) -> ApiClient:
    """The ApiClient for the parsed target options (factories: test seams for boto3 / localstack-client)."""
    return resolve(target=args.target, url=args.url, stack=args.stack, region=args.region, profile=args.profile,
                   state_dir=args.state_dir, sign=args.sign, timeout=args.timeout,
                   session_factory=session_factory, localstack_factory=localstack_factory)


def resolve(*, target: str | None = None, url: str | None = None, stack: str | None = None,
            region: str | None = None, profile: str | None = None, state_dir: str | os.PathLike | None = None,
            sign: bool | None = None, timeout: float = 30.0, session_factory: Callable[..., Any] | None = None,
            localstack_factory: Callable[..., Any] | None = None) -> ApiClient:
    if target is None:
        target = "aws" if stack or (url and not is_local(url)) else "local"
    if target not in TARGETS:
        raise ClientError(f"unknown target {target!r} (one of {', '.join(TARGETS)})")
    if target == "local":
        if stack:
            raise ClientError("--stack reads a deployed stack: use --target aws or --target localstack")
        return _local(url, Path(state_dir or ROOT / ".localcloud"), sign, timeout)
    if target == "localstack":
        return _localstack(url, stack, region, timeout, localstack_factory)
    return _aws(url, stack, region, profile, sign, timeout, session_factory)


def local_client(url: str, *, sign: bool = False, access_key: str = LOCAL_ACCESS_KEY_ID,
                 secret_key: str = LOCAL_SECRET_ACCESS_KEY, region: str = LOCAL_REGION,
                 timeout: float = 30.0) -> ApiClient:
    """A client for a local cloud at ``url`` (the demo and tests, which know their cloud)."""
    signer = Signer.static(access_key, secret_key, region) if sign else None
    return ApiClient(url, signer, timeout, f"local cloud {url}")


def _local(url: str | None, state_dir: Path, sign: bool | None, timeout: float) -> ApiClient:
    state = _read_state(state_dir)
    url = url or state.get("api_url") or DEFAULT_LOCAL_URL
    if not is_local(url):
        raise ClientError(f"--target local needs a URL on this machine, not {url} (use --target aws)")
    auth = (state.get("api_auth") or {}) if _same_url(url, state.get("api_url")) else {}
    if sign is None:
        sign = bool(auth.get("require_sigv4"))
    return local_client(url, sign=sign, access_key=auth.get("access_key_id") or LOCAL_ACCESS_KEY_ID,
                        secret_key=auth.get("secret_access_key") or LOCAL_SECRET_ACCESS_KEY,
                        region=auth.get("region") or LOCAL_REGION, timeout=timeout)


def _localstack(url: str | None, stack: str | None, region: str | None, timeout: float,
                factory: Callable[..., Any] | None) -> ApiClient:
    from localstack_client import config as localstack_config
    from localstack_client.session import Session as LocalStackSession

    session = (factory or LocalStackSession)(region_name=region or LOCAL_REGION)
    if url is None:
        if not stack:
            raise ClientError("--target localstack needs --stack NAME (the cdklocal-deployed stack) or --url")
        edge = localstack_config.get_service_endpoint("apigatewayv2") or "http://localhost:4566"
        api_url = _stack_api_url(session.client("cloudformation"), stack)
        url = localstack_url(api_url, edge)
    return ApiClient(url, Signer.from_session(session, session.region_name), timeout, f"LocalStack {url}")


def localstack_url(api_url: str, edge: str) -> str:
    """LocalStack's invoke URL for the API of a CloudFormation ApiUrl output. The output names the AWS host
    (<api>.execute-api.<region>.amazonaws.com); LocalStack serves the API at
    http://<api>.execute-api.localhost.localstack.cloud:<edge port>/ (that name resolves to 127.0.0.1), or, when
    the edge is on another host, at <edge>/_aws/execute-api/<api>/ (LocalStack API Gateway docs)."""
    host = (urllib.parse.urlsplit(api_url).hostname or "")
    if "localstack.cloud" in host or is_local(api_url):
        return api_url
    api_id = host.split(".execute-api.", 1)[0]
    if not api_id or api_id == host:
        raise ClientError(f"ApiUrl {api_url!r} is not an execute-api URL")
    edge_parts = urllib.parse.urlsplit(edge)
    if is_local(edge):
        port = f":{edge_parts.port}" if edge_parts.port else ""
        return f"{edge_parts.scheme}://{api_id}.execute-api.localhost.localstack.cloud{port}/"
    return f"{edge.rstrip('/')}/_aws/execute-api/{api_id}/"


def _aws(url: str | None, stack: str | None, region: str | None, profile: str | None, sign: bool | None,
         timeout: float, factory: Callable[..., Any] | None) -> ApiClient:
    import boto3

    session = (factory or boto3.session.Session)(profile_name=profile, region_name=region)
    if url is None:
        if not stack:
            raise ClientError("--target aws needs --stack NAME (reads its ApiUrl output) or --url")
        url = _stack_api_url(session.client("cloudformation"), stack)
    if sign is False and not is_local(url):
        raise ClientError(f"{url} is not local: requests to a deployed API are always SigV4-signed (no --no-sign)")
    region = region or region_from_url(url) or session.region_name
    if not region:
        raise ClientError("no region: pass --region (or set AWS_REGION / a profile region)")
    return ApiClient(url, Signer.from_session(session, region), timeout,
                     f"stack {stack} {url}" if stack else url)


def _stack_api_url(cloudformation, stack: str) -> str:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - botocore ClientError, no credentials, endpoint down: say which
        raise ClientError(f"cannot read stack {stack!r}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    if "ApiUrl" not in outputs:
        raise ClientError(f"stack {stack!r} has no ApiUrl output (outputs: {', '.join(outputs) or 'none'})")
    return outputs["ApiUrl"]


def _read_state(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / "localcloud.json").read_text())
    except (OSError, ValueError):
        return {}


def _same_url(a: str | None, b: str | None) -> bool:
    return bool(a and b) and a.rstrip("/") == b.rstrip("/")
