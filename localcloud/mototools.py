"""moto, in process: configuration, reset, and the few patches the local cloud needs.

Why patches (each one is small, local to this process, and keeps moto's behaviour):
- Kinesis (``_patch_kinesis``): moto's ``Shard`` is O(records the shard has ever held) per put (``list(keys)[-1]``),
  per read (a scan from the first record) and per AT_TIMESTAMP iterator, and never drops a record. Here: O(1) per
  put, O(batch) per read, O(log n) per AT_TIMESTAMP, same answers (sequence numbers, iterator types, MillisBehindLatest,
  hash ranges), and records past the stream's RetentionPeriodHours are trimmed (memory bounded; optionally capped
  lower with LOCALCLOUD_KINESIS_RETENTION_HOURS). ``python -m bench.kinesis_scaling`` measures it.
- moto keeps every instance of its model classes in a list for its dashboard: records, items, messages, datums are
  never freed. The data classes the pipeline creates per request are not tracked (``untrack_instances``).
- moto's server repeats two lookups on every request to any service (its package directory listed and stat'ed, the
  response class inspected): both are cached (``_cache_request_dispatch``).
- moto's backends are not thread-safe (a threaded server can lose DynamoDB ``ADD`` updates or give two Kinesis
  records one sequence number). The gateway serializes requests per service for the services in
  ``SERIALIZED_SERVICES`` with ``service_lock``.
- Step Functions (executing backend): StartExecution without a name names the execution "None", so a second
  unnamed execution of a state machine fails with ExecutionAlreadyExists. Unnamed executions get a UUID, as in AWS.
- Step Functions: the executor lexes and parses the definition with ANTLR on every execution: parse trees are
  cached per definition (``_cache_asl_parse_trees``).
- DynamoDB: moto's generic response serializer walks every AttributeValue member by member through 6 alias
  providers; plain values are written directly with the same bytes (``_fast_attribute_values``).
- Step Functions: the executor builds a new boto3 client for every Lambda or SQS task (``boto_client_for``);
  client creation was 13 % of the local cloud's CPU under load. Clients are thread-safe: they are cached per
  (region, service, endpoint, role). The executor signs with fixed keys; here a task is signed with its state
  machine's role (``role_credentials``), so the gateway's IAM check sees which role calls.
- CloudWatch (``metrics.patch_cloudwatch``): GetMetricData in one pass over the window instead of one per period
  per query, ``pNN`` statistics, datums older than 3 hours dropped.
- moto's Lambda would invoke functions itself (through Docker) when a record is put on a stream with an event
  source mapping; ``detach_kinesis_mapping`` removes that hook (the local poller delivers records instead).
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
SERIALIZED_SERVICES = ("dynamodb", "kinesis", "dynamodbstreams", "cloudwatch")  # cloudwatch: metrics.py trims

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
    if os.environ.get("LOCALCLOUD_KINESIS_RETENTION_HOURS"):
        set_kinesis_retention_cap(float(os.environ["LOCALCLOUD_KINESIS_RETENTION_HOURS"]))


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
    _patch_kinesis()

    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start_execution = StepFunctionsParserBackend.start_execution

    def start_execution(self, state_machine_arn, name=None, execution_input=None, trace_header=None):
        return original_start_execution(self, state_machine_arn, name or str(uuid.uuid4()), execution_input,
                                        trace_header)

    StepFunctionsParserBackend.start_execution = start_execution
    _cache_stepfunctions_clients()
    _cache_asl_parse_trees()
    _cache_request_dispatch()
    _fast_attribute_values()
    _untrack_data_models()
    from .metrics import patch_cloudwatch  # GetMetricData in one pass, percentiles, bounded retention

    patch_cloudwatch()
    _patched = True


def _untrack_data_models() -> None:
    """The per-request data objects of the services the pipeline drives hard: every DynamoDB item object (each read
    and write makes new ones: 200 UpdateItem + 200 GetItem of one item left 401 Items tracked), SQS message and
    CloudWatch datum would otherwise live as long as the process (Kinesis records: ``_patch_kinesis``)."""
    from moto.cloudwatch.models import MetricDatumBase
    from moto.dynamodb.models.dynamo_type import Item
    from moto.sqs.models import Message

    untrack_instances(Item, Message, MetricDatumBase)


def _cache_request_dispatch() -> None:
    """Two lookups moto's server repeats on every request, to any service, with the same answer each time:
    - the service of a request: ``host in backends.list_of_moto_modules()``, a generator that lists moto's package
      directory and stats each of its ~170 entries (~0.9 ms of syscalls per request);
    - the response class's method names: ``method_names_from_class`` runs ``inspect.getmembers`` on the class.
    The installed package and the response classes do not change while we run: both are computed once."""
    from moto import backends
    from moto.core import responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    original = responses.method_names_from_class
    method_names: dict[type, frozenset[str]] = {}

    def method_names_from_class(clazz) -> frozenset[str]:
        names = method_names.get(clazz)
        if names is None:
            names = method_names[clazz] = frozenset(original(clazz))
        return names

    responses.method_names_from_class = method_names_from_class


MOTO_ASL: dict[str, Any] = {}  # moto's own ASL parser entry point, before the patch
MOTO_SERIALIZER: dict[str, Any] = {}  # moto's own BaseJSONSerializer method, before the patch (tests compare)
_ATTRIBUTE_VALUE_MEMBERS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL")  # the shape's order
_PLAIN_MEMBERS = frozenset(("S", "N", "SS", "NS", "M", "L", "NULL", "BOOL"))


def plain_attribute_value(value: Any) -> dict | None:
    """What moto's JSON serializer writes for a DynamoDB AttributeValue that is a plain dict of plain values (str,
    bool, lists of str, nested plain maps and lists): the same dict, members in the shape's order. None for anything
    else (binary, None members, moto objects, other keys): the caller then runs moto's serializer."""
    if type(value) is not dict or not value.keys() <= _PLAIN_MEMBERS:
        return None
    members = value if len(value) < 2 else sorted(value, key=_ATTRIBUTE_VALUE_MEMBERS.index)
    out = {}
    for member in members:
        item = value[member]
        kind = type(item)
        if member in ("S", "N"):
            ok = kind is str
        elif member in ("NULL", "BOOL"):
            ok = kind is bool
        elif member in ("SS", "NS"):
            ok = kind is list and all(type(v) is str for v in item)
        elif member == "M":
            if kind is not dict or "" in item:  # moto writes an empty key's value into the map itself
                return None
            item = {k: plain_attribute_value(v) for k, v in item.items()}
            ok = None not in item.values()
        else:  # L
            if kind is not list:
                return None
            item = [plain_attribute_value(v) for v in item]
            ok = None not in item
        if not ok:
            return None
        out[member] = item
    return out


