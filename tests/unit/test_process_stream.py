import json
import threading

import boto3
import pytest
from lambdakit import event, kinesis_event

from pipeline import queries, store, stream
from pipeline.settings import settings
from pipeline.warm import WarmStates


def _handler():
    from process_stream import handler
    return handler.handler


def _state(aws_fixture):
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    tables = {name: sorted(store.from_item(dynamodb.Table(name).scan()["Items"]), key=repr)
              for name in ("events", "features")}
    tables["counters"] = store.get_item("state", {"pk": "stream#shardId-000000000000"})
    return tables


def _rows(aws_fixture) -> list[dict]:
    from pipeline import inference
    sfn = aws_fixture["sfn"]
    executions = sfn.list_executions(stateMachineArn=aws_fixture["state_machine_arn"])["executions"]
    return [r for e in executions
            for r in inference.load_rows(json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"]))]


def test_batch_is_featurised_and_one_inference_started(aws, lambda_context):
    records = kinesis_event([event(1), event(2, event_type="purchase", amount=5.0), event(3, user="u2")])
    assert _handler()(records, lambda_context) == {"batchItemFailures": []}
    features = queries.user_features(settings(), "u1")
    assert features["features"]["events_24h"] == 2 and features["features"]["purchases_24h"] == 1
    assert features["total_events"] == 2
    executions = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    assert len(executions) == 1
    rows = _rows(aws)
    assert [r["event_id"] for r in rows] == ["e1", "e2", "e3"]
    assert len(rows[0]["features"]) == 15
    assert queries.stats(settings())["users_tracked"] == 2


def test_the_hot_item_stays_small_and_no_item_is_written_per_event(aws, lambda_context):
    """The hot item is rewritten on every batch: kept within one write unit (1 KB, sized as DynamoDB sizes items:
    attribute names plus values, binary by raw length; DynamoDB Developer Guide, "DynamoDB item sizes and formats",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html)."""
    _handler()(kinesis_event([event(n) for n in range(200)]), lambda_context)
    items = _state(aws)["features"]
    assert len(items) == 1  # one user, no ledger item per event, no cold item before an hour rolls up
    assert store.item_size(items[0]) <= 1024
    assert _state(aws)["events"] == []


def test_bad_records_are_rejected_with_reasons_and_kept(aws, lambda_context):
    records = kinesis_event([event(1), b"not json", {"event_id": "x", "user_id": "u1"}])
    assert _handler()(records, lambda_context) == {"batchItemFailures": []}
    rejected = [i for i in _state(aws)["events"] if i["status"] == "rejected"]
    assert len(rejected) == 2
    assert any("not valid JSON" in e for r in rejected for e in r["errors"])
    assert any(r["claimed_event_id"] == "x" and any("event_type" in e for e in r["errors"]) for r in rejected)
    assert {r["event_id"] for r in rejected} == {"rejected#shardId-000000000000#101",
                                                 "rejected#shardId-000000000000#102"}


def test_client_duplicates_are_skipped(aws, lambda_context):
    _handler()(kinesis_event([event(1), event(1)], first_seq=100), lambda_context)
    _handler()(kinesis_event([event(1)], first_seq=200), lambda_context)  # a retry by the client
    assert queries.user_features(settings(), "u1")["total_events"] == 1
    assert queries.stats(settings())["events_duplicate"] == 2


def test_a_client_retry_on_another_shard_with_the_same_sequence_number_is_a_duplicate(aws, lambda_context):
    """Sequence numbers are unique per shard only: the same number on another shard is not a redelivery."""
    _handler()(kinesis_event([event(1), event(2)], shard="shardId-000000000000", first_seq=100), lambda_context)
    _handler()(kinesis_event([event(1), event(3)], shard="shardId-000000000001", first_seq=100), lambda_context)
    assert queries.user_features(settings(), "u1")["total_events"] == 3  # e1, e2, e3; the second e1 skipped
    assert sorted(r["event_id"] for r in _rows(aws)) == ["e1", "e2", "e3"]
    assert queries.stats(settings())["events_duplicate"] == 1


def test_a_record_whose_partition_key_is_not_its_user_is_rejected(aws, lambda_context):
    """A user's state has one writer because all their records share a shard: a record written straight to Kinesis
    with another partition key (which could land the user on a second shard, processed concurrently, where a
    duplicate would be taken as new) is rejected with the reason, and the user's events on their shard go on."""
    batch = kinesis_event([event(1), event(2)], shard="shardId-000000000000", first_seq=100)
    batch["Records"][1]["kinesis"]["partitionKey"] = "someone-else"
    assert _handler()(batch, lambda_context) == {"batchItemFailures": []}
    [rejected] = [i for i in _state(aws)["events"] if i["status"] == "rejected"]
    assert rejected["claimed_event_id"] == "e2" and "partitionKey" in rejected["errors"][0]
    assert queries.user_features(settings(), "u1")["total_events"] == 1
    other = kinesis_event([event(3)], shard="shardId-000000000001", first_seq=100)
    other["Records"][0]["kinesis"]["partitionKey"] = "u1"     # the right key, whatever shard it hashed to
    _handler()(other, lambda_context)
    assert queries.user_features(settings(), "u1")["total_events"] == 2


def test_the_dedupe_horizon_is_the_users_last_events(aws, lambda_context):
    from pipeline.stream import DEDUPE_RING
    _handler()(kinesis_event([event(n) for n in range(DEDUPE_RING + 1)], first_seq=100), lambda_context)
    _handler()(kinesis_event([event(DEDUPE_RING), event(1), event(0)], first_seq=500), lambda_context)
    # e24 and e1 are among the last 24: duplicates; e0 is past the horizon and is taken as a new event
    assert queries.stats(settings())["events_duplicate"] == 2
    assert queries.user_features(settings(), "u1")["total_events"] == DEDUPE_RING + 2


def test_redelivered_batch_leaves_identical_state(aws, lambda_context):
    batch = kinesis_event([event(n, user=f"u{n % 3}") for n in range(12)])
    _handler()(batch, lambda_context)
    before = _state(aws)
    _handler()(batch, lambda_context)  # Lambda redelivers the same records (e.g. after a timeout)
    after = _state(aws)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("at",)} for r in rows]  # noqa
    assert strip(after["features"]) == strip(before["features"])
    assert after["counters"] == before["counters"]
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]) == 1


