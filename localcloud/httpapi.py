"""API Gateway HTTP API, served locally from the template's routes (moto has no execute-api data plane).

Routes come from ``AWS::ApiGatewayV2::Route`` RouteKeys (``POST /events``, ``GET /users/{user_id}/median``, greedy
``{proxy+}``, ``ANY``, ``$default``) and their ``AWS::ApiGatewayV2::Integration`` (Lambda proxy). Route selection
follows API Gateway: the most specific path wins (literal segments before variables before greedy), a method
match before ``ANY``, ``$default`` last. Requests become payload format 2.0 events; the 2.0 response rules turn the
result into the HTTP response. Percent-encoding: API Gateway "decodes URL-encoded request parameters before passing
them to your backend integration" (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-
routes.html); the path is decoded once, before routing, so ``%2F`` splits segments, and ``rawPath``,
``requestContext.http.path`` and ``pathParameters`` all carry the decoded text (``rawQueryString`` stays encoded).
Unknown route -> 404 ``{"message":"Not Found"}``; a function error -> 500
``{"message":"Internal Server Error"}``; a body over 10 MB -> 413 ``{"message":"Request Entity Too Large"}``.
Until ``LocalCloud.deploy`` is done, every request (``/health`` too) -> 503 ``{"error": "deploying", "message"}``.

IAM authorization: with a ``SigV4Verifier`` (``LocalCloud(require_sigv4=True)``, ``python -m localcloud up
--require-sigv4``) every request to a route whose AuthorizationType is ``AWS_IAM`` must carry a valid SigV4
signature for service ``execute-api`` (localcloud/sigv4.py recomputes it with botocore), else 403
``{"message":"Forbidden"}`` with the cause in ``x-amzn-ErrorType`` (MissingAuthenticationTokenException,
IncompleteSignatureException, InvalidSignatureException, AccessDeniedException) and in ``x-localcloud-auth-error``
(the AWS wording of the message; the canonical request the server computed goes to localcloud.log). The route is
chosen first, so an unmatched request is 404 signed or not, as in AWS. A verified request's event carries
``requestContext.authorizer.iam``. Without a verifier (the default) requests are accepted unsigned and the event has
no ``authorizer`` block.

Not enforced locally: IAM policies (``execute-api:Invoke``), JWT and Lambda authorizers, CORS preflight
configuration, throttling, custom domains, payload format 1.0.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .errors import LocalCloudError
from .sigv4 import SigV4Verifier
from .specs import HttpApiInfo, IntegrationInfo

log = logging.getLogger("localcloud.httpapi")

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
              "application/x-www-form-urlencoded")
REQUEST_LIMIT = 10 * 1024 * 1024


@dataclass
class Route:
    route_key: str
    method: str                 # GET ... or ANY; "" for $default
    segments: list[str]
    integration: IntegrationInfo | None
    regex: re.Pattern | None
    params: list[str]
    greedy: bool
    authorization_type: str = "NONE"

    @classmethod
    def parse(cls, route_key: str, integration: IntegrationInfo | None, authorization_type: str = "NONE") -> "Route":
        if route_key == "$default":
            return cls(route_key, "", [], integration, None, [], True, authorization_type)
        method, _, path = route_key.partition(" ")
        segments = [s for s in path.split("/") if s]
        pattern, params, greedy = "", [], False
        for segment in segments:
            match = re.fullmatch(r"\{([^}+]+)(\+?)\}", segment)
            if match and match.group(2):
                params.append(match.group(1))
                pattern += r"/(?P<p%d>.+)" % (len(params) - 1)
                greedy = True
            elif match:
                params.append(match.group(1))
                pattern += r"/(?P<p%d>[^/]+)" % (len(params) - 1)
            else:
                pattern += "/" + re.escape(segment)
        return cls(route_key, method.upper(), segments, integration, re.compile("^" + (pattern or "/") + "/?$"),
                   params, greedy, authorization_type)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.regex is None:
            return {}
        if self.method not in ("ANY", method):
            return None
        found = self.regex.match(path)
        if not found:
            return None
        # ``path`` is already decoded (as API Gateway decodes it before routing): decoding the values again would
        # turn a literal "%41" into "A"
        return {name: found.group(f"p{i}") for i, name in enumerate(self.params)}

    def specificity(self) -> tuple:
        if self.regex is None:
            return (-1,)
        literal = sum(1 for s in self.segments if not s.startswith("{"))
        return (0 if self.greedy else 1, literal, len(self.segments), 1 if self.method != "ANY" else 0)


class HttpApiServer:
    def __init__(self, api: HttpApiInfo | None, host_, *, region: str, account_id: str,
                 verifier: SigV4Verifier | None = None):
        self.host = host_
        self.region = region
        self.account_id = account_id
        self.verifier = verifier   # None: IAM routes accept unsigned requests
        self.auth_failures = 0
        self.api: HttpApiInfo | None = None
        self.routes: list[Route] = []
        # False while the stack deploys (LocalCloud.deploy sets it at the end): every request is answered 503
        self.ready = api is not None
        if api is not None:
            self.configure(api)
        self.server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    def configure(self, api: HttpApiInfo) -> None:
        """Serve ``api``'s routes (until then every request is answered 404)."""
        self.routes = sorted((Route.parse(r.route_key, api.integrations.get(r.integration_id or ""),
                                          r.authorization_type or "NONE")
                              for r in api.routes), key=lambda r: r.specificity(), reverse=True)
        self.api = api

    # -- routing ------------------------------------------------------------------------------------------------
    def select(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None, {}

    # -- WSGI ---------------------------------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response):
        request = Request(environ)
        self.requests += 1
        response = self.handle(request)
        response.headers["apigw-requestid"] = environ.get("localcloud.request_id", "")
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        path = request.path
        if not self.ready:
            return _not_ready()
        if self.api is None:
            return _message(404, "Not Found")
        if self.api.stage and self.api.stage != "$default":
            prefix = "/" + self.api.stage
            if not (path == prefix or path.startswith(prefix + "/")):
                return _message(404, "Not Found")
            path = path[len(prefix):] or "/"
        route, params = self.select(request.method, path)
        if route is None or route.integration is None:
            return _message(404, "Not Found")
        if request.content_length and request.content_length > REQUEST_LIMIT:
            return _message(413, "Request Entity Too Large")
        identity = None
        if self.verifier is not None and route.authorization_type.upper() == "AWS_IAM":
            verdict = self.verify(request)
            if not verdict.ok:
                self.auth_failures += 1
                log.info("HTTP API %s %s: 403 %s: %s%s", request.method, request.path, verdict.error_type,
                         verdict.message, f"\n{verdict.detail}" if verdict.detail else "")
                response = _message(403, "Forbidden")
                response.headers["x-amzn-ErrorType"] = verdict.error_type
                response.headers["x-localcloud-auth-error"] = verdict.message.encode("ascii", "replace").decode()
                return response
            identity = verdict.identity
        event = self.event(request, route, params, path)
        if identity is not None:
            event["requestContext"]["authorizer"] = {"iam": identity}
        request.environ["localcloud.request_id"] = event["requestContext"]["requestId"]
        try:
            result = self.host.invoke(route.integration.uri, event)
        except LocalCloudError as exc:
            log.warning("HTTP API: %s", exc)
            return _message(500, "Internal Server Error")
        if result.function_error:
            log.info("HTTP API %s: function error %s", route.route_key, result.payload[:300])
            return _message(500, "Internal Server Error")
        try:
            return self.response(result.json())
        except (ValueError, TypeError) as exc:
            log.info("HTTP API %s: bad function response: %s", route.route_key, exc)
            return _message(500, "Internal Server Error")

    def verify(self, request: Request):
        """Check the request's SigV4 signature against the request exactly as it arrived (raw target, Host)."""
        raw_target = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.full_path
        try:
            raw_target = raw_target.encode("latin-1").decode("utf-8")  # undo WSGI's latin-1 transport encoding
        except UnicodeError:
            pass
        host = request.headers.get("Host", "")
        url = f"{request.scheme}://{host}{raw_target}"
        return self.verifier.verify(request.method, url, request.headers.items(), request.get_data())

    def event(self, request: Request, route: Route, params: dict[str, str], path: str) -> dict:
        now = time.time()
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            if key == "cookie":
                continue
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for name, values in request.args.lists():
            query[name] = ",".join(values)
        raw_cookies = request.headers.get("Cookie")
        body_bytes = request.get_data()
        content_type = request.headers.get("Content-Type", "")
        is_text = not body_bytes or any(content_type.lower().startswith(t) or t in content_type.lower()
                                        for t in TEXT_TYPES) or content_type.lower().endswith("+json")
        if is_text:
            try:
                body: str | None = body_bytes.decode("utf-8")
            except UnicodeDecodeError:
                is_text = False
        if not is_text:
            body = base64.b64encode(body_bytes).decode()
        domain = request.host or f"{self.api.api_id}.execute-api.{self.region}.amazonaws.com"
        request_id = base64.b64encode(uuid.uuid4().bytes[:10]).decode()[:14] + "="
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string.decode("latin-1"),
            "headers": headers,
            "requestContext": {
                "accountId": self.account_id, "apiId": self.api.api_id, "domainName": domain,
                "domainPrefix": domain.split(".")[0],
                "http": {"method": request.method, "path": request.path, "protocol": request.environ.get(
                    "SERVER_PROTOCOL", "HTTP/1.1"), "sourceIp": request.remote_addr or "127.0.0.1",
                    "userAgent": request.headers.get("User-Agent", "")},
                "requestId": request_id, "routeKey": route.route_key, "stage": self.api.stage,
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000)},
            "isBase64Encoded": not is_text,
        }
        if raw_cookies:
            event["cookies"] = [c.strip() for c in raw_cookies.split(";") if c.strip()]
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if body_bytes:
            event["body"] = body
        return event

    @staticmethod
    def response(result: Any) -> Response:
        """Payload format 2.0 response rules."""
        if isinstance(result, dict) and "statusCode" in result:
            status = int(result["statusCode"])
            body = result.get("body")
            data = b""
            if body is not None:
                text = body if isinstance(body, str) else json.dumps(body)
                data = base64.b64decode(text) if result.get("isBase64Encoded") else text.encode()
            response = Response(data, status=status)
            response.headers.pop("Content-Type", None)
            for name, value in (result.get("headers") or {}).items():
                response.headers[name] = str(value)
            for name, values in (result.get("multiValueHeaders") or {}).items():
                response.headers.remove(name)
                for value in values:
                    response.headers.add(name, str(value))
            for cookie in result.get("cookies") or []:
                response.headers.add("Set-Cookie", cookie)
            if "content-type" not in {k.lower() for k in response.headers.keys()} and data:
                response.headers["Content-Type"] = "application/json"
            return response
        # no statusCode: 200, application/json, the body is the result (a string is sent as it is)
        text = result if isinstance(result, str) else json.dumps(result)
        return Response(text, status=200, content_type="application/json")

    # -- server -------------------------------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 8000) -> int:
        class Handler(WSGIRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_request(self, code: Any = "-", size: Any = "-") -> None:
                log.debug('%s "%s" %s', self.address_string(), self.requestline, code)

        from .gateway import port_free

        if port and not port_free(host, port):
            raise LocalCloudError(f"cannot serve the HTTP API on {host}:{port}: the port is in use "
                                  f"(pass api_port=0 or --api-port to pick another)")
        try:
            self.server = make_server(host, port, self, threaded=True, request_handler=Handler)
        except (OSError, SystemExit) as exc:  # werkzeug exits on "address in use"
            raise LocalCloudError(f"cannot serve the HTTP API on {host}:{port}: {_reason(exc)} "
                                  f"(port {port} is in use? pass api_port=0 or --api-port)") from exc
        assert isinstance(self.server, ThreadedWSGIServer)  # threaded=True
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="localcloud-httpapi")
        self._thread.start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self._thread is not None:
            self._thread.join(5)


def _message(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status=status, content_type="application/json")


def _not_ready() -> Response:
    """Before the deploy is done: 503 on every route, /health included, in the API's error shape (a local-cloud
    answer; API Gateway has no such state)."""
    body = {"error": "deploying", "message": "the local cloud is still deploying the stack; retry when `make up` "
                                             "prints 'local cloud up'"}
    return Response(json.dumps(body), status=503, content_type="application/json", headers={"Retry-After": "5"})


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "address already in use"
    return getattr(exc, "strerror", None) or str(exc)
