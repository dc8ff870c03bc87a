"""The local cloud's Kinesis shard patch (localcloud.mototools): same answers as moto's own Shard for every iterator
type, records past retention trimmed, and no O(records stored) step left (counted, not timed)."""
from __future__ import annotations

import datetime
import math
import random
from collections import OrderedDict

import boto3
import pytest
from moto.kinesis import models as kinesis_models
from moto.kinesis.utils import compose_new_shard_iterator, decompose_shard_iterator

from localcloud import mototools

mototools.configure()  # idempotent; every LocalCloud calls it too

ACCOUNT, REGION = mototools.ACCOUNT_ID, mototools.REGION
T0 = datetime.datetime(2026, 11, 29, 12, 0, 0)
EPOCH = datetime.datetime(1970, 1, 1)
ITERATOR_TYPES = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP")
LIMITS = (None, 1, 3, 7, 10_000)


def epoch(moment: datetime.datetime) -> float:
    return (moment - EPOCH).total_seconds()


class Clock:
    """moto's utcnow for the records (their created_at) and the local cloud's trimming clock, in one."""

    def __init__(self, monkeypatch):
        self.now = T0
        monkeypatch.setattr(kinesis_models, "utcnow", lambda: self.now)
        monkeypatch.setattr(mototools, "_clock", lambda: epoch(self.now))

    def advance(self, **delta) -> None:
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def moto_shard_class():
    """moto's Shard as installed: the methods the patch replaced, put back on a subclass."""
    methods = {key.split(".", 1)[1]: fn for key, fn in mototools.MOTO_KINESIS.items() if key.startswith("Shard.")}
    return type("MotoShard", (kinesis_models.Shard,), methods)


@pytest.fixture
def moto_mode():
    """A context in which new streams are moto's own (its Shard class, Stream.put_record and get_shard)."""
    def enter():
        patch = pytest.MonkeyPatch()
        patch.setattr(kinesis_models, "Shard", moto_shard_class())
        patch.setattr(kinesis_models.Stream, "put_record", mototools.MOTO_KINESIS["Stream.put_record"])
        patch.setattr(kinesis_models.Stream, "get_shard", mototools.MOTO_KINESIS["Stream.get_shard"])
        return patch
    return enter


def fill(shards, clock: Clock, steps_ms, seed: int = 3) -> list[str]:
    """The same puts, at the same moments, into every shard; returns the sequence numbers (equal in all)."""
    rng = random.Random(seed)
    returned = []
    for step in steps_ms:
        clock.advance(milliseconds=step)
        key = f"user-{rng.randrange(50)}"
        answers = {shard.put_record(key, "eyJhIjogMX0=", None) for shard in shards}
        assert len(answers) == 1
        returned.append(answers.pop())
    return returned


def read(shard, iterator_type: str, sequence_number=None, timestamp=None, limit=None) -> list:
    """What a consumer sees: GetShardIterator, then GetRecords until an empty answer (each answer's sequence
    numbers, next position and MillisBehindLatest)."""
    iterator = compose_new_shard_iterator("s", shard, iterator_type, sequence_number, timestamp)
    position = decompose_shard_iterator(iterator)[2]
    answers = []
    for _ in range(10_000):
        records, position, millis = shard.get_records(position, limit)
        answers.append(([r.sequence_number for r in records], int(position), millis))
        if not records:
            return answers
    raise AssertionError("GetRecords never caught up")


def all_reads(shard) -> dict:
    records = list(shard.records.values())
    times = [r.created_at for r in records]
    timestamps = sorted({t + d for t in times for d in (-0.0005, 0.0, 0.0005)} | {times[0] - 60, times[-1] + 60})
    last = int(shard.get_max_sequence_number())
    out = {}
    for limit in LIMITS:
        out["TRIM_HORIZON", limit] = read(shard, "TRIM_HORIZON", limit=limit)
        out["LATEST", limit] = read(shard, "LATEST", limit=limit)
        for n in range(0, last + 3):
            out["AT_SEQUENCE_NUMBER", n, limit] = read(shard, "AT_SEQUENCE_NUMBER", str(n), limit=limit)
            out["AFTER_SEQUENCE_NUMBER", n, limit] = read(shard, "AFTER_SEQUENCE_NUMBER", str(n), limit=limit)
        for t in timestamps:
            out["AT_TIMESTAMP", t, limit] = read(shard, "AT_TIMESTAMP", timestamp=t, limit=limit)
    return out


