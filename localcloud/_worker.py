"""A Lambda execution environment: ``python _worker.py <fd>``, started by the Lambda host (lambdahost.py).

It imports only the standard library (nothing of the parent process enters the sandbox). The host starts it with
exactly the function's environment and with stdout/stderr going to the function's log file; the worker puts the code
directory first on ``sys.path`` (the interpreter's own stdlib/site-packages after it: the "runtime"), imports the
handler once (cold start) and then serves invocations sent over the connection (a socketpair, fd in argv) until it
closes. Messages:

  parent -> worker: {"code_dir", "extra_paths", "handler"} once, then
                    (request_id, payload_bytes, deadline_epoch_ms, invoked_function_arn) or None (exit)
  worker -> parent: ("ready", None) | ("init_error", error_json) | ("ok", result_json) | ("error", error_json)
"""
from __future__ import annotations

import decimal
import json
import os
import signal
import sys
import time
import traceback


class LambdaContext:
    """The attributes and method of the context object the Python runtime passes to handlers."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self._deadline_ms = deadline_ms
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")  # a string, as in AWS
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self.tenant_id = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id},function_name={self.function_name},"
                f"invoked_function_arn={self.invoked_function_arn}])")


def _decimal_serializer(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_payload(exc: BaseException, request_id: str = "", error_type: str | None = None,
                   message: str | None = None) -> dict:
    return {"errorMessage": str(exc) if message is None else message,
            "errorType": error_type or type(exc).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__))}


def _runtime_path(path: str) -> bool:
    """True for the interpreter's own paths (stdlib, site-packages): what a Lambda runtime image provides."""
    if not path:
        return False
    real = os.path.realpath(path)
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    return any(real == p or real.startswith(p + os.sep) for p in prefixes)


def _load_handler(spec: str):
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise _InitError("Runtime.MalformedHandlerName", f"Bad handler '{spec}': not enough values to unpack")
    import importlib

    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        raise _InitError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}") from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'")
    return handler


def _max_memory_mb() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


class _InitError(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for the parent; it stops us
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    try:
        config = conn.recv()
    except (EOFError, OSError):
        return
    _enter_sandbox(config)
    init_started = time.time()
    handler = _init(conn, config["handler"])
    if handler is None:
        return
    init_ms = (time.time() - init_started) * 1000
    conn.send(("ready", None))

    first = True
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        _invoke(conn, handler, message, init_ms if first else None)
        first = False


def _enter_sandbox(config: dict) -> None:
    """The function's code directory as import root and working directory, and the runtime's root log handler."""
    code_dir = config["code_dir"]
    sys.path[:] = [code_dir, *config.get("extra_paths", [])] + [p for p in sys.path if _runtime_path(p)]
    sys.dont_write_bytecode = True  # /var/task is read-only in Lambda; leave cdk.out untouched
    os.chdir(code_dir)

    import logging  # the runtime installs a root handler that writes to the function's log

    logging.Formatter.converter = time.gmtime
    root_handler = logging.StreamHandler(sys.stdout)
    root_handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(message)s",
                                                "%Y-%m-%dT%H:%M:%S"))
    logging.getLogger().addHandler(root_handler)


def _init(conn, handler_name: str):
    """The handler, or None after sending the init error to the parent."""
    try:
        return _load_handler(handler_name)
    except _InitError as exc:
        payload = _error_payload(exc, error_type=exc.error_type)
        print(f"[ERROR] {exc.error_type}: {exc}", flush=True)
        conn.send(("init_error", json.dumps(payload).encode()))
        return None
    except BaseException as exc:  # noqa: BLE001 - the handler module raised while importing
        payload = _error_payload(exc)
        print(f"[ERROR] {type(exc).__name__}: {exc}\n{traceback.format_exc()}", flush=True)
        conn.send(("init_error", json.dumps(payload).encode()))
        return None


def _invoke(conn, handler, message: tuple, init_ms: float | None) -> None:
    """One invocation: its result or error to the parent, START/END/REPORT lines to the log (Init Duration on the
    first, ``init_ms`` given)."""
    request_id, payload, deadline_ms, invoked_arn = message
    os.environ["_X_AMZN_TRACE_ID"] = f"Root=1-{int(time.time()):08x}-{request_id.replace('-', '')[:24]};Sampled=0"
    print(f"START RequestId: {request_id} Version: $LATEST")
    started = time.perf_counter()
    context = LambdaContext(request_id, deadline_ms, invoked_arn)
    try:
        event = json.loads(payload) if payload else {}
        result = handler(event, context)
        try:
            body = json.dumps(result, default=_decimal_serializer).encode()
        except (TypeError, ValueError) as exc:
            error = _error_payload(exc, request_id, "Runtime.MarshalError", f"Unable to marshal response: {exc}")
            error["stackTrace"] = []
            conn.send(("error", json.dumps(error).encode()))
        else:
            conn.send(("ok", body))
    except Exception as exc:  # noqa: BLE001 - the handler's error is the invocation's result
        error = _error_payload(exc, request_id)
        print(f"[ERROR] {error['errorType']}: {error['errorMessage']}\n{traceback.format_exc()}", end="")
        conn.send(("error", json.dumps(error).encode()))
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends end the sandbox, as in Lambda
        error = {"errorMessage": f"RequestId: {request_id} Error: Runtime exited: {type(exc).__name__}"
                                 f" {exc}".rstrip(), "errorType": "Runtime.ExitError"}
        conn.send(("error", json.dumps(error).encode()))
        conn.close()
        os._exit(1)
    duration = (time.perf_counter() - started) * 1000
    max_memory = _max_memory_mb()
    print(f"END RequestId: {request_id}")
    init = f"\tInit Duration: {init_ms:.2f} ms" if init_ms is not None else ""
    print(f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: "
          f"{max(1, int(duration + 0.999))} ms\tMemory Size: {os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE')}"
          f" MB\tMax Memory Used: {max_memory} MB{init}")


if __name__ == "__main__":
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])))