@pytest.mark.parametrize("crash_in", ["start_inference", "store_states"])
def test_a_crash_is_repaired_by_the_redelivery(aws, lambda_context, monkeypatch, crash_in):
    """A crash after the counters and journal are written, before the states (store_states) or after them, before
    the inference starts: the retry (a larger batch, as after a BatchSize change) applies nothing twice, counts
    nothing twice and scores the crashed records with the features their first delivery computed."""
    from pipeline import stream

    batch = kinesis_event([event(n, user=f"u{n % 3}") for n in range(6)])
    reference = None
    if crash_in == "start_inference":
        real = stream.start_inference
        monkeypatch.setattr(stream, "start_inference", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("crash")))
    else:
        real = stream.user_items
        monkeypatch.setattr(stream, "user_items", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("crash")))
    with pytest.raises(TimeoutError):
        _handler()(batch, lambda_context)
    crashed = _state(aws)
    monkeypatch.setattr(stream, crash_in if crash_in == "start_inference" else "user_items", real)
    s3 = boto3.client("s3", region_name="us-east-1")
    journal_key = crashed["counters"]["journal"][-1]["key"]
    reference = json.loads(s3.get_object(Bucket="artifacts", Key=journal_key)["Body"].read())["rows"]
    bigger = kinesis_event([event(n, user=f"u{n % 3}") for n in range(9)])
    _handler()(bigger, lambda_context)  # Lambda retries from the same position with a larger batch
    rows = {r["event_id"]: r["features"] for r in _rows(aws)}
    assert {r["event_id"]: r["features"] for r in reference}.items() <= rows.items()
    assert sorted(rows) == sorted(f"e{n}" for n in range(9))
    stats = queries.stats(settings())
    assert stats["events_processed"] == 9 and stats["users_tracked"] == 3
    assert sum(queries.user_features(settings(), f"u{u}")["total_events"] for u in range(3)) == 9


def test_a_record_that_cannot_be_handled_fails_alone_and_later_records_wait(aws, lambda_context):
    records = kinesis_event([event(1), event(2), event(3)])
    del records["Records"][1]["kinesis"]["data"]  # a malformed Lambda record: decode raises KeyError
    response = _handler()(records, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "101"}]}
    assert [r["event_id"] for r in _rows(aws)] == ["e1"]  # e3 is redelivered with e2, so it is not processed now