def _fast_attribute_values() -> None:
    """moto serializes every DynamoDB AttributeValue through its generic shape walker: for each of the shape's 10
    members, 6 alias providers and botocore's xform_name look for the member on the value, so one item of 20
    attribute values costs hundreds of lookups. It was a third of the gateway's CPU under load (py-spy --gil,
    bench.e2e_throughput).
    Plain values (what moto's Item.to_json gives for strings, numbers, booleans, nulls, string/number sets, maps and
    lists of those) are written directly, with the same result; anything else goes through moto's walker."""
    from moto.core.serialize import BaseJSONSerializer

    original = MOTO_SERIALIZER["_serialize_type_structure"] = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(self, serialized, value, shape, key):
        if key and shape.name == "AttributeValue" and tuple(shape.members) == _ATTRIBUTE_VALUE_MEMBERS:
            plain = plain_attribute_value(value)
            if plain is not None:
                serialized[self.get_serialized_name(shape, key)] = plain
                return
        original(self, serialized, value, shape, key)

    original_map = MOTO_SERIALIZER["_serialize_type_map"] = BaseJSONSerializer._serialize_type_map

    def _serialize_type_map(self, serialized, value, shape, key):  # an item: attribute name -> AttributeValue
        if key and type(value) is dict and "" not in value and shape.value.name == "AttributeValue" \
                and tuple(shape.value.members) == _ATTRIBUTE_VALUE_MEMBERS:
            plain = {name: plain_attribute_value(v) for name, v in value.items()}
            if None not in plain.values():
                serialized[self.get_serialized_name(shape, key)] = plain
                return
        original_map(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure
    BaseJSONSerializer._serialize_type_map = _serialize_type_map


def _cache_asl_parse_trees() -> None:
    """moto's Step Functions executor lexes and parses the state machine's definition with ANTLR on every execution
    (ExecutionWorker._get_evaluation_entrypoint): ~50 ms of the gateway process per execution under load, 6 % of its
    CPU (py-spy --gil, bench.e2e_throughput). The parse tree of a definition is cached (it is only read afterwards);
    the evaluation components are still built from it for every execution, as before: moto keeps per-execution state
    such as retry counts under each component's lazily drawn heap key, so concurrent executions must not share them.
    Definitions that fail to parse are not cached and fail as before."""
    import functools

    from moto.stepfunctions.parser.asl.parse import asl_parser

    original = MOTO_ASL["AmazonStateLanguageParser.parse"] = asl_parser.AmazonStateLanguageParser.parse

    @functools.lru_cache(maxsize=64)
    def parse_tree(definition: str):
        return original(definition)[1]

    def parse(definition: str):
        tree = parse_tree(definition)
        return asl_parser.Preprocessor().visit(tree), tree

    asl_parser.AmazonStateLanguageParser.parse = staticmethod(parse)


# The executing state machine's role -> (access key id, secret, session token) its task calls are signed with, so the
# gateway checks them against that role's policies (set by the local cloud: localcloud/iam.py); None = moto's keys.
def role_credentials(role_arn: str) -> tuple[str, str, str] | None:
    return None


def _role_client(client, keys: tuple[str, str, str]):
    """The same client as moto's executor builds (endpoint, config), signed with the role's keys."""
    import boto3

    key, secret, token = keys
    return boto3.client(client.meta.service_model.service_name, region_name=client.meta.region_name,
                        endpoint_url=client.meta.endpoint_url, config=client.meta.config, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token)


def _cache_stepfunctions_clients() -> None:
    import importlib

    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    cache: dict[tuple, object] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials=None):
        role_arn = getattr(state_credentials, "role_arn", None)
        keys = role_credentials(role_arn) if role_arn and not botocore_stubber.enabled else None
        key = (region, service, botocore_stubber.enabled, moto_server_port(), keys)  # the port is read every call
        with lock:
            if key not in cache:
                cache[key] = original(region, service, state_credentials) if keys is None else \
                    _role_client(original(region, service, state_credentials), keys)
            return cache[key]

    boto_client.boto_client_for = boto_client_for
    for module in ("state_task.lambda_eval_utils", "state_task.service.state_task_service_sqs"):
        importlib.import_module(f"moto.stepfunctions.parser.asl.component.state.exec.{module}") \
            .boto_client_for = boto_client_for