def steps(n: int, seed: int) -> list[int]:
    """Put intervals in ms with ties (several records in one millisecond, as in one PutRecords call)."""
    rng = random.Random(seed)
    return [rng.choice((0, 0, 0, 1, 2, 250, 1500)) for _ in range(n)]


# -- same answers as moto ---------------------------------------------------------------------------------------------

def test_every_iterator_type_reads_what_moto_reads(clock):
    patched, moto = kinesis_models.Shard(0, 0, 2**128 - 1), moto_shard_class()(0, 0, 2**128 - 1)
    assert type(patched.records) is mototools.ShardRecords and type(moto.records) is OrderedDict
    assert patched.get_max_sequence_number() == moto.get_max_sequence_number() == 0
    assert patched.get_records("0", None) == moto.get_records("0", None)
    assert read(patched, "TRIM_HORIZON") == read(moto, "TRIM_HORIZON")
    assert patched.get_sequence_number_at(epoch(T0)) == moto.get_sequence_number_at(epoch(T0)) == 0

    assert fill([patched, moto], clock, steps(60, seed=1)) == [str(n) for n in range(1, 61)]
    for method in ("get_min_sequence_number", "get_max_sequence_number", "to_json"):
        assert getattr(patched, method)() == getattr(moto, method)(), method
    reads = all_reads(patched)
    assert reads == all_reads(moto)
    assert {kind[0] for kind in reads} == set(ITERATOR_TYPES)
    assert any(answer[2] > 0 for answers in reads.values() for answer in answers)  # MillisBehindLatest exercised

    fill([patched, moto], clock, steps(25, seed=2))  # iterators taken before more records arrive
    assert [a for a in read(patched, "AFTER_SEQUENCE_NUMBER", "60", limit=10)] == \
        [a for a in read(moto, "AFTER_SEQUENCE_NUMBER", "60", limit=10)]
    for t in (r.created_at for r in list(moto.records.values())[::5]):
        assert patched.get_sequence_number_at(t) == moto.get_sequence_number_at(t)
    patched.is_open = moto.is_open = False
    assert patched.to_json() == moto.to_json()  # EndingSequenceNumber


def test_a_clock_that_steps_back_falls_back_to_moto_scan(clock):
    patched, moto = kinesis_models.Shard(0, 0, 2**128 - 1), moto_shard_class()(0, 0, 2**128 - 1)
    fill([patched, moto], clock, [5, 5, 5, -12, 3, 3, -1, 4, 4])
    assert patched.records.ordered is False
    assert all_reads(patched) == all_reads(moto)


def test_streams_split_merge_and_route_as_in_moto(clock, moto_mode):
    def scenario() -> dict:
        backend = kinesis_models.KinesisBackend(REGION, ACCOUNT)
        backend.create_stream("scaling", 2)
        puts = [{"PartitionKey": f"user-{i}", "Data": "eyJhIjogMX0="} for i in range(40)]
        answers = [backend.put_records(None, "scaling", puts)]
        clock.advance(seconds=1)
        backend.update_shard_count(None, "scaling", 4)  # splits (moto re-puts the records)
        answers.append(backend.put_records(None, "scaling", puts))
        backend.update_shard_count(None, "scaling", 2)  # merges
        answers.append(backend.put_records(None, "scaling", puts[:10]))
        stream = backend.describe_stream(None, "scaling")
        description = stream.to_json()["StreamDescription"]
        description.pop("StreamCreationTimestamp")
        reads = {}
        for shard_id in stream.shards:
            iterator = backend.get_shard_iterator(None, "scaling", shard_id, "TRIM_HORIZON", None, None)
            _, records, millis = backend.get_records(None, iterator, None)
            reads[shard_id] = ([(r.sequence_number, r.partition_key) for r in records], millis)
        return {"answers": answers, "description": description, "reads": reads}

    patched = scenario()
    clock.now = T0
    patch = moto_mode()
    try:
        moto = scenario()
    finally:
        patch.undo()
    assert patched == moto
    assert len(patched["description"]["Shards"]) > 2


