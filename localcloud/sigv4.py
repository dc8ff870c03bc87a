"""SigV4 verification for the local HTTP API: ``LocalCloud(require_sigv4=True)`` / ``python -m localcloud up
--require-sigv4``.

API Gateway recomputes the Signature Version 4 signature of every request to a route with ``AWS_IAM``
authorization and refuses the request (403, before the integration runs) when it is missing, malformed, expired,
made with an unknown access key, or different from the one it computes. Here the signature is recomputed with
botocore's own signer (``botocore.auth.SigV4Auth``, the code boto3 signs with), from the request as it arrived:
method, the raw path and query string as sent, the headers the client named in ``SignedHeaders``, and the SHA-256
of the body; with the secret of the access key in the local credential table (default: ``localcloud`` /
``localcloud``, the credentials the local cloud's own boto3 session uses). No crypto is written here.

What is checked, in AWS's order: an ``Authorization`` header at all (else "Missing Authentication Token"); its
parts (``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` and an ``X-Amz-Date`` or ``Date``
header); the credential scope (date of the request, the cloud's region, service ``execute-api``,
``aws4_request``); the request time within 5 minutes of now; a known access key; the signature.

Not checked: IAM policies (every known access key may invoke every route: there is no ``execute-api:Invoke``
evaluation), session tokens against STS (``X-Amz-Security-Token`` is signed like any header but not validated),
presigned query-string authentication, SigV4a. The rejection messages follow the wording of the AWS knowledge
center article "How do I troubleshoot HTTP 403 errors from API Gateway?"; what the HTTP API sends back is
``httpapi.py``'s business.
"""
from __future__ import annotations

import calendar
import hmac
import re
import time
from dataclasses import dataclass, field
from email.utils import mktime_tz, parsedate_tz
from hashlib import sha256
from typing import Callable, Iterable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

LOCAL_ACCESS_KEY_ID = "localcloud"
LOCAL_SECRET_ACCESS_KEY = "localcloud"
LOCAL_CREDENTIALS = {LOCAL_ACCESS_KEY_ID: LOCAL_SECRET_ACCESS_KEY}
SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 300
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"

MISSING = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"
UNKNOWN_KEY = "AccessDeniedException"   # the type the knowledge-center table gives this message

SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
                      "Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass
class Verdict:
    """The outcome of one check: ``ok``, or the AWS error type and message of the refusal (``detail``: the
    canonical request and string to sign the server computed, for the log)."""
    ok: bool
    error_type: str = ""
    message: str = ""
    access_key: str = ""
    detail: str = ""
    identity: dict = field(default_factory=dict)


class _Recompute(SigV4Auth):
    """botocore's signer, restricted to the headers the client said it signed (botocore would otherwise sign every
    header it finds, and a proxy-added header would change the result)."""

    def __init__(self, credentials: Credentials, region: str, signed_headers: list[str]):
        super().__init__(credentials, SERVICE, region)
        self._signed_headers = signed_headers

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name in self._signed_headers:
            for value in request.headers.get_all(name) or []:
                headers[name] = value
        return headers


def _parse_authorization(authorization: str, header_map: Mapping[str, str]) -> Verdict | tuple[dict[str, str], str]:
    """The Authorization header's parameters and the request date, or the verdict on a header that lacks them."""
    algorithm, _, rest = authorization.strip().partition(" ")
    parts = dict(_pairs(rest))
    if algorithm != ALGORITHM:
        return Verdict(False, INCOMPLETE, f"Authorization header requires the {ALGORITHM} algorithm "
                       f"(SigV4a and other schemes are not verified locally), got {algorithm!r}")
    missing = [f"Authorization header requires '{name}' parameter."
               for name in ("Credential", "Signature", "SignedHeaders") if not parts.get(name)]
    amz_date = header_map.get("x-amz-date") or _from_http_date(header_map.get("date")) or ""
    if not amz_date:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        return Verdict(False, INCOMPLETE, " ".join(missing) + f" Authorization={authorization}")
    return parts, amz_date