def test_the_position_packs_any_shard_id_and_sequence_number_with_the_ring():
    """The hot item's ``pos`` is "<shard>/<sequence>\\n" then the ring's hashes: unambiguous because a shard id
    matches [a-zA-Z0-9_.-]+ (Kinesis API Reference, Shard,
    https://docs.aws.amazon.com/kinesis/latest/APIReference/API_Shard.html) and a sequence number
    0|([1-9]\\d{0,128}) (SequenceNumberRange,
    https://docs.aws.amazon.com/kinesis/latest/APIReference/API_SequenceNumberRange.html): neither holds "/" or a
    newline, while the hashes may hold both."""
    from pipeline.stream import ID_HASH_BYTES, pack_position, unpack_position

    ring = [b"/\n\x00abcde", b"\n" * ID_HASH_BYTES, bytes(range(ID_HASH_BYTES))]
    for shard, seq in [("shardId-000000000000", 0), ("a_b.c-" + "x" * 122, int("9" * 129)), ("", -1)]:
        assert unpack_position(pack_position(shard, seq, ring)) == (shard, seq, ring)
        assert unpack_position(pack_position(shard, seq, [])) == (shard, seq, [])


def test_a_batch_makes_one_read_and_one_write_per_25_users(aws, lambda_context, monkeypatch):
    """BatchGetItem reads "as many as 100 items" from "one or more tables" per call (DynamoDB API Reference,
    BatchGetItem, https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html), so the
    shard's counters item travels with the users' hot items; BatchWriteItem takes up to 25 put requests
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html). 120 users: 121 keys
    in two reads, 120 hot items in five writes, and one journal PUT, counters update and StartExecution. An
    execution environment that wrote those states itself reads only the counters item on its next batch
    (pipeline/warm.py); a fresh one reads every user again."""
    import botocore.client

    calls = []
    real = botocore.client.BaseClient._make_api_call

    caller = threading.current_thread()

    def record(client, operation, params):
        if threading.current_thread() is caller:   # not a local cloud's background thread in the same process
            calls.append(operation)
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    writes = ["PutObject", "UpdateItem"] + ["BatchWriteItem"] * 5 + ["StartExecution"]
    # the users' first batch, then one with every user stored (the same hour: no roll-up) in the same environment,
    # then one in a fresh environment
    for first, reads, fresh in ((0, 2, False), (120, 1, False), (240, 2, True)):
        if fresh:
            monkeypatch.setattr(stream, "WARM", WarmStates())
        calls.clear()
        _handler()(kinesis_event([event(first + n, user=f"u{n}") for n in range(120)], first_seq=100 + first),
                   lambda_context)
        assert sorted(calls) == sorted(["BatchGetItem"] * reads + writes)
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", real)
    assert queries.stats(settings())["events_processed"] == 360
    assert queries.user_features(settings(), "u7")["total_events"] == 3


def test_the_counters_update_is_charged_on_the_item_it_leaves(aws, lambda_context):
    """An UpdateItem costs 1 WRU per started 1 KB of the larger of the item before and after it (DynamoDB Developer
    Guide, "DynamoDB read and write operations",
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html#write-operation-consumption):
    the batch charges the counters item as its update leaves it, computed from the item it read rather than
    returned by DynamoDB."""
    for n in range(20):  # 16 journal entries: the counters item passes 1 KB
        _handler()(kinesis_event([event(n)], first_seq=100 + n), lambda_context)
    assert store.item_size(_state(aws)["counters"]) > 1024
    with store.metered() as meter:
        _handler()(kinesis_event([event(20)], first_seq=200), lambda_context)
    hot = [store.to_item(i) for i in _state(aws)["features"]]
    assert meter.wru == store.write_units(store.item_size(_state(aws)["counters"])) + store.write_units(
        store.item_size(hot[0]))