# -- retention ----------------------------------------------------------------------------------------------------

@pytest.fixture
def backend():
    backend = kinesis_models.KinesisBackend(REGION, ACCOUNT)
    backend.create_stream("trimmed", 1)
    return backend


def shard_of(backend):
    return next(iter(backend.describe_stream(None, "trimmed").shards.values()))


def get_all(backend, iterator_type="TRIM_HORIZON", sequence_number=None, timestamp=None) -> list[int]:
    shard = shard_of(backend)
    iterator = backend.get_shard_iterator(None, "trimmed", shard.shard_id, iterator_type, sequence_number, timestamp)
    _, records, _ = backend.get_records(None, iterator, None)
    return [r.sequence_number for r in records]


def put(backend, clock, count: int, every_seconds: float = 1.0) -> None:
    for _ in range(count):
        backend.put_records(None, "trimmed", [{"PartitionKey": "k", "Data": "eyJhIjogMX0="}])
        clock.advance(seconds=every_seconds)


def test_records_past_the_retention_period_are_trimmed(backend, clock):
    put(backend, clock, 10)  # created at T0 + 0 .. 9 s
    clock.now = T0 + datetime.timedelta(hours=24, seconds=4.5)  # records of T0 + 0..4 s are past 24 h
    assert get_all(backend) == [6, 7, 8, 9, 10]
    assert list(shard_of(backend).records) == [6, 7, 8, 9, 10]
    assert shard_of(backend).to_json()["SequenceNumberRange"]["StartingSequenceNumber"] == "6"
    assert get_all(backend, "AT_SEQUENCE_NUMBER", "2") == [6, 7, 8, 9, 10]  # a trimmed position reads on from there
    assert get_all(backend, "AT_TIMESTAMP", timestamp=epoch(T0)) == [6, 7, 8, 9, 10]

    clock.advance(hours=1)  # everything is past retention: the shard is empty, its numbering goes on
    assert get_all(backend) == []
    assert shard_of(backend).get_max_sequence_number() == 10
    latest = backend.get_shard_iterator(None, "trimmed", shard_of(backend).shard_id, "LATEST", None, None)
    assert decompose_shard_iterator(latest)[2] == "10"
    put(backend, clock, 2)
    assert get_all(backend) == [11, 12]
    _, records, _ = backend.get_records(None, latest, None)
    assert [r.sequence_number for r in records] == [11, 12]


def test_trimming_follows_the_streams_retention_period(backend, clock):
    backend.increase_stream_retention_period(None, "trimmed", 48)
    put(backend, clock, 3)
    clock.now = T0 + datetime.timedelta(hours=30)
    assert get_all(backend) == [1, 2, 3]
    clock.now = T0 + datetime.timedelta(hours=48, seconds=1.5)
    assert get_all(backend) == [3]


def test_put_trims_memory_stays_bounded(backend, clock, monkeypatch):
    monkeypatch.setattr(mototools, "_retention_cap_hours", None)
    mototools.set_kinesis_retention_cap(1)  # LOCALCLOUD_KINESIS_RETENTION_HOURS=1
    held = []
    for _ in range(300):
        put(backend, clock, 1, every_seconds=30)
        held.append(len(shard_of(backend).records))
    assert max(held) == 121 and held[-1] == 121  # an hour of records at one per 30 s (+ the one just put)
    assert shard_of(backend).get_max_sequence_number() == 300
    assert get_all(backend)[0] == 181


