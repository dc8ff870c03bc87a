"""IAM enforced by the local cloud: every AWS call a function makes is checked against its execution role's policies.

Each role of the template gets its own credentials (``Iam.credentials``: an access key id derived from the role ARN,
plus a session name: the function's name, or "states" for a state machine). The Lambda host gives a function its
role's keys; the Kinesis pollers read the stream and write the on-failure destination with the function's role (what
Lambda's event source mapping does); moto's state-machine executor signs its Lambda and SQS task calls with the state
machine's role (mototools.role_credentials). The gateway hands every request to ``Iam.check``: the access key in the
SigV4 ``Authorization`` header names the principal, ``describe`` turns the request into IAM requests (action,
resource ARN, condition context) and ``evaluate`` applies the role's identity policies as synthesized (AWS::IAM::Policy
/ ManagedPolicy / inline Policies, intrinsics resolved by the deployer's resolver). Callers with other keys (tests,
scripts, the deployer) are the account's administrator and are not checked.

Evaluation (IAM User Guide, "Policy evaluation logic"): an explicit Deny wins, otherwise an Allow is needed; Action
and NotAction match case-insensitively with ``*``/``?``; Resource and NotResource match per ARN segment, and a ``*``
that ends a segment (the last one included) may run past colons ("IAM JSON policy elements: Resource"); conditions
follow "IAM JSON policy elements: Condition operators" (a key missing from the request fails the condition, except for
negated operators, ...IfExists and Null). Resource-based policies (bucket, queue, key policies) and permissions
boundaries are not evaluated.

Modes (``LOCALCLOUD_IAM`` or ``LocalCloud(iam=...)``): ``enforce`` (default) answers a denied call with the service's
AccessDenied error, whose message names the principal, the action and the resource as AWS words it; ``report`` lets
the call through and logs the would-be denial; ``off`` checks nothing. Denials are kept in ``Iam.denials``.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from werkzeug.wrappers import Response

from .errors import LocalCloudError

log = logging.getLogger("localcloud.iam")

MODES = ("enforce", "report", "off")
POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")

# X-Amz-Target prefix -> IAM service prefix (JSON protocols)
TARGETS = {"DynamoDB_20120810": "dynamodb", "Kinesis_20131202": "kinesis", "AWSStepFunctions": "states",
           "AmazonSQS": "sqs", "GraniteServiceVersion20100801": "cloudwatch", "SageMaker": "sagemaker",
           "AmazonSSM": "ssm", "AWSEvents": "events", "Logs_20140328": "logs", "Firehose_20150804": "firehose",
           "TrentService": "kms"}
# SigV4 signing name -> IAM service prefix, where they differ
SIGNING_NAMES = {"monitoring": "cloudwatch", "execute-api": "execute-api"}
# Batch APIs that SQS authorizes as their single-message action (SQS Developer Guide, "Amazon SQS batch actions")
SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
             "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


class AccessDenied(LocalCloudError):
    pass


@dataclass(frozen=True)
class IamRequest:
    """One authorization question: may the principal perform ``action`` on ``resource`` in this context?"""
    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, action: str, resource: str, context: dict[str, str] | None = None) -> "IamRequest":
        return cls(action, resource, tuple(sorted((key, (value,)) for key, value in (context or {}).items())))


@dataclass
class Principal:
    role_arn: str
    session: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    statements: list[dict] = field(default_factory=list)

    @property
    def arn(self) -> str:  # what AWS names in an AccessDenied message for a role session
        _, _, _, _, account, resource = self.role_arn.split(":", 5)
        return f"arn:aws:sts::{account}:assumed-role/{resource.rsplit('/', 1)[-1]}/{self.session}"


@dataclass
class Denial:
    principal: str
    action: str
    resource: str
    explicit: bool
    enforced: bool

    @property
    def message(self) -> str:
        reason = ("with an explicit deny in an identity-based policy" if self.explicit
                  else f"because no identity-based policy allows the {self.action} action")
        return f"User: {self.principal} is not authorized to perform: {self.action} on resource: {self.resource} " \
               f"{reason}"


class Iam:
    def __init__(self, mode: str = "enforce", *, region: str, account_id: str):
        if mode not in MODES:
            raise LocalCloudError(f"IAM mode {mode!r}: use one of {', '.join(MODES)}")
        self.mode = mode
        self.region = region
        self.account_id = account_id
        self.policies: dict[str, list[dict]] = {}        # role ARN -> statements
        self.principals: dict[str, Principal] = {}      # access key id -> principal
        self.denials: deque[Denial] = deque(maxlen=1000)               # the last ones
        self.used: set[tuple[str, str, str]] = set()     # (role ARN, action, resource) of allowed calls (the first 10k)
        self.checked = 0
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, IamRequest], str] = {}   # policies do not change once loaded

    # -- policies, from the deployed template ---------------------------------------------------------------------
    def load(self, deployer) -> None:
        """Every role's statements, resolved as CloudFormation would (the deployer's resolver and registry)."""
        self.forget_decisions()
        resources = deployer.resources
        roles = {r.ref: r.attributes.get("Arn") for r in resources.values()
                 if r.type == "AWS::IAM::Role" and r.status == "created"}
        for resource in resources.values():
            if resource.type == "AWS::IAM::Role" and resource.status == "created":
                properties = deployer.resolver.resolve(resource.definition.get("Properties", {})) or {}
                statements = self.policies.setdefault(roles[resource.ref], [])
                for policy in properties.get("Policies") or []:
                    statements += _statements(policy.get("PolicyDocument"))
            elif resource.type in POLICY_TYPES and resource.status in ("created", "skipped"):
                properties = deployer.resolver.resolve(resource.definition.get("Properties", {})) or {}
                for role in properties.get("Roles") or []:
                    arn = roles.get(role) or (role if str(role).startswith("arn:") else None)
                    if arn is None:
                        log.warning("%s attaches to role %s, which is not in the template", resource.logical_id, role)
                        continue
                    self.policies.setdefault(arn, []).extend(_statements(properties.get("PolicyDocument")))

    def credentials(self, role_arn: str, session: str) -> Principal:
        """The role's session credentials (stable per role and session, so workers can be restarted)."""
        digest = hashlib.sha256(f"{role_arn}\n{session}".encode()).digest()
        key = "ASIA" + base64.b32encode(digest).decode()[:16]
        with self._lock:
            principal = self.principals.get(key)
            if principal is None:
                principal = self.principals[key] = Principal(
                    role_arn, session, key, digest.hex(), base64.b64encode(digest).decode(),
                    self.policies.setdefault(role_arn, []))
        return principal

    def forget_decisions(self) -> None:
        """Call after changing ``policies`` in place (decisions are cached per principal and request)."""
        self._decisions.clear()

    # -- the gateway's hook ---------------------------------------------------------------------------------------
    def check(self, environ: dict) -> Response | None:
        """None to let the request through; an AWS error response when a function's role may not make it."""
        if self.mode == "off":
            return None
        principal = self.principals.get(_access_key(environ))
        if principal is None:
            return None
        body = _body(environ)
        try:
            requests = describe(environ, body, self.region, self.account_id)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("IAM: cannot describe %s %s from %s: %s", environ.get("REQUEST_METHOD"),
                        environ.get("PATH_INFO"), principal.arn, exc)
            return None
        for request in requests:
            self.checked += 1
            key = (principal.access_key_id, request)
            decision = self._decisions.get(key)
            if decision is None:
                decision = evaluate(principal.statements, request, _global_context(principal))
                if len(self._decisions) > 20000:   # S3 object keys make most requests unique: keep it bounded
                    self._decisions.clear()
                self._decisions[key] = decision
            if decision == "Allow":
                if len(self.used) < 10000:
                    self.used.add((principal.role_arn, request.action, request.resource))
                continue
            denial = Denial(principal.arn, request.action, request.resource, decision == "Deny",
                            self.mode == "enforce")
            with self._lock:
                self.denials.append(denial)
            if self.mode == "report":
                log.warning("IAM (report only) would deny: %s", denial.message)
                continue
            log.warning("IAM denied: %s", denial.message)
            return access_denied(environ, denial.message)
        return None

    def status(self) -> dict:
        return {"mode": self.mode, "checked": self.checked, "principals": len(self.principals),
                "denials": [{"principal": d.principal, "action": d.action, "resource": d.resource,
                             "explicit": d.explicit, "enforced": d.enforced, "message": d.message}
                            for d in list(self.denials)[-100:]]}