def _signed_headers_problem(signed: list[str], header_map: Mapping[str, str], body: bytes,
                            access_key: str) -> Verdict | None:
    """Host not signed, a signed header not in the request, or a declared body hash that is not the body's."""
    if "host" not in signed:
        return Verdict(False, INVALID, "'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                       "Authorization.", access_key)
    absent = [h for h in signed if h not in header_map]
    if absent:
        return Verdict(False, INVALID, f"{SIGNATURE_MISMATCH} (signed header(s) not in the request: "
                       f"{', '.join(absent)})", access_key)
    declared = header_map.get("x-amz-content-sha256")
    if declared is not None and declared != sha256(body).hexdigest():
        return Verdict(False, INVALID, f"{SIGNATURE_MISMATCH} (X-Amz-Content-SHA256 is not the SHA-256 of "
                       "the body)", access_key)
    return None


class SigV4Verifier:
    def __init__(self, credentials: Mapping[str, str] | None = None, *, region: str, account_id: str,
                 clock: Callable[[], float] = time.time):
        self.credentials = dict(LOCAL_CREDENTIALS if credentials is None else credentials)
        self.region = region
        self.account_id = account_id
        self.clock = clock

    def verify(self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> Verdict:
        """``url``: scheme, the Host header and the raw request target exactly as the client sent them;
        ``headers``: every request header (repeats allowed)."""
        header_list = [(k.lower(), v) for k, v in headers]
        header_map: dict[str, str] = {}
        for name, value in header_list:
            header_map.setdefault(name, value)
        authorization = header_map.get("authorization")
        if not authorization:
            return Verdict(False, MISSING, "Missing Authentication Token")
        parsed = _parse_authorization(authorization, header_map)
        if isinstance(parsed, Verdict):
            return parsed
        parts, amz_date = parsed
        problem = self._scope_problem(parts["Credential"], amz_date)
        if problem is not None:
            return problem
        access_key, _, region, _, _ = parts["Credential"].split("/")
        secret = self.credentials.get(access_key)
        if secret is None:
            return Verdict(False, UNKNOWN_KEY, "The security token included in the request is invalid.", access_key)
        signed = [h.strip().lower() for h in parts["SignedHeaders"].split(";") if h.strip()]
        problem = _signed_headers_problem(signed, header_map, body, access_key)
        if problem is not None:
            return problem
        request = AWSRequest(method=method.upper(), url=url, data=body)
        for name, value in header_list:
            if name in signed:
                request.headers[name] = value  # HTTPHeaders keeps repeats, as canonical headers need them
        request.context["timestamp"] = amz_date
        signer = _Recompute(Credentials(access_key, secret), region, signed)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        expected = signer.signature(string_to_sign, request)
        if not hmac.compare_digest(expected, parts["Signature"]):
            detail = (f"The Canonical String for this request should have been\n'{canonical}'\n\n"
                      f"The String-to-Sign should have been\n'{string_to_sign}'")
            return Verdict(False, INVALID, SIGNATURE_MISMATCH, access_key, detail)
        return Verdict(True, access_key=access_key, identity=self.identity(access_key))

    def _scope_problem(self, credential: str, amz_date: str) -> Verdict | None:
        """What is wrong with the credential scope (access key/date/region/service/aws4_request) and the request
        date, if anything."""
        scope = credential.split("/")
        if len(scope) != 5:
            return Verdict(False, INCOMPLETE, f"Credential should have 5 parts (access key/date/region/service/"
                           f"aws4_request), got {credential!r}")
        access_key, scope_date, region, service, terminator = scope
        if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
            return Verdict(False, INCOMPLETE, f"X-Amz-Date must be in ISO-8601 basic format "
                           f"(YYYYMMDD'T'HHMMSS'Z'), got {amz_date!r}", access_key)
        if scope_date != amz_date[:8]:
            return Verdict(False, INVALID, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version "
                           f"of date from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.", access_key)
        if region != self.region:
            return Verdict(False, INVALID, f"Credential should be scoped to a valid region, not '{region}'. "
                           f"(this local cloud is {self.region})", access_key)
        if service != SERVICE:
            return Verdict(False, INVALID, f"Credential should be scoped to correct service: '{SERVICE}'. ",
                           access_key)
        if terminator != "aws4_request":
            return Verdict(False, INVALID, "Credential should be scoped with a valid terminator: 'aws4_request', "
                           f"not '{terminator}'.", access_key)
        skew = self._skew(amz_date)
        if skew is not None:
            return Verdict(False, INVALID, skew, access_key)
        return None

    def identity(self, access_key: str) -> dict:
        """``requestContext.authorizer.iam`` of a payload format 2.0 event (a local stand-in user per key)."""
        user_id = "AIDALOCALCLOUD" + re.sub(r"[^A-Z0-9]", "", access_key.upper())[:12]
        return {"accessKey": access_key, "accountId": self.account_id, "callerId": user_id,
                "cognitoIdentity": None, "principalOrgId": None,
                "userArn": f"arn:aws:iam::{self.account_id}:user/{access_key}", "userId": user_id}

    def _skew(self, amz_date: str) -> str | None:
        signed_at = calendar.timegm(time.strptime(amz_date, SIGV4_TIMESTAMP))
        now = self.clock()

        def stamp(t: float) -> str:
            return time.strftime(SIGV4_TIMESTAMP, time.gmtime(t))

        if signed_at < now - MAX_SKEW_SECONDS:
            return (f"Signature expired: {amz_date} is now earlier than {stamp(now - MAX_SKEW_SECONDS)} "
                    f"({stamp(now)} - 5 min.)")
        if signed_at > now + MAX_SKEW_SECONDS:
            return (f"Signature not yet current: {amz_date} is still later than {stamp(now + MAX_SKEW_SECONDS)} "
                    f"({stamp(now)} + 5 min.)")
        return None


def _pairs(text: str):
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            yield name.strip(), value.strip()


def _from_http_date(value: str | None) -> str | None:
    if not value:
        return None
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    return time.strftime(SIGV4_TIMESTAMP, time.gmtime(mktime_tz(parsed)))
