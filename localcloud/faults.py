"""Fault injection (issue 12): the AWS calls the functions make fail the way AWS fails, on demand.

    python -m localcloud fault NAME [--count N] [--table T] [--function F] [--key-prefix P] [--seconds S]
    python -m localcloud fault --help            # the names below
    cloud.inject_fault("dynamodb-throttle", count=3, table="FeaturesTable"); cloud.clear_faults()
    control API: POST /_localcloud/faults {"name", "count", ...}; GET (armed faults and hits); DELETE

Every request to the gateway passes ``Faults.serve`` while a fault is armed. A fault matches a call by service
(the SigV4 credential scope) and operation (X-Amz-Target, the S3 method, InvokeEndpoint), and optionally by table
(substring of a table name in the request), item key prefix (``Key.pk``), conditional writes only, S3 key prefix,
and the calling function (the Lambda worker that owns the client's TCP connection, found with psutil). It hits the
next ``count`` matching calls, then disarms. Each hit is recorded (``hits``), so a test can tell that it fired.
"""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil
from werkzeug.wrappers import Response

from .gateway import drain

log = logging.getLogger("localcloud.faults")

FEATURES = "FeaturesTable"


@dataclass(frozen=True)
class Kind:
    summary: str
    service: str
    operations: tuple[str, ...] = ()          # empty: every operation of the service
    action: str = "error"                     # see Faults._apply
    error: str = ""
    status: int = 400
    defaults: dict = field(default_factory=dict)


KINDS: dict[str, Kind] = {
    "sagemaker-error": Kind("the next InvokeEndpoint calls fail with --error (ThrottlingException, ModelError, "
                            "ServiceUnavailable, ModelNotReadyException, InternalFailure, ValidationError)",
                            "sagemaker", ("InvokeEndpoint",), "sagemaker"),
    "sagemaker-throttle": Kind("InvokeEndpoint answers ThrottlingException; a --count above the state machine's 2 "
                               "attempts per batch outlasts its retries (the batch is quarantined)",
                               "sagemaker", ("InvokeEndpoint",), "sagemaker", "ThrottlingException"),
    "sagemaker-timeout": Kind("InvokeEndpoint is held --seconds (default 66: past the 65 s read timeout of "
                              "pipeline/model_client.py), then the connection is closed unanswered",
                              "sagemaker", ("InvokeEndpoint",), "drop", defaults={"seconds": 66.0}),
    "dynamodb-throttle": Kind("DynamoDB answers ProvisionedThroughputExceededException (botocore retries it; a "
                              "--count above its 5 attempts fails the call)", "dynamodb",
                              error="ProvisionedThroughputExceededException"),
    "dynamodb-unprocessed": Kind("BatchWriteItem applies the first half of its items and returns the rest in "
                                 "UnprocessedItems", "dynamodb", ("BatchWriteItem",), "unprocessed"),
    "counters-conflict": Kind("ConditionalCheckFailedException on the stream counters' conditional UpdateItem "
                              "(key pk stream#...)", "dynamodb", ("UpdateItem",),
                              error="ConditionalCheckFailedException",
                              defaults={"key_prefix": "stream#", "conditional": True}),
    "kinesis-partial-put": Kind("PutRecords writes the first half of its records, then the whole call fails with "
                                "InternalFailure (500)", "kinesis", ("PutRecords",), "partial-error",
                                "InternalFailure", 500),
    "crash-before-state": Kind("the Lambda worker that calls BatchWriteItem on the features table is killed before "
                               "the write: a crash between the journal/counters and the state writes", "dynamodb",
                               ("BatchWriteItem",), "crash", defaults={"table": FEATURES}),
    "crash-in-batch-write": Kind("half of the items of that BatchWriteItem are applied, then the worker is killed",
                                 "dynamodb", ("BatchWriteItem",), "partial-crash", defaults={"table": FEATURES}),
    "stream-timeout": Kind("that BatchWriteItem is held until the calling invocation has timed out (its function's "
                           "Timeout), then applied late, as a request already sent would be", "dynamodb",
                           ("BatchWriteItem",), "late", defaults={"table": FEATURES}),
    "s3-error": Kind("S3 answers InternalError (500) (botocore retries it; a --count above its 5 attempts fails the "
                     "call); --key-prefix journal/ hits the batch journals, the input of large batches",
                     "s3", error="InternalError", status=500),
}

PARAMS = ("table", "function", "key_prefix", "operation", "conditional", "seconds", "error")


@dataclass
class Fault:
    name: str
    kind: Kind
    remaining: int
    params: dict[str, Any]
    hits: int = 0

    def describe(self) -> dict:
        return {"name": self.name, "remaining": self.remaining, "hits": self.hits, **self.params}