def test_trimmed_records_are_freed(backend, clock):
    import gc
    import weakref

    put(backend, clock, 5)
    first = weakref.ref(shard_of(backend).records[1])
    assert kinesis_models.Record.instances_tracked == []  # moto's dashboard list would keep every record alive
    clock.advance(hours=25)
    assert get_all(backend) == []
    gc.collect()
    assert first() is None


# -- no O(records stored) step --------------------------------------------------------------------------------------

class CountingRecords(mototools.ShardRecords):
    """Counts every record a shard method touches: lookups and every step of any iteration."""

    touched = 0

    def reset(self) -> None:
        self.touched = 0

    def _counted(self, iterator):
        for item in iterator:
            self.touched += 1
            yield item

    def __getitem__(self, key):
        self.touched += 1
        return super().__getitem__(key)

    def __iter__(self):
        return self._counted(super().__iter__())

    def __reversed__(self):
        return self._counted(super().__reversed__())

    def keys(self):
        return _CountingView(self, super().keys())

    def values(self):
        return _CountingView(self, super().values())

    def items(self):
        return _CountingView(self, super().items())


class _CountingView:
    def __init__(self, owner: CountingRecords, view):
        self.owner, self.view = owner, view

    def __len__(self):
        return len(self.view)

    def __iter__(self):
        return self.owner._counted(iter(self.view))

    def __reversed__(self):
        return self.owner._counted(reversed(self.view))


@pytest.mark.parametrize("stored", [2_000, 40_000])
def test_shard_work_does_not_grow_with_the_records_stored(stored, clock, monkeypatch):
    backend = kinesis_models.KinesisBackend(REGION, ACCOUNT)
    stream = backend.create_stream("counted", 1)
    shard = next(iter(stream.shards.values()))
    assert type(shard.records) is mototools.ShardRecords  # the structure the patch relies on
    batch = [{"PartitionKey": "k", "Data": "eyJhIjogMX0="}] * 500
    for _ in range(stored // 500):
        backend.put_records(None, "counted", batch)
        clock.advance(seconds=1)
    shard.records = records = CountingRecords(shard.records)
    middle = shard.records[stored // 2].created_at
    log_n = math.ceil(math.log2(stored))

    def touches(operation) -> int:
        records.reset()
        operation()
        return records.touched

    costs = {
        "PutRecords (500)": touches(lambda: backend.put_records(None, "counted", batch)) / 500,
        "GetShardIterator LATEST": touches(
            lambda: backend.get_shard_iterator(None, "counted", shard.shard_id, "LATEST", None, None)),
        "GetShardIterator AT_TIMESTAMP": touches(
            lambda: backend.get_shard_iterator(None, "counted", shard.shard_id, "AT_TIMESTAMP", None, middle)),
        "GetRecords (100 at the tip)": touches(lambda: shard.get_records(str(stored - 50), 100)) / 100,
        "GetRecords (100 from TRIM_HORIZON)": touches(lambda: shard.get_records("0", 100)) / 100,
        "describe (StartingSequenceNumber)": touches(lambda: stream.to_json()),
        "shard_tips": touches(lambda: shard.get_max_sequence_number()),
    }
    assert costs["PutRecords (500)"] <= 6, costs  # a few per record: tail, the previous record, the trim check
    assert costs["GetShardIterator AT_TIMESTAMP"] <= 2 * log_n + 8, costs
    assert all(cost <= 8 for name, cost in costs.items() if "AT_TIMESTAMP" not in name), costs

    # the counter sees moto's own O(n) methods (so a return of one of them fails the asserts above)
    moto = moto_shard_class()(0, 0, 2**128 - 1)
    moto.records = records
    assert touches(lambda: moto.get_records(str(stored), 1)) >= stored
    assert touches(lambda: moto.get_sequence_number_at(middle)) >= stored // 2
    assert touches(lambda: moto.to_json()) >= stored
    assert touches(lambda: moto.put_record("k", "eyJhIjogMX0=", None)) >= stored


def test_request_dispatch_caches_answer_as_moto():
    from moto import backends
    from moto.core import responses, utils
    from moto.dynamodb.responses import DynamoHandler
    from moto.kinesis.responses import KinesisResponse

    import os

    import moto

    root = os.path.dirname(moto.__file__)
    assert list(backends.list_of_moto_modules()) == [
        name for name in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, name)) and name[:2] != "__"]
    for clazz in (KinesisResponse, DynamoHandler):
        assert responses.method_names_from_class(clazz) == set(utils.method_names_from_class(clazz))


