"""The gateway: ONE threaded WSGI server on 127.0.0.1 that looks like AWS to boto3.

Routes, in order:
- ``POST /2015-03-31/functions/{name-or-arn}/invocations``: the Lambda data plane, answered by the local Lambda
  host (errors as HTTP 200 + ``X-Amz-Function-Error: Unhandled`` + ``{errorMessage, errorType, stackTrace}``).
- ``POST /endpoints/{name}/invocations``: the SageMaker runtime stand-in.
- ``/_localcloud/...``: the control API (faults, schedules run-now, status, idle wait).
While a fault is armed, every request first passes ``faults.serve`` (localcloud/faults.py).
- everything else: moto's own WSGI app (``DomainDispatcherApplication(create_backend_app)``, as moto's
  ThreadedMotoServer builds it), with requests to non-thread-safe services serialized per service.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from . import mototools
from .errors import LocalCloudError
from .lambdahost import SYNC_PAYLOAD_LIMIT

if TYPE_CHECKING:
    from .faults import Faults
    from .iam import Iam

log = logging.getLogger("localcloud.gateway")


def _request_handler_class():
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            log.debug('%s "%s" %s', self.address_string(), self.requestline, code)

        def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("gateway: " + format, *args)

    return QuietHandler


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, default=str), status=status, headers=headers or {},
                    content_type="application/json")


def aws_error(code: str, message: str, status: int, extra: dict | None = None) -> Response:
    """A rest-json AWS error botocore understands (X-Amzn-ErrorType + JSON body)."""
    body = {"message": message, "Message": message, "Type": "User" if status < 500 else "Service"}
    body.update(extra or {})
    return Response(json.dumps(body), status=status, content_type="application/json",
                    headers={"X-Amzn-ErrorType": code, "x-amzn-RequestId": str(uuid.uuid4())})


def drain(result) -> bytes:
    """A WSGI application's response body, read whole; the iterable is closed as PEP 3333 asks."""
    try:
        return b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()


class Gateway:
    def __init__(self, lambda_host=None, sagemaker=None, control: Callable[[Request], Response] | None = None, *,
                 sagemaker_control: Callable[[Request], Response] | None = None, iam: Iam | None = None,
                 faults: Faults | None = None, other_hosts: Callable[[], list] | None = None):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.moto = DomainDispatcherApplication(create_backend_app)
        self.lambda_host = lambda_host
        self.sagemaker = sagemaker
        self.control = control
        self.sagemaker_control = sagemaker_control  # UpdateEndpoint (not in moto)
        # Lambda hosts of other clouds in this process
        self.other_hosts: Callable[[], list] = other_hosts or (lambda: [])
        self.iam = iam  # checks the calls made with a function's (or state machine's) role
        self.faults = faults  # injected failures
        self.server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- WSGI ---------------------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response):
        if self.faults is not None and self.faults.active:
            return self.faults.serve(environ, start_response, self._route)
        return self._route(environ, start_response)

    def _route(self, environ: dict, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if self.iam is not None and not path.startswith("/_localcloud/"):
            denied = self.iam.check(environ)
            if denied is not None:
                return denied(environ, start_response)
        if method == "POST" and path.endswith("/invocations"):
            if path.startswith("/2015-03-31/functions/") and self.lambda_host is not None:
                response = self._lambda_invoke(Request(environ),
                                               path[len("/2015-03-31/functions/"):-len("/invocations")])
                return response(environ, start_response)
            elif path.startswith("/endpoints/") and self.sagemaker is not None:
                name = path[len("/endpoints/"):-len("/invocations")]
                return self.sagemaker.wsgi_invoke(name, Request(environ))(environ, start_response)
        if (method == "POST" and self.sagemaker is not None and self.sagemaker_control is not None
                and environ.get("HTTP_X_AMZ_TARGET") == "SageMaker.UpdateEndpoint"):
            return self.sagemaker_control(Request(environ))(environ, start_response)
        if path.startswith("/_localcloud/") and self.control is not None:
            try:
                response = self.control(Request(environ))
            except LocalCloudError as exc:
                response = json_response({"error": str(exc)}, 400)
            except Exception as exc:  # noqa: BLE001
                log.exception("control API error")
                response = json_response({"error": f"{type(exc).__name__}: {exc}"}, 500)
            return response(environ, start_response)
        return self._moto(environ, start_response)

    def _moto(self, environ: dict, start_response):
        app = self.moto.get_application(environ)
        lock = mototools.service_lock(getattr(app, "service", ""))
        if lock is None:
            return app(environ, start_response)
        with lock:  # run the backend call and collect the body while holding the service's lock
            return [drain(app(environ, start_response))]

    def _lambda_invoke(self, request: Request, name: str) -> Response:
        host = self.lambda_host
        resolved = host.resolve_name(name)
        if resolved is None:
            for other in self.other_hosts():
                resolved = other.resolve_name(name)
                if resolved is not None:
                    host = other
                    break
            else:  # moto would answer 200 "{}" (or try Docker): answer like Lambda instead
                arn = name if name.startswith("arn:") else \
                    f"arn:aws:lambda:{mototools.REGION}:{mototools.ACCOUNT_ID}:function:{name}"
                return aws_error("ResourceNotFoundException", f"Function not found: {arn} (the local cloud runs "
                                 "the functions deployed from cdk.out)", 404)
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        payload = request.get_data()
        if len(payload) > SYNC_PAYLOAD_LIMIT:
            return aws_error("RequestEntityTooLargeException",
                             f"Request must be smaller than {SYNC_PAYLOAD_LIMIT} bytes for the InvokeFunction "
                             "operation", 413)
        if payload:
            try:
                json.loads(payload)
            except ValueError:
                return aws_error("InvalidRequestContentException", "Could not parse request body into json", 400)
        if invocation_type == "DryRun":
            return Response(b"", status=204)
        if invocation_type == "Event":
            request_id = host.invoke_async(resolved, payload or b"{}")
            return Response(b"", status=202, headers={"x-amzn-RequestId": request_id})
        try:
            result = host.invoke(resolved, payload or b"{}")
        except LocalCloudError as exc:
            return aws_error("ServiceException", str(exc), 500)
        headers = {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": result.request_id}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        return Response(result.payload, status=200, headers=headers, content_type="application/json")

    # -- server -------------------------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if port and not port_free(host, port):
            raise LocalCloudError(f"cannot start the gateway on {host}:{port}: the port is in use "
                                  "(is another local cloud running? pick another port)")
        try:
            self.server = make_server(host, port, self, threaded=True, request_handler=_request_handler_class())
        except (OSError, SystemExit) as exc:  # werkzeug exits on "address in use"
            raise LocalCloudError(f"cannot start the gateway on {host}:{port}: {_reason(exc)} "
                                  f"(is another local cloud running? pick another port)") from exc
        assert isinstance(self.server, ThreadedWSGIServer)  # threaded=True
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="localcloud-gateway")
        self._thread.start()
        return self.server.server_address[1]

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "address already in use"
    return getattr(exc, "strerror", None) or str(exc)