def test_process_returns_the_batch_outcome_and_records_its_stage(aws, monkeypatch):
    """``process`` on decoded records: what it returns (the handler's log line and metrics), the stage record the
    execution carries (the cost optimizer's input: events, bytes, seconds, memory, request units, S3 PUTs), the
    journal's header and the kept rejection."""
    import time

    from lambdakit import T0

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
    batch = kinesis_event([event(1), b"not json", event(2), event(2), event(3, user="u2"),
                           event(9, timestamp=T0 - 7200)], first_seq=100)   # e9: 2 h behind u1's newest: late
    now = time.time()
    stream.process([stream.decode(r, now=now) for r in kinesis_event([event(0)], first_seq=50)["Records"]],
                   settings())
    stream.WARM.clear()  # a fresh environment: the measured batch reads u1's stored state
    records = [stream.decode(r, now=now) for r in batch["Records"]]
    with store.metered() as meter:
        outcome = stream.process(records, settings(), started=now - 5)
    finished = time.time()
    batch_id = stream.batch_id_for(records)
    assert outcome == stream.BatchOutcome(batch_id, 4, 1, 1, outcome.execution_arn, 1)
    [execution] = [e for e in aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
                   if e["name"] == batch_id]
    assert outcome.execution_arn == execution["executionArn"] and execution["name"] == batch_id
    text = aws["sfn"].describe_execution(executionArn=execution["executionArn"])["input"]
    document = json.loads(text)
    assert text == json.dumps(document, separators=(",", ":"))   # compact: the input is capped at 256 KB
    [stage] = document["stages"]
    assert 5 <= stage.pop("seconds") <= finished - now + 5
    assert stage == {"stage": "process_stream", "events": 6, "bytes": sum(r.size for r in records),
                     "memory_mb": 512, "ddb_rru": meter.rru, "ddb_wru": meter.wru, "s3_puts": 1}
    assert meter.rru > 0 and meter.wru > 0 and meter.rru != meter.wru
    assert [r["event_id"] for r in document["rows"]] == ["e1", "e2", "e3", "e9"]
    assert {k: document[k] for k in ("batch_id", "feature_set", "model_version", "rows_s3_uri")} == {
        "batch_id": batch_id, "feature_set": "v1", "model_version": "xgb-1", "rows_s3_uri": None}
    [_, entry] = store.get_item("state", {"pk": "stream#shardId-000000000000"})["journal"]
    journal = stream.read_journal(settings(), entry["key"])
    raw = boto3.client("s3", region_name="us-east-1").get_object(Bucket="artifacts", Key=entry["key"])["Body"].read()
    assert raw.decode() == json.dumps(journal, separators=(",", ":"))
    assert {k: journal[k] for k in ("batch_id", "shard", "first", "last", "feature_set")} == {
        "batch_id": batch_id, "shard": "shardId-000000000000", "first": "100", "last": "105", "feature_set": "v1"}
    assert now <= journal["created_at"] <= finished and journal["rows"] == document["rows"]
    assert entry == {"key": stream.journal_key("shardId-000000000000", batch_id, journal["created_at"]),
                     "first": "100", "last": "105"}
    [rejected] = _state(aws)["events"]
    assert rejected["event_id"] == "rejected#shardId-000000000000#101" and rejected["errors"]
    assert now <= rejected["rejected_at"] <= finished
    assert rejected["expires_at"] == int(rejected["rejected_at"] + stream.REJECTED_TTL_SECONDS)
    assert (stream.WARM.take(("features", "v1", "shardId-000000000000")).mark
            == ("105", 0))   # the states are kept warm at the mark the batch left