def test_per_request_data_objects_are_not_kept_by_moto():
    from moto.cloudwatch.models import MetricAggregatedDatum, MetricDatum, cloudwatch_backends
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import Item
    from moto.sqs.models import Message, sqs_backends

    dynamodb = dynamodb_backends[ACCOUNT][REGION]
    table = "untracked-items"
    dynamodb.create_table(table, schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          throughput=None, attr=[{"AttributeName": "pk", "AttributeType": "S"}],
                          global_indexes=None, indexes=None, streams=None, billing_mode="PAY_PER_REQUEST",
                          sse_specification=None, tags=None, deletion_protection_enabled=False, warm_throughput=None)
    try:
        for n in range(5):
            dynamodb.put_item(table, {"pk": {"S": "u1"}, "n": {"N": str(n)}})
            dynamodb.get_item(table, {"pk": {"S": "u1"}})
    finally:
        dynamodb.delete_table(table)
    sqs = sqs_backends[ACCOUNT][REGION]
    queue = sqs.create_queue("untracked-messages")
    sqs.send_message(queue.name, "hello")
    sqs.delete_queue(queue.name)
    cloudwatch_backends[ACCOUNT][REGION].put_metric_data("Untracked", [{"MetricName": "m", "Value": 1}])
    assert [len(cls.instances_tracked) for cls in (Item, Message, MetricDatum, MetricAggregatedDatum)] == [0] * 4


# -- through the gateway, as boto3 sees it --------------------------------------------------------------------------

def test_the_gateway_serves_patched_streams(monkeypatch):
    import os

    import moto
    from localcloud.gateway import Gateway

    listed = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(path) or real_listdir(path))
    gateway = Gateway()
    port = gateway.start("127.0.0.1", 0)
    name = "scaling-through-gateway"
    try:
        kinesis = boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{port}", region_name=REGION,
                               aws_access_key_id="t", aws_secret_access_key="t")
        kinesis.create_stream(StreamName=name, ShardCount=2)
        stream = mototools.kinesis_backend().streams[name]
        assert {type(s.records) for s in stream.shards.values()} == {mototools.ShardRecords}
        answer = kinesis.put_records(StreamName=name, Records=[{"Data": f"{i}".encode(), "PartitionKey": f"u{i}"}
                                                               for i in range(500)])
        assert answer["FailedRecordCount"] == 0
        listed.clear()  # (first requests of a service load its models once)
        by_shard: dict[str, list[str]] = {}
        for record in answer["Records"]:
            by_shard.setdefault(record["ShardId"], []).append(record["SequenceNumber"])
        assert len(by_shard) == 2
        for shard_id, numbers in by_shard.items():
            assert numbers == [str(n) for n in range(1, len(numbers) + 1)]
            seen = []
            iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id,
                                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            while True:
                page = kinesis.get_records(ShardIterator=iterator, Limit=100)
                seen += [r["SequenceNumber"] for r in page["Records"]]
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    break
            assert seen == numbers
            after = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="AT_TIMESTAMP",
                                               Timestamp=datetime.datetime(2000, 1, 1))["ShardIterator"]
            assert kinesis.get_records(ShardIterator=after, Limit=3)["Records"][0]["SequenceNumber"] == "1"
        assert os.path.dirname(moto.__file__) not in listed  # moto's modules are listed once, not per request
    finally:
        mototools.kinesis_backend().streams.pop(name, None)
        gateway.stop()