# -- Kinesis: shard cost independent of the records the stream has held; records past retention trimmed ------------

_clock = time.time  # the trimming clock (tests replace it); records carry moto's own created_at (wall clock)
_retention_cap_hours: float | None = None  # optional local cap on retention (LOCALCLOUD_KINESIS_RETENTION_HOURS)

# moto's own Shard/Stream methods, as they were before the patch (tests compare against them, benches run them)
MOTO_KINESIS: dict[str, Any] = {}


class ShardRecords(OrderedDict):
    """A patched moto shard's records: sequence number -> Record, in put order (moto's OrderedDict, so moto's own code
    that iterates ``shard.records`` keeps working), plus what the patched methods need in O(1):

    ``tail``     the last sequence number given out in this shard. moto read it from the last key; it survives the
                 trimming of every record (a shard that was idle past its retention goes on from tail + 1, as moto
                 would have without trimming).
    ``ordered``  True while no record is older (created_at) than the record before it, i.e. the wall clock did not
                 step back; then AT_TIMESTAMP is a binary search, otherwise moto's scan runs.

    Keys are consecutive: appended as tail + 1, removed only from the front (retention)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tail = next(reversed(self)) if self else 0
        self.ordered = all(a.created_at <= b.created_at for a, b in itertools.pairwise(self.values()))


def set_kinesis_retention_cap(hours: float | None) -> None:
    """Trim Kinesis records older than ``hours`` even where the stream's RetentionPeriodHours is longer (None: the
    stream's retention only, as AWS). Memory is what this bounds: ~0.8 KB per record held."""
    global _retention_cap_hours
    _retention_cap_hours = float(hours) if hours else None


def trim_shard(shard, retention_hours: float) -> int:
    """Drop the records of ``shard`` older than the retention (AWS: no longer readable). O(records dropped)."""
    records = shard.records
    if not records or not isinstance(records, ShardRecords):
        return 0
    if _retention_cap_hours is not None:
        retention_hours = min(retention_hours, _retention_cap_hours)
    cutoff = _clock() - retention_hours * 3600.0
    dropped = 0
    while records and records[next(iter(records))].created_at < cutoff:
        records.popitem(last=False)
        dropped += 1
    return dropped


def _untracked_new(cls, *args: Any, **kwargs: Any):
    return object.__new__(cls)


def untrack_instances(*classes: type) -> None:
    """moto's ``BaseModel.__new__`` appends every instance of every model class to ``cls.instances_tracked``, for its
    dashboard (``/moto-api/data.json``; S3's reset also walks its keys): a record, an item, a message is never freed,
    however short its life. For the given classes instances are no longer tracked (nothing else reads the lists)."""
    for cls in classes:
        cls.__new__ = staticmethod(_untracked_new)
        cls.instances_tracked = []