def test_load_users_reads_the_hot_items_then_the_cold_ones_they_name(aws, monkeypatch):
    """The hot items strongly consistent, with only the attributes used; then the cold items of the users whose hot
    state names one (eventually consistent: they change about once an hour); a stale cold copy (its version is not
    the one the hot state names) is read again strongly with GetItem. A user with no stored state is new."""
    from lambdakit import T0

    from pipeline.events import Event
    from pipeline.features import FeatureState

    shard = "shardId-000000000000"
    u1 = stream.UserState(FeatureState("v1"), shard=shard, applied_seq=7, ring=[stream.id_hash("a")])
    for hours in range(4):   # tiles roll up: u1 has a cold item
        u1.features.add(Event.model_validate(event(hours, timestamp=T0 + hours * 3600)))
    u2 = stream.UserState(FeatureState("v1"), shard=shard, applied_seq=9)
    u2.features.add(Event.model_validate(event(9, user="u2")))
    old_cold = [item for item in stream.user_items("u1", u1, "v1", T0) if "cold" in item]
    u1.features.add(Event.model_validate(event(5, timestamp=T0 + 5 * 3600)))
    items = stream.user_items("u1", u1, "v1", T0) + stream.user_items("u2", u2, "v1", T0)
    assert len(items) == 3 and len(old_cold) == 1 and u1.features.cold_version == 2
    store.batch_put_raw("features", items)

    reads, gets = [], []
    real_batch_get, real_get = store.batch_get_raw, store.get_item
    monkeypatch.setattr(store, "batch_get_raw", lambda *r: reads.extend(r) or real_batch_get(*r))
    monkeypatch.setattr(store, "get_item", lambda *a: gets.append(a) or real_get(*a))
    states = stream.load_users(settings(), {"u1", "u2", "u3"}, "v1")
    assert sorted(states) == ["u1", "u2", "u3"]
    for name, user in (("u1", u1), ("u2", u2)):
        state = states[name]
        assert (state.shard, state.applied_seq, state.ring, state.new) == (user.shard, user.applied_seq, user.ring,
                                                                           False)
        assert (state.features.to_bytes(), state.features.cold_bytes()) == (user.features.to_bytes(),
                                                                            user.features.cold_bytes())
    fresh = states["u3"]
    assert (fresh.shard, fresh.applied_seq, fresh.ring, fresh.new, fresh.features.total_events) == ("", -1, [], True, 0)
    assert fresh.features.feature_set == "v1"
    hot, cold = reads
    assert (hot.table, hot.consistent) == ("features", True)
    assert sorted(k["user_id"]["S"] for k in hot.keys) == ["u1", "u2", "u3"]
    assert all(k["feature_set"] == {"S": "v1"} for k in hot.keys)
    assert sorted(hot.projection["ExpressionAttributeNames"].values()) == ["hot", "pos", "user_id"]
    assert (cold.table, cold.consistent, cold.keys) == ("features", False, [
        {"user_id": {"S": "u1"}, "feature_set": {"S": "v1#cold"}}])
    assert sorted(cold.projection["ExpressionAttributeNames"].values()) == ["cold", "user_id"]
    assert gets == []

    # an eventually consistent read that returns the cold item as it was before its last write
    def stale(*r):
        found = real_batch_get(*r)
        return [[old_cold[0] | {"user_id": {"S": "u1"}}] if not read.consistent else items
                for read, items in zip(r, found, strict=True)]

    monkeypatch.setattr(store, "batch_get_raw", stale)
    again = stream.load_users(settings(), {"u1"}, "v1")
    assert again["u1"].features.cold_bytes() == u1.features.cold_bytes()
    assert gets == [("features", {"user_id": "u1", "feature_set": "v1#cold"})]
    # the hot items given (read with the counters): only the cold ones are read
    reads.clear()
    monkeypatch.setattr(store, "batch_get_raw", lambda *r: reads.extend(r) or real_batch_get(*r))
    [hot_items] = real_batch_get(stream.hot_read(settings(), ["u2"], "v1"))
    given = stream.load_users(settings(), {"u2"}, "v1", hot_items=hot_items)
    assert given["u2"].features.to_bytes() == u2.features.to_bytes() and [r.keys for r in reads] == [[]]
    # a hot state naming a cold item that is gone: the batch fails, nothing is read as if it had no hourly tiles
    from pipeline.features import StaleColdState

    boto3.client("dynamodb", region_name="us-east-1").delete_item(
        TableName="features", Key={"user_id": {"S": "u1"}, "feature_set": {"S": "v1#cold"}})
    with pytest.raises(StaleColdState):
        stream.load_users(settings(), {"u1"}, "v1")


def test_users_kept_warm_stay_kept_through_batches_without_them(aws, lambda_context, monkeypatch):
    """An environment keeps every user it wrote while the shard's mark is its own, not only the last batch's: a
    batch of u1 alone, then one of u2, reads no user's state."""
    reads = []
    real = store.batch_get_raw
    monkeypatch.setattr(store, "batch_get_raw", lambda *r: reads.append([k for read in r for k in read.keys]) or
                        real(*r))
    for first, users in ((100, ["u1", "u2"]), (102, ["u1"]), (103, ["u2"])):
        reads.clear()
        _handler()(kinesis_event([event(first + n, user=u) for n, u in enumerate(users)], first_seq=first),
                   lambda_context)
        assert sorted(reads[0], key=repr) == sorted([{"pk": {"S": "stream#shardId-000000000000"}}] + (
            [{"user_id": {"S": u}, "feature_set": {"S": "v1"}} for u in users] if first == 100 else []), key=repr)
    assert [queries.user_features(settings(), u)["total_events"] for u in ("u1", "u2")] == [2, 2]


