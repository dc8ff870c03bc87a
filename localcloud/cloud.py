"""``LocalCloud``: the embedded local cloud, started from a synthesized CDK app (cdk.out).

    with LocalCloud(cdk_out="cdk.out", api_port=0) as cloud:
        cloud.deploy()
        cloud.api_url, cloud.endpoint_url, cloud.outputs, cloud.resources
        cloud.invoke("ApiFunction", event); cloud.run_schedule("RetrainBatchSize")
        cloud.set_model_fault(error="ThrottlingException", count=2); cloud.wait_idle(30)
        cloud.inject_fault("crash-before-state"); cloud.clear_faults()   # localcloud/faults.py

``require_sigv4=True``: the HTTP API verifies SigV4 on every AWS_IAM route (localcloud/sigv4.py) against
``api_credentials`` ({access key: secret}; default the local pair ``localcloud``/``localcloud``, also in
``cloud.api_credentials`` and the state file) and refuses unsigned or badly signed requests with 403.

moto's state lives in the process: several LocalClouds can run in one process (say, a test session) as long as
they deploy different stacks; moto is reset only when the first one starts, and state-machine Lambda tasks reach
every running cloud's functions.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from . import mototools
from .assembly import CloudAssembly, StackArtifact
from .control import ControlApi
from .deployer import Deployer
from .endpoint_update import UpdateEndpointHandler
from .errors import LocalCloudError
from .faults import Faults
from .gateway import Gateway
from .httpapi import HttpApiServer
from .iam import Iam
from .kinesis import KinesisPollers
from .lambdahost import InvokeResult, LambdaHost
from .logsetup import CloudLogging
from .metrics import EmfShipper, ServiceMetrics
from .sagemaker import SageMakerRuntime

if TYPE_CHECKING:
    from .dashboard import Dashboard
from .schedules import Scheduler
from .sigv4 import LOCAL_CREDENTIALS, SigV4Verifier

log = logging.getLogger("localcloud")

STATE_FILE = "localcloud.json"


class LocalCloud:
    _active: "list[LocalCloud]" = []
    _active_lock = threading.Lock()

    def __init__(self, cdk_out: str | os.PathLike = "cdk.out", state_dir: str | os.PathLike = ".localcloud",
                 gateway_port: int = 0, api_port: int = 8000, workers_per_function: int = 2, *,
                 stack: str | None = None, parameters: dict[str, Any] | None = None, host: str = "127.0.0.1",
                 run_schedules: bool = True, time_scale: float = 1.0, poll_interval: float = 0.1,
                 retry_base: float = 0.1, retry_cap: float = 1.0, init_timeout: float = 60.0,
                 prewarm: bool = False, region: str = mototools.REGION, require_sigv4: bool = False,
                 api_credentials: dict[str, str] | None = None, iam: str | None = None):
        self.cdk_out = Path(cdk_out)
        self.state_dir = Path(state_dir).resolve()
        self.gateway_port = gateway_port
        self.api_port = api_port
        self.workers_per_function = workers_per_function
        self.stack_name = stack
        self.parameters = parameters or {}
        self.host = host
        self.run_schedules = run_schedules
        self.time_scale = time_scale
        self.poller_options = {"poll_interval": poll_interval, "retry_base": retry_base, "retry_cap": retry_cap}
        self.init_timeout = init_timeout
        self.prewarm = prewarm
        self.region = region
        self.account_id = mototools.ACCOUNT_ID
        self.require_sigv4 = require_sigv4
        self.api_credentials = dict(LOCAL_CREDENTIALS if api_credentials is None else api_credentials)
        self.iam = Iam(iam or os.environ.get("LOCALCLOUD_IAM") or "enforce", region=region,
                       account_id=self.account_id)

        self.stack: StackArtifact | None = None
        self.gateway: Gateway | None = None
        self.http_api: HttpApiServer | None = None
        self.lambda_host: LambdaHost | None = None
        self.sagemaker: SageMakerRuntime | None = None
        self.faults: Faults | None = None
        self.pollers: KinesisPollers | None = None
        self.scheduler: Scheduler | None = None
        self.deployer: Deployer | None = None
        self.emf: EmfShipper | None = None
        self.service_metrics = ServiceMetrics()  # AWS/Lambda, AWS/SageMaker, AWS/SQS as AWS would publish them
        self.dashboard: Dashboard | None = None
        self.outputs: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}
        self.deploy_seconds = 0.0
        self._clients: dict[str, Any] = {}
        self._started = False
        self._deployed = False
        self._logging = CloudLogging(self.log_dir)

    # -- context manager ----------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalCloud":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- URLs ---------------------------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str:
        self._require_started()
        return f"http://127.0.0.1:{self.gateway.port}"

    @property
    def api_url(self) -> str:
        self._require_started()
        return f"http://127.0.0.1:{self.http_api.server.server_address[1]}"

    @property
    def dashboard_url(self) -> str:
        """The live dashboard (localcloud/dashboard.py), on the gateway's control API."""
        return f"{self.endpoint_url}/_localcloud/dashboard"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def client(self, service: str):
        """A boto3 client for the local cloud (fake credentials, the gateway as endpoint)."""
        self._require_started()
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint_url,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120))
        return self._clients[service]

    def _require_started(self) -> None:
        if not self._started:
            raise LocalCloudError("the local cloud is not started: call start() (or use `with LocalCloud(...)`)")

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> "LocalCloud":
        if self._started:
            return self
        with LocalCloud._active_lock:
            self._first_in_process = not LocalCloud._active
            LocalCloud._active.append(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.stack = CloudAssembly(self.cdk_out).stack(self.stack_name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logging.install()
        mototools.configure()
        if self._first_in_process:
            mototools.reset()
        self._session = boto3.session.Session(aws_access_key_id="localcloud", aws_secret_access_key="localcloud",
                                              region_name=self.region)
        self.sagemaker = SageMakerRuntime(s3_get=self._s3_get, work_dir=self.state_dir, region=self.region,
                                          account_id=self.account_id,
                                          on_invocation=self.service_metrics.model_invocation)
        self.gateway = Gateway(
            sagemaker=self.sagemaker, control=ControlApi(self), iam=self.iam,
            sagemaker_control=UpdateEndpointHandler(self.sagemaker, lambda: self.client("sagemaker")),
            other_hosts=lambda: [c.lambda_host for c in list(LocalCloud._active)
                                 if c is not self and c.lambda_host is not None])
        verifier = SigV4Verifier(self.api_credentials, region=self.region, account_id=self.account_id) \
            if self.require_sigv4 else None
        self.http_api = HttpApiServer(None, None, region=self.region, account_id=self.account_id, verifier=verifier)
        self.http_api.start(self.host, self.api_port)  # bind early: a busy API port is reported before deploying
        port = self.gateway.start(self.host, self.gateway_port)
        os.environ["MOTO_PORT"] = str(port)  # moto's state-machine executor calls http://localhost:$MOTO_PORT
        self._started = True
        empty_config = self.state_dir / "aws-config-empty"
        empty_config.write_text("")
        self.lambda_host = LambdaHost(endpoint_url=self.endpoint_url, log_dir=self.log_dir, region=self.region,
                                      account_id=self.account_id, workers_per_function=self.workers_per_function,
                                      init_timeout=self.init_timeout, aws_config_file=empty_config,
                                      on_result=self.service_metrics.lambda_invocation,
                                      role_credentials=lambda spec: self._role_keys(spec.role_arn, spec.name))
        mototools.role_credentials = LocalCloud._state_machine_keys
        # The Lambda host needs the gateway's port (its functions' AWS endpoint) and the gateway and the HTTP API need
        # the host: those two links are made once the gateway listens.
        self.gateway.lambda_host = self.http_api.host = self.lambda_host
        self.faults = self.gateway.faults = Faults(self.lambda_host, self.sagemaker)
        atexit.register(self.stop)
        log.info("local cloud for %s: AWS endpoint %s, HTTP API %s", self.stack.stack_name, self.endpoint_url,
                 self.api_url)

    def deploy(self) -> "LocalCloud":
        """Create the stack's resources (once per LocalCloud) and start pollers, schedules and the HTTP API."""
        started_here = not self._started
        if started_here:
            self.start()
        if self._deployed:
            return self
        try:
            self._deploy()
        except BaseException:
            if started_here:
                self.stop()
            raise
        return self

    def _deploy(self) -> None:
        for other in list(LocalCloud._active):
            if other is not self and other._deployed and other.stack.stack_name == self.stack.stack_name:
                raise LocalCloudError(f"stack {self.stack.stack_name} is already deployed by another LocalCloud in "
                                      "this process (moto's state is shared): stop that one first")
        started = time.perf_counter()
        deployer = Deployer(self.stack, session=self._session, endpoint_url=self.endpoint_url, region=self.region,
                            account_id=self.account_id, work_dir=self.state_dir, parameters=self.parameters,
                            api_url=self.api_url)
        deployer.deploy()
        self.deployer = deployer
        self._register(deployer)
        self._start_event_sources(deployer)
        self._start_metrics(deployer)
        self.outputs = dict(deployer.outputs)
        self.resources = {lid: r.ref for lid, r in deployer.resources.items() if r.status in ("created", "skipped")}
        if self.prewarm:
            self.lambda_host.prewarm()
        self._deployed = True
        self.deploy_seconds = time.perf_counter() - started
        self._write_state_file()
        self.http_api.ready = True
        log.info("deployed %s in %.1f s: %d resources created, %d skipped", self.stack.stack_name,
                 self.deploy_seconds, sum(r.status == "created" for r in deployer.resources.values()),
                 len(deployer.skipped))

    def _register(self, deployer: Deployer) -> None:
        """The deployed roles, functions, endpoints and HTTP API, to the emulators that serve them."""
        self.iam.load(deployer)
        for spec in deployer.functions.values():
            self.lambda_host.register(spec)
        for name, config_name, variants in deployer.endpoints:
            self.sagemaker.register_endpoint(name, config_name, variants)
        apis = list(deployer.http_apis.values())
        if len(apis) > 1:
            log.warning("%d HTTP APIs in the template; serving %s only", len(apis), apis[0].logical_id)
        if apis:
            self.http_api.configure(apis[0])

    def _start_event_sources(self, deployer: Deployer) -> None:
        """The Kinesis pollers of the event source mappings and the schedules of the rules."""
        clients = {name: self.client(name) for name in ("kinesis", "lambda", "sqs", "sns", "stepfunctions")}
        self.pollers = KinesisPollers(self.lambda_host, clients, self.region, role_clients=self._poller_clients,
                                      **self.poller_options)
        self.pollers.start(deployer.mappings)
        self.scheduler = Scheduler(deployer.rules, host=self.lambda_host, clients=clients, region=self.region,
                                   account_id=self.account_id, time_scale=self.time_scale,
                                   enabled=self.run_schedules)
        self.scheduler.start()

    def _start_metrics(self, deployer: Deployer) -> None:
        # CloudWatch Logs turns the functions' EMF log lines into metrics in AWS: here a thread does
        created = [r for r in deployer.resources.values() if r.status == "created"]
        queues = [r.ref for r in created if r.type == "AWS::SQS::Queue"]
        machines = [r.ref for r in created if r.type == "AWS::StepFunctions::StateMachine"]

        def sample() -> None:  # what AWS samples or counts for its services (metrics.ServiceMetrics)
            self.service_metrics.queue_depths(self.client("sqs"), queues)
            self.service_metrics.executions(machines, self.region, self.account_id)

        self.emf = EmfShipper([self.log_dir / f"{spec.logical_id}.log" for spec in deployer.functions.values()],
                              self.client("cloudwatch"), service=self.service_metrics, sample=sample)
        self.emf.start()

    def stop(self) -> None:
        """Stop threads, workers and servers. Safe to call twice."""
        if self.emf is not None:
            self.emf.stop()
            self.emf = None
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.pollers is not None:
            self.pollers.stop()
        if self.lambda_host is not None:
            self.lambda_host.close()
        if self.http_api is not None:
            self.http_api.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.scheduler = self.pollers = None
        self.dashboard = None
        self.gateway = None
        self._started = False
        self._deployed = False
        state_file = self.state_dir / STATE_FILE
        try:
            if state_file.is_file() and json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass
        self._logging.restore()
        with LocalCloud._active_lock:
            if self in LocalCloud._active:
                LocalCloud._active.remove(self)
            for other in LocalCloud._active:  # moto's state machines call the gateway of a running cloud
                if other.gateway is not None:
                    os.environ["MOTO_PORT"] = str(other.gateway.port)
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass

    # -- operations ---------------------------------------------------------------------------------------------
    def invoke_raw(self, function: str, event: Any = None) -> InvokeResult:
        self._require_deployed()
        return self.lambda_host.invoke(function, event)

    def invoke(self, function: str, event: Any = None) -> Any:
        """Invoke a function (logical id, name or ARN) synchronously; raises FunctionError on a function error."""
        return self.invoke_raw(function, event).raise_for_error()

    def run_schedule(self, rule: str) -> Any:
        """Fire a schedule now (rule logical id, name, logical-id prefix, or its target function)."""
        self._require_deployed()
        return self.scheduler.run(rule)

    def evaluate_alarm(self, alarm: str, now: float | None = None) -> dict:
        """Evaluate a CloudWatch alarm (logical id, name or name prefix) against the published metrics and record
        its state (moto never evaluates alarms; localcloud/alarms.py)."""
        from .alarms import evaluate_alarm, find_alarm

        self._require_deployed()
        cloudwatch = self.client("cloudwatch")
        return evaluate_alarm(cloudwatch, find_alarm(cloudwatch, alarm, self.resources.get(alarm, alarm)), now)

    def set_model_fault(self, error: str = "ThrottlingException", count: int = 1, endpoint: str = "*",
                        message: str | None = None) -> None:
        """Make the next ``count`` SageMaker invocations (of ``endpoint`` or of any endpoint) fail with ``error``."""
        self._require_started()
        self.sagemaker.set_fault(endpoint=endpoint, count=count, error=error, message=message)

    def clear_model_faults(self) -> None:
        self._require_started()
        self.sagemaker.clear_faults()

    def inject_fault(self, name: str, count: int = 1, **params) -> dict:
        """Arm fault ``name`` (localcloud/faults.KINDS) for the next ``count`` calls it matches."""
        self._require_started()
        return self.faults.inject(name, count, **params)

    def clear_faults(self) -> None:
        """Disarm every fault (SageMaker's too)."""
        self._require_started()
        self.faults.clear()

    def stepfunctions_in_flight(self) -> int:
        """RUNNING executions of the stack's state machines (moto's ListExecutions; works for EXPRESS)."""
        self._require_deployed()
        sfn = self.client("stepfunctions")
        total = 0
        for resource in self.deployer.resources.values():
            if resource.type == "AWS::StepFunctions::StateMachine" and resource.status == "created":
                paginator = sfn.get_paginator("list_executions")
                for page in paginator.paginate(stateMachineArn=resource.ref, statusFilter="RUNNING"):
                    total += len(page["executions"])
        return total

    def idle(self, include_stepfunctions: bool = True) -> bool:
        self._require_deployed()
        if self.lambda_host.in_flight or not self.pollers.idle():
            return False
        return not include_stepfunctions or self.stepfunctions_in_flight() == 0

    def wait_idle(self, timeout: float = 60.0, include_stepfunctions: bool = True) -> bool:
        """Wait until every shard is drained (pollers at the stream tip, nothing buffered), no invocation is in
        flight and (by default) no state machine execution is running. True when idle, False on timeout."""
        deadline = time.monotonic() + timeout
        streak = 0
        while time.monotonic() < deadline:
            if self.idle(include_stepfunctions):
                streak += 1
                if streak >= 3:
                    return True
            else:
                streak = 0
            time.sleep(0.05)
        return False

    def function_log(self, function: str) -> str:
        spec = self.lambda_host.spec(function)
        path = self.log_dir / f"{spec.logical_id}.log"
        return path.read_text() if path.exists() else ""

    def status(self) -> dict:
        data: dict[str, Any] = {"stack": self.stack.stack_name if self.stack else None, "started": self._started,
                                "deployed": self._deployed, "pid": os.getpid()}
        if self._started:
            data.update(endpoint_url=self.endpoint_url, api_url=self.api_url, dashboard_url=self.dashboard_url,
                        log_dir=str(self.log_dir), api_auth=self.api_auth(), iam=self.iam.status())
        if self._deployed:
            data.update(outputs=self.outputs, resources=self.resources, deploy_seconds=round(self.deploy_seconds, 3),
                        functions=self.lambda_host.stats(), pollers=self.pollers.stats(),
                        endpoints=self.sagemaker.status(), model_faults=self.sagemaker.faults(),
                        faults={"armed": self.faults.armed(), "hits": self.faults.history[-50:]},
                        schedules={r.logical_id: {"name": r.name, "expression": r.schedule,
                                                  "fired": self.scheduler.fired.get(r.logical_id, 0)}
                                   for r in self.scheduler.rules},
                        skipped=self.deployer.skipped)
        return data

    @property
    def deployed(self) -> bool:
        return self._deployed

    def _require_deployed(self) -> None:
        if not self._deployed:
            raise LocalCloudError("nothing is deployed: call deploy() first")

    # -- internals ----------------------------------------------------------------------------------------------
    def _role_keys(self, role_arn: str, session: str) -> tuple[str, str, str]:
        principal = self.iam.credentials(role_arn, session)
        return principal.access_key_id, principal.secret_access_key, principal.session_token

    @classmethod
    def _state_machine_keys(cls, role_arn: str) -> tuple[str, str, str] | None:
        """moto's executor runs every cloud's state machines: the keys of the cloud whose template has the role."""
        for cloud in list(cls._active):
            if role_arn in cloud.iam.policies:
                return cloud._role_keys(role_arn, "states")
        return None

    def _poller_clients(self, mapping) -> dict[str, Any]:
        """A mapping's poller reads the stream and sends on-failure records with the function's role; moto's
        GetEventSourceMapping (Lambda's own bookkeeping) stays with the local cloud's keys."""
        key, secret, token = self._role_keys(self.lambda_host.spec(mapping.function_name).role_arn,
                                             mapping.function_name)
        session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                                        region_name=self.region)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120)
        clients = {name: session.client(name, endpoint_url=self.endpoint_url, config=config)
                   for name in ("kinesis", "sqs", "sns")}
        return {**{name: self.client(name) for name in ("lambda", "stepfunctions")}, **clients}

    def _s3_get(self, bucket: str, key: str) -> bytes:
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def set_require_sigv4(self, required: bool = True) -> None:
        """Turn SigV4 verification on the HTTP API on or off while running (the state file follows)."""
        self._require_started()
        self.require_sigv4 = required
        self.http_api.verifier = SigV4Verifier(self.api_credentials, region=self.region,
                                               account_id=self.account_id) if required else None
        if self._deployed:
            self._write_state_file()

    def api_auth(self) -> dict:
        """How the HTTP API authorizes: whether SigV4 is required, the region to sign for and a local credential
        pair that passes (fake local credentials, written to the state file for the client scripts)."""
        access_key, secret = next(iter(self.api_credentials.items()), ("", ""))
        return {"require_sigv4": self.require_sigv4, "region": self.region, "service": "execute-api",
                "access_key_id": access_key, "secret_access_key": secret}

    def _write_state_file(self) -> None:
        state = {"pid": os.getpid(), "stack": self.stack.stack_name, "endpoint_url": self.endpoint_url,
                 "api_url": self.api_url, "dashboard_url": self.dashboard_url, "log_dir": str(self.log_dir),
                 "started": time.time(),
                 "api_auth": self.api_auth(),
                 # the stack's outputs, resolved from the template as CloudFormation would (Deployer.deploy): the
                 # scripts' --local mode reads the names their --stack mode gets from DescribeStacks
                 "outputs": self.outputs}
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