def _patch_kinesis() -> None:
    """Replace moto's O(records stored) Shard methods by O(1) / O(batch) / O(log n) ones with the same results, and
    trim records past the stream's retention on every put and every read of a shard.

    moto 5.2.5 (moto/kinesis/models.py): ``Shard.put_record`` found the last sequence number with
    ``list(self.records.keys())[-1]``; ``get_records`` scanned the shard from its first record; ``get_min_sequence_
    number`` copied the keys; ``get_sequence_number_at`` (AT_TIMESTAMP) copied the values and scanned backwards. Nothing
    was ever removed. Unchanged: sequence numbers (consecutive integers per shard from 1), iterator types and the
    iterator format, MillisBehindLatest, shard ids and hash ranges, split/merge (moto's code, on these records)."""
    from moto.kinesis.models import Record, Shard, Stream

    for name in ("__init__", "put_record", "get_records", "get_min_sequence_number", "get_max_sequence_number",
                 "get_sequence_number_at"):
        MOTO_KINESIS[f"Shard.{name}"] = getattr(Shard, name)
    for name in ("put_record", "get_shard"):
        MOTO_KINESIS[f"Stream.{name}"] = getattr(Stream, name)
    untrack_instances(Record)  # else moto keeps every record ever put (see untrack_instances): trimming frees nothing
    Shard.__init__ = _shard_init
    Shard.put_record = _shard_put_record
    Shard.get_max_sequence_number = _shard_max_sequence_number
    Shard.get_min_sequence_number = _shard_min_sequence_number
    Shard.get_records = _shard_get_records
    Shard.get_sequence_number_at = _shard_sequence_number_at
    Stream.put_record = _stream_put_record
    Stream.get_shard = _stream_get_shard  # GetShardIterator and GetRecords


# The patched methods (``self`` is moto's Shard or Stream); MOTO_KINESIS holds the methods they replace.
def _shard_init(self, *args: Any, **kwargs: Any) -> None:
    MOTO_KINESIS["Shard.__init__"](self, *args, **kwargs)
    self.records = ShardRecords()


def _shard_put_record(self, partition_key: str, data: str, explicit_hash_key: str) -> str:
    from moto.kinesis.models import Record

    records = self.records
    if not isinstance(records, ShardRecords):  # moto replaced the dict (split_shard): adopt it
        records = self.records = ShardRecords(records)
    sequence_number = records.tail + 1
    record = Record(partition_key, data, sequence_number, explicit_hash_key)
    if records and record.created_at < records[records.tail].created_at:
        records.ordered = False
    records[sequence_number] = record
    records.tail = sequence_number
    return str(sequence_number)


def _shard_max_sequence_number(self) -> int:
    records = self.records
    if isinstance(records, ShardRecords):
        return records.tail
    return next(reversed(records)) if records else 0


def _shard_min_sequence_number(self) -> int:
    return next(iter(self.records)) if self.records else 0


def _shard_get_records(self, last_sequence_id, limit):
    records = self.records
    if not records:
        return [], int(last_sequence_id), 0
    first, last = next(iter(records)), next(reversed(records))
    if last - first + 1 != len(records):
        return MOTO_KINESIS["Shard.get_records"](self, last_sequence_id, limit)
    start = max(int(last_sequence_id) + 1, first)
    end = last if not limit else min(last, start + int(limit) - 1)
    if start > end:
        return [], int(last_sequence_id), 0
    results = [records[n] for n in range(start, end + 1)]
    millis_behind = int((records[last].created_at - results[-1].created_at) * 1000)
    return results, results[-1].sequence_number, millis_behind


def _shard_sequence_number_at(self, at_timestamp: float) -> int:
    records = self.records
    if not records:
        return 0
    first, last = next(iter(records)), next(reversed(records))
    if at_timestamp <= records[first].created_at:
        return 0
    if not (isinstance(records, ShardRecords) and records.ordered and last - first + 1 == len(records)):
        return MOTO_KINESIS["Shard.get_sequence_number_at"](self, at_timestamp)
    # moto: the last record created before at_timestamp. created_at never decreases, so those records are a
    # prefix of the shard (records[first] is in it): its last element, by binary search.
    low, high = first, last
    while low < high:
        middle = (low + high + 1) // 2
        if records[middle].created_at < at_timestamp:
            low = middle
        else:
            high = middle - 1
    return low


def _stream_put_record(self, partition_key: str, explicit_hash_key: str, data: str) -> tuple[str, str]:
    sequence_number, shard_id = MOTO_KINESIS["Stream.put_record"](self, partition_key, explicit_hash_key, data)
    trim_shard(self.shards[shard_id], self.retention_period_hours)
    return sequence_number, shard_id


def _stream_get_shard(self, shard_id: str):
    shard = MOTO_KINESIS["Stream.get_shard"](self, shard_id)
    trim_shard(shard, self.retention_period_hours)
    return shard


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