def test_a_batch_too_large_to_pass_inline_passes_its_journal(aws, lambda_context, monkeypatch):
    """Past the inline limit the execution gets the batch journal's S3 URI (the rows are in it already): no second
    copy of the rows is written."""
    monkeypatch.setattr(stream, "MAX_INLINE_INPUT_BYTES", 500)
    _handler()(kinesis_event([event(n) for n in range(3)]), lambda_context)
    [execution] = aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]
    document = json.loads(aws["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    [entry] = store.get_item("state", {"pk": "stream#shardId-000000000000"})["journal"]
    assert document["rows_s3_uri"] == f"s3://artifacts/{entry['key']}" and document["rows"] == []
    assert [r["event_id"] for r in _rows(aws)] == ["e0", "e1", "e2"]
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="artifacts")["Contents"]
    assert [o["Key"] for o in listed] == [entry["key"]]


def test_a_user_is_tracked_once_across_batches_of_one_environment(aws, lambda_context):
    """users_tracked counts a user's first event ever: the state kept warm after the first batch is not new."""
    for start in (0, 3, 6):
        _handler()(kinesis_event([event(n) for n in range(start, start + 3)], first_seq=100 + start), lambda_context)
    stats = queries.stats(settings())
    assert (stats["users_tracked"], stats["events_processed"]) == (1, 9)


def test_a_shard_counted_from_sequence_number_zero(aws, lambda_context):
    """A shard with no counters item has counted nothing: its records count from sequence number 0 (a sequence
    number matches 0|([1-9]\\d{0,128}): Kinesis API Reference, SequenceNumberRange,
    https://docs.aws.amazon.com/kinesis/latest/APIReference/API_SequenceNumberRange.html)."""
    _handler()(kinesis_event([event(n) for n in range(3)], first_seq=0), lambda_context)
    stats = queries.stats(settings())
    assert (stats["events_processed"], stats["users_tracked"]) == (3, 1)


def test_a_record_without_an_arrival_time_is_scored_as_ingested_now(aws):
    """A row's ingest_ts is the event's, else the record's arrival in the stream, else the batch's processing time."""
    import time

    records = [stream.decode(r) for r in kinesis_event([event(1)])["Records"]]
    records[0].arrival = 0.0
    before = time.time()
    stream.process(records, settings())
    [row] = _rows(aws)
    assert before <= row["ingest_ts"] <= time.time()


def test_a_batch_with_nothing_to_score_starts_no_inference(aws):
    """A batch of rejected records and client duplicates only: counted and kept, no execution started, and the
    outcome says so with no execution ARN (None, not an empty one)."""
    stream.process([stream.decode(r) for r in kinesis_event([event(1)], first_seq=100)["Records"]], settings())
    records = [stream.decode(r) for r in kinesis_event([b"not json", event(1)], first_seq=200)["Records"]]
    outcome = stream.process(records, settings())
    assert outcome == stream.BatchOutcome(stream.batch_id_for(records), 0, 1, 1, None, 0)
    assert len(aws["sfn"].list_executions(stateMachineArn=aws["state_machine_arn"])["executions"]) == 1
    assert queries.stats(settings())["events_duplicate"] == 1


def test_a_v2_deployment_reads_back_its_users_v2_states(aws, monkeypatch):
    """With FEATURE_SET=v2 the stored states are v2 ones and are read back as v2 (load_users passes the set on):
    a fresh environment's second batch continues the user's state."""
    from pipeline.features import feature_names

    monkeypatch.setenv("FEATURE_SET", "v2")
    for n, first in ((1, 100), (2, 200)):
        stream.WARM.clear()   # a fresh environment: the second batch reads u1's stored state
        stream.process([stream.decode(r) for r in kinesis_event([event(n)], first_seq=first)["Records"]],
                       settings())
    states = stream.load_users(settings(), {"u1"}, "v2")
    assert states["u1"].features.feature_set == "v2" and states["u1"].features.total_events == 2
    rows = {r["event_id"]: r["features"] for r in _rows(aws)}
    assert [len(rows[e]) for e in ("e1", "e2")] == [len(feature_names("v2"))] * 2
    assert (rows["e1"][0], rows["e2"][0]) == (1, 2)   # events_1h: the second event counted with the first
