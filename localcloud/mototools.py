"""moto, in process: configuration, reset, and the few patches the local cloud needs.

Why patches (each one is small, local to this process, and keeps moto's behaviour):
- Kinesis: ``Shard.put_record`` finds the last sequence number with ``list(keys)[-1]`` (O(records stored)) and
  ``Shard.get_records`` scans the shard from its first record on every call. Both become O(1)/O(batch) here, with
  identical results (sequence numbers in a moto shard are consecutive integers; otherwise the original runs).
- moto's backends are not thread-safe (a threaded server can lose DynamoDB ``ADD`` updates or give two Kinesis
  records one sequence number). The gateway serializes requests per service for the services in
  ``SERIALIZED_SERVICES`` with ``service_lock``.
- Step Functions (executing backend): StartExecution without a name names the execution "None", so a second
  unnamed execution of a state machine fails with ExecutionAlreadyExists. Unnamed executions get a UUID, as in AWS.
- Step Functions: the executor builds a new boto3 client for every Lambda or SQS task (``boto_client_for``);
  client creation was 13 % of the local cloud's CPU under load. Clients are thread-safe: they are cached per
  (region, service, endpoint).
- moto's Lambda would invoke functions itself (through Docker) when a record is put on a stream with an event
  source mapping; ``detach_kinesis_mapping`` removes that hook (the local poller delivers records instead).
"""
from __future__ import annotations

import logging
import threading
import uuid

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
SERIALIZED_SERVICES = ("dynamodb", "kinesis", "dynamodbstreams")

_service_locks: dict[str, threading.RLock] = {name: threading.RLock() for name in SERIALIZED_SERVICES}
_patched = False


def service_lock(service: str) -> threading.RLock | None:
    return _service_locks.get(service)


def configure() -> None:
    """Turn on state-machine execution, keep moto's Lambda away from Docker, apply the patches."""
    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    default_user_config["lambda"] = {"use_docker": False}
    _apply_patches()


def reset() -> None:
    """A fresh, empty account (every moto backend reset)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def quiet_loggers(handler: logging.Handler | None) -> None:
    """moto and werkzeug log to the local cloud's log file instead of the terminal."""
    for name in ("moto", "werkzeug"):
        logger = logging.getLogger(name)
        logger.propagate = False
        for existing in list(logger.handlers):
            if getattr(existing, "_localcloud", False):
                logger.removeHandler(existing)
        if handler is not None:
            logger.addHandler(handler)
        else:
            logger.addHandler(logging.NullHandler())


def _apply_patches() -> None:
    global _patched
    if _patched:
        return
    from moto.kinesis.models import Shard

    original_get_records = Shard.get_records

    def get_max_sequence_number(self) -> int:
        return next(reversed(self.records)) if self.records else 0

    def get_min_sequence_number(self) -> int:
        return next(iter(self.records)) if self.records else 0

    def get_records(self, last_sequence_id, limit):
        records = self.records
        if not records:
            return [], int(last_sequence_id), 0
        first, last = next(iter(records)), next(reversed(records))
        if last - first + 1 != len(records):
            return original_get_records(self, last_sequence_id, limit)
        start = max(int(last_sequence_id) + 1, first)
        end = last if not limit else min(last, start + int(limit) - 1)
        if start > end:
            return [], int(last_sequence_id), 0
        results = [records[n] for n in range(start, end + 1)]
        millis_behind = int((records[last].created_at - results[-1].created_at) * 1000)
        return results, results[-1].sequence_number, millis_behind

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start_execution = StepFunctionsParserBackend.start_execution

    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
        return original_start_execution(self, state_machine_arn, name or str(uuid.uuid4()), execution_input,
                                        trace_header)

    StepFunctionsParserBackend.start_execution = start_execution
    _cache_stepfunctions_clients()
    Shard.get_max_sequence_number = get_max_sequence_number
    Shard.get_min_sequence_number = get_min_sequence_number
    Shard.get_records = get_records
    _patched = True


def _cache_stepfunctions_clients() -> None:
    import importlib

    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    cache: dict[tuple, object] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials=None):
        key = (region, service, botocore_stubber.enabled, moto_server_port())  # the port is read on every call
        with lock:
            if key not in cache:
                cache[key] = original(region, service, state_credentials)
            return cache[key]

    boto_client.boto_client_for = boto_client_for
    for module in ("state_task.lambda_eval_utils", "state_task.service.state_task_service_sqs"):
        importlib.import_module(f"moto.stepfunctions.parser.asl.component.state.exec.{module}") \
            .boto_client_for = boto_client_for


def kinesis_backend():
    from moto.kinesis.models import kinesis_backends

    return kinesis_backends[ACCOUNT_ID][REGION]


def detach_kinesis_mapping(stream_arn: str) -> None:
    """Stop moto's Lambda from trying to deliver stream records itself (it would need Docker)."""
    with _service_locks["kinesis"]:
        for stream in kinesis_backend().streams.values():
            if stream.arn == stream_arn:
                stream.lambda_event_source_mappings.clear()


def shard_tips(stream_arn: str) -> dict[str, int]:
    """Last sequence number of every shard of a stream (read in process, under the Kinesis lock)."""
    with _service_locks["kinesis"]:
        for stream in kinesis_backend().streams.values():
            if stream.arn == stream_arn:
                return {shard.shard_id: shard.get_max_sequence_number() for shard in stream.shards.values()}
    return {}


def set_endpoint_config(endpoint_name: str, config_name: str, production_variants: list[dict]) -> str:
    """Record an UpdateEndpoint in moto's SageMaker control plane (moto 5.2.5 has no UpdateEndpoint): DescribeEndpoint
    then shows the new EndpointConfigName and variants. Returns the endpoint ARN."""
    from moto.core.utils import utcnow
    from moto.sagemaker.models import sagemaker_backends

    endpoint = sagemaker_backends[ACCOUNT_ID][REGION].endpoints[endpoint_name]
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(production_variants)
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = utcnow()
    return endpoint.arn