@dataclass
class Call:
    """What a fault matches on, parsed from the request once."""
    service: str
    operation: str
    body: dict | None
    path: str

    @property
    def tables(self) -> list[str]:
        if not self.body:
            return []
        return [self.body["TableName"]] if "TableName" in self.body else list(self.body.get("RequestItems", {}))


def parse_call(environ: dict) -> Call:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    service = scope[3] if len(scope) > 3 else ""
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    body = None
    if target:  # the JSON protocols (DynamoDB, Kinesis): keep the body for the next reader
        data = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(data)
        try:
            body = json.loads(data or b"{}")
        except ValueError:
            body = None
        operation = target.rsplit(".", 1)[-1]
    elif path.startswith("/endpoints/") and path.endswith("/invocations"):
        service, operation = "sagemaker", "InvokeEndpoint"
    elif service == "s3":
        has_key = path.strip("/").count("/") >= 1 or not environ.get("HTTP_HOST", "").startswith(("127.", "local"))
        operation = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject",
                     "DELETE": "DeleteObject"}.get(method, method) if has_key else f"{method}Bucket"
    else:
        operation = ""
    return Call(service, operation, body, path)


class Faults:
    def __init__(self, lambda_host=None, sagemaker=None):
        self.lambda_host = lambda_host
        self.sagemaker = sagemaker
        self._armed: list[Fault] = []
        self._lock = threading.Lock()
        self.history: list[dict] = []      # one entry per hit

    # -- arming -------------------------------------------------------------------------------------------------
    def inject(self, name: str, count: int = 1, **params: Any) -> dict:
        kind = KINDS.get(name)
        if kind is None:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(KINDS)})")
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise ValueError(f"unknown fault parameter(s) {sorted(unknown)} (known: {', '.join(PARAMS)})")
        params = {**kind.defaults, **{k: v for k, v in params.items() if v is not None}}
        if kind.action == "sagemaker":  # the stand-in's own fault list (localcloud/sagemaker.py)
            self.sagemaker.set_fault(endpoint=params.get("endpoint", "*"), count=count,
                                     error=params.get("error") or kind.error or "ThrottlingException")
            return {"name": name, "remaining": count, **params}
        fault = Fault(name, kind, int(count), params)
        with self._lock:
            self._armed.append(fault)
        log.info("fault armed: %s", fault.describe())
        return fault.describe()

    def clear(self) -> None:
        with self._lock:
            self._armed = []
        if self.sagemaker is not None:
            self.sagemaker.clear_faults()

    def armed(self) -> list[dict]:
        with self._lock:
            mine = [f.describe() for f in self._armed]
        return mine + [{"name": "sagemaker-error", **f} for f in (self.sagemaker.faults() if self.sagemaker else [])]

    def hits(self, name: str | None = None) -> int:
        return sum(1 for h in self.history if name is None or h["name"] == name)

    @property
    def active(self) -> bool:
        return bool(self._armed)

    # -- the gateway hook ---------------------------------------------------------------------------------------
    def serve(self, environ: dict, start_response, route: Callable) -> Any:
        call = parse_call(environ)
        fault, caller = self._take(call, environ)
        if fault is None:
            return route(environ, start_response)
        self.history.append({"name": fault.name, "service": call.service, "operation": call.operation,
                             "tables": call.tables, "function": caller.logical_id if caller else None,
                             "at": time.time()})
        log.info("fault %s hits %s %s %s (caller %s)", fault.name, call.service, call.operation, call.tables,
                 caller.logical_id if caller else "-")
        return self._apply(fault, call, environ, route)(environ, start_response)

    def _take(self, call: Call, environ: dict):
        """The first armed fault this call matches (its count taken), and the calling function's spec."""
        with self._lock:
            candidates = [f for f in self._armed if self._matches(f, call)]
        for fault in candidates:
            caller = None
            if fault.params.get("function") or fault.kind.action in ("crash", "partial-crash", "late"):
                caller = self.caller(environ)
                if caller is None or not caller[0].logical_id.startswith(fault.params.get("function") or ""):
                    continue
            with self._lock:
                if fault.remaining <= 0:
                    continue
                fault.remaining -= 1
                fault.hits += 1
                if fault.remaining == 0 and fault in self._armed:
                    self._armed.remove(fault)
            if caller is not None:
                environ["localcloud.fault.caller"] = caller
            return fault, caller[0] if caller else None
        return None, None

    @staticmethod
    def _matches(fault: Fault, call: Call) -> bool:
        p, kind = fault.params, fault.kind
        if call.service != kind.service:
            return False
        operations = (p["operation"],) if p.get("operation") else kind.operations
        if operations and call.operation not in operations:
            return False
        if p.get("table") and not any(p["table"] in t for t in call.tables):
            return False
        if p.get("conditional") and not (call.body or {}).get("ConditionExpression"):
            return False
        if p.get("key_prefix"):
            if call.service == "s3":
                if f"/{p['key_prefix']}" not in call.path:
                    return False
            elif not str((call.body or {}).get("Key", {}).get("pk", {}).get("S", "")).startswith(p["key_prefix"]):
                return False
        return True

    def caller(self, environ: dict):
        """(FunctionSpec, pid) of the Lambda worker whose connection made this request, or None."""
        port = int(environ.get("REMOTE_PORT") or 0)
        if self.lambda_host is None or not port:
            return None
        for spec, pid in self.lambda_host.worker_pids():
            try:
                if any(c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections("tcp")):
                    return spec, pid
            except psutil.Error:
                continue
        return None

    # -- actions ------------------------------------------------------------------------------------------------
    def _apply(self, fault: Fault, call: Call, environ: dict, route: Callable) -> Callable:
        kind, action = fault.kind, fault.kind.action
        caller: Any = environ.get("localcloud.fault.caller")  # (FunctionSpec, pid) of the Lambda worker calling
        body = call.body or {}  # the batch actions are on JSON-protocol calls, which have a body
        if action == "error":
            return error_response(call.service, kind.error, kind.status, f"injected fault {fault.name}")
        if action == "drop":
            time.sleep(float(fault.params["seconds"]))
            return _drop
        if action == "unprocessed":
            applied, rest = _split_batch_write(body)
            status, headers, data = forward(route, environ, applied) if applied["RequestItems"] else \
                (200, [("Content-Type", "application/x-amz-json-1.0")], b"{}")
            answer = json.loads(data or b"{}")
            answer["UnprocessedItems"] = {**answer.get("UnprocessedItems", {}), **rest["RequestItems"]}
            return Response(json.dumps(answer), status=status, headers=_plain(headers))
        if action == "partial-error":
            records = body["Records"]
            forward(route, environ, {**body, "Records": records[:len(records) // 2]})
            return error_response(call.service, kind.error, kind.status, f"injected fault {fault.name}")
        if action == "crash":
            _kill(caller[1])
            return _drop
        if action == "partial-crash":
            applied, _rest = _split_batch_write(body)
            if applied["RequestItems"]:
                forward(route, environ, applied)
            _kill(caller[1])
            return _drop
        if action == "late":
            spec, pid = caller
            deadline = time.monotonic() + float(fault.params.get("seconds") or spec.timeout + 10)
            while time.monotonic() < deadline and psutil.pid_exists(pid) and _running(pid):
                time.sleep(0.1)
            status, headers, data = forward(route, environ, call.body)
            return Response(data, status=status, headers=_plain(headers))
        raise ValueError(f"fault {fault.name}: unknown action {action!r}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _drop(environ: dict, start_response):
    """Close the client's connection without an answer (what a client sees when a server dies mid-request)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            import socket
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    start_response("500 Connection Dropped", [("Content-Length", "0")])
    return [b""]


def _plain(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")]


def _split_batch_write(body: dict) -> tuple[dict, dict]:
    """A BatchWriteItem request cut in two: the first half of each table's requests, and the rest."""
    applied, rest = {}, {}
    for table, requests in body.get("RequestItems", {}).items():
        half = len(requests) // 2
        if half:
            applied[table] = requests[:half]
        rest[table] = requests[half:]
    return {**body, "RequestItems": applied}, {**body, "RequestItems": rest}


def forward(route: Callable, environ: dict, body: dict | None) -> tuple[int, list, bytes]:
    """Run the request (with ``body`` as its JSON body) through the gateway's own routing; (status, headers, body)."""
    env = dict(environ)
    if body is not None:
        data = json.dumps(body).encode()
        env["wsgi.input"], env["CONTENT_LENGTH"] = io.BytesIO(data), str(len(data))
    captured: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = int(status.split()[0]), headers
        return lambda chunk: None

    data = drain(route(env, start_response))
    return captured["status"], captured["headers"], data


def error_response(service: str, code: str, status: int, message: str) -> Response:
    """An AWS error in the service's protocol: JSON (DynamoDB, Kinesis, SageMaker runtime) or S3's XML."""
    request_id = str(uuid.uuid4())
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{request_id}</RequestId></Error>")
        return Response(body, status=status, content_type="application/xml", headers={"x-amz-request-id": request_id})
    return Response(json.dumps({"__type": code, "message": message}), status=status,
                    content_type="application/x-amz-json-1.0",
                    headers={"x-amzn-ErrorType": code, "x-amzn-RequestId": request_id})


def catalogue() -> str:
    """The fault names and what they do (``python -m localcloud fault --help``)."""
    width = max(map(len, KINDS))
    return "\n".join(f"  {name:<{width}}  {kind.summary}" for name, kind in KINDS.items())
