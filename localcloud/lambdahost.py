"""The local Lambda host: each function runs in its own pool of worker subprocesses (execution environments).

Workers are started lazily (cold start = spawn + import of the handler), reused while warm, killed on timeout and
replaced when they crash. A worker's environment is exactly the function's resolved environment from the template
plus what the Lambda runtime adds (region, credentials, function name, memory size) and ``AWS_ENDPOINT_URL`` pointing
at the gateway, so boto3 in the handler talks to the local cloud for every service.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import _worker
from .errors import FunctionError, LocalCloudError

log = logging.getLogger("localcloud.lambda")

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: Path
    environment: dict[str, str]
    timeout: float = 3.0
    memory_size: int = 128
    runtime: str = "python3.11"
    role_arn: str = ""
    package_type: str = "Zip"
    extra_paths: list[str] = field(default_factory=list)
    image_environment: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None


@dataclass
class InvokeResult:
    request_id: str
    payload: bytes
    function_error: str | None = None      # "Unhandled" when the function failed
    duration_ms: float = 0.0
    cold_start: bool = False

    @property
    def ok(self) -> bool:
        return self.function_error is None

    def json(self):
        return json.loads(self.payload) if self.payload else None

    def raise_for_error(self):
        if self.function_error:
            raise FunctionError(self.json() or {})
        return self.json()


def _error_bytes(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class _Worker:
    """One execution environment: a Python subprocess running ``_worker.py`` with the function's environment.

    The worker is started with ``subprocess`` (not multiprocessing's spawn, which re-runs the parent's ``__main__``
    script in every child) and talks to the host over a ``multiprocessing.connection.Connection`` on a socketpair.
    """

    def __init__(self, pool: "FunctionPool"):
        self.pool = pool
        spec = pool.spec
        parent_sock, child_sock = socket.socketpair()
        self.conn = Connection(parent_sock.detach())
        started = time.perf_counter()
        self.init_error: bytes | None = None
        with open(pool.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, _worker.__file__, str(child_sock.fileno())], env=pool.environment,
                cwd=str(spec.code_dir), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                pass_fds=(child_sock.fileno(),), start_new_session=True)
        child_sock.close()
        self.conn.send({"code_dir": str(spec.code_dir), "extra_paths": [str(p) for p in spec.extra_paths],
                        "handler": spec.handler})
        if not self.conn.poll(pool.init_timeout):
            self.kill()
            self.init_error = _error_bytes("Runtime.InitTimeout",
                                           f"init of {spec.name} did not finish in {pool.init_timeout:.0f} s")
            return
        try:
            kind, data = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            self.init_error = _error_bytes("Runtime.ExitError", f"RequestId: - Error: Runtime exited during init "
                                                                f"(see {pool.log_path})")
            return
        if kind != "ready":
            self.kill()
            self.init_error = data
            return
        self.init_ms = (time.perf_counter() - started) * 1000
        log.debug("%s: worker pid %s ready in %.0f ms", spec.logical_id, self.process.pid, self.init_ms)

    def invoke(self, request_id: str, payload: bytes, timeout: float) -> tuple[InvokeResult, bool]:
        """Returns (result, healthy). An unhealthy worker is discarded by the pool."""
        spec = self.pool.spec
        deadline_ms = int((time.time() + timeout) * 1000)
        started = time.perf_counter()
        try:
            self.conn.send((request_id, payload, deadline_ms, spec.arn))
            ready = self.conn.poll(timeout)
            if not ready:
                self.kill()
                self.pool.append_log(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} "
                                     f"Task timed out after {timeout:.2f} seconds\n")
                return InvokeResult(request_id, _error_bytes(
                    "Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"),
                    "Unhandled", (time.perf_counter() - started) * 1000), False
            kind, data = self.conn.recv()
        except (EOFError, OSError, BrokenPipeError, ValueError):
            try:
                code = self.process.wait(1)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            return InvokeResult(request_id, _error_bytes(
                "Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}"),
                "Unhandled", (time.perf_counter() - started) * 1000), False
        duration = (time.perf_counter() - started) * 1000
        if kind == "ok":
            return InvokeResult(request_id, data, None, duration), True
        healthy = self.process.poll() is None
        return InvokeResult(request_id, data, "Unhandled", duration), healthy

    def alive(self) -> bool:
        return self.init_error is None and self.process.poll() is None

    def stop(self, timeout: float = 1.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            self.conn.close()
        except OSError:
            pass


class FunctionPool:
    def __init__(self, spec: FunctionSpec, environment: dict[str, str], log_path: Path, size: int,
                 init_timeout: float):
        self.spec = spec
        self.environment = environment
        self.log_path = log_path
        self.size = max(1, min(size, spec.reserved_concurrency or size))
        self.init_timeout = init_timeout
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._total = 0
        self._cond = threading.Condition()
        self._closed = False
        self._log_lock = threading.Lock()
        self.invocations = 0
        self.errors = 0
        self.cold_starts = 0

    def append_log(self, text: str) -> None:
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(text)

    def _acquire(self) -> tuple[_Worker | None, bytes | None, bool]:
        with self._cond:
            while True:
                if self._closed:
                    raise LocalCloudError("the local cloud is stopping")
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker, None, False
                    self._total -= 1
                    self._all.discard(worker)
                    worker.kill()
                if self._total < self.size:
                    self._total += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker(self)
        except BaseException:
            with self._cond:
                self._total -= 1
                self._cond.notify()
            raise
        if worker.init_error is not None:
            with self._cond:
                self._total -= 1
                self._cond.notify()
            return None, worker.init_error, True
        with self._cond:
            self._all.add(worker)
        self.cold_starts += 1
        return worker, None, True

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            kept = healthy and not self._closed and worker.alive()
            if kept:
                self._idle.append(worker)
            else:
                self._total -= 1
                self._all.discard(worker)
            self._cond.notify()
        if not kept:
            worker.kill()

    def invoke(self, payload: bytes, request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        worker, init_error, cold = self._acquire()
        self.invocations += 1
        if worker is None:
            self.errors += 1
            return InvokeResult(request_id, init_error or b"", "Unhandled", 0.0, True)
        healthy = False
        try:
            result, healthy = worker.invoke(request_id, payload, self.spec.timeout)
        finally:
            self._release(worker, healthy)
        result.cold_start = cold
        if result.function_error:
            self.errors += 1
        return result

    def prewarm(self) -> None:
        worker, _error, _cold = self._acquire()
        if worker is not None:
            self._release(worker, True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = self._all - set(idle)
            self._all = set()
            self._cond.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()

    def pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in self._all]

    @property
    def warm_workers(self) -> int:
        return len(self._idle)


class LambdaHost:
    """Registry of the deployed functions and their worker pools."""

    def __init__(self, *, endpoint_url: str, log_dir: Path, region: str, account_id: str,
                 workers_per_function: int = 2, init_timeout: float = 60.0, aws_config_file: Path | None = None,
                 on_result: Callable[[str, bytes, InvokeResult], None] | None = None,
                 role_credentials: Callable[[FunctionSpec], tuple[str, str, str]] | None = None):
        self.endpoint_url = endpoint_url
        # (function name, payload, InvokeResult) after each invocation: CloudWatch metrics
        self.on_result = on_result
        self.log_dir = Path(log_dir)
        self.region = region
        self.account_id = account_id
        self.workers_per_function = workers_per_function
        self.init_timeout = init_timeout
        self.aws_config_file = aws_config_file
        self.functions: dict[str, FunctionSpec] = {}          # by physical name
        self.pools: dict[str, FunctionPool] = {}
        self._aliases: dict[str, str] = {}                    # logical id / arn -> name
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._async_threads: set[threading.Thread] = set()
        # spec -> (access key id, secret, session token) of the function's role (localcloud/iam.py); else fake keys
        self.role_credentials = role_credentials

    # -- registry -----------------------------------------------------------------------------------------------
    def register(self, spec: FunctionSpec) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.functions[spec.name] = spec
        self._aliases[spec.logical_id] = spec.name
        self._aliases[spec.arn] = spec.name
        self.pools[spec.name] = FunctionPool(spec, self.runtime_environment(spec),
                                             self.log_dir / f"{spec.logical_id}.log",
                                             self.workers_per_function, self.init_timeout)

    def runtime_environment(self, spec: FunctionSpec) -> dict[str, str]:
        key, secret, token = self.role_credentials(spec) if self.role_credentials else ("localcloud",) * 3
        env = dict(spec.image_environment)
        env.update({
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8", "TZ": ":UTC",
            "LAMBDA_TASK_ROOT": str(spec.code_dir), "LAMBDA_RUNTIME_DIR": str(Path(_worker.__file__).parent),
            "_HANDLER": spec.handler,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "POWERTOOLS_TRACE_DISABLED": "true",
        })
        if self.aws_config_file is not None:  # keep the host's ~/.aws profiles out of the sandbox
            env["AWS_CONFIG_FILE"] = str(self.aws_config_file)
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.aws_config_file)
        env.update(spec.environment)  # the function's own variables win, as in Lambda (reserved ones aside)
        for reserved in ("AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "_HANDLER"):
            env[reserved] = {"AWS_REGION": self.region, "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                             "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                             "_HANDLER": spec.handler}[reserved]
        return env

    def resolve_name(self, name_or_arn: str) -> str | None:
        """Function name from a name, logical id, ARN (with or without qualifier) or partial ARN."""
        if name_or_arn in self.functions:
            return name_or_arn
        if name_or_arn in self._aliases:
            return self._aliases[name_or_arn]
        if name_or_arn.startswith("arn:"):
            parts = name_or_arn.split(":")
            if len(parts) >= 7 and parts[5] == "function":
                return parts[6] if parts[6] in self.functions else None
        parts = name_or_arn.split(":")
        if len(parts) >= 3 and parts[1] == "function":       # 123456789012:function:name
            return parts[2] if parts[2] in self.functions else None
        if len(parts) == 2 and parts[0] in self.functions:    # name:qualifier
            return parts[0]
        return self._by_construct_id(name_or_arn)

    def _by_construct_id(self, name: str) -> str | None:
        """CDK logical ids are the construct id + an 8-hex-digit hash: ``ApiFunction`` -> ``ApiFunctionCE271BD4``."""
        exact = [s.name for s in self.functions.values()
                 if s.logical_id.startswith(name) and re.fullmatch(r"[0-9A-F]{8}", s.logical_id[len(name):])]
        if len(exact) == 1:
            return exact[0]
        prefixed = [s.name for s in self.functions.values() if s.logical_id.startswith(name)]
        return prefixed[0] if len(prefixed) == 1 else None

    def spec(self, name_or_arn: str) -> FunctionSpec:
        name = self.resolve_name(name_or_arn)
        if name is None:
            raise LocalCloudError(f"no function {name_or_arn!r} (functions: {sorted(self._logical_ids())})")
        return self.functions[name]

    def _logical_ids(self) -> list[str]:
        return [s.logical_id for s in self.functions.values()]

    # -- invocation ---------------------------------------------------------------------------------------------
    def invoke(self, name_or_arn: str, payload: Any) -> InvokeResult:
        spec = self.spec(name_or_arn)
        if payload is None:
            payload = b"{}"
        elif not isinstance(payload, (bytes, bytearray)):  # bytes are a JSON document; anything else an event
            payload = json.dumps(payload).encode()
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            result = self.pools[spec.name].invoke(payload)
            if self.on_result is not None:
                self.on_result(spec.name, payload, result)
            return result
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1

    def invoke_async(self, name_or_arn: str, payload: bytes, retries: int = 2, retry_delay: float = 0.5) -> str:
        """InvocationType=Event: queued, run in the background, retried twice on error (as Lambda does)."""
        spec = self.spec(name_or_arn)
        request_id = str(uuid.uuid4())
        with self._in_flight_lock:
            self._in_flight += 1

        def run():
            try:
                for attempt in range(retries + 1):
                    try:
                        result = self.pools[spec.name].invoke(payload, request_id)
                    except LocalCloudError:
                        return
                    if result.ok:
                        return
                    log.info("async invoke of %s failed (attempt %d): %s", spec.logical_id, attempt + 1,
                             result.payload[:300])
                    time.sleep(retry_delay)
            finally:
                with self._in_flight_lock:
                    self._in_flight -= 1
                self._async_threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, daemon=True, name=f"async:{spec.logical_id}")
        self._async_threads.add(thread)
        thread.start()
        return request_id

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def prewarm(self) -> None:
        threads = [threading.Thread(target=pool.prewarm, daemon=True) for pool in self.pools.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def worker_pids(self) -> list[tuple[FunctionSpec, int]]:
        """(function, pid) of every live worker (localcloud/faults.py finds the caller of a request by it)."""
        return [(self.functions[name], pid) for name, pool in self.pools.items() for pid in pool.pids()]

    def stats(self) -> dict:
        return {spec.logical_id: {"name": name, "invocations": self.pools[name].invocations,
                                  "errors": self.pools[name].errors, "cold_starts": self.pools[name].cold_starts,
                                  "warm_workers": self.pools[name].warm_workers}
                for name, spec in self.functions.items()}

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