def _statements(document: Any) -> list[dict]:
    if not document:
        return []
    if isinstance(document, str):
        document = json.loads(document)
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _access_key(environ: dict) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0]
    query = environ.get("QUERY_STRING", "")
    if "X-Amz-Credential=" in query:  # presigned URL
        return unquote(query.split("X-Amz-Credential=", 1)[1].split("&", 1)[0]).split("/", 1)[0]
    return ""


def _signing_service(environ: dict) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    parts = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    return parts[3] if len(parts) > 3 else ""


def _body(environ: dict) -> bytes:
    """The request body, read once and put back for moto (only for protocols whose parameters are in the body)."""
    if not (environ.get("HTTP_X_AMZ_TARGET") or "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "")):
        return b""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _global_context(principal: Principal) -> dict[str, tuple[str, ...]]:
    # aws:SecureTransport: SDK calls to AWS use HTTPS (the local gateway is plain HTTP)
    return {"aws:PrincipalArn": (principal.role_arn,), "aws:PrincipalAccount": (principal.role_arn.split(":")[4],),
            "aws:SecureTransport": ("true",), "aws:PrincipalType": ("AssumedRole",)}


# -- requests -> IAM actions and resources ------------------------------------------------------------------------
def describe(environ: dict, body: bytes, region: str, account: str) -> list[IamRequest]:
    """The IAM requests one AWS API request makes: action names as in the Service Authorization Reference, resource
    ARNs in the formats it lists for each resource type."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    arn = _Arns(region, account)
    if target:
        prefix, _, operation = target.partition(".")
        service = TARGETS.get(prefix, prefix.lower())
        params = json.loads(body or b"{}")
        return _json_service(service, operation, params, arn)
    if path.startswith("/2015-03-31/") or path.startswith("/2017-03-31/") or path.startswith("/2018-10-31/"):
        return _lambda(method, path, environ, arn)
    if path.startswith("/endpoints/") and method == "POST":
        name, _, kind = path[len("/endpoints/"):].partition("/")
        action = "sagemaker:InvokeEndpointAsync" if kind == "async-invocations" else "sagemaker:InvokeEndpoint"
        return [IamRequest.of(action, arn.sagemaker("endpoint", unquote(name)))]
    signing = _signing_service(environ)
    if signing == "s3":
        return _s3(method, path, environ)
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") and body:   # query protocol
        params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        service = SIGNING_NAMES.get(signing, signing)
        return _query_service(service, params.pop("Action", ""), params, arn)
    cbor = re.fullmatch(r"/service/([^/]+)/operation/([^/]+)", path)
    if cbor:  # smithy-rpc-v2-cbor: the operation is in the path (the body is not decoded here)
        return _json_service(TARGETS.get(cbor.group(1), cbor.group(1).lower()), cbor.group(2), {}, arn)
    service = SIGNING_NAMES.get(signing, signing or "unknown")
    return [IamRequest.of(f"{service}:{method}{path}", "*")]


class _Arns:
    def __init__(self, region: str, account: str):
        self.region, self.account = region, account

    def of(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def table(self, name: str, index: str | None = None) -> str:
        if name.startswith("arn:"):
            return name + (f"/index/{index}" if index else "")
        return self.of("dynamodb", f"table/{name}" + (f"/index/{index}" if index else ""))

    def stream(self, params: dict) -> str:
        if params.get("StreamARN"):
            return params["StreamARN"]
        return self.of("kinesis", f"stream/{params['StreamName']}")

    def queue(self, params: dict) -> str:
        name = params.get("QueueName") or urlparse(params["QueueUrl"]).path.rstrip("/").rsplit("/", 1)[-1]
        return self.of("sqs", name)

    def sagemaker(self, kind: str, name: str) -> str:
        return self.of("sagemaker", f"{kind}/{name.lower()}")  # SageMaker ARNs hold the lower-cased name

    def function(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        if ":" in name:  # name:qualifier or account:function:name
            parts = name.split(":")
            return self.of("lambda", "function:" + (":".join(parts[2:]) if parts[1] == "function" else name))
        return self.of("lambda", f"function:{name}")


def _json_service(service: str, operation: str, params: dict, arn: _Arns) -> list[IamRequest]:
    if service == "dynamodb":
        return _dynamodb(operation, params, arn)
    action = f"{service}:{SQS_BATCH.get(operation, operation) if service == 'sqs' else operation}"
    if service == "kinesis":
        if "ShardIterator" in params and "StreamName" not in params and "StreamARN" not in params:
            # moto's shard iterators are base64("<stream name>:<shard id>:...")
            stream = base64.b64decode(params["ShardIterator"]).decode().split(":", 1)[0]
            return [IamRequest.of(action, arn.of("kinesis", f"stream/{stream}"))]
        if operation == "ListStreams":
            return [IamRequest.of(action, "*")]
        return [IamRequest.of(action, arn.stream(params))]
    if service == "sqs":
        if operation == "ListQueues":
            return [IamRequest.of(action, "*")]
        return [IamRequest.of(action, arn.queue(params))]
    if service == "states":
        resource = params.get("stateMachineArn") or params.get("executionArn") or params.get("activityArn") or "*"
        return [IamRequest.of(action, resource)]
    if service == "cloudwatch":
        if operation == "PutMetricData":
            return [IamRequest.of(action, "*", {"cloudwatch:namespace": params.get("Namespace", "")})]
        names = params.get("AlarmNames") or ([params["AlarmName"]] if params.get("AlarmName") else [])
        if names:
            return [IamRequest.of(action, arn.of("cloudwatch", f"alarm:{n}")) for n in names]
        return [IamRequest.of(action, "*")]
    if service == "sagemaker":
        for key, kind in (("EndpointName", "endpoint"), ("EndpointConfigName", "endpoint-config"),
                          ("ModelName", "model")):
            if params.get(key):
                return [IamRequest.of(action, arn.sagemaker(kind, params[key]))]
        return [IamRequest.of(action, "*")]
    if service == "ssm" and params.get("Name"):
        return [IamRequest.of(action, arn.of("ssm", "parameter/" + params["Name"].lstrip("/")))]
    if service == "events" and params.get("Name"):
        return [IamRequest.of(action, arn.of("events", f"rule/{params['Name']}"))]
    if service == "logs" and params.get("logGroupName"):
        stream = f":log-stream:{params['logStreamName']}" if params.get("logStreamName") else ""
        return [IamRequest.of(action, arn.of("logs", f"log-group:{params['logGroupName']}{stream}"))]
    return [IamRequest.of(action, "*")]


def _dynamodb(operation: str, params: dict, arn: _Arns) -> list[IamRequest]:
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [IamRequest.of(f"dynamodb:{operation}", arn.table(table)) for table in params.get("RequestItems", {})]
    if operation in ("ListTables", "DescribeLimits", "DescribeEndpoints"):  # (transactions: not used, not modelled)
        return [IamRequest.of(f"dynamodb:{operation}", "*")]
    table = params.get("TableName") or params.get("TableArn") or params.get("ResourceArn", "*")
    return [IamRequest.of(f"dynamodb:{operation}", arn.table(table, params.get("IndexName")))]


def _query_service(service: str, operation: str, params: dict, arn: _Arns) -> list[IamRequest]:
    action = f"{service}:{operation}"
    if service == "sns":
        return [IamRequest.of(action, params.get("TopicArn") or params.get("TargetArn") or "*")]
    if service == "sqs" and (params.get("QueueUrl") or params.get("QueueName")):
        return [IamRequest.of(f"sqs:{SQS_BATCH.get(operation, operation)}", arn.queue(params))]
    if service == "cloudwatch" and operation == "PutMetricData":
        return [IamRequest.of(action, "*", {"cloudwatch:namespace": params.get("Namespace", "")})]
    return [IamRequest.of(action, "*")]


def _lambda(method: str, path: str, environ: dict, arn: _Arns) -> list[IamRequest]:
    parts = [unquote(p) for p in path.split("/") if p][1:]  # drop the API version
    qualifier = parse_qs(environ.get("QUERY_STRING", "")).get("Qualifier", [None])[0]
    if parts and parts[0] == "functions":
        if len(parts) == 1:
            return [IamRequest.of("lambda:CreateFunction" if method == "POST" else "lambda:ListFunctions", "*")]
        function = arn.function(parts[1]) + (f":{qualifier}" if qualifier else "")
        tail = parts[2] if len(parts) > 2 else ""
        action = {("POST", "invocations"): "InvokeFunction", ("POST", "invoke-async"): "InvokeAsync",
                  ("GET", ""): "GetFunction", ("GET", "configuration"): "GetFunctionConfiguration",
                  ("PUT", "configuration"): "UpdateFunctionConfiguration", ("PUT", "code"): "UpdateFunctionCode",
                  ("DELETE", ""): "DeleteFunction"}.get((method, tail), f"{method}{tail.title()}")
        return [IamRequest.of(f"lambda:{action}", function)]
    if parts and parts[0] == "event-source-mappings":
        if len(parts) == 1:
            return [IamRequest.of("lambda:CreateEventSourceMapping" if method == "POST"
                                  else "lambda:ListEventSourceMappings", "*")]
        action = {"GET": "GetEventSourceMapping", "PUT": "UpdateEventSourceMapping",
                  "DELETE": "DeleteEventSourceMapping"}[method]
        return [IamRequest.of(f"lambda:{action}", arn.of("lambda", f"event-source-mapping:{parts[1]}"))]
    return [IamRequest.of(f"lambda:{method}{'/'.join(parts)}", "*")]


def _s3(method: str, path: str, environ: dict) -> list[IamRequest]:
    bucket, _, key = unquote(path.lstrip("/")).partition("/")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if not bucket:
        return [IamRequest.of("s3:ListAllMyBuckets", "*")]
    if not key:
        if method in ("GET", "HEAD") and not (set(query) - {"list-type", "prefix", "delimiter", "max-keys",
                                                             "continuation-token", "start-after", "marker",
                                                             "encoding-type", "fetch-owner"}):
            context = {name: query[name][0] for name in ("prefix", "delimiter", "max-keys") if name in query}
            return [IamRequest.of("s3:ListBucket", f"arn:aws:s3:::{bucket}",
                                  {f"s3:{name}": value for name, value in context.items()})]
        if "versions" in query:
            return [IamRequest.of("s3:ListBucketVersions", f"arn:aws:s3:::{bucket}")]
        if "location" in query:
            return [IamRequest.of("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}")]
        if method == "POST" and "delete" in query:
            return [IamRequest.of("s3:DeleteObject", f"arn:aws:s3:::{bucket}/*")]
        sub = next(iter(query), "")
        return [IamRequest.of(f"s3:{method}Bucket{sub.title()}", f"arn:aws:s3:::{bucket}")]
    obj = f"arn:aws:s3:::{bucket}/{key}"
    if "tagging" in query:
        action = {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}[method]
        return [IamRequest.of(f"s3:{action}", obj)]
    if method in ("GET", "HEAD"):
        return [IamRequest.of("s3:GetObjectVersion" if "versionId" in query else "s3:GetObject", obj)]
    if method in ("PUT", "POST"):  # PutObject, multipart upload parts and completion, CopyObject's target
        found = [IamRequest.of("s3:PutObject", obj)]
        source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if source:
            found.append(IamRequest.of("s3:GetObject", "arn:aws:s3:::" + unquote(source).lstrip("/").split("?")[0]))
        return found
    if method == "DELETE":
        return [IamRequest.of("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", obj)]
    return [IamRequest.of(f"s3:{method}Object", obj)]


# -- evaluation ---------------------------------------------------------------------------------------------------
def evaluate(statements: list[dict], request: IamRequest, global_context: dict | None = None) -> str:
    """"Allow", "Deny" (an explicit deny) or "ImplicitDeny"."""
    context = dict(global_context or {})
    context.update(dict(request.context))
    allowed = False
    for statement in statements:
        if not _applies(statement, request.action, request.resource, context):
            continue
        if statement.get("Effect") == "Deny":
            return "Deny"
        allowed = allowed or statement.get("Effect") == "Allow"
    return "Allow" if allowed else "ImplicitDeny"


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    if "Action" in statement:
        if not any(action_matches(p, action) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_matches(p, action) for p in _as_list(statement["NotAction"])):
            return False
    if "Resource" in statement:
        if not any(resource_matches(p, resource) for p in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(resource_matches(p, resource) for p in _as_list(statement["NotResource"])):
            return False
    return conditions_hold(statement.get("Condition") or {}, context)


@lru_cache(maxsize=4096)
def _glob(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z",
                      flags | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    return bool(_glob(pattern, re.IGNORECASE).match(action))


def resource_matches(pattern: str, resource: str) -> bool:
    """ARN patterns match segment by segment; a ``*`` that ends a segment may run past colons."""
    if pattern == "*":
        return True
    if resource == "*":
        return False
    return bool(_resource_regex(pattern).match(resource))


@lru_cache(maxsize=4096)
def _resource_regex(pattern: str) -> re.Pattern:
    segments = pattern.split(":")
    out = []
    for index, segment in enumerate(segments):
        if index:
            out.append(":")
        for position, c in enumerate(segment):
            if c == "*":
                out.append(".*" if position == len(segment) - 1 else "[^:]*")
            elif c == "?":
                out.append("[^:]")
            else:
                out.append(re.escape(c))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals", "NotIpAddress", "DateNotEquals")


def conditions_hold(block: dict, context: dict) -> bool:
    """Every operator, every key of it: at least one policy value matches (negated operators: none does)."""
    for operator, keys in block.items():
        qualifier, _, base = operator.rpartition(":")
        if_exists = base.endswith("IfExists")
        base = base.removesuffix("IfExists")
        for key, wanted in keys.items():
            wanted = [str(w).lower() if isinstance(w, bool) else str(w) for w in _as_list(wanted)]
            present = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if base == "Null":
                if (present is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            if present is None:
                if if_exists or base in _NEGATED:
                    continue
                return False
            matches = [any(_compare(base, value, w) for w in wanted) for value in present]
            if base in _NEGATED:
                if qualifier == "ForAnyValue" and not any(not m for m in matches):
                    return False
                if qualifier != "ForAnyValue" and any(matches):
                    return False
            elif qualifier == "ForAllValues":
                if not all(matches):
                    return False
            elif not any(matches):
                return False
    return True


def _compare(operator: str, value: str, wanted: str) -> bool:
    positive = operator.replace("Not", "", 1) if operator in _NEGATED else operator
    if positive == "StringEquals" or positive == "ArnEquals":
        return value == wanted
    if positive == "StringEqualsIgnoreCase":
        return value.lower() == wanted.lower()
    if positive in ("StringLike", "ArnLike"):
        return bool(_glob(wanted).match(value)) if positive == "StringLike" else resource_matches(wanted, value)
    if positive == "Bool":
        return value.lower() == wanted.lower()
    if positive.startswith("Numeric"):
        a, b = float(value), float(wanted)
        return {"NumericEquals": a == b, "NumericLessThan": a < b, "NumericLessThanEquals": a <= b,
                "NumericGreaterThan": a > b, "NumericGreaterThanEquals": a >= b}[positive]
    raise AccessDenied(f"condition operator {operator} is not evaluated by the local cloud")


# -- AccessDenied, as each protocol answers it --------------------------------------------------------------------
def access_denied(environ: dict, message: str) -> Response:
    request_id = str(uuid.uuid4())
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:  # JSON protocols: 400 with __type; SQS and CloudWatch (query-compatible) also send their query code
        headers = {"x-amzn-RequestId": request_id}
        if target.split(".")[0] in ("AmazonSQS", "GraniteServiceVersion20100801"):
            headers["x-amzn-query-error"] = "AccessDenied;Sender"
        return Response(json.dumps({"__type": "AccessDeniedException", "message": message, "Message": message}),
                        status=400, content_type="application/x-amz-json-1.0", headers=headers)
    if _signing_service(environ) == "s3":
        xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>"
               f"{_xml(message)}</Message><RequestId>{request_id}</RequestId></Error>")
        return Response(xml, status=403, content_type="application/xml")
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):  # query protocol
        code = "AuthorizationError" if _signing_service(environ) == "sns" else "AccessDenied"
        xml = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{_xml(message)}</Message>"
               f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        return Response(xml, status=403, content_type="text/xml")
    return Response(json.dumps({"Message": message, "message": message, "Type": "User"}), status=403,
                    content_type="application/json",
                    headers={"X-Amzn-ErrorType": "AccessDeniedException", "x-amzn-RequestId": request_id})


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
